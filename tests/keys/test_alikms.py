"""alikms:// (Alibaba Cloud KMS, shared gateway) against the OpenAPI emulator, real SDK."""

from __future__ import annotations

import pickle
import time
from pathlib import Path
from typing import TYPE_CHECKING

import fsspec
import pytest

pytest.importorskip("alibabacloud_kms20160120")

from envstore import ConfigError, KeyAccessError
from envstore.keys import get_provider
from envstore.keys.alikms import AliKmsProvider
from envstore.keys.base import WrappedKey
from envstore.keys.ring import KeyRing
from tests.keys.leaks import assert_clean, secret_forms
from tests.servers.alikms_gateway import AliKmsGateway

if TYPE_CHECKING:
    from tests.keys.conftest import KmsEnv

CTX = {"bucket": "b", "path": "t/x.parquet"}


def test_generate_and_unwrap(alikms: KmsEnv) -> None:
    p = alikms.provider()
    key, wrapped = p.generate_data_key(CTX)
    assert isinstance(key, bytearray) and len(key) == 32
    assert wrapped.provider == "alikms" and wrapped.key_id == alikms.key_id
    assert wrapped.params == {}
    # the envelope's base64 field is exactly the KMS CiphertextBlob
    assert WrappedKey.decode(wrapped.encode()) == wrapped
    assert p.matches(wrapped)
    assert p.unwrap(wrapped, dict(reversed(list(CTX.items())))) == key
    assert alikms.calls("GenerateDataKey") == 1 and alikms.calls("Decrypt") == 1
    for form in secret_forms(key):
        assert form not in repr(p) and form not in repr(wrapped)


def test_alias_uri_and_matches(alikms: KmsEnv) -> None:
    server: AliKmsGateway = alikms.server
    server.create_alias("alias/by-alias-" + alikms.key_id, alikms.key_id)
    by_alias = alikms.provider(f"alikms://alias/by-alias-{alikms.key_id}")
    key, wrapped = by_alias.generate_data_key(CTX)
    assert wrapped.key_id == alikms.key_id  # the KMS reports the key id, not the alias
    assert alikms.provider().unwrap(wrapped, CTX) == key
    arn = f"acs:kms:cn-hangzhou:{server.account_id}:key/{alikms.key_id}"
    assert alikms.provider(f"alikms://{arn}").matches(wrapped)
    assert by_alias.matches(wrapped)  # an alias resolves at the KMS
    assert not alikms.provider("alikms://key-other").matches(wrapped)
    assert not alikms.provider().matches(WrappedKey("awskms", alikms.key_id, b"x"))
    # a key-id URI opens only its own key's blobs, even when an envelope lies about the key
    other = server.create_key()
    _, theirs = alikms.provider(f"alikms://{other}").generate_data_key(CTX)
    with pytest.raises(KeyAccessError, match="not alikms://"):
        alikms.provider().unwrap(theirs, CTX)
    forged = WrappedKey("alikms", alikms.key_id, theirs.blob)
    with pytest.raises(KeyAccessError, match="made by key"):
        alikms.provider().unwrap(forged, CTX)


def test_wrong_or_missing_context(alikms: KmsEnv) -> None:
    p = alikms.provider()
    key, wrapped = p.generate_data_key(CTX)
    with pytest.raises(KeyAccessError, match="InvalidCiphertext") as info:
        p.unwrap(wrapped, {**CTX, "path": "other"})
    assert_clean(info.value, key)
    with pytest.raises(KeyAccessError, match="InvalidCiphertext"):
        p.unwrap(wrapped, {})
    assert alikms.server.errors["InvalidCiphertext"] == 2


def test_unknown_key(alikms: KmsEnv) -> None:
    with pytest.raises(KeyAccessError, match=r"Forbidden\.KeyNotFound") as info:
        alikms.provider("alikms://key-doesnotexist").generate_data_key(CTX)
    assert "request id " in str(info.value) and "request id none" not in str(info.value)
    with pytest.raises(KeyAccessError, match=r"Forbidden\.AliasNotFound"):
        alikms.provider("alikms://alias/nope").generate_data_key(CTX)


def test_injected_key_not_found_is_not_retried(alikms: KmsEnv) -> None:
    p = alikms.provider()
    alikms.server.inject("Forbidden.KeyNotFound", 1)
    with pytest.raises(KeyAccessError, match=r"Forbidden\.KeyNotFound"):
        p.generate_data_key(CTX)
    assert alikms.calls("GenerateDataKey") == 1
    p.generate_data_key(CTX)  # the next request is fine


