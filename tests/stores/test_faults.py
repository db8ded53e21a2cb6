"""Fault injection between envstore and S3: every outcome is the right data or a clear error.

A :class:`tests.stores.faultproxy.FaultProxy` in front of the moto server answers chosen
request types (HEAD, ranged GET, PUT, CreateMultipartUpload, UploadPart,
CompleteMultipartUpload) with 500/503, resets connections before or after forwarding,
truncates or shortens bodies, or delays responses.  For every fault and operation:

* reads (``open().read()``, ``cat_file``, ``cat_ranges``, ``get_file``) return exactly the
  plaintext or raise a *clear* error: a builtin ``OSError`` subclass or an envstore error,
  never a raw botocore/aiohttp exception, never wrong or partial data, never a partial file;
* writes (single ``PutObject`` and multipart) either succeed, and the object read back with
  boto3 directly is the new one, or raise a clear error, and the object is the old one intact
  (or, when only the answer to a processed request was lost, the new one intact); no
  multipart upload is left pending, except one whose CreateMultipartUpload answer was lost
  (its id never reached the client; ``envstore clean`` or the bucket's
  AbortIncompleteMultipartUpload lifecycle rule removes it).

The outcome counts are collected in ``TALLY`` and printed at the end of the module (run with
``-s`` to see them).  The full matrix is marked slow; a representative subset runs always.
"""

from __future__ import annotations

import io
import os
import pickle
import socket
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from envstore.errors import ConfigError, EnvstoreError
from tests.stores.conftest import S3Env
from tests.stores.conftest_oss import oss_fixture, oss_server_fixture  # noqa: F401
from tests.stores.faultproxy import FaultProxy

MiB = 1 << 20
READ_FAULTS = ("500", "503", "reset", "reset-after", "truncate", "short", "delay:0.3")
WRITE_FAULTS = ("500", "503", "reset", "reset-after", "truncate", "delay:0.3")
#: fast-failing clients: botocore does not retry (s3fs still retries transport errors)
CONFIG = {"retries": {"total_max_attempts": 1}, "connect_timeout": 2, "read_timeout": 2}

TALLY: Counter[str] = Counter()


@pytest.fixture(scope="module", autouse=True)
def _report() -> Iterator[None]:
    yield
    if TALLY:
        print("\nfault-injection outcomes:")
        for key, n in sorted(TALLY.items()):
            print(f"  {key}: {n}")


@pytest.fixture
def closed_port() -> int:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = int(sock.getsockname()[1])
    sock.close()
    return port


@pytest.fixture
def proxy(s3: S3Env) -> Iterator[FaultProxy]:
    p = FaultProxy(s3.endpoint.url).start()
    yield p
    for (kind, fault), n in p.injected.items():
        TALLY[f"injected {kind} {fault}"] += n
    p.stop()


def through(env: S3Env, proxy: FaultProxy, **kw: Any) -> Any:
    """An envstore filesystem whose S3 requests go through the proxy."""
    s3opts = {"endpoint_url": proxy.url, "config_kwargs": CONFIG, **kw.pop("s3", {})}
    return env.efs(s3=s3opts, **kw)


def clear(exc: BaseException) -> bool:
    """A clear error: an envstore error or a *builtin* OSError subclass with a message."""
    if isinstance(exc, EnvstoreError):
        return True
    return isinstance(exc, OSError) and type(exc).__module__ == "builtins" and bool(str(exc))


def judge(label: str, fn: Callable[[], Any], expected: Any) -> str:
    """Run ``fn``: right data -> "ok", a clear error -> "error:<type>"; anything else fails."""
    try:
        got = fn()
    except Exception as exc:
        assert clear(exc), f"{label}: unclear error {type(exc).__module__}.{type(exc).__name__}"
        result = f"error:{type(exc).__name__}"
    else:
        if isinstance(expected, list):  # cat_ranges(on_error="return"): per-range results
            assert len(got) == len(expected)
            parts = []
            for g, e in zip(got, expected, strict=True):
                if isinstance(g, BaseException):
                    assert clear(g), f"{label}: unclear error {type(g).__name__}"
                    parts.append(f"error:{type(g).__name__}")
                else:
                    assert g == e, f"{label}: WRONG DATA"
                    parts.append("ok")
            result = "ok" if set(parts) == {"ok"} else sorted(set(parts) - {"ok"})[0]
        else:
            assert got == expected, f"{label}: WRONG DATA ({len(got)} vs {len(expected)} bytes)"
            result = "ok"
    words = label.split()
    TALLY[f"{words[0]} -> {result}"] += 1
    TALLY[
        f"  {' '.join(w for i, w in enumerate(words) if i != 1 or words[0] != 'read')} -> {result}"
    ] += 1
    return result


