"""S3 write requests end within ``write_deadline`` with a clear TimeoutError.

A store that accepts connections but never answers stands in for SeaweedFS with a volume server
down (tests/stores/test_seaweedfs_cluster.py has the real thing): without the deadline, s3fs's 5
retries times botocore's 5 attempts of ``read_timeout`` each keep a write hanging for minutes.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import fsspec
import pytest

pytest.importorskip("s3fs")

from envstore.errors import ConfigError
from envstore.stores.s3_deadline import DEFAULT_WRITE_DEADLINE


@pytest.fixture
def silent_endpoint() -> Iterator[str]:
    """An HTTP endpoint on 127.0.0.1 that accepts connections and reads, but never answers."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(64)
    held: list[socket.socket] = []
    stop = threading.Event()

    def serve() -> None:
        srv.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = srv.accept()
            except OSError:
                continue
            held.append(conn)

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    yield f"http://127.0.0.1:{srv.getsockname()[1]}"
    stop.set()
    t.join()
    for c in held:
        c.close()
    srv.close()


def _efs(endpoint: str, key_uri: str, **kw: object) -> fsspec.AbstractFileSystem:
    return fsspec.filesystem(
        "envstore",
        target_protocol="s3",
        target_options={"endpoint_url": endpoint, "key": "k", "secret": "s"},
        key_uri=key_uri,
        skip_instance_cache=True,
        **kw,
    )


@pytest.mark.parametrize("size", [1000, 6 * 2**20], ids=["put", "multipart"])
def test_write_to_unresponsive_store_fails_within_deadline(
    silent_endpoint: str, key_uri: str, size: int
) -> None:
    efs = _efs(silent_endpoint, key_uri, write_deadline=1)
    efs.store.part_size = 5 * 2**20  # the 6 MiB case: CreateMultipartUpload is the first call
    t0 = time.monotonic()
    with pytest.raises(TimeoutError) as info:
        efs.pipe_file("bucket/obj", b"x" * size)
    took = time.monotonic() - t0
    assert took < 1 + size / 2**20 + 5, took
    msg = str(info.value)
    assert "bucket/obj" in msg and "write_deadline" in msg
    if size == 1000:
        assert "PutObject of bucket/obj" in msg and "outcome unknown" in msg
    else:
        assert "CreateMultipartUpload of bucket/obj" in msg and "nothing was written" in msg


def test_write_deadline_option(key_uri: str) -> None:
    efs = _efs("http://127.0.0.1:9", key_uri)
    assert efs.store.write_deadline == DEFAULT_WRITE_DEADLINE
    assert _efs("http://127.0.0.1:9", key_uri, write_deadline=30).store.write_deadline == 30.0
    assert _efs("http://127.0.0.1:9", key_uri, write_deadline=None).store.write_deadline is None
    for bad in (0, -1, "30", True, float("inf"), float("nan")):
        with pytest.raises(ConfigError, match="write_deadline"):
            _efs("http://127.0.0.1:9", key_uri, write_deadline=bad)
