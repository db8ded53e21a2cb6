"""envstore over S3 (s3fs) against a real S3 endpoint: moto's server, or MinIO via environment.

See ``tests/stores/conftest.py`` for the endpoint fixtures and ``docs/s3.md`` for running these
tests against MinIO from ``docker-compose.yml``.
"""

from __future__ import annotations

import ast
import base64
import random
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import fsspec
import pandas as pd
import pytest

from envstore.errors import ConfigError, FormatError
from envstore.format import CHUNK, MAGIC, PREFIX, WIRE_CHUNK, body_size
from envstore.keys.local import keygen
from envstore.stores.s3 import DEFAULT_PART_SIZE
from tests.stores.common import ENVELOPE_KEYS, frame, payload

MiB = 1 << 20


def _ops(rec: Any) -> list[str]:
    return [op for op, _ in rec.calls]


def _check_stored(s3: Any, name: str, plain: bytes, sized: bool) -> dict[str, Any]:
    """The object carries the envelope as x-amz-meta-envstore-* and its body is ciphertext."""
    head = s3.head(name)
    meta = head["Metadata"]
    assert ENVELOPE_KEYS <= set(meta), meta
    assert all(k.startswith("envstore-") for k in meta)
    assert meta.get("envstore-size") == (str(len(plain)) if sized else None)
    raw = s3.raw(name)
    assert len(raw) == head["ContentLength"] == body_size(len(plain))
    assert raw[:24] == base64.b64decode(meta["envstore-salt"])
    assert raw[24:PREFIX] == base64.b64decode(meta["envstore-commitment"])
    if len(plain) >= 64:
        assert plain[:32] not in raw and plain[-32:] not in raw
    return head


# -- round trips -----------------------------------------------------------------------------


def test_part_size_is_the_inner_block_size(s3, count_requests) -> None:
    """The part size follows s3fs's ``default_block_size``; parts of a stream are S3 parts."""
    fs = s3.efs(s3={"default_block_size": 5 * MiB})
    assert fs.store.part_size == 5 * MiB
    assert s3.efs().store.part_size == DEFAULT_PART_SIZE
    data = payload(13 * MiB + 777)
    rec = count_requests(fs)
    with fs.open(s3.path("big"), "wb") as f:
        step = MiB + 3
        for i in range(0, len(data), step):
            f.write(data[i : i + step])
    assert _ops(rec).count("UploadPart") == 3
    head = _check_stored(s3, "big", data, sized=False)
    assert head["ETag"].endswith('-3"')
    assert fs.cat_file(s3.path("big")) == data


# -- data frames -------------------------------------------------------------------------------


def test_dask_distributed_cluster(s3) -> None:
    distributed = pytest.importorskip("distributed")
    dd = pytest.importorskip("dask.dataframe")
    so = s3.storage_options()
    df = frame(8000)
    url = s3.url("dist")
    with (
        distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
        ) as cluster,
        distributed.Client(cluster),
    ):
        dd.from_pandas(df, npartitions=4).to_parquet(url, storage_options=so, write_index=False)
        back = dd.read_parquet(url, storage_options=so, columns=["a", "c"]).compute()
    pd.testing.assert_frame_equal(  # dask may pick another string dtype flavour
        back.sort_values("a").reset_index(drop=True), df[["a", "c"]], check_dtype=False
    )


# -- failures ----------------------------------------------------------------------------------


class Boom(Exception):
    pass