# -- reads -----------------------------------------------------------------------------------
def read_ops(fs: Any, path: str, data: bytes, tmp: Path) -> dict[str, tuple[Callable, Any]]:
    size = len(data)

    def read_open() -> bytes:
        with fs.open(path, "rb") as f:
            return f.read()

    def get() -> bytes:
        out = tmp / "out.bin"
        try:
            fs.get_file(path, str(out))
        except BaseException:
            assert not out.exists(), "a failed get_file left a file"
            assert not [p for p in os.listdir(tmp) if p.startswith(".envstore")], "temp left"
            raise
        got = out.read_bytes()
        out.unlink()
        return got

    starts, ends = [0, 1000, size - 300], [500, size - 1000, size]
    return {
        "open-read": (read_open, data),
        "cat_file": (lambda: fs.cat_file(path), data),
        "cat_ranges": (
            lambda: fs.cat_ranges([path] * 3, starts, ends),
            [data[s:e] for s, e in zip(starts, ends, strict=True)],
        ),
        "get_file": (get, data),
    }


@pytest.fixture
def stored(s3: S3Env) -> tuple[str, bytes]:
    data = os.urandom(5 * 16384 + 1234)
    s3.efs().pipe_file(s3.path("obj"), data)
    return s3.path("obj"), data


def run_reads(
    s3: S3Env,
    proxy: FaultProxy,
    stored: tuple[str, bytes],
    tmp: Path,
    kind: str,
    fault: str,
    times: int | None,
) -> Counter[str]:
    path, data = stored
    outcomes: Counter[str] = Counter()
    for op in ("open-read", "cat_file", "cat_ranges", "get_file"):
        proxy.clear()
        proxy.plan(kind, fault, times=times)
        fs = through(s3, proxy)  # a fresh filesystem: nothing cached from the last op
        fn, expected = read_ops(fs, path, data, tmp)[op]
        outcomes[judge(f"read {op} {kind} {fault} x{times}", fn, expected)] += 1
    return outcomes


@pytest.mark.parametrize("fault", READ_FAULTS)
@pytest.mark.parametrize("kind", ["head", "get-range"])
def test_read_fault_once(
    s3: S3Env,
    proxy: FaultProxy,
    stored: tuple[str, bytes],
    tmp_path: Path,
    kind: str,
    fault: str,
) -> None:
    outcomes = run_reads(s3, proxy, stored, tmp_path, kind, fault, 1)
    if fault == "delay:0.3" or (kind == "get-range" and fault in ("503", "truncate")):
        assert outcomes == Counter({"ok": 4}), outcomes  # transient: retried, recovered
    assert sum(proxy.injected.values()) >= 1


@pytest.mark.slow
@pytest.mark.parametrize("fault", READ_FAULTS)
@pytest.mark.parametrize("kind", ["head", "get-range"])
def test_read_fault_always(
    s3: S3Env,
    proxy: FaultProxy,
    stored: tuple[str, bytes],
    tmp_path: Path,
    kind: str,
    fault: str,
) -> None:
    outcomes = run_reads(s3, proxy, stored, tmp_path, kind, fault, None)
    if fault not in ("delay:0.3",):
        assert "ok" not in outcomes or kind == "head", outcomes


# -- writes ----------------------------------------------------------------------------------
OLD = b"old object, intact"


