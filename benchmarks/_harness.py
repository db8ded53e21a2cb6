"""Shared plumbing of the benchmark scripts: servers in their own processes, interleaved timing,
request/byte counting at the server, result rows.

Only public envstore API is used (fsspec URLs and ``envstore.upload``), so the scripts measure
whatever the package's internals look like.
"""

from __future__ import annotations

import multiprocessing
import os
import socket
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

MiB = 1 << 20
BUCKET = "envstore-bench"
ROOT = str(Path(__file__).resolve().parents[1])
MOTO_CREDS = {"key": "bench", "secret": "bench"}

# one request as a server saw it: (operation, Range header or None, response body bytes,
# x-oss-range-behavior header or None)
Logged = tuple[str, "str | None", int, "str | None"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def new_key_uri() -> str:
    from envstore.keys.local import keygen

    return "local://" + str(keygen(Path(tempfile.mkdtemp()) / "master.key"))


def setup_env() -> None:
    """Credentials for boto clients the scripts (and s3fs) create; the path to this checkout."""
    os.environ.update(
        AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench", AWS_DEFAULT_REGION="us-east-1"
    )
    if ROOT not in sys.path:
        sys.path.insert(0, ROOT)


# -- servers in their own processes, answering "log" / "clear" / "stop" over a pipe -----------


def _counting(app: Any, log: list[list[Any]]) -> Any:
    """WSGI middleware recording every request and the response body bytes it sent."""

    def wsgi(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        entry = [environ["REQUEST_METHOD"], environ.get("HTTP_RANGE"), 0, None]
        log.append(entry)
        body = app(environ, start_response)
        try:
            for chunk in body:
                entry[2] += len(chunk)
                yield chunk
        finally:
            if hasattr(body, "close"):
                body.close()

    return wsgi


def _serve_loop(
    conn: Connection, log: Callable[[], list[Logged]], clear: Callable[[], None]
) -> None:
    while True:
        cmd = conn.recv()
        if cmd == "clear":
            clear()
            conn.send(None)
        elif cmd == "log":
            conn.send(log())
        else:
            return


def serve_moto(conn: Connection) -> None:
    """The moto server process, with request logging at the WSGI layer."""
    import logging
    import threading

    from moto.moto_server.threaded_moto_server import MotoRequestHandler
    from moto.server import DomainDispatcherApplication, create_backend_app
    from werkzeug.serving import make_server

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # no line per request on stderr
    log: list[list[Any]] = []
    app = _counting(DomainDispatcherApplication(create_backend_app), log)
    server = make_server("127.0.0.1", free_port(), app, True, request_handler=MotoRequestHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    conn.send((f"http://127.0.0.1:{server.port}", "bench", "bench"))
    _serve_loop(conn, lambda: [tuple(e) for e in list(log)], log.clear)
    server.shutdown()
    conn.send(None)


def serve_oss(conn: Connection) -> None:
    """The project's OSS-compatible test server process (V1 signatures, MD5 and CRC64)."""
    sys.path.insert(0, ROOT)
    from tests.servers.oss_compat import OssServer

    server = OssServer().start()
    server.create_bucket(BUCKET)
    conn.send((server.endpoint, server.access_key_id, server.access_key_secret))

    def log() -> list[Logged]:
        return [
            (e.op, e.range, e.sent, dict(e.headers).get("x-oss-range-behavior"))
            for e in list(server.log)
        ]

    _serve_loop(conn, log, server.clear_log)
    server.stop()
    conn.send(None)


class Server:
    """A test server (``serve_moto`` or ``serve_oss``) in a spawned process."""

    def __init__(self, target: Callable[[Connection], None]) -> None:
        ctx = multiprocessing.get_context("spawn")
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=target, args=(child,), daemon=True)
        self.proc.start()
        if not self.conn.poll(120):
            self.proc.kill()
            raise RuntimeError(f"{target.__name__}: server did not start")
        self.endpoint, self.key, self.secret = self.conn.recv()

    def clear(self) -> None:
        self.conn.send("clear")
        self.conn.recv()

    def log(self) -> list[Logged]:
        self.conn.send("log")
        return list(self.conn.recv())

    def stop(self) -> None:
        try:
            self.conn.send("stop")
            if self.conn.poll(10):
                self.conn.recv()
        except OSError:
            pass
        finally:
            self.proc.join(10)
            if self.proc.is_alive():
                self.proc.kill()
                self.proc.join()

    def __enter__(self) -> Server:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_moto() -> Server:
    """moto in its own process, with the benchmark bucket created."""
    import boto3

    server = Server(serve_moto)
    boto3.client(
        "s3",
        endpoint_url=server.endpoint,
        aws_access_key_id="bench",
        aws_secret_access_key="bench",
        region_name="us-east-1",
    ).create_bucket(Bucket=BUCKET)
    return server


def start_oss() -> Server:
    return Server(serve_oss)


# -- timing ------------------------------------------------------------------------------------


def interleave(
    fns: dict[str, Callable[[], Any]], repeat: int, inner: int = 1
) -> dict[str, list[float]]:
    """Seconds per call of each function: ``repeat`` rounds, each running every function
    ``inner`` times in turn (variants interleaved, so machine load hits them alike)."""
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(repeat):
        for name, fn in fns.items():
            t = time.perf_counter()
            for _ in range(inner):
                fn()
            times[name].append((time.perf_counter() - t) / inner)
    return times


def best(fns: dict[str, Callable[[], Any]], repeat: int) -> dict[str, float]:
    """Best time of each function over ``repeat`` interleaved rounds."""
    return {k: min(v) for k, v in interleave(fns, repeat).items()}


# -- rows --------------------------------------------------------------------------------------


@dataclass
class Row:
    """One line of the table: what was measured, the figures, the target and the verdict."""

    name: str
    envstore: str
    baseline: str
    value: str
    target: str
    ok: bool | None  # None: informational, no target

    def cells(self) -> tuple[str, ...]:
        verdict = "-" if self.ok is None else ("PASS" if self.ok else "MISS")
        return (self.name, self.envstore, self.baseline, self.value, self.target, verdict)


def speed_row(
    name: str, times: dict[str, list[float]], env: str, base: str, target: float, unit: float
) -> Row:
    """envstore as a fraction of the baseline's speed (base time / envstore time), ``>= target``.

    The ratio is best-of-N over best-of-N; the spread is the range of the per-round ratios."""
    te, tb = times[env], times[base]
    ratio = min(tb) / min(te)
    rounds = [b / e for b, e in zip(tb, te, strict=True)]
    return Row(
        name,
        f"{unit / min(te) / MiB:.0f} MiB/s",
        f"{unit / min(tb) / MiB:.0f} MiB/s",
        f"{ratio:.2f}x ({min(rounds):.2f}-{max(rounds):.2f})",
        f">= {target}x",
        ratio >= target,
    )


def slowdown_row(
    name: str, times: dict[str, list[float]], env: str, base: str, target: float
) -> Row:
    """envstore time as a multiple of the baseline's time, ``<= target``; spread as above."""
    te, tb = times[env], times[base]
    ratio = min(te) / min(tb)
    rounds = [e / b for b, e in zip(tb, te, strict=True)]
    return Row(
        name,
        f"{min(te) * 1e3:.2f} ms",
        f"{min(tb) * 1e3:.2f} ms",
        f"{ratio:.2f}x slower ({min(rounds):.2f}-{max(rounds):.2f})",
        f"<= {target}x",
        ratio <= target,
    )


#: the two ways a caller reads a range: one call, or a file object (fsspec's buffered file)
RANGE_READS = ("cat_file", "open+seek+read")


def read_range(fs: Any, path: str, start: int, size: int, how: str) -> bytes:
    """``size`` bytes of ``path`` from ``start``, read the way ``how`` (of RANGE_READS) says."""
    if how == "cat_file":
        return bytes(fs.cat_file(path, start, start + size))
    with fs.open(path, "rb") as f:
        f.seek(start)
        return bytes(f.read(size))


def print_table(table: Sequence[Sequence[str]], out: Any = None) -> None:
    """Print rows of cells as aligned columns, the first row as the header."""
    widths = [max(len(r[i]) for r in table) for i in range(len(table[0]))]
    for i, row in enumerate(table):
        print(" | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)), file=out)
        if i == 0:
            print("-+-".join("-" * w for w in widths), file=out)


def print_rows(rows: list[Row], out: Any = None) -> None:
    table = [("row", "envstore", "baseline", "ratio (spread)", "target", "")]
    table += [r.cells() for r in rows]
    print_table(table, out)
    sys.stdout.flush()