def test_signature_checked(alikms: KmsEnv) -> None:
    with pytest.raises(KeyAccessError, match="SignatureDoesNotMatch"):
        alikms.provider(access_key_secret="not-the-secret").generate_data_key(CTX)
    with pytest.raises(KeyAccessError, match=r"InvalidAccessKeyId\.NotFound"):
        alikms.provider(access_key_id="LTAIunknown").generate_data_key(CTX)


def test_throttling_retried(alikms: KmsEnv) -> None:
    p = alikms.provider()
    alikms.server.inject("Throttling", 2)
    key, wrapped = p.generate_data_key(CTX)
    assert alikms.calls("GenerateDataKey") == 3
    alikms.server.inject("ServiceUnavailable", 1, actions=["Decrypt"])
    alikms.server.inject("Throttling.User", 1, actions=["Decrypt"])
    assert p.unwrap(wrapped, CTX) == key
    assert alikms.calls("Decrypt") == 3
    assert alikms.server.errors == {"Throttling": 2, "ServiceUnavailable": 1, "Throttling.User": 1}


def test_throttling_gives_up_at_the_deadline(alikms: KmsEnv) -> None:
    p = alikms.provider(retry_deadline=1.0)
    alikms.server.inject("Throttling", 1000)
    start = time.monotonic()
    with pytest.raises(KeyAccessError, match=r"Throttling.*gave up after") as info:
        p.generate_data_key(CTX)
    assert time.monotonic() - start < 3.5
    assert "request id none" not in str(info.value)
    assert alikms.calls("GenerateDataKey") >= 3


def test_kms_down() -> None:
    server = AliKmsGateway().start()
    key_id = server.create_key()
    p = AliKmsProvider(f"alikms://{key_id}", server.options(retry_deadline=0.5))
    key, wrapped = p.generate_data_key(CTX)  # keep-alive connection now open
    server.stop()
    for call in (lambda: p.unwrap(wrapped, CTX), lambda: p.wrap(key, CTX)):
        start = time.monotonic()
        with pytest.raises(KeyAccessError, match=r"ConnectionError.*gave up") as info:
            call()
        assert time.monotonic() - start < 3.0
        # Encrypt carries the plaintext in its query string: never in the error
        assert_clean(info.value, key)


def test_closed_port(alikms: KmsEnv, closed_port: int) -> None:
    p = alikms.provider(endpoint=f"http://127.0.0.1:{closed_port}", retry_deadline=0.3)
    start = time.monotonic()
    with pytest.raises(KeyAccessError, match="connection refused"):
        p.generate_data_key(CTX)
    assert time.monotonic() - start < 2.0


def test_wrap_adds_a_recipient(alikms: KmsEnv, key_uri: str) -> None:
    local = get_provider(key_uri)
    key, _ = local.generate_data_key(CTX)
    p = alikms.provider()
    wrapped = p.wrap(key, CTX)
    assert wrapped.key_id == alikms.key_id and alikms.calls("Encrypt") == 1
    assert p.unwrap(wrapped, CTX) == key
    with pytest.raises(KeyAccessError, match="InvalidCiphertext"):
        p.unwrap(wrapped, {"other": "ctx"})


def test_ring_two_recipients(alikms: KmsEnv, key_uri: str) -> None:
    ring = KeyRing([alikms.uri, key_uri], kms_options=alikms.kms_options)
    key, recipients = ring.new_data_key(CTX)
    assert [r.provider for r in recipients] == ["alikms", "local"]
    only_kms = KeyRing([alikms.uri], kms_options=alikms.kms_options)
    only_local = KeyRing([key_uri])
    assert only_kms.open_data_key(recipients, CTX) == key
    assert only_local.open_data_key(recipients, CTX) == key
    assert only_local.open_data_key(list(reversed(recipients)), CTX) == key
    decrypts = alikms.calls("Decrypt")
    assert only_local.open_data_key(recipients, CTX) == key
    assert alikms.calls("Decrypt") == decrypts  # the local key never asks the KMS


def test_key_cache_generate_calls(alikms: KmsEnv) -> None:
    ring = KeyRing([alikms.uri], kms_options=alikms.kms_options, key_cache={"max_objects": 100})
    keys = {bytes(ring.new_data_key(CTX, 1)[0]) for _ in range(200)}
    assert alikms.calls("GenerateDataKey") == 2
    assert len(keys) == 2


def test_key_cache_read_calls(alikms: KmsEnv) -> None:
    writer = KeyRing([alikms.uri], kms_options=alikms.kms_options)
    key, recipients = writer.new_data_key(CTX)
    reader = KeyRing([alikms.uri], kms_options=alikms.kms_options, key_cache=True)
    for _ in range(50):
        assert reader.open_data_key(recipients, CTX) == key
    assert alikms.calls("Decrypt") == 1
    uncached = KeyRing([alikms.uri], kms_options=alikms.kms_options)
    for _ in range(3):
        uncached.open_data_key(recipients, CTX)
    assert alikms.calls("Decrypt") == 4