def run_write(
    s3: S3Env, proxy: FaultProxy, kind: str, fault: str, times: int | None, size: int
) -> str:
    direct = s3.efs()
    path = s3.path(f"w-{kind}-{fault}-{times}")
    direct.pipe_file(path, OLD)
    new = os.urandom(size)
    proxy.clear()
    proxy.plan(kind, fault, times=times)
    fs = through(s3, proxy, s3={"default_block_size": 5 * MiB})

    def write() -> bytes:
        with fs.open(path, "wb") as f:
            for pos in range(0, size, MiB):
                f.write(new[pos : pos + MiB])
        return b""

    result = judge(f"write {kind} {fault} x{times}", write, b"")
    now = s3.efs().cat_file(path)  # read back without the proxy
    if result == "ok":
        assert now == new, "a successful write did not leave the new object"
    else:
        assert now in (OLD, new), "a failed write left a partial or foreign object"
        TALLY[f"write failed, object is {'old' if now == OLD else 'new'}"] += 1
    pending = s3.pending_uploads()
    if kind == "create-mpu" and fault in ("reset-after", "truncate"):
        # the store made an upload whose id never reached the client: nothing can abort it
        # but a listing (envstore clean) or the AbortIncompleteMultipartUpload lifecycle rule
        assert len(pending) <= proxy.injected[(kind, fault)]
        TALLY["orphaned uploads (CreateMultipartUpload answer lost)"] += len(pending)
        for up in pending:
            s3.client.abort_multipart_upload(
                Bucket=s3.bucket, Key=up["Key"], UploadId=up["UploadId"]
            )
    else:
        assert pending == [], "a multipart upload was left pending"
    assert proxy.injected, "the planned fault never happened"
    return result


@pytest.mark.parametrize("fault", WRITE_FAULTS)
def test_single_put_fault_once(s3: S3Env, proxy: FaultProxy, fault: str) -> None:
    result = run_write(s3, proxy, "put", fault, 1, 100_000)
    if fault in ("503", "delay:0.3"):
        assert result == "ok"


@pytest.mark.parametrize("fault", ["503", "reset", "reset-after", "500"])
@pytest.mark.parametrize("kind", ["upload-part", "complete-mpu"])
def test_multipart_fault_once(s3: S3Env, proxy: FaultProxy, kind: str, fault: str) -> None:
    result = run_write(s3, proxy, kind, fault, 1, 5 * MiB + 4321)
    if fault == "503":  # SlowDown: s3fs retries it
        assert result == "ok"


@pytest.mark.slow
@pytest.mark.parametrize("times", [1, None])
@pytest.mark.parametrize("fault", WRITE_FAULTS)
@pytest.mark.parametrize("kind", ["put", "create-mpu", "upload-part", "complete-mpu"])
def test_write_fault_matrix(
    s3: S3Env, proxy: FaultProxy, kind: str, fault: str, times: int | None
) -> None:
    size = 100_000 if kind == "put" else 5 * MiB + 4321
    result = run_write(s3, proxy, kind, fault, times, size)
    if times is None and fault not in ("delay:0.3", "reset-after", "truncate"):
        assert result != "ok"  # a fault on every attempt cannot end well


# -- backend failures are builtin OSErrors, with the original chained (issue 10 item 14) ------
def test_unreachable_endpoint_is_connection_error(s3: S3Env, closed_port: int) -> None:
    fs = s3.efs(s3={"endpoint_url": f"http://127.0.0.1:{closed_port}", "config_kwargs": CONFIG})
    for call in (
        lambda: fs.cat_file(s3.path("x")),
        lambda: fs.ls(s3.root),
        lambda: fs.pipe_file(s3.path("x"), b"1"),
        lambda: fs.open(s3.path("x"), "rb"),
    ):
        with pytest.raises(ConnectionError) as info:
            call()
        assert type(info.value).__module__ == "builtins"
        assert info.value.__cause__ is not None  # the original, chained
        assert "could not connect" in str(info.value)


def test_reset_connections_are_connection_errors(
    s3: S3Env, proxy: FaultProxy, stored: tuple[str, bytes]
) -> None:
    proxy.plan("get-range", "reset", times=None)
    fs = through(s3, proxy)
    with pytest.raises(ConnectionError) as info:
        fs.cat_file(stored[0])
    assert type(info.value).__module__ == "builtins" and info.value.__cause__ is not None
    proxy.clear()
    proxy.plan("get-range", "truncate", times=None)
    with pytest.raises(OSError) as info2:
        through(s3, proxy).cat_file(stored[0])
    assert type(info2.value).__module__ == "builtins"


# -- sequential scans: the GET kept open ----------------------------------------------------
@pytest.fixture
def scanned(s3: S3Env) -> tuple[str, bytes]:
    data = os.urandom(3 * MiB + 1234)
    s3.efs().pipe_file(s3.path("scan"), data)
    return s3.path("scan"), data


