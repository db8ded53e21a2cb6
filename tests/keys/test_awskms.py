"""awskms:// (AWS KMS through boto3) against a moto server."""

from __future__ import annotations

import pickle
import time
from pathlib import Path
from typing import TYPE_CHECKING

import fsspec
import pytest

pytest.importorskip("boto3")
pytest.importorskip("moto")

from envstore import ConfigError, KeyAccessError
from envstore.keys import get_provider
from envstore.keys.awskms import AwsKmsProvider
from envstore.keys.base import WrappedKey
from envstore.keys.ring import KeyRing
from tests.keys.leaks import assert_clean, secret_forms

if TYPE_CHECKING:
    from tests.keys.conftest import AwsKmsEnv

CTX = {"bucket": "b", "path": "t/x.parquet"}


def test_generate_and_unwrap(awskms: AwsKmsEnv) -> None:
    p = awskms.provider()
    wire = awskms.tap(p)
    key, wrapped = p.generate_data_key(CTX)
    assert isinstance(key, bytearray) and len(key) == 32
    assert wrapped.provider == "awskms" and wrapped.key_id == awskms.key_id  # the ARN
    assert WrappedKey.decode(wrapped.encode()) == wrapped
    assert p.matches(wrapped)
    assert p.unwrap(wrapped, dict(reversed(list(CTX.items())))) == key
    assert wire.calls == {"GenerateDataKey": 1, "Decrypt": 1}
    for form in secret_forms(key):
        assert form not in repr(p) and form not in repr(wrapped)


def test_key_id_alias_and_matches(awskms: AwsKmsEnv) -> None:
    arn = awskms.key_id
    bare = arn.rsplit(":key/", 1)[1]
    awskms.admin.create_alias(AliasName="alias/envstore-test", TargetKeyId=bare)
    by_alias = awskms.provider("awskms://alias/envstore-test")
    key, wrapped = by_alias.generate_data_key(CTX)
    assert wrapped.key_id == arn
    for p in (awskms.provider(f"awskms://{bare}"), awskms.provider(), by_alias):
        assert p.matches(wrapped)
        assert p.unwrap(wrapped, CTX) == key
    other = awskms.admin.create_key()["KeyMetadata"]["Arn"]
    theirs = awskms.provider(f"awskms://{other}")
    assert not theirs.matches(wrapped)
    # called directly, Decrypt names the configured key: AWS refuses another key's blob
    with pytest.raises(KeyAccessError):
        theirs.unwrap(wrapped, CTX)


def test_wrong_or_missing_context(awskms: AwsKmsEnv) -> None:
    p = awskms.provider()
    key, wrapped = p.generate_data_key(CTX)
    with pytest.raises(KeyAccessError, match="InvalidCiphertextException") as info:
        p.unwrap(wrapped, {**CTX, "path": "other"})
    assert_clean(info.value, key)
    assert "request id " in str(info.value) and "request id none" not in str(info.value)
    with pytest.raises(KeyAccessError, match="InvalidCiphertextException"):
        p.unwrap(wrapped, {})


def test_unknown_key(awskms: AwsKmsEnv) -> None:
    missing = "arn:aws:kms:us-east-1:123456789012:key/00000000-0000-0000-0000-000000000000"
    with pytest.raises(KeyAccessError, match="NotFoundException") as info:
        awskms.provider(f"awskms://{missing}").generate_data_key(CTX)
    assert "request id none" not in str(info.value)
    with pytest.raises(KeyAccessError, match="NotFoundException"):
        awskms.provider("awskms://alias/nope").generate_data_key(CTX)


def test_throttling_retried(awskms: AwsKmsEnv) -> None:
    p = awskms.provider()
    wire = awskms.tap(p)
    wire.inject("ThrottlingException", 2)
    key, wrapped = p.generate_data_key(CTX)
    assert wire.calls["GenerateDataKey"] == 3
    wire.inject("KMSInternalException", 1, status=500)
    assert p.unwrap(wrapped, CTX) == key
    assert wire.calls["Decrypt"] == 2


def test_throttling_gives_up_at_the_deadline(awskms: AwsKmsEnv) -> None:
    p = awskms.provider(retry_deadline=1.0)
    wire = awskms.tap(p)
    wire.inject("ThrottlingException", 1000)
    start = time.monotonic()
    with pytest.raises(KeyAccessError, match=r"ThrottlingException.*gave up after"):
        p.generate_data_key(CTX)
    assert time.monotonic() - start < 3.5
    assert wire.calls["GenerateDataKey"] >= 3


