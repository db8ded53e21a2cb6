"""envstore over S3 (s3fs) against a real S3 endpoint: moto's server, or MinIO via environment.

See ``tests/stores/conftest.py`` for the endpoint fixtures and ``docs/s3.md`` for running these
tests against MinIO from ``docker-compose.yml``.
"""

from __future__ import annotations

import ast
import base64
import random
import time
from pathlib import Path
from typing import Any

import fsspec
import pandas as pd
import pytest

from envstore.errors import ConfigError, FormatError, IntegrityError, NotEncryptedError
from envstore.format import CHUNK, MAGIC, PREFIX, WIRE_CHUNK, body_size
from envstore.keys.local import keygen
from envstore.stores.s3 import DEFAULT_PART_SIZE, S3Store
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


@pytest.mark.parametrize("n", [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 3 * MiB + 123])
def test_round_trip_single_put(s3, count_requests, n: int) -> None:
    fs = s3.efs()
    rec = count_requests(fs)
    data = payload(n, n)
    fs.pipe_file(s3.path("piped"), data)
    assert _ops(rec) == ["PutObject"]
    rec.clear()
    with fs.open(s3.path("streamed"), "wb") as f:
        for i in range(0, n, 100_003):
            f.write(data[i : i + 100_003])
    assert _ops(rec) == ["PutObject"]  # fits one part: one PUT, no multipart upload
    _check_stored(s3, "piped", data, sized=True)
    _check_stored(s3, "streamed", data, sized=False)
    for name in ("piped", "streamed"):
        assert fs.cat_file(s3.path(name)) == data
        with fs.open(s3.path(name), "rb") as f:
            assert f.read() == data
        assert fs.info(s3.path(name))["size"] == n
    assert {e["name"]: e["size"] for e in fs.ls(s3.root, detail=True)} == {
        s3.path("piped"): n,
        s3.path("streamed"): n,
    }


def test_multipart_streaming_round_trip(s3, count_requests) -> None:
    fs = s3.efs(s3={"default_block_size": 5 * MiB})
    assert fs.store.part_size == 5 * MiB
    assert s3.efs().store.part_size == DEFAULT_PART_SIZE
    data = payload(13 * MiB + 777)
    rec = count_requests(fs)
    with fs.open(s3.path("big"), "wb") as f:
        step = MiB + 3
        for i in range(0, len(data), step):
            f.write(data[i : i + step])
    ops = _ops(rec)
    assert ops[0] == "CreateMultipartUpload" and ops[-1] == "CompleteMultipartUpload"
    assert ops.count("UploadPart") == 3 and "PutObject" not in ops
    head = _check_stored(s3, "big", data, sized=False)
    assert head["ETag"].endswith('-3"')
    assert fs.cat_file(s3.path("big")) == data
    assert fs.info(s3.path("big"))["size"] == len(data)
    # size known up front (pipe): the same, with the size field
    rec.clear()
    fs.pipe_file(s3.path("piped"), data)
    assert _ops(rec).count("UploadPart") == 3
    _check_stored(s3, "piped", data, sized=True)
    assert fs.cat_file(s3.path("piped")) == data
    assert s3.pending_uploads() == []


def test_exactly_one_part_is_one_put(s3, count_requests) -> None:
    fs = s3.efs(s3={"default_block_size": 5 * MiB})
    n = 319 * CHUNK + 11208  # stored size exactly 5 MiB
    assert body_size(n) == 5 * MiB
    rec = count_requests(fs)
    for name, size in (("one", n), ("two", n + 1)):
        data = payload(size)
        with fs.open(s3.path(name), "wb") as f:
            f.write(data)
        assert fs.cat_file(s3.path(name)) == data
    ops = _ops(rec)
    assert ops[0] == "PutObject" and ops.count("PutObject") == 1
    assert ops.count("UploadPart") == 2  # 5 MiB + 1 byte


def test_random_ranges(s3, count_requests) -> None:
    fs = s3.efs(s3={"default_block_size": 5 * MiB})
    objects = {"small": payload(200_000, 1), "big": payload(11 * MiB + 5, 2)}
    for name, data in objects.items():
        fs.pipe_file(s3.path(name), data)
    rng = random.Random(7)
    paths, starts, ends, want = [], [], [], []
    for _ in range(40):
        name = rng.choice(sorted(objects))
        data = objects[name]
        s = rng.randrange(len(data) + 1)
        e = min(len(data), s + rng.choice([0, 1, 100, CHUNK, 3 * CHUNK + 7, 300_000]))
        assert fs.cat_file(s3.path(name), start=s, end=e) == data[s:e]
        paths.append(s3.path(name))
        starts.append(s)
        ends.append(e)
        want.append(data[s:e])
    assert fs.cat_ranges(paths, starts, ends) == want
    data = objects["big"]
    with fs.open(s3.path("big"), "rb") as f:
        for s, e in zip(starts[:10], ends[:10], strict=True):
            f.seek(s)
            assert f.read(e - s) == data[s:e]
        f.seek(-1000, 2)
        assert f.read() == data[-1000:]
    assert fs.cat_file(s3.path("big"), start=-5000) == data[-5000:]