def scan(fs: Any, path: str, step: int = 256 * 1024) -> bytes:
    with fs.open(path, "rb") as f:
        return b"".join(iter(lambda: f.read(step), b""))


@pytest.mark.parametrize("fault", ["truncate", "short"])
def test_a_broken_scan_stream_falls_back_to_ranged_gets(
    s3: S3Env, proxy: FaultProxy, scanned: tuple[str, bytes], fault: str
) -> None:
    """The GET a sequential scan keeps open is cut mid-body (``truncate``: the read from it
    fails) or answers short (``short``: its body ends early): the missing bytes come by plain
    ranged GETs and the scan reads the exact object."""
    path, data = scanned
    proxy.plan("get-range", fault, times=1, after=1)  # GET 1: the first read; GET 2: the scan's
    fs = through(s3, proxy)
    assert scan(fs, path) == data
    assert proxy.injected[("get-range", fault)] == 1
    assert proxy.seen["get-range"] >= 3  # the fall-back GETs


def test_read_deadline_bounds_a_trickling_scan_stream(
    s3: S3Env, proxy: FaultProxy, scanned: tuple[str, bytes]
) -> None:
    """The scan's open GET trickles: the read waiting on it ends at the read deadline with
    TimeoutError (no second attempt), and the next read starts over with plain GETs."""
    path, data = scanned
    proxy.plan("get-range", "trickle:0.2", times=1, after=1)
    fs = through(s3, proxy, read_deadline=30)  # the HEAD and the first GET: not timed here
    with fs.open(path, "rb") as f:
        assert f.read(256 * 1024) == data[: 256 * 1024]
        fs.store.read_deadline = 2  # the trickle would take 0.2 s per 4 KiB: 12.8 s
        start = time.monotonic()
        with pytest.raises(TimeoutError, match="read_deadline"):
            f.read(256 * 1024)
        assert time.monotonic() - start < 6
        fs.store.read_deadline = 30
        scans = fs.store._scans[fs.store._name(path)]
        assert scans and all(scan.dropped for scan in scans)
        seen = proxy.seen["get-range"]
        f.seek(256 * 1024)
        assert f.read(256 * 1024) == data[256 * 1024 : 512 * 1024]
        # the dropped scan is not continued: the read is a plain GET starting a new scan
        assert proxy.seen["get-range"] == seen + 1
        assert [scan.dropped for scan in fs.store._scans[fs.store._name(path)]] == [False]
        assert f.read() == data[512 * 1024 :]


# -- the read deadline ----------------------------------------------------------------------
def test_read_deadline_bounds_a_slow_store(
    s3: S3Env, proxy: FaultProxy, stored: tuple[str, bytes]
) -> None:
    """Every GET answered after 3 s with read_timeout=1: s3fs alone retries for a long time
    (5 attempts x botocore's); read_deadline=2 stops the read after about 2 s."""
    proxy.plan("get-range", "delay:3", times=None)
    fs = through(s3, proxy, read_deadline=2)
    start = time.monotonic()
    with pytest.raises(TimeoutError, match="read_deadline") as info:
        fs.cat_file(stored[0])
    elapsed = time.monotonic() - start
    assert elapsed < 6, elapsed
    assert type(info.value).__module__ == "builtins"
    TALLY[f"deadline 2s: TimeoutError after {elapsed:.1f}s"] += 1


def test_read_deadline_bounds_head(s3: S3Env, proxy: FaultProxy, stored: tuple[str, bytes]) -> None:
    proxy.plan("head", "delay:3", times=None)
    fs = through(s3, proxy, read_deadline=1)
    start = time.monotonic()
    with pytest.raises(TimeoutError):
        fs.open(stored[0], "rb")
    assert time.monotonic() - start < 5


