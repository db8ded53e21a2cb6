"""Issue 10, read side, on S3 (moto, or ENVSTORE_TEST_S3_ENDPOINT): a concurrent truncation
between locating and reading, claimed-empty objects, planted recipients and the read context,
through every read path (open, cat_file, cat_ranges, get_file, verify, CLI cat). Metadata
placement: the envelope is in user metadata, the object is the body."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from s3fs import S3FileSystem

import envstore
from envstore.errors import IntegrityError, KeyAccessError
from envstore.format import CHUNK, PREFIX, TAG, WIRE_CHUNK, Envelope
from envstore.fs import EnvstoreFileSystem
from envstore.keys.base import WrappedKey
from envstore.keys.local import keygen
from envstore.objects import Objects
from tests.readops import READS, outcomes


def _put(s3, name: str, body: bytes, meta: dict[str, str]) -> None:
    s3.client.put_object(Bucket=s3.bucket, Key=s3.key(name), Body=body, Metadata=meta)


def _fresh() -> None:
    """Forget cached filesystems: the CLI and helpers build theirs from the URL, and a cached
    one keeps heads for ``head_ttl`` seconds (a rewrap keeps the body, ETag and size)."""
    S3FileSystem.clear_instance_cache()
    EnvstoreFileSystem.clear_instance_cache()


def _all(results: dict[str, Any], kind: type[BaseException], path: str) -> None:
    for op, got in results.items():
        assert isinstance(got, kind), (op, got)
        assert path in str(got), (op, str(got))


@pytest.mark.parametrize(
    "offset",
    [PREFIX + WIRE_CHUNK, PREFIX + 3 * WIRE_CHUNK, PREFIX + WIRE_CHUNK + 999, PREFIX, 0],
    ids=["chunk-1", "chunk-3", "mid-chunk", "body-prefix", "no-body"],
)
def test_truncated_between_locate_and_read(s3, offset: int, monkeypatch, tmp_path: Path) -> None:
    fs = s3.efs()
    name, path = "obj", s3.path("obj")
    with fs.open(path, "wb") as f:  # streamed: no size field
        f.write(os.urandom(3 * CHUNK + 100))
    raw, meta = s3.raw(name), s3.head(name)["Metadata"]
    orig = Objects.locate

    def locate(self, p, head=None):
        loc = orig(self, p, head)
        _put(s3, name, raw[:offset], meta)  # a concurrent writer truncates the object
        return loc

    monkeypatch.setattr(Objects, "locate", locate)
    results = outcomes(
        fs,
        path,
        s3.url(name),
        s3.storage_options(),
        tmp_path,
        before=lambda: _put(s3, name, raw, meta),
    )
    _all(results, IntegrityError, path)


def _forged_empty(s3, name: str, how: str) -> None:
    fs = s3.efs()
    if how == "cut-to-empty":
        with fs.open(s3.path(name), "wb") as f:
            f.write(os.urandom(40_000))
        _put(s3, name, s3.raw(name)[: PREFIX + TAG], s3.head(name)["Metadata"])
        return
    if how == "forged-no-recipient":
        recipients: tuple[WrappedKey, ...] = (
            WrappedKey("local", "fp:000000000000000000000000", os.urandom(60)),
        )
    else:  # a real recipient for the reader's key, copied from another object
        fs.pipe_file(s3.path("donor"), b"x")
        recipients = fs.envelope(s3.path("donor")).envelope.recipients
    env = Envelope(recipients, os.urandom(24), os.urandom(32), {}, None)
    _put(s3, name, env.salt + env.commitment + os.urandom(TAG), env.to_fields())


@pytest.mark.parametrize("how", ["cut-to-empty", "forged-no-recipient", "forged-planted"])
def test_claimed_empty_objects(s3, how: str, tmp_path: Path) -> None:
    pd = pytest.importorskip("pandas")
    _forged_empty(s3, "e.csv", how)
    fs, path = s3.efs(), s3.path("e.csv")
    assert fs.info(path)["size"] == 0
    kind = KeyAccessError if how == "forged-no-recipient" else IntegrityError
    for read in (lambda f: f.read(), lambda f: f.readlines(), lambda f: list(f)):
        with fs.open(path, "rb") as f, pytest.raises(kind):
            read(f)
    with pytest.raises(kind):
        fs.open(path, "r").read()
    with pytest.raises(kind, match=r"e\.csv"):
        pd.read_csv(s3.url("e.csv"), storage_options=s3.storage_options())
    _all(outcomes(fs, path, s3.url("e.csv"), s3.storage_options(), tmp_path), kind, path)


def test_planted_recipients_and_rewrap(s3, tmp_path: Path) -> None:
    fs = s3.efs()
    data = os.urandom(2 * CHUNK + 1)
    fs.pipe_file(s3.path("victim"), data)
    fs.pipe_file(s3.path("donor"), b"another object")
    (own,) = fs.envelope(s3.path("victim")).envelope.recipients
    (foreign,) = fs.envelope(s3.path("donor")).envelope.recipients
    path, url, so = s3.path("victim"), s3.url("victim"), s3.storage_options()

    fs.set_recipients(path, [foreign, own])
    assert outcomes(fs, path, url, so, tmp_path) == dict.fromkeys(READS, data)

    fs.set_recipients(path, [foreign])
    _fresh()
    _all(outcomes(fs, path, url, so, tmp_path), IntegrityError, path)
    new_uri = f"local://{keygen(tmp_path / 'new.key')}"
    meta, body = s3.head("victim")["Metadata"], s3.raw("victim")
    with pytest.raises(IntegrityError, match="commitment"):
        envstore.rewrap(url, new_uri, **so)
    assert s3.head("victim")["Metadata"] == meta and s3.raw("victim") == body

    fs.set_recipients(path, [foreign, own])
    _fresh()
    envstore.rewrap(url, new_uri, **so)
    assert s3.efs(key_uri=new_uri).cat_file(path) == data


def test_read_context_is_a_check(s3, tmp_path: Path) -> None:
    writer = s3.efs(context={"tenant": "t-123", "dataset": "d"})
    data = os.urandom(CHUNK + 1)
    writer.pipe_file(s3.path("c"), data)
    path, url = s3.path("c"), s3.url("c")
    for context in (None, {"tenant": "t-123"}, {"dataset": "d", "tenant": "t-123"}):
        so = s3.storage_options(context=context)
        fs = s3.efs(context=context)
        assert outcomes(fs, path, url, so, tmp_path) == dict.fromkeys(READS, data)
    so = s3.storage_options(context={"tenant": "t-999"})
    results = outcomes(s3.efs(context={"tenant": "t-999"}), path, url, so, tmp_path)
    _all(results, IntegrityError, path)
    for exc in results.values():
        assert "'tenant'" in str(exc) and "t-999" not in str(exc) and "t-123" not in str(exc)


def test_pandas_and_dask_name_the_bad_part(s3) -> None:
    pd = pytest.importorskip("pandas")
    dd = pytest.importorskip("dask.dataframe")
    so = s3.storage_options()
    fs = s3.efs()
    for i in range(4):
        df = pd.DataFrame({"i": range(i * 3000, (i + 1) * 3000)})
        with fs.open(s3.path(f"ds/part.{i}.csv"), "wb") as f:
            df.to_csv(f, index=False)
    raw, meta = bytearray(s3.raw("ds/part.2.csv")), s3.head("ds/part.2.csv")["Metadata"]
    raw[len(raw) // 2] ^= 1
    _put(s3, "ds/part.2.csv", bytes(raw), meta)
    bad = s3.path("ds/part.2.csv")
    with pytest.raises(IntegrityError) as err:
        dd.read_csv(s3.url("ds/*.csv"), storage_options=so).compute(scheduler="sync")
    assert bad in str(err.value)
    with pytest.raises(IntegrityError) as err:
        pd.read_csv(s3.url("ds/part.2.csv"), storage_options=so)
    assert bad in str(err.value)
