"""The store contract: every behaviour the stores share, on every store.

Each test runs on ``memory``, ``file``, ``s3`` (moto), ``s3-seaweedfs`` (the session's SeaweedFS;
skipped when the ``weed`` binary is missing) and ``oss`` (tests/servers/oss_compat.py), through a
:class:`tests.stores.backends.Backend` (raw bytes, user metadata, forgeries, pending uploads,
requests). Object stores keep the envelope in user metadata; memory and local files in an
in-object header — the assertions read the envelope's place from ``fs.envelope(path)``.
Store-specific behaviour stays beside this file (test_s3.py, test_oss.py, ...).
"""

from __future__ import annotations

import os
import random
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import fsspec
import pandas as pd
import pytest

import envstore
from envstore.errors import FormatError, IntegrityError, KeyAccessError, NotEncryptedError
from envstore.format import CHUNK, MAGIC, PREFIX, TAG, WIRE_CHUNK, Envelope, body_size
from envstore.keys.base import WrappedKey
from envstore.keys.local import keygen
from envstore.objects import Objects
from tests.race import race
from tests.readops import READS, outcomes
from tests.stores.backends import (
    Backend,
    FileBackend,
    KiB,
    MemoryBackend,
    MiB,
    OssBackend,
    S3Backend,
)
from tests.stores.common import ENVELOPE_KEYS, frame, payload
from tests.stores.conftest import s3_place
from tests.stores.conftest_oss import oss_fixture, oss_server_fixture  # noqa: F401  (fixtures)

BACKENDS = ["memory", "file", "s3", "s3-seaweedfs", "oss"]


@pytest.fixture(params=BACKENDS)
def store(
    request: pytest.FixtureRequest, key_uri: str, tmp_path: Path, monkeypatch
) -> Iterator[Backend]:
    kind = request.param
    if kind == "memory":
        yield MemoryBackend("memory", request.getfixturevalue("memroot"), key_uri, "memory")
    elif kind == "file":
        root = tmp_path / "store"
        root.mkdir()
        yield FileBackend("file", str(root), key_uri, "file")
    elif kind == "oss":
        env = request.getfixturevalue("oss")
        yield OssBackend("oss", env.root, key_uri, "oss", part=256 * KiB, env=env)
    else:
        if os.environ.get("ENVSTORE_TEST_S3_ENDPOINT"):
            from tests.stores.conftest import _external_endpoint

            if kind != "s3":
                pytest.skip("ENVSTORE_TEST_S3_ENDPOINT set: that S3 server only")
            endpoint = _external_endpoint()
        else:
            fixture = "moto_endpoint" if kind == "s3" else "seaweedfs_endpoint"
            endpoint = request.getfixturevalue(fixture)
        with s3_place(endpoint, key_uri, monkeypatch) as env:
            yield S3Backend("s3", env.root, key_uri, "s3", part=5 * MiB, env=env)


def _ops(rec: Any) -> list[str]:
    return rec.ops() if rec is not None else []


def _check_stored(store: Backend, fs: Any, name: str, plain: bytes, sized: bool) -> None:
    """The envelope sits where the store keeps it (metadata or header); the body is ciphertext."""
    loc = fs.envelope(store.path(name))
    env = loc.envelope
    raw = store.get_raw(name)
    meta = store.metadata(name)
    if store.object_store:
        assert loc.placement == "metadata" and loc.body_offset == 0
        assert ENVELOPE_KEYS <= set(meta), meta
        assert all(k.startswith("envstore-") for k in meta)
        assert meta.get("envstore-size") == (str(len(plain)) if sized else None)
    else:
        assert loc.placement == "header" and raw.startswith(MAGIC) and meta == {}
    assert env.size == (len(plain) if sized else None)
    body = raw[loc.body_offset :]
    assert len(raw) == loc.stored_size and len(body) == body_size(len(plain))
    assert body[:24] == env.salt and body[24:PREFIX] == env.commitment
    if len(plain) >= 64:
        assert plain[:32] not in raw and plain[-32:] not in raw


def _envelope_and_body(store: Backend, fs: Any, name: str) -> tuple[dict[str, str], bytes, bytes]:
    """(user metadata, in-object header, body) of an object as stored."""
    off = fs.envelope(store.path(name)).body_offset
    raw = store.get_raw(name)
    return store.metadata(name), raw[:off], raw[off:]


# -- round trips -------------------------------------------------------------------------------


@pytest.mark.parametrize("n", [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 3 * MiB + 123])
def test_round_trip(store: Backend, n: int) -> None:
    fs = store.efs()
    rec = store.record(fs)
    data = payload(n, n)
    fs.pipe_file(store.path("piped"), data)
    assert _ops(rec) == (["PutObject"] if rec else [])
    if rec:
        rec.clear()
    with fs.open(store.path("streamed"), "wb") as f:
        for i in range(0, n, 100_003):
            f.write(data[i : i + 100_003])
    assert _ops(rec) == (["PutObject"] if rec else [])  # fits one part: one PUT
    _check_stored(store, fs, "piped", data, sized=True)
    _check_stored(store, fs, "streamed", data, sized=False)
    for name in ("piped", "streamed"):
        assert fs.cat_file(store.path(name)) == data
        with fs.open(store.path(name), "rb") as f:
            assert f.read() == data
        assert fs.info(store.path(name))["size"] == n
        assert store.efs().cat_file(store.path(name)) == data
    assert {e["name"]: e["size"] for e in fs.ls(store.root, detail=True)} == {
        store.path("piped"): n,
        store.path("streamed"): n,
    }