def test_deadlines_start_once_the_client_exists(
    s3: S3Env, stored: tuple[str, bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Building s3fs's client is local work (about 0.1 s idle, over 1 s on a loaded CI
    machine): it does not count against the read or write deadline, the store's answers do."""
    import s3fs

    real = s3fs.S3FileSystem.set_session
    built: list[float] = []

    async def slow_first_build(self: Any, *args: Any, **kwargs: Any) -> Any:
        if self._s3 is None:
            time.sleep(2.5)  # on the loop thread, as botocore's model loading is
            built.append(2.5)
        return await real(self, *args, **kwargs)

    monkeypatch.setattr(s3fs.S3FileSystem, "set_session", slow_first_build)
    fs = s3.efs(read_deadline=2, s3={"skip_instance_cache": True})
    assert fs.cat_file(stored[0]) == stored[1]
    writer = s3.efs(write_deadline=2, s3={"skip_instance_cache": True})
    writer.pipe_file(s3.path("built"), b"x" * 1000)  # the same for the write deadline
    assert built == [2.5, 2.5]
    assert fs.cat_file(s3.path("built")) == b"x" * 1000


def test_read_deadline_option(s3: S3Env, stored: tuple[str, bytes]) -> None:
    fs = s3.efs(read_deadline=7.5)
    assert fs.store.read_deadline == 7.5
    clone = pickle.loads(pickle.dumps(fs))
    assert clone.store.read_deadline == 7.5
    assert clone.cat_file(stored[0]) == stored[1]
    assert s3.efs(read_deadline=None).store.read_deadline is None
    assert s3.efs().store.read_deadline == 120.0
    for bad in (0, -1, "10", True):
        with pytest.raises(ConfigError, match="read_deadline"):
            s3.efs(read_deadline=bad)


def test_slow_but_progressing_reads_are_not_cut(
    s3: S3Env, proxy: FaultProxy, stored: tuple[str, bytes]
) -> None:
    """Every GET answers after 0.5 s: each request is well within the deadline (3 s), so no
    read is cut, however many requests it makes."""
    proxy.plan("get-range", "delay:0.5", times=None)
    fs = through(s3, proxy, read_deadline=3, s3={"config_kwargs": {**CONFIG, "read_timeout": 4}})
    assert fs.cat_file(stored[0]) == stored[1]
    buf = io.BytesIO()
    fs.get_file(stored[0], buf)
    assert buf.getvalue() == stored[1]


def test_read_deadline_bounds_a_trickling_s3_body(
    s3: S3Env, proxy: FaultProxy, stored: tuple[str, bytes]
) -> None:
    """Every socket read gets bytes before read_timeout, so only the deadline ends it."""
    proxy.plan("get-range", "trickle:0.5", times=None)
    fs = through(s3, proxy, read_deadline=1)
    start = time.monotonic()
    with pytest.raises(TimeoutError, match="read_deadline"):
        fs.cat_file(stored[0])  # 84 KB at 4 KiB per 0.5 s: 10.5 s without the deadline
    assert time.monotonic() - start < 6


def test_read_deadline_bounds_a_trickling_oss_body(oss: Any) -> None:
    """OSS (oss2, blocking): the response still being read is closed at the deadline."""
    data = os.urandom(5 * 16384 + 1234)
    oss.efs().pipe_file(oss.path("obj"), data)
    proxy = FaultProxy(oss.endpoint).start()
    try:
        assert oss.efs(oss={"endpoint": proxy.url}).cat_file(oss.path("obj")) == data
        proxy.plan("get-range", "trickle:0.5", times=None)
        fs = oss.efs(oss={"endpoint": proxy.url}, read_deadline=1)
        start = time.monotonic()
        with pytest.raises(TimeoutError, match="read_deadline"):
            fs.cat_file(oss.path("obj"))  # 10.5 s without the deadline
        assert time.monotonic() - start < 6
        proxy.clear()
        proxy.plan("get-range", "reset", times=None)
        with pytest.raises(ConnectionError) as info:
            oss.efs(oss={"endpoint": proxy.url}).cat_file(oss.path("obj"))
        assert type(info.value).__module__ == "builtins" and info.value.__cause__ is not None
        proxy.clear()
        proxy.plan("get-range", "short", times=None)
        with pytest.raises(EnvstoreError):
            oss.efs(oss={"endpoint": proxy.url}).cat_file(oss.path("obj"))
    finally:
        proxy.stop()


def test_unreachable_oss_endpoint_is_connection_error(oss: Any, closed_port: int) -> None:
    fs = oss.efs(oss={"endpoint": f"http://127.0.0.1:{closed_port}"})
    for call in (lambda: fs.cat_file(oss.path("x")), lambda: fs.ls(oss.root)):
        with pytest.raises(ConnectionRefusedError, match="could not connect") as info:
            call()
        assert info.value.__cause__ is not None