# -- data frames -------------------------------------------------------------------------------


def test_pandas_parquet_and_csv(s3) -> None:
    so = s3.storage_options()
    df = frame()
    url = s3.url("t.parquet")
    df.to_parquet(url, storage_options=so, row_group_size=5000)
    raw = s3.raw("t.parquet")
    assert not raw.startswith(b"PAR1") and not raw.endswith(b"PAR1") and b"name-42" not in raw
    assert ENVELOPE_KEYS <= set(s3.head("t.parquet")["Metadata"])
    pd.testing.assert_frame_equal(pd.read_parquet(url, storage_options=so), df)
    pd.testing.assert_frame_equal(
        pd.read_parquet(url, columns=["b"], storage_options=so), df[["b"]]
    )
    csv = s3.url("t.csv")
    df.to_csv(csv, index=False, storage_options=so)
    assert b"name-42" not in s3.raw("t.csv")
    pd.testing.assert_frame_equal(pd.read_csv(csv, storage_options=so), df)
    pd.testing.assert_frame_equal(
        pd.read_csv(csv, usecols=["a", "c"], storage_options=so), df[["a", "c"]]
    )


def test_pyarrow_dataset_over_prefix(s3) -> None:
    import pyarrow.dataset as ds

    fs = s3.efs()
    df = frame(9000)
    for i in range(3):
        with fs.open(s3.path(f"ds/part-{i}.parquet"), "wb") as f:
            df.iloc[i * 3000 : (i + 1) * 3000].to_parquet(f)
    dataset = ds.dataset(s3.path("ds"), filesystem=fs, format="parquet")
    table = dataset.to_table(columns=["a", "c"], filter=ds.field("d") > 5)
    got = table.to_pandas().sort_values("a").reset_index(drop=True)
    want = df[df.d > 5][["a", "c"]].reset_index(drop=True)
    pd.testing.assert_frame_equal(got, want)


def test_dask_processes_scheduler(s3) -> None:
    dask = pytest.importorskip("dask")
    dd = pytest.importorskip("dask.dataframe")
    so = s3.storage_options()
    df = frame(12_000)
    url = s3.url("dd")
    with dask.config.set(scheduler="processes", num_workers=2):
        dd.from_pandas(df, npartitions=4).to_parquet(url, storage_options=so, write_index=False)
        back = dd.read_parquet(url, storage_options=so, columns=["a", "b", "d"]).compute()
    pd.testing.assert_frame_equal(back.sort_values("a").reset_index(drop=True), df[["a", "b", "d"]])
    names = [k for k in s3.keys() if k.startswith("dd/")]
    assert len(names) >= 4
    for name in names:
        assert ENVELOPE_KEYS <= set(s3.head(name)["Metadata"])


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


@pytest.mark.parametrize("exc", [Boom, KeyboardInterrupt])
def test_writer_failing_mid_stream_leaves_nothing(s3, count_requests, exc: type) -> None:
    fs = s3.efs(s3={"default_block_size": 5 * MiB})
    rec = count_requests(fs)
    chunk = payload(MiB)
    with pytest.raises(exc), fs.open(s3.path("x"), "wb") as f:
        for _ in range(16):
            f.write(chunk)
        raise exc()
    ops = _ops(rec)
    assert ops.count("UploadPart") >= 2 and "AbortMultipartUpload" in ops
    assert "CompleteMultipartUpload" not in ops and "PutObject" not in ops
    assert s3.keys() == [] and s3.pending_uploads() == []
    assert not fs.exists(s3.path("x"))