def test_multipart_round_trip(store: Backend) -> None:
    fs = store.multipart_efs()
    n = (store.part or MiB) * 2 + 777_777  # three parts
    data = payload(n)
    rec = store.record(fs)
    with fs.open(store.path("big"), "wb") as f:
        step = 100_003
        for i in range(0, len(data), step):
            f.write(data[i : i + step])
    if rec is not None:
        ops = rec.ops()
        assert ops[0] == "InitiateMultipartUpload" and ops[-1] == "CompleteMultipartUpload"
        assert ops.count("UploadPart") == -(-body_size(n) // store.part) and "PutObject" not in ops
        rec.clear()
    _check_stored(store, fs, "big", data, sized=False)
    assert fs.cat_file(store.path("big")) == data
    assert fs.info(store.path("big"))["size"] == len(data)
    fs.pipe_file(store.path("piped"), data)  # size known up front: the same, with the size field
    if rec is not None:
        assert rec.ops().count("UploadPart") == -(-body_size(n) // store.part)
    _check_stored(store, fs, "piped", data, sized=True)
    assert store.efs().cat_file(store.path("piped")) == data
    assert store.pending_uploads() == []


def test_exactly_one_part_is_one_put(store: Backend) -> None:
    fs = store.multipart_efs()
    part = store.part or MiB
    full, rest = divmod(part - PREFIX - TAG, WIRE_CHUNK)
    n = full * CHUNK + rest  # stored size exactly one part
    assert body_size(n) == part
    rec = store.record(fs)
    for name, size in (("one", n), ("two", n + 1)):
        data = payload(size)
        with fs.open(store.path(name), "wb") as f:
            f.write(data)
        assert fs.cat_file(store.path(name)) == data
    if rec is not None:
        ops = rec.ops()
        assert ops.count("PutObject") == 1 and ops.count("UploadPart") == 2  # one part + 1 byte


# -- ranges ------------------------------------------------------------------------------------


def test_random_ranges(store: Backend) -> None:
    fs = store.multipart_efs()
    objects = {"small": payload(200_000, 1), "big": payload(2 * (store.part or MiB) + 5, 2)}
    for name, data in objects.items():
        fs.pipe_file(store.path(name), data)
    rng = random.Random(7)
    paths, starts, ends, want = [], [], [], []
    for _ in range(40):
        name = rng.choice(sorted(objects))
        data = objects[name]
        s = rng.randrange(len(data) + 1)
        e = min(len(data), s + rng.choice([0, 1, 100, CHUNK, 3 * CHUNK + 7, 300_000]))
        assert fs.cat_file(store.path(name), start=s, end=e) == data[s:e]
        paths.append(store.path(name))
        starts.append(s)
        ends.append(e)
        want.append(data[s:e])
    assert fs.cat_ranges(paths, starts, ends) == want
    data = objects["big"]
    with fs.open(store.path("big"), "rb") as f:
        for s, e in zip(starts[:10], ends[:10], strict=True):
            f.seek(s)
            assert f.read(e - s) == data[s:e]
        f.seek(-1000, 2)
        assert f.read() == data[-1000:]
    assert fs.cat_file(store.path("big"), start=-5000) == data[-5000:]
    assert fs.cat_file(store.path("big"), start=len(data) + 10) == b""


def test_mid_object_range_is_range_exact(store: Backend) -> None:
    fs = store.efs()
    data = payload(8 * MiB)
    fs.pipe_file(store.path("a"), data)
    start = 3 * MiB + 12_345
    limit = MiB + 2 * WIRE_CHUNK + PREFIX
    for use_file in (False, True):
        fresh = store.efs()
        rec = store.record(fresh)
        if use_file:
            with fresh.open(store.path("a"), "rb") as f:
                f.seek(start)
                assert f.read(MiB) == data[start : start + MiB]
        else:
            assert fresh.cat_file(store.path("a"), start, start + MiB) == data[start : start + MiB]
        if rec is not None:  # one HEAD, one ranged GET of the chunks needed
            assert rec.ops() == ["HeadObject", "GetObject"], rec.ops()
            assert rec.calls("GetObject")[0].range
            assert rec.received() <= limit


# -- tamper and truncation detection ----------------------------------------------------------


def test_object_without_envelope(store: Backend) -> None:
    fs = store.efs()
    store.put_raw("plain.csv", b"a,b\n1,2\n")
    with pytest.raises(NotEncryptedError):
        fs.cat_file(store.path("plain.csv"))
    with pytest.raises(NotEncryptedError):
        pd.read_csv(store.url("plain.csv"), storage_options=store.storage_options())
    assert fs.info(store.path("plain.csv"))["encrypted"] is False
    with pytest.raises(NotEncryptedError):  # copies are of envstore objects only
        fs.cp_file(store.path("plain.csv"), store.path("copy.csv"))


def test_envelope_swapped_between_objects(store: Backend) -> None:
    fs = store.efs()
    a, b = payload(5 * CHUNK, 1), payload(5 * CHUNK, 2)
    for name, data in (("a", a), ("b", b)):
        with fs.open(store.path(name), "wb") as f:  # streamed: no size field
            f.write(data)
    meta_a, header_a, _ = _envelope_and_body(store, fs, "a")
    _, _, body_b = _envelope_and_body(store, fs, "b")
    store.put_raw("b", header_a + body_b, meta_a)
    fresh = store.efs()
    with pytest.raises(IntegrityError):
        fresh.cat_file(store.path("b"))
    with pytest.raises(IntegrityError):
        fresh.cat_file(store.path("b"), 2 * CHUNK, 3 * CHUNK)  # mid-object: wrong key for chunks
    assert fresh.cat_file(store.path("a")) == a


def test_truncated_body(store: Backend) -> None:
    fs = store.efs()
    data = payload(4 * CHUNK + 100)
    with fs.open(store.path("t"), "wb") as f:
        f.write(data)
    meta, header, body = _envelope_and_body(store, fs, "t")
    for cut in (1, 100, WIRE_CHUNK, 116):
        store.put_raw("t", header + body[:-cut], meta)
        with pytest.raises(IntegrityError):
            store.efs().cat_file(store.path("t"))
    fs.pipe_file(store.path("sized"), data)
    meta, header, body = _envelope_and_body(store, fs, "sized")
    store.put_raw("sized", header + body[:-WIRE_CHUNK], meta)
    with pytest.raises(IntegrityError):
        store.efs().open(store.path("sized"), "rb")


def test_flipped_byte_anywhere_in_the_body(store: Backend) -> None:
    fs = store.efs()
    data = payload(3 * CHUNK + 7)
    fs.pipe_file(store.path("f"), data)
    meta, header, body = _envelope_and_body(store, fs, "f")
    for at in (0, 30, PREFIX, PREFIX + WIRE_CHUNK + 5, len(body) - 1):
        bad = bytearray(body)
        bad[at] ^= 1
        store.put_raw("f", header + bytes(bad), meta)
        with pytest.raises(IntegrityError):
            store.efs().cat_file(store.path("f"))
    store.put_raw("f", header + body, meta)
    assert store.efs().cat_file(store.path("f")) == data


# -- read trust: every read path (issue 10) -----------------------------------------------------


def _all(results: dict[str, Any], kind: type[BaseException], path: str) -> None:
    for op, got in results.items():
        assert isinstance(got, kind), (op, got)
        assert path in str(got), (op, str(got))


@pytest.mark.parametrize(
    "offset",
    [PREFIX + WIRE_CHUNK, PREFIX + 3 * WIRE_CHUNK, PREFIX + WIRE_CHUNK + 999, PREFIX, 0],
    ids=["chunk-1", "chunk-3", "mid-chunk", "body-prefix", "no-body"],
)
def test_truncated_between_locate_and_read(
    store: Backend, offset: int, monkeypatch, tmp_path: Path
) -> None:
    fs = store.efs()
    path = store.path("obj")
    with fs.open(path, "wb") as f:  # streamed: no size field
        f.write(os.urandom(3 * CHUNK + 100))
    meta, header, body = _envelope_and_body(store, fs, "obj")
    orig = Objects.locate

    def locate(self, p, head=None):
        loc = orig(self, p, head)
        store.put_raw("obj", header + body[:offset], meta)  # a concurrent writer truncates it
        return loc

    monkeypatch.setattr(Objects, "locate", locate)
    results = outcomes(
        fs,
        path,
        store.url("obj"),
        store.storage_options(),
        tmp_path,
        before=lambda: store.put_raw("obj", header + body, meta),
    )
    _all(results, IntegrityError, path)


def _forged_empty(store: Backend, name: str, how: str) -> None:
    fs = store.efs()
    if how == "cut-to-empty":
        with fs.open(store.path(name), "wb") as f:
            f.write(os.urandom(40_000))
        meta, header, body = _envelope_and_body(store, fs, name)
        store.put_raw(name, header + body[: PREFIX + TAG], meta)
        return
    if how == "forged-no-recipient":
        recipients: tuple[WrappedKey, ...] = (
            WrappedKey("local", "fp:000000000000000000000000", os.urandom(60)),
        )
    else:  # a real recipient for the reader's key, copied from another object
        fs.pipe_file(store.path("donor"), b"x")
        recipients = fs.envelope(store.path("donor")).envelope.recipients
    env = Envelope(recipients, os.urandom(24), os.urandom(32), {}, None)
    meta, header = fs.objects.place(env)
    body = env.salt + env.commitment + os.urandom(TAG)
    store.put_raw(name, (header or b"") + body, meta)


@pytest.mark.parametrize("how", ["cut-to-empty", "forged-no-recipient", "forged-planted"])
def test_claimed_empty_objects(store: Backend, how: str, tmp_path: Path) -> None:
    _forged_empty(store, "e.csv", how)
    fs, path = store.efs(), store.path("e.csv")
    assert fs.info(path)["size"] == 0
    kind = KeyAccessError if how == "forged-no-recipient" else IntegrityError
    for read in (lambda f: f.read(), lambda f: f.readlines(), lambda f: list(f)):
        with fs.open(path, "rb") as f, pytest.raises(kind):
            read(f)
    with pytest.raises(kind), fs.open(path, "r") as f:
        f.read()
    with pytest.raises(kind, match=r"e\.csv"):
        pd.read_csv(store.url("e.csv"), storage_options=store.storage_options())
    _all(outcomes(fs, path, store.url("e.csv"), store.storage_options(), tmp_path), kind, path)


def test_planted_recipients_and_rewrap(store: Backend, tmp_path: Path) -> None:
    from envstore.fs import EnvstoreFileSystem

    fs = store.efs()
    data = os.urandom(2 * CHUNK + 1)
    fs.pipe_file(store.path("victim"), data)
    fs.pipe_file(store.path("donor"), b"another object")
    (own,) = fs.envelope(store.path("victim")).envelope.recipients
    (foreign,) = fs.envelope(store.path("donor")).envelope.recipients
    path, url, so = store.path("victim"), store.url("victim"), store.storage_options()

    fs.set_recipients(path, [foreign, own])
    assert outcomes(fs, path, url, so, tmp_path) == dict.fromkeys(READS, data)

    fs.set_recipients(path, [foreign])
    EnvstoreFileSystem.clear_instance_cache()
    _all(outcomes(fs, path, url, so, tmp_path), IntegrityError, path)
    new_uri = f"local://{keygen(tmp_path / 'new.key')}"
    before = (store.metadata("victim"), store.get_raw("victim"))
    with pytest.raises(IntegrityError, match="commitment"):
        envstore.rewrap(url, new_uri, **so)
    assert (store.metadata("victim"), store.get_raw("victim")) == before

    fs.set_recipients(path, [foreign, own])
    EnvstoreFileSystem.clear_instance_cache()
    envstore.rewrap(url, new_uri, **so)
    assert store.efs(key_uri=new_uri).cat_file(path) == data


def test_read_context_is_a_check(store: Backend, tmp_path: Path) -> None:
    writer = store.efs(context={"tenant": "t-123", "dataset": "d"})
    data = os.urandom(CHUNK + 1)
    writer.pipe_file(store.path("c"), data)
    path, url = store.path("c"), store.url("c")
    for context in (None, {"tenant": "t-123"}, {"dataset": "d", "tenant": "t-123"}):
        so = store.storage_options(context=context)
        fs = store.efs(context=context)
        assert outcomes(fs, path, url, so, tmp_path) == dict.fromkeys(READS, data)
    so = store.storage_options(context={"tenant": "t-999"})
    results = outcomes(store.efs(context={"tenant": "t-999"}), path, url, so, tmp_path)
    _all(results, IntegrityError, path)
    for exc in results.values():
        assert "'tenant'" in str(exc) and "t-999" not in str(exc) and "t-123" not in str(exc)


# -- atomic writes and aborts ------------------------------------------------------------------


class Boom(Exception):
    pass


@pytest.mark.parametrize("exc", [Boom, KeyboardInterrupt])
def test_writer_failing_mid_stream_leaves_nothing(store: Backend, exc: type) -> None:
    fs = store.multipart_efs()
    rec = store.record(fs)
    chunk = payload(100 * KiB)
    rounds = 3 * (store.part or MiB) // len(chunk)
    with pytest.raises(exc), fs.open(store.path("x"), "wb", block_size=store.part) as f:
        for _ in range(rounds):
            f.write(chunk)
        raise exc()
    if rec is not None:
        ops = rec.ops()
        assert ops.count("UploadPart") >= 2 and "AbortMultipartUpload" in ops
        assert "CompleteMultipartUpload" not in ops and "PutObject" not in ops
    assert store.keys() == [] and store.pending_uploads() == []
    assert not fs.exists(store.path("x"))


def test_abandoned_writer_leaves_nothing(store: Backend) -> None:
    fs = store.multipart_efs()
    chunk = payload(100 * KiB)
    rec = store.record(fs)
    f = fs.open(store.path("gc"), "wb", block_size=store.part)
    for _ in range(3 * (store.part or MiB) // len(chunk)):
        f.write(chunk)
    del f  # garbage-collected without close: discarded, upload aborted
    if rec is not None:
        assert rec.ops().count("UploadPart") >= 2 and rec.ops()[-1] == "AbortMultipartUpload"
    assert store.keys() == [] and store.pending_uploads() == []
    assert not fs.exists(store.path("gc"))


def test_upload_vanishing_under_the_writer(store: Backend) -> None:
    if not store.object_store:
        pytest.skip("no multipart uploads on this store")
    retries = {"config_kwargs": {"retries": {"max_attempts": 2}}}
    fs = store.multipart_efs(**({"s3": retries} if isinstance(store, S3Backend) else {}))
    chunk = payload(100 * KiB)
    rounds = 3 * store.part // len(chunk)
    # S3, MinIO, SeaweedFS and OSS answer NoSuchUpload -> FileNotFoundError; moto answers 500
    moto = isinstance(store, S3Backend) and store.env.endpoint.name == "moto"
    with (
        pytest.raises(OSError) as info,
        fs.open(store.path("srv"), "wb", block_size=store.part) as f,
    ):
        for _ in range(rounds):
            f.write(chunk)
        (up,) = store.pending_uploads()
        store.abort_upload(up)
        for _ in range(rounds):
            f.write(chunk)
    if not moto:
        assert isinstance(info.value, FileNotFoundError)
    assert store.keys() == [] and store.pending_uploads() == []


def test_exclusive_create(store: Backend) -> None:
    fs = store.efs()
    fs.pipe_file(store.path("x"), b"first", mode="create")
    with pytest.raises(FileExistsError):
        fs.pipe_file(store.path("x"), b"second", mode="create")
    with pytest.raises(FileExistsError):
        fs.open(store.path("x"), "xb")
    assert fs.cat_file(store.path("x")) == b"first"
    with fs.open(store.path("y"), "xb") as f:
        f.write(b"new")
    assert store.efs().cat_file(store.path("y")) == b"new"
    assert store.keys() == ["x", "y"] and store.pending_uploads() == []


@pytest.mark.parametrize("size", [100, 3], ids=["put", "multipart"])
def test_exclusive_create_refused_at_commit(store: Backend, monkeypatch, size: int) -> None:
    """The object appears after the early exists() check: the store refuses the commit."""
    size = size if size == 100 else size * (store.part or MiB)
    fs = store.multipart_efs()
    fs.pipe_file(store.path("o"), b"first")
    monkeypatch.setattr(type(fs), "exists", lambda self, p, **kw: False)
    with pytest.raises(FileExistsError):
        fs.pipe_file(store.path("o"), os.urandom(size), mode="create")
    w = fs.open(store.path("p"), "xb", block_size=store.part)  # nothing there yet
    w.write(os.urandom(size))
    store.efs().pipe_file(store.path("p"), b"second")  # another writer wins meanwhile
    with pytest.raises(FileExistsError):
        w.close()
    monkeypatch.undo()
    assert fs.cat_file(store.path("o")) == b"first"
    assert store.efs().cat_file(store.path("p")) == b"second"
    assert store.keys() == ["o", "p"] and store.pending_uploads() == []


def test_exclusive_create_one_winner(store: Backend, monkeypatch) -> None:
    """Writers racing to create one object (the early exists() check out of the way): one wins,
    every other gets FileExistsError, the object is the winner's."""
    fs = store.efs()
    monkeypatch.setattr(type(fs), "exists", lambda self, p, **kw: False)
    n = 6

    def create(i: int) -> None:
        fs.pipe_file(store.path("once"), f"writer {i}".encode(), mode="create")

    won, lost = race(n, create)
    monkeypatch.undo()
    assert len(won) == 1 and len(lost) == n - 1, (won, lost)
    assert all(isinstance(e, FileExistsError) for e in lost), lost
    assert store.efs().cat_file(store.path("once")) == f"writer {won[0]}".encode()
    assert store.pending_uploads() == []


def test_envelope_too_big_for_metadata(store: Backend, tmp_path: Path) -> None:
    uris = [f"local://{keygen(tmp_path / 'many' / f'k{i}.key')}" for i in range(16)]
    context = {"purpose": "x" * 3040}
    data = payload(3 * CHUNK + 5)
    fs = store.efs(key_uri=uris, context=context)  # placement="auto"
    fs.pipe_file(store.path("auto"), data)
    loc = fs.envelope(store.path("auto"))
    assert len(loc.envelope.recipients) == 16
    reader = store.efs(key_uri=uris[-1], context=context)  # any one recipient opens it
    assert reader.cat_file(store.path("auto"), 100, 40_000) == data[100:40_000]
    assert reader.info(store.path("auto"))["size"] == len(data)
    if store.object_store:
        strict = store.efs(key_uri=uris, context=context, placement="metadata")
        strict.store.metadata_limit = 2048
        with pytest.raises(FormatError):
            strict.pipe_file(store.path("strict"), data)
        assert "strict" not in store.keys() and store.pending_uploads() == []


# -- copies, moves, recipients ----------------------------------------------------------------


def test_copy_and_move_keep_envelope(store: Backend) -> None:
    fs = store.efs()
    data = payload(100_000)
    fs.pipe_file(store.path("a"), data)
    rec = store.record(fs)
    fs.cp_file(store.path("a"), store.path("b"))
    if rec is not None:
        assert "CopyObject" in rec.ops() and "GetObject" not in rec.ops()
    assert store.metadata("b") == store.metadata("a")
    assert store.get_raw("b") == store.get_raw("a")
    fs.mv(store.path("b"), store.path("sub/c"))
    assert not fs.exists(store.path("b"))
    assert fs.cat_file(store.path("sub/c")) == data
    assert store.efs().cat_file(store.path("sub/c")) == data
    assert store.keys() == ["a", "sub/c"] and store.pending_uploads() == []


def test_set_recipients_rewraps_in_place(store: Backend, other_key_uri: str) -> None:
    fs = store.efs(context={"purpose": "test"})
    data = payload(70_000)
    fs.pipe_file(store.path("a"), data)
    if store.object_store:  # other user metadata and the content type survive a rewrap
        store.add_metadata("a", {"owner": "team-a"}, "application/x-envstore")
    body_before = _envelope_and_body(store, fs, "a")[2]
    env = fs.envelope(store.path("a")).envelope
    key = fs.ring.open_data_key(env.recipients, env.context)
    new = fs.ring.provider(other_key_uri).wrap(key, env.context)
    fs.set_recipients(store.path("a"), [new])
    fresh = store.efs(key_uri=other_key_uri, context={"purpose": "test"})
    assert fresh.envelope(store.path("a")).envelope.recipients == (new,)
    if store.object_store:
        assert store.metadata("a")["envstore-key-1"] == new.encode()
        assert store.metadata("a")["owner"] == "team-a"
        assert store.content_type("a") == "application/x-envstore"
    assert store.pending_uploads() == []
    assert _envelope_and_body(store, fresh, "a")[2] == body_before  # body untouched
    assert fresh.cat_file(store.path("a")) == data
    with pytest.raises(KeyAccessError):
        store.efs(context={"purpose": "test"}).cat_file(store.path("a"))


def test_rewrap_race_leaves_the_new_object(store: Backend, other_key_uri: str, monkeypatch) -> None:
    """Another writer replaces the object while rewrap wraps the key: rewrap refuses
    (ConcurrentModificationError) and the new object stays."""
    from envstore.errors import ConcurrentModificationError
    from envstore.keys.local import LocalKeyProvider

    store.efs().pipe_file(store.path("o"), b"version 1")
    writer = store.efs()
    original = LocalKeyProvider.wrap
    raced: list[bool] = []

    def wrap_then_race(self, key, context):
        out = original(self, key, context)
        if not raced:
            raced.append(True)
            writer.pipe_file(store.path("o"), b"version 2")
        return out

    monkeypatch.setattr(LocalKeyProvider, "wrap", wrap_then_race)
    with pytest.raises(ConcurrentModificationError):
        envstore.rewrap(store.url("o"), other_key_uri, **store.storage_options())
    monkeypatch.undo()
    assert store.efs().cat_file(store.path("o")) == b"version 2"


def test_rewrap_through_the_api(store: Backend, other_key_uri: str) -> None:
    fs = store.efs()
    data = payload(50_000)
    for name in ("d/a", "d/b"):
        fs.pipe_file(store.path(name), data)
    url = store.url("d")
    envstore.rewrap(url, other_key_uri, recursive=True, **store.storage_options())
    for name in ("d/a", "d/b"):
        assert store.efs(key_uri=other_key_uri).cat_file(store.path(name)) == data
        with pytest.raises(KeyAccessError):
            store.efs().cat_file(store.path(name))


# -- listings, sizes, errors, clean ------------------------------------------------------------


def test_listing_sizes(store: Backend) -> None:
    fs = store.efs()
    sizes = {"a": 0, "b": 1, "c": 20_000, "sub/d": 70_000}
    for name, n in sizes.items():
        fs.pipe_file(store.path(name), payload(n))
    with fs.open(store.path("streamed"), "wb") as f:
        f.write(payload(33_333))
    sizes["streamed"] = 33_333
    fresh = store.efs()
    rec = store.record(fresh)
    listed = {e["name"]: e for e in fresh.ls(store.root, detail=True)}
    found = fresh.find(store.root, detail=True)
    assert {n: e["size"] for n, e in found.items()} == {store.path(k): v for k, v in sizes.items()}
    assert listed[store.path("c")]["size"] == 20_000
    assert listed[store.path("sub")]["type"] == "directory"
    if rec is not None:  # sizes from the listing alone (stored size - overhead), no HEAD
        assert listed[store.path("c")]["stored_size"] == body_size(20_000)
        assert set(rec.ops()) == {"ListObjectsV2"}
    assert fresh.du(store.root) == sum(sizes.values())
    assert fresh.size(store.path("c")) == 20_000
    assert sorted(fresh.glob(store.path("*"))) == sorted(
        store.path(n) for n in ("a", "b", "c", "streamed", "sub")
    )


def test_errors_are_builtin_oserrors(store: Backend) -> None:
    fs = store.efs()
    fs.pipe_file(store.path("dir/x"), b"1")
    with pytest.raises(FileNotFoundError):
        fs.open(store.path("missing"), "rb")
    with pytest.raises(FileNotFoundError):
        fs.cat_file(store.path("missing"))
    with pytest.raises(FileNotFoundError):
        fs.info(store.path("missing"))
    with pytest.raises((IsADirectoryError, FileNotFoundError)):
        fs.cat_file(store.path("dir"))
    assert fs.isdir(store.path("dir")) and not fs.isfile(store.path("dir"))
    assert fs.info(store.path("dir"))["type"] == "directory"
    if store.object_store:
        with pytest.raises(FileNotFoundError):
            fs.cat_file("no-such-bucket-envstore/x")
    fs.rm(store.path("dir/x"))
    assert not fs.exists(store.path("dir/x"))
    with pytest.raises(FileNotFoundError):
        fs.cat_file(store.path("dir/x"))


def test_clean_finds_nothing_after_clean_writes(store: Backend) -> None:
    fs = store.multipart_efs()
    fs.pipe_file(store.path("a"), payload(2 * (store.part or MiB)))
    with pytest.raises(Boom), fs.open(store.path("b"), "wb", block_size=store.part) as f:
        f.write(payload(2 * (store.part or MiB)))
        raise Boom()
    assert envstore.clean(store.url(""), older_than=0, **store.storage_options()) == []
    assert store.keys() == ["a"] and store.pending_uploads() == []


def test_clean_aborts_stale_uploads_under_the_prefix(store: Backend) -> None:
    _object_store_only(store)
    mine = store.start_upload("a/part")
    other = store.start_upload("b/part")
    opts = store.storage_options()
    url = store.url("a")
    if not (isinstance(store, S3Backend) and store.env.endpoint.name == "moto"):
        assert envstore.clean(url, older_than="1h", **opts) == []  # too young (moto: 2010)
    found = envstore.clean(url, older_than=0, dry_run=True, **opts)
    assert [(f["kind"], f["upload_id"], f["removed"]) for f in found] == [
        ("multipart-upload", mine, False)
    ]
    assert len(store.pending_uploads()) == 2
    found = envstore.clean(url, older_than=0, **opts)
    assert [(f["upload_id"], f["removed"]) for f in found] == [(mine, True)]
    assert [store.upload_id(u) for u in store.pending_uploads()] == [other]
    store.abort_upload(store.pending_uploads()[0])


# -- data frames -------------------------------------------------------------------------------


def test_pandas_parquet_and_csv(store: Backend) -> None:
    so = store.storage_options()
    df = frame()
    url = store.url("t.parquet")
    df.to_parquet(url, storage_options=so, row_group_size=5000)
    raw = store.get_raw("t.parquet")
    assert not raw.startswith(b"PAR1") and not raw.endswith(b"PAR1") and b"name-42" not in raw
    if store.object_store:
        assert ENVELOPE_KEYS <= set(store.metadata("t.parquet"))
    pd.testing.assert_frame_equal(pd.read_parquet(url, storage_options=so), df)
    pd.testing.assert_frame_equal(
        pd.read_parquet(url, columns=["b"], storage_options=so), df[["b"]]
    )
    csv = store.url("t.csv")
    df.to_csv(csv, index=False, storage_options=so)
    assert b"name-42" not in store.get_raw("t.csv")
    pd.testing.assert_frame_equal(pd.read_csv(csv, storage_options=so), df)
    pd.testing.assert_frame_equal(
        pd.read_csv(csv, usecols=["a", "c"], storage_options=so), df[["a", "c"]]
    )


def test_pyarrow_dataset_over_prefix(store: Backend) -> None:
    import pyarrow.dataset as ds

    fs = store.efs()
    df = frame(9000)
    for i in range(3):
        with fs.open(store.path(f"ds/part-{i}.parquet"), "wb") as f:
            df.iloc[i * 3000 : (i + 1) * 3000].to_parquet(f)
    dataset = ds.dataset(store.path("ds"), filesystem=fs, format="parquet")
    table = dataset.to_table(columns=["a", "c"], filter=ds.field("d") > 5)
    got = table.to_pandas().sort_values("a").reset_index(drop=True)
    want = df[df.d > 5][["a", "c"]].reset_index(drop=True)
    pd.testing.assert_frame_equal(got, want)


def test_pandas_and_dask_name_the_bad_part(store: Backend) -> None:
    dd = pytest.importorskip("dask.dataframe")
    so = store.storage_options()
    fs = store.efs()
    for i in range(4):
        df = pd.DataFrame({"i": range(i * 3000, (i + 1) * 3000)})
        with fs.open(store.path(f"ds/part.{i}.csv"), "wb") as f:
            df.to_csv(f, index=False)
    meta, header, body = _envelope_and_body(store, fs, "ds/part.2.csv")
    bad_body = bytearray(body)
    bad_body[len(bad_body) // 2] ^= 1
    store.put_raw("ds/part.2.csv", header + bytes(bad_body), meta)
    bad = store.path("ds/part.2.csv")
    with pytest.raises(IntegrityError) as err:
        dd.read_csv(store.url("ds/*.csv"), storage_options=so).compute(scheduler="sync")
    assert bad in str(err.value)
    with pytest.raises(IntegrityError) as err:
        pd.read_csv(store.url("ds/part.2.csv"), storage_options=so)
    assert bad in str(err.value)


# -- zarr / xarray and duckdb (issue 13) -------------------------------------------------------


@pytest.mark.filterwarnings("ignore::UserWarning")  # zarr: consolidated metadata
def test_xarray_and_zarr_round_trip(store: Backend) -> None:
    pytest.importorskip("zarr", minversion="3")
    pytest.importorskip("xarray")
    from tests.ecosystem import zarr_round_trip

    def stored() -> dict[str, bytes]:
        return {k: store.get_raw(k) for k in store.keys() if k.startswith("d/x.zarr/")}

    raw = zarr_round_trip(store.url("d/x.zarr"), store.storage_options(), stored)
    fs = store.efs()
    for name in raw:  # every chunk and metadata document is an envstore object
        assert fs.info(store.path(name))["encrypted"] is True, name
        if store.object_store:
            assert ENVELOPE_KEYS <= set(store.metadata(name)), name


def test_duckdb_reads_and_writes(store: Backend) -> None:
    pytest.importorskip("duckdb")
    from tests.ecosystem import duckdb_round_trip

    duckdb_round_trip(store.efs(), store.root, store.get_raw)
    if store.object_store:
        assert ENVELOPE_KEYS <= set(store.metadata("t.parquet"))


def test_dask_processes_scheduler(store: Backend) -> None:
    if store.name == "memory":
        pytest.skip("memory:// is per process: worker processes cannot see it")
    dask = pytest.importorskip("dask")
    dd = pytest.importorskip("dask.dataframe")
    so = store.storage_options()
    df = frame(12_000)
    url = store.url("dd")
    with dask.config.set(scheduler="processes", num_workers=2):
        dd.from_pandas(df, npartitions=4).to_parquet(url, storage_options=so, write_index=False)
        back = dd.read_parquet(url, storage_options=so, columns=["a", "b", "d"]).compute()
    pd.testing.assert_frame_equal(back.sort_values("a").reset_index(drop=True), df[["a", "b", "d"]])
    names = [k for k in store.keys() if k.startswith("dd/")]
    assert len(names) >= 4
    fs = store.efs()
    for name in names:
        assert fs.info(store.path(name))["encrypted"] is True
        if store.object_store:
            assert ENVELOPE_KEYS <= set(store.metadata(name))


# -- object stores: multipart copies, HEAD cache, request counts --------------------------------


def _object_store_only(store: Backend) -> None:
    if not store.object_store:
        pytest.skip("object stores only (no multipart copies / HEAD cache here)")


def test_multipart_copy_keeps_envelope(store: Backend, monkeypatch) -> None:
    """Above the store's copy limit (S3 5 GiB, OSS 1 GB) copies go part by part; lowered."""
    _object_store_only(store)
    fs = store.multipart_efs()
    part = 2 * store.part
    store.small_copies(fs, monkeypatch, limit=3 * part // 2, part=part)
    data = payload(5 * part + 9)
    fs.pipe_file(store.path("a"), data)
    store.add_metadata("a", {"owner": "x"}, "application/x-parquet")
    rec = store.record(fs)
    fs.cp_file(store.path("a"), store.path("b"))
    parts = -(-body_size(len(data)) // part)
    ops = rec.ops()
    assert ops.count("UploadPartCopy") == parts and "CopyObject" not in ops
    assert "GetObject" not in ops and "UploadPart" not in ops
    assert store.metadata("b") == store.metadata("a")
    assert store.content_type("b") == "application/x-parquet"
    assert store.efs().cat_file(store.path("b")) == data
    fs.mv(store.path("b"), store.path("c"))
    assert store.keys() == ["a", "c"] and store.pending_uploads() == []
    assert store.efs().cat_file(store.path("c"), part, part + 5000) == data[part : part + 5000]


def test_multipart_copy_failure_aborts(store: Backend, monkeypatch) -> None:
    _object_store_only(store)
    fs = store.multipart_efs()
    part = 2 * store.part
    store.small_copies(fs, monkeypatch, limit=part // 2, part=part)
    data = payload(2 * part + 7)
    fs.pipe_file(store.path("a"), data)
    store.fail_part_copy(fs, monkeypatch, number=2)
    rec = store.record(fs)
    with pytest.raises(PermissionError):
        fs.cp_file(store.path("a"), store.path("b"))
    with pytest.raises(PermissionError):
        fs.mv(store.path("a"), store.path("c"))
    assert rec.ops().count("AbortMultipartUpload") == 2
    assert store.keys() == ["a"] and store.pending_uploads() == []
    monkeypatch.undo()
    assert store.efs().cat_file(store.path("a")) == data


def test_head_cache(store: Backend) -> None:
    _object_store_only(store)
    fs = store.efs()
    fs.store.head_ttl = 60  # the cached HEAD outlives the steps below on a loaded machine
    path = store.path("a")
    fs.pipe_file(path, b"x" * 100)
    rec = store.record(fs)
    for _ in range(3):
        assert fs.info(path)["size"] == 100
        assert fs.isfile(path) and fs.size(path) == 100
    assert rec.ops() == ["HeadObject"]
    fs.pipe_file(path, b"y" * 200)  # own writes invalidate
    assert fs.info(path)["size"] == 200 and fs.cat_file(path) == b"y" * 200
    other = store.efs()
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


def test_read_parquet_costs_one_head_per_object(
    store: Backend, monkeypatch: pytest.MonkeyPatch
) -> None:
    _object_store_only(store)
    so = store.storage_options()
    df = frame(50_000)
    url = store.url("t.parquet")
    df.to_parquet(url, storage_options=so, row_group_size=10_000)
    fs, _ = fsspec.url_to_fs(url, **so)  # the cached instance pandas uses too
    # both reads within the cache's lifetime, however slow the machine (a shared instance:
    # monkeypatch restores it)
    monkeypatch.setattr(fs.store, "head_ttl", 60)
    for i in range(3):
        with fs.open(store.path(f"parts/p{i}.parquet"), "wb") as f:
            df.iloc[i * 1000 : (i + 1) * 1000].to_parquet(f)
    fs.invalidate_cache()
    rec = store.record(fs)
    got = pd.read_parquet(url, columns=["b"], storage_options=so)
    pd.testing.assert_frame_equal(got, df[["b"]])
    assert len(rec.calls("HeadObject")) == 1, rec.ops()
    rec.clear()
    pd.read_parquet(url, columns=["c"], storage_options=so)
    assert rec.calls("HeadObject") == []  # within the HEAD cache's lifetime
    rec.clear()
    back = pd.read_parquet(store.url("parts"), storage_options=so)
    assert len(back) == 3000
    heads = [c.key for c in rec.calls("HeadObject")]
    files = [k for k in heads if k.endswith(".parquet")]
    assert len(files) == len(set(files)) == 3, heads  # one per object
    assert len(heads) <= 4, heads  # + one for the directory itself
