"""RSA private keys for *unwrapping legacy objects only*: ``rsa:///abs/path/private.pem``.

Used by ``envstore migrate`` to open data keys wrapped by oss2's ``RsaProvider`` (PKCS#1 v1.5)
and ``LocalRsaProvider`` (OAEP, SHA-1), and by the Amazon S3 Encryption Client's RSA keyrings
(``RSA-OAEP-SHA1``, ``RSA/ECB/OAEPWithSHA-256AndMGF1Padding``, legacy ``RSA``).  The key file is
a PEM private key (PKCS#1 or PKCS#8) that, like a ``local://`` key file, must not be readable by
group or others (chmod 600).  An encrypted PEM takes its password from the environment variable
named by ``kms_options["rsa"]["password_env"]``.

An ``rsa://`` key never wraps anything: envstore objects are wrapped by ``local://``,
``env://`` or a KMS key.
"""

from __future__ import annotations

import hashlib
import os
import stat
from collections.abc import Mapping
from pathlib import Path

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from envstore.errors import ConfigError, KeyAccessError
from envstore.keys.base import KeyProvider, WrappedKey

#: padding name -> what ``decrypt`` uses
PADDINGS = ("pkcs1v15", "oaep-sha1", "oaep-sha256")

_LEGACY_ONLY = (
    "rsa:// keys only unwrap legacy objects (envstore migrate --legacy-key-uri); "
    "wrap envstore objects with local://, env:// or a KMS key"
)


def _padding(name: str) -> padding.AsymmetricPadding:
    if name == "pkcs1v15":
        return padding.PKCS1v15()
    if name == "oaep-sha1":
        return padding.OAEP(padding.MGF1(hashes.SHA1()), hashes.SHA1(), None)
    if name == "oaep-sha256":  # Java's RSA/ECB/OAEPWithSHA-256AndMGF1Padding: MGF1 with SHA-1
        return padding.OAEP(padding.MGF1(hashes.SHA1()), hashes.SHA256(), None)
    raise ConfigError(f"unknown RSA padding {name!r}; one of {PADDINGS}")


def _password(options: Mapping[str, object]) -> bytes | None:
    var = options.get("password_env")
    if var is None:
        return None
    value = os.environ.get(str(var))
    if value is None:
        raise ConfigError(f"environment variable {var} (kms_options['rsa']) is not set")
    return value.encode()


class RsaKeyProvider(KeyProvider):
    """An RSA private key file that opens legacy wrapped data keys."""

    family = "rsa"

    def __init__(self, uri: str, options: Mapping[str, object] | None = None) -> None:
        super().__init__(uri, options)
        unknown = sorted(set(self.options) - {"password_env"})
        if unknown:
            raise ConfigError(f"unknown kms_options['rsa'] option(s) {unknown}: password_env")
        rest = uri.partition("://")[2]
        if not rest.startswith("/"):
            raise ConfigError(f"rsa key URI needs an absolute path: rsa:///abs/key.pem ({uri})")
        path = Path(rest)
        try:
            mode = path.stat().st_mode
            data = path.read_bytes()
        except FileNotFoundError:
            raise ConfigError(f"RSA key file {path} not found") from None
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise ConfigError(f"key file {path} is readable by others; chmod 600 it")
        try:
            key = serialization.load_pem_private_key(data, password=_password(self.options))
        except (ValueError, TypeError):
            raise ConfigError(
                f"{path} is not a PEM RSA private key (or its password is wrong or missing)"
            ) from None
        if not isinstance(key, rsa.RSAPrivateKey):
            raise ConfigError(f"{path} holds a {type(key).__name__}, not an RSA private key")
        self._key = key
        public = key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        self._key_id = "rsa:" + hashlib.sha256(public).hexdigest()[:24]

    @property
    def key_id(self) -> str:
        return self._key_id

    def decrypt(self, blob: bytes, scheme: str) -> bytearray:
        """RSA-decrypt ``blob`` with the padding ``scheme`` (one of :data:`PADDINGS`)."""
        try:
            return bytearray(self._key.decrypt(bytes(blob), _padding(scheme)))
        except ValueError:
            raise KeyAccessError(
                f"RSA key {self._key_id} cannot unwrap this data key ({scheme})"
            ) from None

    # -- KeyProvider: never for envstore objects -------------------------------------------
    def generate_data_key(self, context: Mapping[str, str]) -> tuple[bytearray, WrappedKey]:
        raise ConfigError(_LEGACY_ONLY)

    def wrap(self, data_key: bytes | bytearray, context: Mapping[str, str]) -> WrappedKey:
        raise ConfigError(_LEGACY_ONLY)

    def unwrap(self, wrapped: WrappedKey, context: Mapping[str, str]) -> bytearray:
        raise KeyAccessError(_LEGACY_ONLY)

    def matches(self, wrapped: WrappedKey) -> bool:
        return False