def test_ring_errors_carry_codes_not_keys(alikms: KmsEnv) -> None:
    ring = KeyRing([alikms.uri], kms_options=alikms.kms_options)
    key, recipients = ring.new_data_key(CTX)
    with pytest.raises(KeyAccessError, match="InvalidCiphertext") as info:
        ring.open_data_key(recipients, {"x": "y"})
    for form in secret_forms(key):
        assert form not in str(info.value) and form not in repr(info.value)


def test_provider_not_picklable(alikms: KmsEnv) -> None:
    with pytest.raises(TypeError, match="must not be pickled"):
        pickle.dumps(alikms.provider())


def test_configuration_errors(alikms: KmsEnv, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ALIBABA_CLOUD_REGION_ID", raising=False)
    monkeypatch.delenv("ENVSTORE_ALIKMS_ENDPOINT", raising=False)
    with pytest.raises(ConfigError, match="region or an endpoint"):
        AliKmsProvider("alikms://k", {"access_key_id": "a", "access_key_secret": "b"})
    with pytest.raises(ConfigError, match="unknown kms_options"):
        AliKmsProvider("alikms://k", {"region_id": "cn-hangzhou", "regoin": "x"})
    with pytest.raises(ConfigError, match="retry_deadline"):
        AliKmsProvider("alikms://k", {"region_id": "cn-hangzhou", "retry_deadline": "soon"})
    with pytest.raises(ConfigError, match="both access_key_id"):
        AliKmsProvider("alikms://k", {"region_id": "cn-hangzhou", "access_key_id": "a"})
    with pytest.raises(ConfigError, match="needs a key id"):
        AliKmsProvider("alikms://", {"region_id": "cn-hangzhou"})
    # region from a key ARN; no network at construction time
    p = AliKmsProvider(
        "alikms://acs:kms:cn-shanghai:123:key/key-x",
        {"access_key_id": "a", "access_key_secret": "b"},
    )
    assert p.client._region_id == "cn-shanghai"


def test_environment_configuration(alikms: KmsEnv, monkeypatch: pytest.MonkeyPatch) -> None:
    server: AliKmsGateway = alikms.server
    monkeypatch.setenv("ENVSTORE_ALIKMS_ENDPOINT", f"http://{server.endpoint}")
    monkeypatch.setenv("ALIBABA_CLOUD_ACCESS_KEY_ID", server.access_key_id)
    monkeypatch.setenv("ALIBABA_CLOUD_ACCESS_KEY_SECRET", server.access_key_secret)
    p = AliKmsProvider(alikms.uri, {"retry_deadline": 1.0})
    key, wrapped = p.generate_data_key(CTX)
    assert p.unwrap(wrapped, CTX) == key


def test_fs_round_trip(alikms: KmsEnv, tmp_path: Path) -> None:
    fs = fsspec.filesystem(
        "envstore",
        target_protocol="file",
        key_uri=alikms.uri,
        kms_options=alikms.kms_options,
        context={"app": "test"},
        skip_instance_cache=True,
    )
    path = str(tmp_path / "data.bin")
    payload = bytes(range(256)) * 300
    with fs.open(path, "wb") as f:
        f.write(payload)
    assert payload not in (tmp_path / "data.bin").read_bytes()
    assert fs.cat_file(path) == payload
    assert fs.cat_file(path, start=1000, end=2000) == payload[1000:2000]
    assert alikms.calls("GenerateDataKey") == 1
    other = fsspec.filesystem(
        "envstore",
        target_protocol="file",
        key_uri=alikms.uri,
        kms_options=alikms.kms_options,
        context={"app": "test"},
        skip_instance_cache=True,
    )
    assert other.cat_file(path) == payload
    wrong = fsspec.filesystem(
        "envstore",
        target_protocol="file",
        key_uri="alikms://key-someoneelse",
        kms_options=alikms.kms_options,
        skip_instance_cache=True,
    )
    with pytest.raises(KeyAccessError):
        wrong.cat_file(path)


def test_missing_instance_sdk_is_a_config_error() -> None:
    """Where the KMS Instance SDK is absent, alikms-instance:// names the extra to install."""
    import importlib.util

    if importlib.util.find_spec("sdk") is not None:
        pytest.skip("the KMS Instance SDK is installed here")
    with pytest.raises(ConfigError, match=r"envstore\[alikms-instance\]"):
        get_provider("alikms-instance://key-x", {"alikms-instance": {"endpoint": "h:1"}})
