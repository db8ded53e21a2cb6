"""``rsa://`` legacy keys: key-file checks, decryption paddings, never a wrapping key."""

from __future__ import annotations

import os
from pathlib import Path

import fsspec
import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from envstore.errors import ConfigError, KeyAccessError
from envstore.keys import get_provider
from envstore.keys.rsa import RsaKeyProvider


def _write(path: Path, data: bytes, mode: int = 0o600) -> str:
    path.write_bytes(data)
    path.chmod(mode)
    return f"rsa://{path}"


@pytest.fixture
def key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _pem(key: rsa.RSAPrivateKey, password: bytes | None = None) -> bytes:
    enc = (
        serialization.BestAvailableEncryption(password)
        if password
        else serialization.NoEncryption()
    )
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, enc)


@pytest.mark.parametrize(
    "name,pad",
    [
        ("pkcs1v15", padding.PKCS1v15()),
        ("oaep-sha1", padding.OAEP(padding.MGF1(hashes.SHA1()), hashes.SHA1(), None)),
        ("oaep-sha256", padding.OAEP(padding.MGF1(hashes.SHA1()), hashes.SHA256(), None)),
    ],
)
def test_decrypts_each_padding(tmp_path: Path, key: rsa.RSAPrivateKey, name: str, pad) -> None:
    provider = get_provider(_write(tmp_path / "k.pem", _pem(key)))
    assert isinstance(provider, RsaKeyProvider)
    blob = key.public_key().encrypt(b"k" * 32, pad)
    assert provider.decrypt(blob, name) == bytearray(b"k" * 32)


def test_wrong_key_or_padding_is_key_access_error(tmp_path: Path, key: rsa.RSAPrivateKey) -> None:
    provider = get_provider(_write(tmp_path / "k.pem", _pem(key)))
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    oaep = padding.OAEP(padding.MGF1(hashes.SHA1()), hashes.SHA1(), None)
    with pytest.raises(KeyAccessError) as err:
        provider.decrypt(other.public_key().encrypt(b"x" * 32, oaep), "oaep-sha1")
    assert "x" * 32 not in str(err.value)


def test_key_file_checks(tmp_path: Path, key: rsa.RSAPrivateKey, monkeypatch) -> None:
    with pytest.raises(ConfigError, match="chmod 600"):
        RsaKeyProvider(_write(tmp_path / "open.pem", _pem(key), 0o644))
    with pytest.raises(ConfigError, match="not found"):
        RsaKeyProvider(f"rsa://{tmp_path / 'missing.pem'}")
    with pytest.raises(ConfigError, match="absolute path"):
        RsaKeyProvider("rsa://relative.pem")
    with pytest.raises(ConfigError, match="not a PEM RSA private key"):
        RsaKeyProvider(_write(tmp_path / "junk.pem", b"-----BEGIN JUNK-----\n"))
    locked = _write(tmp_path / "locked.pem", _pem(key, b"pw"))
    with pytest.raises(ConfigError, match="password"):
        RsaKeyProvider(locked)
    monkeypatch.setenv("LEGACY_PW", "pw")
    assert RsaKeyProvider(locked, {"password_env": "LEGACY_PW"}).key_id.startswith("rsa:")


def test_never_wraps_envstore_objects(tmp_path: Path, key: rsa.RSAPrivateKey) -> None:
    uri = _write(tmp_path / "k.pem", _pem(key))
    provider = get_provider(uri)
    with pytest.raises(ConfigError, match="only unwrap legacy objects"):
        provider.generate_data_key({})
    fs = fsspec.filesystem(
        "envstore", target_protocol="memory", key_uri=uri, skip_instance_cache=True
    )
    with pytest.raises(ConfigError, match="only unwrap legacy objects"):
        fs.pipe_file(f"/rsa-{os.getpid()}/x", b"data")
    assert repr(provider) == f"<RsaKeyProvider {uri}>"
    with pytest.raises(TypeError):
        import pickle

        pickle.dumps(provider)
