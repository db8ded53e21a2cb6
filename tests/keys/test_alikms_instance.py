"""alikms-instance:// (KMS instance, dedicated gateway) against the dkms-gcs-0.2 emulator.

Needs the KMS Instance SDK ``alibabacloud-dkms-gcs`` (second environment, see README):
``/work/venv-kmsi/bin/python -m pytest tests/keys -m kms_instance``.
"""

from __future__ import annotations

import base64
import json
import pickle
import time
from pathlib import Path
from typing import TYPE_CHECKING

import fsspec
import pytest

pytest.importorskip("sdk.client", reason="needs alibabacloud-dkms-gcs (envstore[alikms-instance])")

from envstore import ConfigError, KeyAccessError
from envstore.keys import get_provider
from envstore.keys.alikms_instance import AliKmsInstanceProvider
from envstore.keys.base import WrappedKey, canonical_context
from envstore.keys.ring import KeyRing
from tests.keys.leaks import assert_clean, secret_forms
from tests.servers.dkms_server import DkmsServer

if TYPE_CHECKING:
    from tests.keys.conftest import KmsEnv

pytestmark = [
    pytest.mark.kms_instance,
    # the SDK loads its PKCS#12 ClientKey with pyOpenSSL's deprecated API
    pytest.mark.filterwarnings("ignore::DeprecationWarning:openapi_util.*"),
]

CTX = {"bucket": "b", "path": "t/x.parquet"}


@pytest.mark.parametrize("protocol", ["https", "http"])
def test_generate_and_unwrap(alikms_instance: KmsEnv, protocol: str) -> None:
    server: DkmsServer = alikms_instance.server
    p = alikms_instance.provider(**server.options(protocol, retry_deadline=3.0))
    key, wrapped = p.generate_data_key(CTX)
    assert isinstance(key, bytearray) and len(key) == 32
    assert wrapped.provider == "alikms-instance" and wrapped.key_id == alikms_instance.key_id
    assert wrapped.params["alg"] == "AES_GCM" and len(base64.b64decode(wrapped.params["iv"])) == 12
    assert WrappedKey.decode(wrapped.encode()) == wrapped
    assert p.matches(wrapped)
    assert p.unwrap(wrapped, dict(reversed(list(CTX.items())))) == key
    assert alikms_instance.calls("GenerateDataKey") == 1 and alikms_instance.calls("Decrypt") == 1
    for form in secret_forms(key):
        assert form not in repr(p) and form not in repr(wrapped)


def test_aad_is_the_canonical_context(alikms_instance: KmsEnv) -> None:
    """Another client holding the same ClientKey opens the key with Aad = canonical JSON."""
    import sdk.client
    from openapi import models as openapi_models
    from sdk import models as sdk_models

    server: DkmsServer = alikms_instance.server
    key, wrapped = alikms_instance.provider().generate_data_key(CTX)
    client = sdk.client.Client(
        openapi_models.Config(
            endpoint=server.endpoint("http"),
            protocol="http",
            client_key_file=str(server.client_key.path),
            password=server.client_key.password,
        )
    )
    response = client.decrypt(
        sdk_models.DecryptRequest(
            key_id=wrapped.key_id,
            ciphertext_blob=wrapped.blob,
            iv=base64.b64decode(wrapped.params["iv"]),
            algorithm="AES_GCM",
            aad=canonical_context(CTX),
        )
    )
    assert response.plaintext == bytes(key)


def test_alias_and_matches(alikms_instance: KmsEnv) -> None:
    server: DkmsServer = alikms_instance.server
    server.aliases["alias/inst-" + alikms_instance.key_id] = alikms_instance.key_id
    by_alias = alikms_instance.provider(f"alikms-instance://alias/inst-{alikms_instance.key_id}")
    key, wrapped = by_alias.generate_data_key(CTX)
    assert wrapped.key_id == alikms_instance.key_id
    assert by_alias.matches(wrapped) and by_alias.unwrap(wrapped, CTX) == key
    other = server.create_key()
    assert not alikms_instance.provider(f"alikms-instance://{other}").matches(wrapped)
    # even when called directly, the instance refuses a blob of another key
    with pytest.raises(KeyAccessError, match="InvalidCiphertext"):
        alikms_instance.provider(f"alikms-instance://{other}").unwrap(wrapped, CTX)


def test_wrong_context(alikms_instance: KmsEnv) -> None:
    p = alikms_instance.provider()
    key, wrapped = p.generate_data_key(CTX)
    with pytest.raises(KeyAccessError, match="InvalidCiphertext") as info:
        p.unwrap(wrapped, {**CTX, "path": "other"})
    assert_clean(info.value, key)
    with pytest.raises(KeyAccessError, match="InvalidCiphertext"):
        p.unwrap(wrapped, {})
    bad_iv = WrappedKey(wrapped.provider, wrapped.key_id, wrapped.blob, {"alg": "AES_GCM"})
    with pytest.raises(KeyAccessError, match="iv"):
        p.unwrap(bad_iv, CTX)