def test_envelope_over_two_kilobytes(s3, tmp_path: Path, count_requests) -> None:
    uris = [f"local://{keygen(tmp_path / 'many' / f'k{i}.key')}" for i in range(16)]
    data = payload(3 * CHUNK + 5)
    strict = s3.efs(key_uri=uris, placement="metadata")
    with pytest.raises(FormatError, match="2048"):
        strict.pipe_file(s3.path("strict"), data)
    with pytest.raises(FormatError, match="2048"):
        strict.open(s3.path("strict"), "wb")
    assert s3.keys() == [] and s3.pending_uploads() == []

    fs = s3.efs(key_uri=uris)  # placement="auto": falls back to the in-object header
    fs.pipe_file(s3.path("auto"), data)
    assert not any(k.startswith("envstore-") for k in s3.head("auto")["Metadata"])
    assert s3.raw("auto").startswith(MAGIC)
    assert fs.cat_file(s3.path("auto")) == data
    reader = s3.efs(key_uri=uris[-1])  # any one recipient opens it
    assert reader.cat_file(s3.path("auto"), 100, 40_000) == data[100:40_000]
    # info of one path is exact (its HEAD shows no envelope metadata: the header is read)
    fresh = s3.efs(key_uri=uris[0])
    assert fresh.info(s3.path("auto"))["size"] == len(data)
    assert fresh.ls(s3.root, detail=True)[0]["size"] == len(data)  # the HEAD is remembered


# -- copies, moves, metadata rewrite -----------------------------------------------------------


@pytest.mark.slow
def test_copy_over_150_mib_keeps_envelope(s3, count_requests) -> None:
    """s3fs's own cp_file switches to a managed copy above 150 MiB and drops user metadata;
    envstore's copy stays one CopyObject (up to 5 GiB) with the metadata."""
    fs = s3.efs()
    n = 151 * MiB
    block = payload(MiB, 9)
    with fs.open(s3.path("big"), "wb") as f:
        for _ in range(151):
            f.write(block)
    rec = count_requests(fs)
    fs.cp_file(s3.path("big"), s3.path("copy"))
    assert "CopyObject" in _ops(rec) and "UploadPartCopy" not in _ops(rec)
    assert s3.head("copy")["Metadata"] == s3.head("big")["Metadata"]
    assert s3.head("copy")["ContentLength"] == body_size(n)
    fresh = s3.efs()
    assert fresh.cat_file(s3.path("copy"), n - 5 * CHUNK, n) == block[-5 * CHUNK :]
    fs.mv(s3.path("copy"), s3.path("moved"))
    assert s3.head("moved")["Metadata"] == s3.head("big")["Metadata"]


def test_rewrap_of_a_large_object_copies_part_by_part(s3, other_key_uri: str) -> None:
    """Above ``copy_threshold`` a metadata rewrite is a multipart copy (UploadPartCopy)."""
    fs = s3.efs(context={"purpose": "test"})
    fs.store.copy_threshold = 1 * MiB
    fs.store.copy_part_size = 5 * MiB
    data = payload(6 * MiB + 3)
    fs.pipe_file(s3.path("a"), data)
    s3.client.copy_object(  # other user metadata and the content type survive a rewrap
        Bucket=s3.bucket,
        Key=s3.key("a"),
        CopySource={"Bucket": s3.bucket, "Key": s3.key("a")},
        Metadata={**s3.head("a")["Metadata"], "owner": "team-a"},
        ContentType="application/x-envstore",
        MetadataDirective="REPLACE",
    )
    raw_before = s3.raw("a")
    env = fs.envelope(s3.path("a")).envelope
    key = fs.ring.open_data_key(env.recipients, env.context)
    new = fs.ring.provider(other_key_uri).wrap(key, env.context)
    fs.set_recipients(s3.path("a"), [new])
    head = s3.head("a")
    assert head["Metadata"]["envstore-key-1"] == new.encode()
    assert head["Metadata"]["owner"] == "team-a"
    assert head["ContentType"] == "application/x-envstore"
    assert head["ETag"].endswith('-2"')  # two copied parts
    assert s3.raw("a") == raw_before  # body untouched
    assert s3.efs(key_uri=other_key_uri, context={"purpose": "test"}).cat_file(s3.path("a")) == data
    assert s3.pending_uploads() == []


# -- options, requests, caching ----------------------------------------------------------------


