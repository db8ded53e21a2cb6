"""The one moto server helper of the tests and benchmarks (S3 and AWS KMS on one port).

* :func:`threaded` — a ``ThreadedMotoServer`` on 127.0.0.1 in this process: the test suite's
  session fixture ``moto_server`` (tests/conftest.py) serves S3 (tests/stores, test_cli,
  test_readme, migration) and KMS (tests/keys) from it; fixtures reset it per test.
* :func:`process` — moto in its own process (``python -m moto.server``): the benchmarks, so the
  server's CPU is not charged to the measured client.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager

#: dummy credentials (moto accepts any); never real ones in the tests' environment
DUMMY_AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "envstore-test",
    "AWS_SECRET_ACCESS_KEY": "envstore-test",
    "AWS_SESSION_TOKEN": "envstore-test",
    "AWS_SECURITY_TOKEN": "envstore-test",
    "AWS_DEFAULT_REGION": "us-east-1",
}


@contextmanager
def threaded() -> Iterator[str]:
    """A moto server thread on 127.0.0.1 (a free port); yields its URL."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


def reset(url: str) -> None:
    """Forget every bucket, object and key of the server."""
    req = urllib.request.Request(f"{url}/moto-api/reset", method="POST")
    urllib.request.urlopen(req, timeout=30).read()


@contextmanager
def process(env: dict[str, str] | None = None) -> Iterator[str]:
    """moto in its own process on 127.0.0.1 (a free port); yields its URL once it answers."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(400):
            try:
                urllib.request.urlopen(f"{url}/moto-api/", timeout=1).read()
                break
            except OSError:
                if proc.poll() is not None:
                    raise RuntimeError("moto server exited at start") from None
                time.sleep(0.05)
        else:
            raise RuntimeError("moto server did not start")
        yield url
    finally:
        proc.terminate()
        proc.wait()