def test_unknown_key(alikms_instance: KmsEnv) -> None:
    with pytest.raises(KeyAccessError, match=r"Forbidden\.KeyNotFound") as info:
        alikms_instance.provider("alikms-instance://key-doesnotexist").generate_data_key(CTX)
    assert "request id " in str(info.value) and "request id none" not in str(info.value)


def test_signature_checked(alikms_instance: KmsEnv, tmp_path: Path) -> None:
    server: DkmsServer = alikms_instance.server
    # a ClientKey file that names the issued key id but holds another private key
    other = server.issue_client_key(password=server.client_key.password)
    forged = json.loads(other.content)
    forged["KeyId"] = server.client_key.key_id
    path = tmp_path / "forged.json"
    path.write_text(json.dumps(forged))
    p = alikms_instance.provider(client_key_file=str(path))
    with pytest.raises(KeyAccessError, match="InvalidSignature"):
        p.generate_data_key(CTX)
    server.revoke_client_key(other.key_id)
    revoked = alikms_instance.provider(
        client_key_file=str(other.path), client_key_password=other.password
    )
    with pytest.raises(KeyAccessError, match=r"InvalidAccessKeyId\.NotFound"):
        revoked.generate_data_key(CTX)
    server.inject("InvalidSignature", 1)
    with pytest.raises(KeyAccessError, match="InvalidSignature"):
        alikms_instance.provider().generate_data_key(CTX)
    assert alikms_instance.calls("GenerateDataKey") == 3  # none retried


def test_client_key_content_and_wrong_password(alikms_instance: KmsEnv) -> None:
    server: DkmsServer = alikms_instance.server
    options = dict(alikms_instance.options)
    del options["client_key_file"]
    p = AliKmsInstanceProvider(
        alikms_instance.uri, {**options, "client_key_content": server.client_key.content}
    )
    key, wrapped = p.generate_data_key(CTX)
    assert p.unwrap(wrapped, CTX) == key
    with pytest.raises(ConfigError, match="password") as info:
        alikms_instance.provider(client_key_password="wrong-password")
    assert "wrong-password" not in str(info.value)


def test_throttling_retried(alikms_instance: KmsEnv) -> None:
    server: DkmsServer = alikms_instance.server
    p = alikms_instance.provider()
    server.inject("Rejected.Throttling", 2)
    start = time.monotonic()
    key, wrapped = p.generate_data_key(CTX)
    assert time.monotonic() - start < 1.9  # envstore's backoff, not the SDK's 2 x 1 s sleeps
    assert alikms_instance.calls("GenerateDataKey") == 3
    server.inject("ServiceUnavailable", 1, actions=["Decrypt"])
    assert p.unwrap(wrapped, CTX) == key
    assert alikms_instance.calls("Decrypt") == 2


def test_throttling_gives_up_at_the_deadline(alikms_instance: KmsEnv) -> None:
    p = alikms_instance.provider(retry_deadline=1.0)
    alikms_instance.server.inject("Rejected.Throttling", 1000)
    start = time.monotonic()
    with pytest.raises(KeyAccessError, match=r"Rejected\.Throttling.*gave up after"):
        p.generate_data_key(CTX)
    assert time.monotonic() - start < 3.5


def test_kms_down(tmp_path: Path) -> None:
    server = DkmsServer(tmp_path / "down").start()
    key_id = server.create_key()
    p = AliKmsInstanceProvider(
        f"alikms-instance://{key_id}", server.options("https", retry_deadline=0.5)
    )
    key, wrapped = p.generate_data_key(CTX)
    server.stop()
    for call in (lambda: p.unwrap(wrapped, CTX), lambda: p.wrap(key, CTX)):
        start = time.monotonic()
        with pytest.raises(KeyAccessError, match=r"ConnectionError.*gave up") as info:
            call()
        assert time.monotonic() - start < 3.0
        assert_clean(info.value, key)


def test_closed_port_and_tls_errors(alikms_instance: KmsEnv, closed_port: int) -> None:
    p = alikms_instance.provider(endpoint=f"127.0.0.1:{closed_port}", retry_deadline=0.3)
    start = time.monotonic()
    with pytest.raises(KeyAccessError, match="connection refused"):
        p.generate_data_key(CTX)
    assert time.monotonic() - start < 2.0
    # a TLS verification failure (system CAs do not know the emulator's) is not retried;
    # "localhost" (also in the certificate) because the SDK keeps TLS connections per host:port
    untrusted = dict(alikms_instance.options)
    del untrusted["ca_file"]
    untrusted["endpoint"] = untrusted["endpoint"].replace("127.0.0.1", "localhost")
    q = AliKmsInstanceProvider(alikms_instance.uri, untrusted)
    with pytest.raises(KeyAccessError, match="TLS certificate"):
        q.generate_data_key(CTX)
    assert alikms_instance.calls("GenerateDataKey") == 0