def test_access_denied_not_retried(awskms: AwsKmsEnv) -> None:
    p = awskms.provider()
    wire = awskms.tap(p)
    wire.inject("AccessDeniedException", 1)
    with pytest.raises(KeyAccessError, match="AccessDeniedException"):
        p.generate_data_key(CTX)
    assert wire.calls["GenerateDataKey"] == 1


def test_kms_down(awskms: AwsKmsEnv, closed_port: int) -> None:
    key, wrapped = awskms.provider().generate_data_key(CTX)
    p = awskms.provider(endpoint_url=f"http://127.0.0.1:{closed_port}", retry_deadline=0.5)
    for call in (lambda: p.unwrap(wrapped, CTX), lambda: p.wrap(key, CTX)):
        start = time.monotonic()
        with pytest.raises(KeyAccessError, match=r"ConnectionError.*gave up") as info:
            call()
        assert time.monotonic() - start < 3.0
        assert_clean(info.value, key)


def test_wrap_adds_a_recipient(awskms: AwsKmsEnv, key_uri: str) -> None:
    key, _ = get_provider(key_uri).generate_data_key(CTX)
    p = awskms.provider()
    wire = awskms.tap(p)
    wrapped = p.wrap(key, CTX)
    assert wire.calls == {"Encrypt": 1}
    assert wrapped.key_id == awskms.key_id
    assert p.unwrap(wrapped, CTX) == key


def test_ring_two_recipients(awskms: AwsKmsEnv, key_uri: str) -> None:
    opts = awskms.kms_options
    key, recipients = KeyRing([awskms.uri, key_uri], kms_options=opts).new_data_key(CTX)
    assert [r.provider for r in recipients] == ["awskms", "local"]
    assert KeyRing([awskms.uri], kms_options=opts).open_data_key(recipients, CTX) == key
    assert KeyRing([key_uri]).open_data_key(recipients, CTX) == key


def test_key_cache_calls(awskms: AwsKmsEnv) -> None:
    opts = awskms.kms_options
    ring = KeyRing([awskms.uri], kms_options=opts, key_cache={"max_objects": 100})
    wire = awskms.tap(ring.provider(awskms.uri))
    for _ in range(200):
        key, recipients = ring.new_data_key(CTX, 1)
    assert wire.calls["GenerateDataKey"] == 2
    reader = KeyRing([awskms.uri], kms_options=opts, key_cache=True)
    for _ in range(50):
        assert reader.open_data_key(recipients, CTX) == key
    assert wire.calls["Decrypt"] == 1  # the same (cached) provider serves both rings


def test_provider_not_picklable(awskms: AwsKmsEnv) -> None:
    with pytest.raises(TypeError, match="must not be pickled"):
        pickle.dumps(awskms.provider())


def test_configuration(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigError, match="unknown kms_options"):
        AwsKmsProvider("awskms://alias/x", {"region": "us-east-1"})
    with pytest.raises(ConfigError, match="needs a key id"):
        AwsKmsProvider("awskms://", {})
    monkeypatch.delenv("AWS_DEFAULT_REGION", raising=False)
    monkeypatch.delenv("AWS_REGION", raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent")
    with pytest.raises(ConfigError, match="region"):
        AwsKmsProvider("awskms://alias/x", {})
    p = AwsKmsProvider("awskms://arn:aws:kms:eu-west-1:123456789012:key/abc", {})
    assert p.client.meta.region_name == "eu-west-1"
    q = AwsKmsProvider(
        "awskms://alias/x",
        {"region_name": "us-east-1", "config": {"retries": {"max_attempts": 3}}},
    )
    assert q.client.meta.config.retries["total_max_attempts"] == 4  # the user's retries win


def test_fs_round_trip(awskms: AwsKmsEnv, tmp_path: Path) -> None:
    def efs() -> fsspec.AbstractFileSystem:
        return fsspec.filesystem(
            "envstore",
            target_protocol="file",
            key_uri=awskms.uri,
            kms_options=awskms.kms_options,
            context={"app": "test"},
            skip_instance_cache=True,
        )

    path = str(tmp_path / "data.bin")
    payload = bytes(range(256)) * 300
    with efs().open(path, "wb") as f:
        f.write(payload)
    assert payload not in (tmp_path / "data.bin").read_bytes()
    assert efs().cat_file(path) == payload
    assert efs().cat_file(path, start=70, end=40000) == payload[70:40000]