def test_top_level_s3_options_rejected_with_the_right_shape(s3) -> None:
    bad = {
        "key_uri": s3.key_uri,
        "endpoint_url": s3.endpoint.url,
        "key": s3.endpoint.key,
        "secret": s3.endpoint.secret,
    }
    with pytest.raises(ConfigError) as info:
        pd.read_parquet(s3.url("t.parquet"), storage_options=bad)
    msg = str(info.value)
    shape = msg[msg.index("storage_options=") + len("storage_options=") :]
    suggested = ast.literal_eval(shape.replace("...", "None"))
    assert set(suggested) == {"key_uri", "s3"}
    assert set(suggested["s3"]) == {"endpoint_url", "key", "secret"}
    for option in ("anon", "client_kwargs", "profile", "token"):
        with pytest.raises(ConfigError, match=rf"\"s3\": \{{'{option}': \.\.\.\}}"):
            fsspec.filesystem(
                "envstore", target_protocol="s3", key_uri=s3.key_uri, **{option: None}
            )


def test_sequential_scans_read_ahead(s3, count_requests, tmp_path: Path) -> None:
    fs = s3.efs()
    data = payload(6 * MiB + 5)
    fs.pipe_file(s3.path("a"), data)
    stored = body_size(len(data))

    def scan(reader: Any, step: int) -> bytes:
        with reader.open(s3.path("a"), "rb") as f:  # cache_type="none": one call per read
            return b"".join(iter(lambda: f.read(step), b""))

    fresh = s3.efs()
    rec = count_requests(fresh)
    assert scan(fresh, 100_000) == data  # 63 unaligned reads
    gets = rec.ops("GetObject")
    assert len(gets) == 2, gets  # the first read's range, then one GET for the rest
    assert stored <= rec.received <= stored + 2 * WIRE_CHUNK, rec.calls
    rec.clear()
    fresh.get_file(s3.path("a"), str(tmp_path / "a"))
    assert (tmp_path / "a").read_bytes() == data
    assert len(rec.ops("GetObject")) <= 4, rec.calls
    # read-ahead off: one GET per read
    plain = s3.efs()
    plain.store.readahead_max = 0
    rec = count_requests(plain)
    assert scan(plain, 100_000) == data
    assert len(rec.ops("GetObject")) >= 63
    # interleaved scans of one object, and random reads in between, stay exact (one GET
    # kept open at a time: the scans take the connection from each other)
    both = s3.efs()
    both.store.readahead_streams = 1
    with both.open(s3.path("a"), "rb") as f, both.open(s3.path("a"), "rb") as g:
        g.seek(3 * MiB)
        for i in range(0, 3 * MiB, 250_000):
            f.seek(i)
            assert f.read(250_000) == data[i : i + 250_000]
            assert g.read(250_000) == data[3 * MiB + i : 3 * MiB + i + 250_000]
            j = (i * 7919) % len(data)
            assert both.cat_file(s3.path("a"), j, j + 1000) == data[j : j + 1000]


@pytest.mark.parametrize("most", [None, 200_000])
def test_read_ahead_random_walk(s3, most: int | None) -> None:
    """Sequential runs, jumps back and forth, unaligned sizes: always the right bytes."""
    fs = s3.efs()
    data = payload(3 * MiB + 777, 5)
    fs.pipe_file(s3.path("a"), data)
    reader = s3.efs()
    reader.store.readahead_max = most  # 200_000: many read-ahead GETs and hand-overs
    rng = random.Random(most)
    with reader.open(s3.path("a"), "rb") as f:
        for _ in range(300):
            if rng.random() < 0.15:
                f.seek(rng.randrange(len(data)))
            pos = f.tell()
            n = rng.choice([1, 100, CHUNK - 1, CHUNK, 40_000, 123_457])
            assert f.read(n) == data[pos : pos + n]


def _scan_all(fs: Any, path: str, step: int) -> bytes:
    with fs.open(path, "rb") as f:
        return b"".join(iter(lambda: f.read(step), b""))