def test_wrap_adds_a_recipient(alikms_instance: KmsEnv, key_uri: str) -> None:
    key, _ = get_provider(key_uri).generate_data_key(CTX)
    p = alikms_instance.provider()
    wrapped = p.wrap(key, CTX)
    assert alikms_instance.calls("Encrypt") == 1
    assert p.unwrap(wrapped, CTX) == key
    with pytest.raises(KeyAccessError, match="InvalidCiphertext"):
        p.unwrap(wrapped, {"other": "ctx"})


def test_ring_two_recipients(alikms_instance: KmsEnv, key_uri: str) -> None:
    opts = alikms_instance.kms_options
    key, recipients = KeyRing([alikms_instance.uri, key_uri], kms_options=opts).new_data_key(CTX)
    assert [r.provider for r in recipients] == ["alikms-instance", "local"]
    assert KeyRing([alikms_instance.uri], kms_options=opts).open_data_key(recipients, CTX) == key
    assert KeyRing([key_uri]).open_data_key(recipients, CTX) == key


def test_key_cache_calls(alikms_instance: KmsEnv) -> None:
    opts = alikms_instance.kms_options
    ring = KeyRing([alikms_instance.uri], kms_options=opts, key_cache={"max_objects": 100})
    for _ in range(200):
        key, recipients = ring.new_data_key(CTX, 1)
    assert alikms_instance.calls("GenerateDataKey") == 2
    reader = KeyRing([alikms_instance.uri], kms_options=opts, key_cache=True)
    for _ in range(50):
        assert reader.open_data_key(recipients, CTX) == key
    assert alikms_instance.calls("Decrypt") == 1


def test_provider_not_picklable(alikms_instance: KmsEnv) -> None:
    with pytest.raises(TypeError, match="must not be pickled"):
        pickle.dumps(alikms_instance.provider())


def test_configuration(
    alikms_instance: KmsEnv, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    for name in ("ENDPOINT", "CLIENT_KEY_FILE", "CLIENT_KEY_PASSWORD", "CA_FILE"):
        monkeypatch.delenv(f"ENVSTORE_ALIKMS_INSTANCE_{name}", raising=False)
    with pytest.raises(ConfigError, match="endpoint"):
        AliKmsInstanceProvider("alikms-instance://k", {})
    with pytest.raises(ConfigError, match="ClientKey"):
        AliKmsInstanceProvider("alikms-instance://k", {"endpoint": "127.0.0.1:1"})
    with pytest.raises(ConfigError, match="unknown kms_options"):
        AliKmsInstanceProvider("alikms-instance://k", {"endpont": "x"})
    with pytest.raises(ConfigError, match="not found"):
        AliKmsInstanceProvider(
            "alikms-instance://k",
            {
                "endpoint": "h:1",
                "client_key_file": str(tmp_path / "no.json"),
                "client_key_password": "x",
            },
        )
    # everything from the environment
    server: DkmsServer = alikms_instance.server
    monkeypatch.setenv("ENVSTORE_ALIKMS_INSTANCE_ENDPOINT", f"https://{server.endpoint()}")
    monkeypatch.setenv("ENVSTORE_ALIKMS_INSTANCE_CLIENT_KEY_FILE", str(server.client_key.path))
    monkeypatch.setenv("ENVSTORE_ALIKMS_INSTANCE_CLIENT_KEY_PASSWORD", server.client_key.password)
    monkeypatch.setenv("ENVSTORE_ALIKMS_INSTANCE_CA_FILE", str(server.ca_file))
    p = AliKmsInstanceProvider(alikms_instance.uri, {"retry_deadline": 1.0})
    key, wrapped = p.generate_data_key(CTX)
    assert p.unwrap(wrapped, CTX) == key


def test_fs_round_trip(alikms_instance: KmsEnv, tmp_path: Path) -> None:
    def efs() -> fsspec.AbstractFileSystem:
        return fsspec.filesystem(
            "envstore",
            target_protocol="file",
            key_uri=alikms_instance.uri,
            kms_options=alikms_instance.kms_options,
            context={"app": "test"},
            skip_instance_cache=True,
        )

    path = str(tmp_path / "data.bin")
    payload = bytes(range(256)) * 300
    with efs().open(path, "wb") as f:
        f.write(payload)
    assert payload not in (tmp_path / "data.bin").read_bytes()
    assert efs().cat_file(path) == payload
    assert efs().cat_file(path, start=5000, end=9000) == payload[5000:9000]
    assert alikms_instance.calls("GenerateDataKey") == 1
