"""envstore over Alibaba Cloud OSS (``envstore::oss://``) through oss2, against the
OSS-compatible server of ``tests/servers/oss_compat.py``; a few opt-in tests run against a real
bucket (``ENVSTORE_TEST_OSS_*``, see ``tests/stores/conftest_oss.py`` and ``docs/oss.md``).

The server logs every request, so request and byte counts are asserted at the server, and every
ranged GetObject must carry ``x-oss-range-behavior: standard`` (checked after each test).
"""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import fsspec
import pandas as pd
import pytest

from envstore.errors import ConfigError, FormatError
from envstore.format import CHUNK, MAGIC, PREFIX, body_size
from envstore.keys.local import keygen
from envstore.stores.oss import OSSFileSystem
from tests.stores.common import ENVELOPE_KEYS, frame, payload
from tests.stores.conftest_oss import (  # noqa: F401  (fixtures)
    OssEnv,
    oss_fixture,
    oss_server_fixture,
    real_oss_fixture,
)

MiB = 1 << 20
KiB = 1 << 10
PART = 256 * KiB  # lowered part size: multipart objects stay small


def _check_stored(env: OssEnv, name: str, plain: bytes, sized: bool) -> Any:
    """oss2 ``head_object`` shows the envelope as x-oss-meta-envstore-*; the body is ciphertext."""
    head = env.head(name)
    meta = env.meta(name)
    assert ENVELOPE_KEYS <= set(meta), meta
    assert all(k.startswith("envstore-") for k in meta)
    assert meta.get("envstore-size") == (str(len(plain)) if sized else None)
    raw = env.raw(name)
    assert len(raw) == head.content_length == body_size(len(plain))
    assert raw[:24] == base64.b64decode(meta["envstore-salt"])
    assert raw[24:PREFIX] == base64.b64decode(meta["envstore-commitment"])
    if len(plain) >= 64:
        assert plain[:32] not in raw and plain[-32:] not in raw
    return head


# -- round trips -------------------------------------------------------------------------------