def test_abandoned_writer_and_server_error_leave_nothing(s3) -> None:
    fs = s3.efs(s3={"default_block_size": 5 * MiB})
    chunk = payload(MiB)
    f = fs.open(s3.path("gc"), "wb")
    for _ in range(12):
        f.write(chunk)
    del f  # garbage-collected without close: discarded, upload aborted
    assert s3.keys() == [] and s3.pending_uploads() == []
    # the server drops the upload under the writer: the next part fails after s3fs's retries
    # (S3, MinIO and SeaweedFS answer NoSuchUpload -> FileNotFoundError; moto answers 500 ->
    # OSError)
    fs = s3.efs(
        s3={"default_block_size": 5 * MiB, "config_kwargs": {"retries": {"max_attempts": 2}}}
    )
    expected = FileNotFoundError if s3.endpoint.name == "seaweedfs" else OSError
    with pytest.raises(expected), fs.open(s3.path("srv"), "wb") as f:
        for _ in range(12):
            f.write(chunk)
        (up,) = s3.pending_uploads()
        s3.client.abort_multipart_upload(Bucket=s3.bucket, Key=up["Key"], UploadId=up["UploadId"])
        for _ in range(12):
            f.write(chunk)
    assert s3.keys() == [] and s3.pending_uploads() == []


def test_object_without_envelope(s3) -> None:
    fs = s3.efs()
    s3.client.put_object(Bucket=s3.bucket, Key=s3.key("plain.csv"), Body=b"a,b\n1,2\n")
    with pytest.raises(NotEncryptedError):
        fs.cat_file(s3.path("plain.csv"))
    with pytest.raises(NotEncryptedError):
        pd.read_csv(s3.url("plain.csv"), storage_options=s3.storage_options())
    assert fs.info(s3.path("plain.csv"))["encrypted"] is False
    with pytest.raises(NotEncryptedError):  # copies are of envstore objects only
        fs.cp_file(s3.path("plain.csv"), s3.path("copy.csv"))


def test_envelope_swapped_between_objects(s3) -> None:
    fs = s3.efs()
    a, b = payload(5 * CHUNK, 1), payload(5 * CHUNK, 2)
    for name, data in (("a", a), ("b", b)):
        with fs.open(s3.path(name), "wb") as f:  # streamed: no size field
            f.write(data)
    meta_a = s3.head("a")["Metadata"]
    s3.client.copy_object(
        Bucket=s3.bucket,
        Key=s3.key("b"),
        CopySource={"Bucket": s3.bucket, "Key": s3.key("b")},
        Metadata=meta_a,
        MetadataDirective="REPLACE",
    )
    fresh = s3.efs()
    with pytest.raises(IntegrityError):
        fresh.cat_file(s3.path("b"))
    with pytest.raises(IntegrityError):
        fresh.cat_file(s3.path("b"), 2 * CHUNK, 3 * CHUNK)  # mid-object: wrong key for chunks
    assert fresh.cat_file(s3.path("a")) == a


def test_truncated_body(s3) -> None:
    fs = s3.efs()
    data = payload(4 * CHUNK + 100)
    with fs.open(s3.path("t"), "wb") as f:
        f.write(data)
    raw, meta = s3.raw("t"), s3.head("t")["Metadata"]
    for cut in (1, 100, WIRE_CHUNK, 116):
        s3.client.put_object(Bucket=s3.bucket, Key=s3.key("t"), Body=raw[:-cut], Metadata=meta)
        with pytest.raises(IntegrityError):
            s3.efs().cat_file(s3.path("t"))
    fs.pipe_file(s3.path("sized"), data)
    raw, meta = s3.raw("sized"), s3.head("sized")["Metadata"]
    s3.client.put_object(
        Bucket=s3.bucket, Key=s3.key("sized"), Body=raw[:-WIRE_CHUNK], Metadata=meta
    )
    with pytest.raises(IntegrityError):
        s3.efs().open(s3.path("sized"), "rb")


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


def test_copy_and_move_keep_envelope(s3, count_requests) -> None:
    fs = s3.efs()
    data = payload(100_000)
    fs.pipe_file(s3.path("a"), data)
    rec = count_requests(fs)
    fs.cp_file(s3.path("a"), s3.path("b"))
    assert "CopyObject" in _ops(rec) and "GetObject" not in _ops(rec)
    assert s3.head("b")["Metadata"] == s3.head("a")["Metadata"]
    assert s3.raw("b") == s3.raw("a")
    fs.mv(s3.path("b"), s3.path("sub/c"))
    assert not fs.exists(s3.path("b"))
    assert fs.cat_file(s3.path("sub/c")) == data
    assert s3.efs().cat_file(s3.path("sub/c")) == data


