"""KMS providers end to end on S3 (moto serves S3 and KMS): round trips, rotation by rewrap
without re-encryption (same body ETag), KMS down → nothing written, interrupted rewraps."""

from __future__ import annotations

import os
import uuid
from typing import Any

import fsspec
import pytest

import envstore
from envstore import KeyAccessError
from envstore.fs import EnvstoreFileSystem

boto3 = pytest.importorskip("boto3")
pytest.importorskip("s3fs")


@pytest.fixture
def bucket(awskms: Any) -> tuple[str, dict[str, Any], Any]:
    """A fresh bucket on the moto server that also serves KMS; (name, s3fs options, client)."""
    endpoint = awskms.options["endpoint_url"]
    s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
    name = f"kms-{uuid.uuid4().hex[:10]}"
    s3.create_bucket(Bucket=name)
    import s3fs

    s3fs.S3FileSystem.clear_instance_cache()
    return name, {"endpoint_url": endpoint, "key": "testing", "secret": "testing"}, s3


def _fs(s3opts: dict[str, Any], **kw: Any) -> EnvstoreFileSystem:
    return fsspec.filesystem(
        "envstore", target_protocol="s3", target_options=s3opts, skip_instance_cache=True, **kw
    )


@pytest.mark.parametrize("provider", ["awskms", "alikms"])
def test_round_trip_on_s3(provider: str, request: pytest.FixtureRequest, bucket) -> None:
    name, s3opts, s3 = bucket
    kms = request.getfixturevalue(provider)
    fs = _fs(s3opts, key_uri=kms.uri, kms_options=kms.kms_options, context={"run": "7"})
    data = os.urandom(100_000)
    fs.pipe_file(f"{name}/obj", data)
    meta = s3.head_object(Bucket=name, Key="obj")["Metadata"]
    assert meta["envstore-key-1"].startswith(provider + ";")
    assert data[:64] not in s3.get_object(Bucket=name, Key="obj")["Body"].read()
    assert _fs(s3opts, key_uri=kms.uri, kms_options=kms.kms_options).cat_file(f"{name}/obj") == data


def test_rewrap_on_s3_keeps_the_body(alikms: Any, awskms: Any, bucket) -> None:
    name, s3opts, s3 = bucket
    opts = {**alikms.kms_options, **awskms.kms_options}
    old = _fs(s3opts, key_uri=alikms.uri, kms_options=opts)
    data = os.urandom(300_000)
    old.pipe_file(f"{name}/ds/a", data)
    old.pipe_file(f"{name}/ds/b", data[::-1])
    etags = {k: s3.head_object(Bucket=name, Key=f"ds/{k}")["ETag"] for k in "ab"}
    envstore.rewrap(
        f"envstore::s3://{name}/ds",
        awskms.uri,
        recursive=True,
        key_uri=alikms.uri,
        kms_options=opts,
        s3=s3opts,
    )
    for k in "ab":
        assert s3.head_object(Bucket=name, Key=f"ds/{k}")["ETag"] == etags[k]  # body unchanged
        meta = s3.head_object(Bucket=name, Key=f"ds/{k}")["Metadata"]
        assert meta["envstore-key-1"].startswith("awskms;") and "envstore-key-2" not in meta
    with pytest.raises(KeyAccessError):
        _fs(s3opts, key_uri=alikms.uri, kms_options=opts).cat_file(f"{name}/ds/a")
    new = _fs(s3opts, key_uri=awskms.uri, kms_options=opts)
    assert new.cat_file(f"{name}/ds/a") == data and new.cat_file(f"{name}/ds/b") == data[::-1]


def test_kms_down_writes_nothing(alikms: Any, bucket) -> None:
    name, s3opts, s3 = bucket
    fs = _fs(
        s3opts,
        key_uri=alikms.uri,
        kms_options={"alikms": {**alikms.options, "endpoint": "127.0.0.1:9", "retry_deadline": 1}},
    )
    with pytest.raises(KeyAccessError):
        fs.pipe_file(f"{name}/never", b"secret")
    with pytest.raises(KeyAccessError), fs.open(f"{name}/never2", "wb") as f:
        f.write(b"secret")
    assert "Contents" not in s3.list_objects_v2(Bucket=name)
    assert not s3.list_multipart_uploads(Bucket=name).get("Uploads")


def test_key_cache_counts_on_s3(awskms: Any, bucket) -> None:
    name, s3opts, _ = bucket
    fs = _fs(
        s3opts, key_uri=awskms.uri, kms_options=awskms.kms_options, key_cache={"max_objects": 10}
    )
    wire = awskms.tap(fs.ring.provider(awskms.uri))
    for i in range(25):
        fs.pipe_file(f"{name}/c/{i}", b"x" * i)
    assert wire.calls["GenerateDataKey"] == 3
    reader = _fs(s3opts, key_uri=awskms.uri, kms_options=awskms.kms_options, key_cache=True)
    tap = awskms.tap(reader.ring.provider(awskms.uri))
    for i in range(25):
        assert reader.cat_file(f"{name}/c/{i}") == b"x" * i
    assert tap.calls["Decrypt"] == 3