def test_parts_carry_md5_and_exact_sizes(oss: OssEnv) -> None:
    """OSS verifies each part's Content-MD5; parts are exactly ``part_size`` but the last."""
    fs = oss.efs()
    fs.store.part_size = PART
    data = payload(MiB + 777)
    stored = body_size(len(data))
    parts = -(-stored // PART)
    assert parts == 5
    with fs.open(oss.path("big"), "wb") as f:
        step = 100_003
        for i in range(0, len(data), step):
            f.write(data[i : i + step])
    ops = oss.ops()
    assert ops[0] == "InitiateMultipartUpload" and ops[-1] == "CompleteMultipartUpload"
    assert ops.count("UploadPart") == parts and "PutObject" not in ops
    # two parts upload concurrently, so the server may log them out of order
    uploads = sorted(oss.calls("UploadPart"), key=lambda c: int(c.query["partNumber"]))
    sizes = [int(c.headers["content-length"]) for c in uploads]
    assert sizes == [PART] * (parts - 1) + [stored - (parts - 1) * PART]
    assert all("content-md5" in c.headers for c in oss.calls("UploadPart"))  # OSS verifies it
    head = _check_stored(oss, "big", data, sized=False)
    assert head.etag.endswith(f"-{parts}") and head.object_type == "Multipart"
    assert fs.cat_file(oss.path("big")) == data
    assert fs.info(oss.path("big"))["size"] == len(data)
    # size known up front (pipe): the same, with the size field on initiate
    oss.clear()
    fs.pipe_file(oss.path("piped"), data)
    assert oss.ops().count("UploadPart") == parts
    assert oss.calls("InitiateMultipartUpload")[0].headers["x-oss-meta-envstore-size"] == str(
        len(data)
    )
    _check_stored(oss, "piped", data, sized=True)
    assert oss.efs().cat_file(oss.path("piped")) == data
    assert oss.pending_uploads() == []


# -- data frames -------------------------------------------------------------------------------


# -- listings ----------------------------------------------------------------------------------


def test_listing_and_recursive_rm_need_no_head(oss: OssEnv) -> None:
    fs = oss.efs()
    sizes = {"a": 0, "b": 1, "c": 20_000, "sub/d": 70_000, "sub/e/f": 5}
    for name, n in sizes.items():
        fs.pipe_file(oss.path(name), payload(n))
    fresh = oss.efs()
    oss.clear()
    listed = {e["name"]: e for e in fresh.ls(oss.root, detail=True)}
    found = fresh.find(oss.root, detail=True)
    assert {n: e["size"] for n, e in found.items()} == {oss.path(k): v for k, v in sizes.items()}
    assert listed[oss.path("c")]["stored_size"] == body_size(20_000)
    assert listed[oss.path("c")]["size"] == 20_000
    assert listed[oss.path("c")]["encrypted"] is None  # the listing alone cannot tell
    assert listed[oss.path("sub")]["type"] == "directory"
    assert set(oss.ops()) == {"ListObjectsV2"}
    assert fresh.du(oss.root) == sum(sizes.values())
    assert fresh.info(oss.path("sub"))["type"] == "directory"
    assert fresh.ls(oss.path("sub"), detail=False) == [oss.path("sub/d"), oss.path("sub/e")]
    assert fresh.exists(oss.path("sub/e/f")) and not fresh.exists(oss.path("nope"))
    oss.clear()
    fresh.rm(oss.path("sub"), recursive=True)  # one listing, one batch delete: no HEADs
    assert oss.ops() == ["ListObjectsV2", "DeleteMultipleObjects"]
    assert oss.keys() == ["a", "b", "c"]
    fresh.rm_file(oss.path("a"))
    assert oss.keys() == ["b", "c"] and fresh.isdir(oss.root)


def test_stored_headers_and_crc_option(oss: OssEnv) -> None:
    """Bodies are read as stored: a Content-Encoding on an object must not make the HTTP stack
    "decode" ciphertext; oss2's CRC64 checks can be switched back on (``enable_crc``)."""
    fs = oss.efs(oss={"enable_crc": True})
    assert fs.fs.bucket(oss.bucket).enable_crc
    data = payload(3 * CHUNK + 1)
    fs.pipe_file(oss.path("a"), data)
    assert fs.cat_file(oss.path("a")) == data
    fs.store.part_size = PART  # multipart with oss2's CRC adapter over the part buffers
    big = payload(MiB, 3)
    fs.pipe_file(oss.path("big"), big)
    assert oss.ops().count("UploadPart") == 5 and fs.cat_file(oss.path("big")) == big
    oss.client.update_object_meta(
        oss.key_of("a"), {**oss.meta_headers("a"), "Content-Encoding": "gzip"}
    )
    assert oss.head("a").headers["Content-Encoding"] == "gzip"
    fresh = oss.efs()
    assert not fresh.fs.bucket(oss.bucket).enable_crc
    assert fresh.cat_file(oss.path("a")) == data
    assert fresh.cat_file(oss.path("a"), 5, CHUNK + 9) == data[5 : CHUNK + 9]


# -- failures ----------------------------------------------------------------------------------


class Boom(Exception):
    pass


@pytest.mark.parametrize("op", ["UploadPart", "CompleteMultipartUpload", "PutObject"])
def test_server_error_aborts_and_leaves_nothing(oss: OssEnv, op: str) -> None:
    assert oss.server is not None
    fs = oss.efs()
    fs.store.part_size = PART
    size = 50 * KiB if op == "PutObject" else MiB
    oss.server.fail_next(op, status=500, code="InternalError")
    with pytest.raises(OSError, match="InternalError") as info:
        fs.pipe_file(oss.path("x"), payload(size))
    assert not isinstance(info.value, (FileNotFoundError, PermissionError))
    assert [c.status for c in oss.calls(op)][:1] == [500]
    if op != "PutObject":
        assert oss.ops()[-1] == "AbortMultipartUpload"
    assert oss.keys() == [] and oss.pending_uploads() == []
    fs.pipe_file(oss.path("x"), payload(size))  # the next attempt works
    assert fs.cat_file(oss.path("x")) == payload(size)


def test_envelope_metadata_limit(oss: OssEnv, tmp_path: Path) -> None:
    """OSS allows 8 KB of user metadata; with local keys the largest envelope (16 recipients and
    a 3072-byte context) needs about 6.6 KB, so the limit is lowered on both sides here."""
    assert oss.server is not None
    uris = [f"local://{keygen(tmp_path / 'many' / f'k{i}.key')}" for i in range(16)]
    context = {"purpose": "x" * 3040}
    data = payload(3 * CHUNK + 5)
    biggest = oss.efs(key_uri=uris, context=context, placement="metadata")
    biggest.pipe_file(oss.path("biggest"), data)  # fits the real 8 KB limit
    used = biggest.store.metadata_size(biggest.envelope(oss.path("biggest")).envelope.to_fields())
    assert 6000 < used <= 8192
    assert sum(len(k) + len(v) for k, v in oss.meta_headers("biggest").items()) == used
    # the store's count agrees with the server's to the byte: at the limit fits, one less not
    oss.server.metadata_limit = used
    biggest.store.metadata_limit = used
    biggest.pipe_file(oss.path("at-limit"), data)
    oss.server.metadata_limit = used - 1
    biggest.store.metadata_limit = used - 1
    with pytest.raises(FormatError, match="limit"):
        biggest.pipe_file(oss.path("strict"), data)
    biggest.store.metadata_limit = used - 100  # a streamed envelope has no size field
    with pytest.raises(FormatError):
        biggest.open(oss.path("strict"), "wb")
    auto = oss.efs(key_uri=uris, context=context)  # placement="auto": the in-object header
    auto.store.metadata_limit = used - 1
    auto.pipe_file(oss.path("auto"), data)
    assert not any(k.startswith("envstore-") for k in oss.meta("auto"))
    assert oss.raw("auto").startswith(MAGIC)
    reader = oss.efs(key_uri=uris[-1], context=context)  # any one recipient opens it
    assert reader.cat_file(oss.path("auto"), 100, 40_000) == data[100:40_000]
    assert reader.info(oss.path("auto"))["size"] == len(data)
    # without the check the server refuses the upload (what the check saves a user from)
    unchecked = oss.efs(key_uri=uris, context=context, placement="metadata")
    with pytest.raises(OSError, match="metadata"):
        unchecked.pipe_file(oss.path("refused"), data)
    assert oss.keys() == ["at-limit", "auto", "biggest"] and oss.pending_uploads() == []


# -- copies, moves, metadata rewrite -----------------------------------------------------------


def test_rewrap_keeps_standard_headers_and_refuses_big_metadata(
    oss: OssEnv, other_key_uri: str
) -> None:
    fs = oss.efs(context={"purpose": "test"})
    data = payload(70_000)
    fs.pipe_file(oss.path("a"), data)
    oss.client.update_object_meta(  # other metadata and standard headers survive a rewrap
        oss.key_of("a"),
        {
            **oss.meta_headers("a"),
            "x-oss-meta-owner": "team-a",
            "Content-Type": "application/x-envstore",
            "Cache-Control": "max-age=60",
            "Content-Disposition": "attachment",
        },
    )
    raw_before = oss.raw("a")
    env = fs.envelope(oss.path("a")).envelope
    key = fs.ring.open_data_key(env.recipients, env.context)
    new = fs.ring.provider(other_key_uri).wrap(key, env.context)
    oss.clear()
    fs.set_recipients(oss.path("a"), [new])
    assert oss.calls("CopyObject")[0].headers["x-oss-metadata-directive"] == "REPLACE"
    meta = oss.meta("a")
    assert meta["envstore-key-1"] == new.encode() and meta["owner"] == "team-a"
    head = oss.head("a")
    assert head.content_type == "application/x-envstore"
    assert head.headers["Cache-Control"] == "max-age=60"
    assert head.headers["Content-Disposition"] == "attachment"
    assert oss.raw("a") == raw_before  # body untouched
    reader = oss.efs(key_uri=other_key_uri, context={"purpose": "test"})
    assert reader.cat_file(oss.path("a")) == data
    with pytest.raises(FormatError, match="8192"):
        fs.store.set_metadata(oss.path("a"), {"envstore-key-1": "x" * 9000})


# -- options, credentials, errors --------------------------------------------------------------


def test_options_credentials_and_environment(oss: OssEnv, monkeypatch: pytest.MonkeyPatch) -> None:
    assert oss.server is not None
    so = oss.storage_options()
    df = frame(1000)
    df.to_parquet(oss.url("t.parquet"), storage_options=so)
    # STS: key, secret and token
    ak, sk, token = oss.server.add_sts_credentials()
    sts = oss.storage_options(oss={"key": ak, "secret": sk, "token": token})
    pd.testing.assert_frame_equal(pd.read_parquet(oss.url("t.parquet"), storage_options=sts), df)
    # the environment, when storage_options name no credentials
    monkeypatch.setenv("OSS_ENDPOINT", oss.endpoint)
    monkeypatch.setenv("OSS_ACCESS_KEY_ID", ak)
    monkeypatch.setenv("OSS_ACCESS_KEY_SECRET", sk)
    monkeypatch.setenv("OSS_SESSION_TOKEN", token)
    OSSFileSystem.clear_instance_cache()
    got = pd.read_parquet(oss.url("t.parquet"), storage_options={"key_uri": oss.key_uri})
    pd.testing.assert_frame_equal(got, df)
    monkeypatch.setenv("OSS_SESSION_TOKEN", token + "-forged")
    OSSFileSystem.clear_instance_cache()
    with pytest.raises(PermissionError):
        fsspec.filesystem(
            "envstore", target_protocol="oss", key_uri=oss.key_uri, skip_instance_cache=True
        ).cat_file(oss.path("t.parquet"))
    monkeypatch.delenv("OSS_ENDPOINT")
    OSSFileSystem.clear_instance_cache()
    with pytest.raises(ConfigError, match="endpoint"):
        fsspec.filesystem("envstore", target_protocol="oss", key_uri=oss.key_uri)
    # options of the inner filesystem at the top level: told the right shape
    with pytest.raises(ConfigError, match=r"\"oss\": \{'endpoint': \.\.\., 'key': \.\.\.\}"):
        fsspec.filesystem(
            "envstore", target_protocol="oss", key_uri=oss.key_uri, endpoint="x", key="y"
        )


def test_wrong_credentials_are_permission_errors(oss: OssEnv) -> None:
    fs = oss.efs()
    fs.pipe_file(oss.path("dir/x"), b"1")
    with pytest.raises(FileNotFoundError):
        fs.open(oss.path("missing"), "rb")
    with pytest.raises(FileNotFoundError):
        fs.cat_file(oss.path("missing"))
    with pytest.raises(FileNotFoundError):
        fs.info(oss.path("missing"))
    with pytest.raises(FileNotFoundError):
        fs.cat_file("no-such-bucket-envstore/x")
    with pytest.raises(FileNotFoundError):
        fs.ls("no-such-bucket-envstore")
    with pytest.raises((IsADirectoryError, FileNotFoundError)):
        fs.cat_file(oss.path("dir"))
    assert fs.isdir(oss.path("dir")) and not fs.isfile(oss.path("dir"))
    wrong = oss.efs(oss={"secret": "not-the-secret"})
    for call in (
        lambda: wrong.info(oss.path("dir/x")),
        lambda: wrong.cat_file(oss.path("dir/x")),
        lambda: wrong.ls(oss.root),
        lambda: wrong.pipe_file(oss.path("y"), b"2"),
    ):
        with pytest.raises(PermissionError, match="SignatureDoesNotMatch"):
            call()
    unknown = oss.efs(oss={"key": "nobody"})
    with pytest.raises(PermissionError, match="InvalidAccessKeyId"):
        unknown.info(oss.path("dir/x"))
    assert oss.keys() == ["dir/x"]


# -- requests ----------------------------------------------------------------------------------


# -- a real OSS bucket (opt-in) ----------------------------------------------------------------


def test_real_oss_round_trip_range_and_metadata(real_oss: OssEnv) -> None:
    fs = real_oss.efs()
    data = payload(300_000, 11)
    fs.pipe_file(real_oss.path("small.bin"), data)
    _check_stored(real_oss, "small.bin", data, sized=True)
    assert fs.cat_file(real_oss.path("small.bin")) == data
    assert fs.cat_file(real_oss.path("small.bin"), 1000, 201_000) == data[1000:201_000]
    assert fs.cat_file(real_oss.path("small.bin"), start=-7) == data[-7:]
    assert fs.info(real_oss.path("small.bin"))["size"] == len(data)
    fs.store.part_size = 128 * KiB  # multipart with the metadata on initiate
    with fs.open(real_oss.path("multi.bin"), "wb") as f:
        f.write(data)
    _check_stored(real_oss, "multi.bin", data, sized=False)
    assert (
        real_oss.efs().cat_file(real_oss.path("multi.bin"), 150_000, 290_000)
        == data[150_000:290_000]
    )
    fs.cp_file(real_oss.path("multi.bin"), real_oss.path("copy.bin"))
    assert real_oss.meta("copy.bin") == real_oss.meta("multi.bin")
    listed = {e["name"]: e["size"] for e in fs.ls(real_oss.root, detail=True)}
    assert listed == {real_oss.path(n): len(data) for n in ("copy.bin", "multi.bin", "small.bin")}
    assert real_oss.pending_uploads() == []


def test_real_oss_dataframe_and_errors(real_oss: OssEnv) -> None:
    so = real_oss.storage_options()
    df = frame(5000)
    url = real_oss.url("t.parquet")
    df.to_parquet(url, storage_options=so)
    pd.testing.assert_frame_equal(
        pd.read_parquet(url, columns=["b"], storage_options=so), df[["b"]]
    )
    with pytest.raises(FileNotFoundError):
        real_oss.efs().cat_file(real_oss.path("missing"))
    with pytest.raises(PermissionError):
        real_oss.efs(oss={"secret": "not-the-secret"}).cat_file(real_oss.path("t.parquet"))