def test_multipart_copy_keeps_envelope(s3, count_requests) -> None:
    """Above ``copy_threshold`` (5 GiB on S3) copies go part by part; lowered here."""
    fs = s3.efs(s3={"default_block_size": 5 * MiB})
    fs.store.copy_threshold = 6 * MiB
    fs.store.copy_part_size = 5 * MiB
    data = payload(12 * MiB + 9)
    fs.pipe_file(s3.path("a"), data)
    rec = count_requests(fs)
    fs.cp_file(s3.path("a"), s3.path("b"))
    ops = _ops(rec)
    assert ops.count("UploadPartCopy") == 3 and "CopyObject" not in ops
    assert s3.head("b")["Metadata"] == s3.head("a")["Metadata"]
    assert s3.head("b")["ETag"].endswith('-3"')
    assert s3.efs().cat_file(s3.path("b")) == data
    fs.mv(s3.path("b"), s3.path("c"))
    assert s3.keys() == ["a", "c"] and s3.pending_uploads() == []
    assert s3.efs().cat_file(s3.path("c"), 7 * MiB, 9 * MiB) == data[7 * MiB : 9 * MiB]


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


def test_multipart_copy_failure_aborts(s3, count_requests, monkeypatch) -> None:
    fs = s3.efs()
    fs.store.copy_threshold = 1 * MiB
    fs.store.copy_part_size = 5 * MiB
    data = payload(11 * MiB)
    fs.pipe_file(s3.path("a"), data)
    real = fs.fs._call_s3

    async def failing(method: str, *args: Any, **kwargs: Any) -> Any:
        if method == "upload_part_copy" and kwargs.get("PartNumber") == 2:
            raise PermissionError("injected: access denied to the source range")
        return await real(method, *args, **kwargs)

    monkeypatch.setattr(fs.fs, "_call_s3", failing)
    rec = count_requests(fs)
    with pytest.raises(PermissionError):
        fs.cp_file(s3.path("a"), s3.path("b"))
    with pytest.raises(PermissionError):
        fs.mv(s3.path("a"), s3.path("c"))
    assert _ops(rec).count("AbortMultipartUpload") == 2
    assert s3.keys() == ["a"] and s3.pending_uploads() == []
    monkeypatch.undo()
    assert s3.efs().cat_file(s3.path("a")) == data


@pytest.mark.parametrize("multipart", [False, True])
def test_set_recipients_rewraps_in_place(s3, other_key_uri: str, multipart: bool) -> None:
    fs = s3.efs(context={"purpose": "test"})
    if multipart:
        fs.store.copy_threshold = 1 * MiB
        fs.store.copy_part_size = 5 * MiB
    data = payload(6 * MiB + 3 if multipart else 70_000)
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


def test_read_parquet_costs_one_head_per_object(s3, count_requests) -> None:
    so = s3.storage_options()
    df = frame(50_000)
    url = s3.url("t.parquet")
    df.to_parquet(url, storage_options=so, row_group_size=10_000)
    dd_url = s3.url("parts")
    fs, _ = fsspec.url_to_fs(url, **so)  # the cached instance pandas uses too
    for i in range(3):
        with fs.open(s3.path(f"parts/p{i}.parquet"), "wb") as f:
            df.iloc[i * 1000 : (i + 1) * 1000].to_parquet(f)
    fs.invalidate_cache()
    rec = count_requests(fs)
    got = pd.read_parquet(url, columns=["b"], storage_options=so)
    pd.testing.assert_frame_equal(got, df[["b"]])
    assert len(rec.ops("HeadObject")) == 1, rec.calls
    rec.clear()
    pd.read_parquet(url, columns=["c"], storage_options=so)
    assert rec.ops("HeadObject") == []  # within the HEAD cache's lifetime
    rec.clear()
    back = pd.read_parquet(dd_url, storage_options=so)
    assert len(back) == 3000
    heads = [p for (op, _), p in zip(rec.calls, rec.paths, strict=True) if op == "HeadObject"]
    files = [p for p in heads if p.endswith(".parquet")]
    assert len(files) == len(set(files)) == 3, heads  # one per object
    assert len(heads) <= 4, heads  # + one for the directory itself