def test_concurrent_scans_keep_the_connection_pool_usable(s3, monkeypatch) -> None:
    """More threads scanning more objects than scans are kept (some scans are dropped while
    busy, and a thread keeps forgetting all of them): every scan reads its exact object, no
    request waits for a connection (read_deadline 20 s), and once idle every GET kept open
    is closed (the connection pool is never drained by forgotten streams)."""
    from envstore.stores import s3_stream

    monkeypatch.setattr(s3_stream, "IDLE", 0.3)
    writer = s3.efs()
    objects = {s3.path(f"c{i}"): payload(MiB + 1000 * i, i) for i in range(6)}
    for path, data in objects.items():
        writer.pipe_file(path, data)
    fs = s3.efs(read_deadline=20)
    stop = threading.Event()

    def forget() -> None:
        while not stop.is_set():
            fs.store.forget(None)
            time.sleep(0.01)

    def scans(i: int) -> None:
        for n in range(3):
            path = list(objects)[(i + n) % len(objects)]
            assert _scan_all(fs, path, 100_000 + 7 * i) == objects[path]

    dropper = threading.Thread(target=forget)
    dropper.start()
    try:
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(scans, range(8)))
    finally:
        stop.set()
        dropper.join()
    assert s3_stream.open_streams(fs.fs) <= fs.store.readahead_streams
    deadline = time.monotonic() + 5
    while s3_stream.open_streams(fs.fs) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert s3_stream.open_streams(fs.fs) == 0


def test_scan_streams_never_exceed_the_limit(s3) -> None:
    """Scans starting together over one filesystem: at most ``readahead_streams`` GETs are
    open at any moment (a slot is reserved before the request goes out); the others read by
    plain ranged GETs, and all read their exact objects."""
    from envstore.stores import s3_stream

    writer = s3.efs()
    objects = {s3.path(f"l{i}"): payload(2 * MiB + i, i) for i in range(4)}
    for path, data in objects.items():
        writer.pipe_file(path, data)
    fs = s3.efs()
    fs.store.readahead_streams = 1
    seen = [0, 0]  # samples, most streams open at once
    start = threading.Barrier(5)
    done = threading.Event()

    def sample() -> None:
        start.wait()
        while not done.is_set():
            seen[0] += 1
            seen[1] = max(seen[1], s3_stream.open_streams(fs.fs))
            time.sleep(0)

    def scan(path: str) -> bytes:
        start.wait()
        return _scan_all(fs, path, 64 * 1024)

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        with ThreadPoolExecutor(4) as pool:
            got = list(pool.map(scan, objects))
    finally:
        done.set()
        sampler.join()
    assert got == list(objects.values())
    assert seen[0] and seen[1] <= 1, seen


def test_idle_scan_streams_leave_plain_requests_a_connection(s3) -> None:
    """A small connection pool (2): partial scans leave their GETs open, yet a plain read of
    another object gets a connection at once (scans may hold at most half the pool)."""
    from envstore.stores import s3_stream

    writer = s3.efs()
    paths = [s3.path(f"p{i}") for i in range(4)]
    for i, path in enumerate(paths):
        writer.pipe_file(path, payload(MiB, i))
    fs = s3.efs(read_deadline=5, s3={"config_kwargs": {"max_pool_connections": 2}})
    for path in paths[:3]:
        with fs.open(path, "rb") as f:  # two reads: the second opens a scan GET
            f.read(100_000)
            f.read(100_000)
    assert s3_stream.open_streams(fs.fs) == 1
    start = time.monotonic()
    assert fs.cat_file(paths[3]) == payload(MiB, 3)
    assert time.monotonic() - start < 4.5  # without a free connection: 5 s (read_deadline)


def test_an_interrupt_while_opening_a_scan_stream_leaks_no_slot(s3, monkeypatch) -> None:
    from envstore.stores import s3_stream

    fs = s3.efs()
    data = payload(MiB, 9)
    fs.pipe_file(s3.path("k"), data)
    real = fs.fs.split_path

    def split_path(path: str) -> Any:  # an interrupt after the slot is reserved
        if sys._getframe(1).f_code.co_name == "_open_stream":
            raise KeyboardInterrupt
        return real(path)

    with fs.open(s3.path("k"), "rb") as f:
        f.read(100_000)
        monkeypatch.setattr(fs.fs, "split_path", split_path)
        with pytest.raises(KeyboardInterrupt):
            f.read(100_000)  # the scan's GET is being opened
        monkeypatch.setattr(fs.fs, "split_path", real)
        assert s3_stream.open_streams(fs.fs) == 0
        f.seek(0)
        assert f.read() == data