def test_mid_object_range_is_range_exact(s3, count_requests) -> None:
    fs = s3.efs()
    data = payload(8 * MiB)
    fs.pipe_file(s3.path("a"), data)
    start = 3 * MiB + 12_345
    limit = MiB + 2 * WIRE_CHUNK + PREFIX
    fresh = s3.efs()
    rec = count_requests(fresh)
    assert fresh.cat_file(s3.path("a"), start, start + MiB) == data[start : start + MiB]
    assert len(rec.calls) <= 2 and rec.ops("GetObject")[0][1], rec.calls  # HEAD + ranged GET
    assert rec.received <= limit
    fresh = s3.efs()
    rec = count_requests(fresh)
    with fresh.open(s3.path("a"), "rb") as f:
        f.seek(start)
        assert f.read(MiB) == data[start : start + MiB]
    assert len(rec.calls) <= 2 and rec.received <= limit, rec.calls


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
    assert 2 <= len(gets) <= 5, gets
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
    # interleaved scans of one object, and random reads in between, stay exact
    both = s3.efs()
    with both.open(s3.path("a"), "rb") as f, both.open(s3.path("a"), "rb") as g:
        g.seek(3 * MiB)
        for i in range(0, 3 * MiB, 250_000):
            f.seek(i)
            assert f.read(250_000) == data[i : i + 250_000]
            assert g.read(250_000) == data[3 * MiB + i : 3 * MiB + i + 250_000]
            j = (i * 7919) % len(data)
            assert both.cat_file(s3.path("a"), j, j + 1000) == data[j : j + 1000]


@pytest.mark.parametrize("depth", [1, 3])
def test_read_ahead_random_walk(s3, depth: int) -> None:
    """Sequential runs, jumps back and forth, unaligned sizes: always the right bytes."""
    fs = s3.efs()
    data = payload(3 * MiB + 777, 5)
    fs.pipe_file(s3.path("a"), data)
    reader = s3.efs()
    reader.store.readahead_max = 200_000  # many read-ahead spans and hand-overs
    reader.store.readahead_depth = depth
    rng = random.Random(depth)
    with reader.open(s3.path("a"), "rb") as f:
        for _ in range(300):
            if rng.random() < 0.15:
                f.seek(rng.randrange(len(data)))
            pos = f.tell()
            n = rng.choice([1, 100, CHUNK - 1, CHUNK, 40_000, 123_457])
            assert f.read(n) == data[pos : pos + n]


def test_listing_sizes_need_no_head(s3, count_requests) -> None:
    fs = s3.efs()
    sizes = {"a": 0, "b": 1, "c": 20_000, "sub/d": 70_000}
    for name, n in sizes.items():
        fs.pipe_file(s3.path(name), payload(n))
    fresh = s3.efs()
    rec = count_requests(fresh)
    listed = {e["name"]: e for e in fresh.ls(s3.root, detail=True)}
    found = fresh.find(s3.root, detail=True)
    assert {n: e["size"] for n, e in found.items()} == {s3.path(k): v for k, v in sizes.items()}
    assert listed[s3.path("c")]["stored_size"] == body_size(20_000)
    assert listed[s3.path("sub")]["type"] == "directory"
    assert set(_ops(rec)) == {"ListObjectsV2"}
    assert fresh.du(s3.root) == sum(sizes.values())


def test_head_cache(s3, count_requests) -> None:
    fs = s3.efs()
    path = s3.path("a")
    fs.pipe_file(path, b"x" * 100)
    rec = count_requests(fs)
    for _ in range(3):
        assert fs.info(path)["size"] == 100
        assert fs.isfile(path) and fs.size(path) == 100
    assert len(rec.ops("HeadObject")) == 1
    fs.pipe_file(path, b"y" * 200)  # own writes invalidate
    assert fs.info(path)["size"] == 200 and fs.cat_file(path) == b"y" * 200
    other = s3.efs()
    other.pipe_file(path, b"z" * 300)  # another writer: seen after head_ttl
    with pytest.raises(IntegrityError):  # meanwhile the stale envelope fails closed
        fs.cat_file(path)
    fs.store.head_ttl = 0.2
    fs.store.forget()
    fs.info(path)
    time.sleep(0.3)
    other.pipe_file(path, b"w" * 400)
    assert fs.info(path)["size"] == 400 and fs.cat_file(path) == b"w" * 400
    fs.rm(path)
    assert not fs.isfile(path)
    with pytest.raises(FileNotFoundError):
        fs.info(path)
    with pytest.raises(FileNotFoundError):
        fs.cat_file(path)
    assert isinstance(fs.store, S3Store)


def test_errors_are_builtin_oserrors(s3) -> None:
    fs = s3.efs()
    with pytest.raises(FileNotFoundError):
        fs.open(s3.path("missing"), "rb")
    with pytest.raises(FileNotFoundError):
        fs.cat_file("no-such-bucket-envstore/x")
    fs.pipe_file(s3.path("dir/x"), b"1")
    with pytest.raises((IsADirectoryError, FileNotFoundError)):
        fs.cat_file(s3.path("dir"))
    assert fs.isdir(s3.path("dir")) and not fs.isfile(s3.path("dir"))
    assert fs.info(s3.path("dir"))["type"] == "directory"
