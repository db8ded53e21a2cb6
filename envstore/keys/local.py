"""Local master keys: ``local:///abs/path/master.key`` and ``env://VAR``.

The master key is 32 random bytes, stored base64-encoded (one line) in a file with mode 0600
written by ``envstore keygen``, or held base64-encoded in an environment variable.  Data keys
are wrapped with AES-256-GCM under the master key: ``blob = nonce(12) || ciphertext+tag(48)``,
AAD = ``b"envstore-local-wrap/v1\\x00" + key_id + b"\\x00" + canonical_context``.  The key id
is a fingerprint of the master key (never the path), so a key moved to another path or into an
environment variable still opens its objects.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import secrets
import stat
from collections.abc import Mapping
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from envstore.errors import ConfigError, IntegrityError, KeyAccessError
from envstore.keys.base import DATA_KEY_BYTES, KeyProvider, WrappedKey, canonical_context
from envstore.keys.uri import describe_uri, looks_like_key

MASTER_KEY_BYTES = 32
_WRAP_AAD = b"envstore-local-wrap/v1\x00"


def default_key_path() -> Path:
    """``$XDG_CONFIG_HOME/envstore/master.key`` (``~/.config/envstore/master.key``)."""
    base = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return Path(base) / "envstore" / "master.key"


def default_key_uri() -> str:
    return "local://" + default_key_path().as_posix()


def keygen(path: str | os.PathLike[str] | None = None) -> Path:
    """Write a new master key file (mode 0600). Refuses to overwrite an existing file."""
    target = Path(path) if path is not None else default_key_path()
    target = target.expanduser().absolute()
    target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    line = base64.b64encode(secrets.token_bytes(MASTER_KEY_BYTES)) + b"\n"
    try:
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise ConfigError(f"{target} already exists; refusing to overwrite a key") from None
    with os.fdopen(fd, "wb") as f:
        f.write(line)
    return target


def _decode_master(text: bytes, where: str) -> bytes:
    try:
        key = base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise ConfigError(f"{where} does not hold a base64 master key") from None
    if len(key) != MASTER_KEY_BYTES:
        raise ConfigError(f"{where} must hold a {MASTER_KEY_BYTES}-byte key, base64-encoded")
    return key


def fingerprint(master: bytes) -> str:
    digest = hmac.new(master, b"envstore key fingerprint v1", hashlib.sha256).digest()
    return "fp:" + digest[:12].hex()


def check_uri(uri: str) -> tuple[str, str]:
    """``(scheme, rest)`` of a ``local://`` or ``env://`` URI whose syntax is valid (no I/O):
    an absolute path, a variable name; ConfigError (never echoing the URI) otherwise."""
    scheme, _, rest = uri.partition("://")
    if scheme == "env":
        if not rest:
            raise ConfigError("env:// key URI needs a variable name: env://VAR")
        if looks_like_key(rest) or "=" in rest:
            raise ConfigError(
                f"env:// key URI needs a variable name (env://VAR), got {describe_uri(uri)}"
            )
    elif not rest.startswith("/") or looks_like_key(rest):
        raise ConfigError(
            f"local key URI needs an absolute path: local:///abs/path; got {describe_uri(uri)}"
        )
    return scheme, rest


class LocalKeyProvider(KeyProvider):
    """A master key from a file (``local:///path``) or an environment variable (``env://VAR``)."""

    family = "local"

    def __init__(self, uri: str, options: Mapping[str, object] | None = None) -> None:
        super().__init__(uri, options)
        scheme, rest = check_uri(uri)
        if scheme == "env":
            value = os.environ.get(rest)
            if value is None:
                raise ConfigError(f"environment variable {rest} (from env://{rest}) is not set")
            master = _decode_master(value.encode(), f"environment variable {rest}")
        else:
            path = Path(rest)
            try:
                mode = path.stat().st_mode
                data = path.read_bytes()
            except FileNotFoundError:
                raise ConfigError(
                    f"key file {path} not found; create one with: envstore keygen {path}"
                ) from None
            if mode & (stat.S_IRWXG | stat.S_IRWXO):
                raise ConfigError(f"key file {path} is readable by others; chmod 600 it")
            master = _decode_master(data, f"key file {path}")
        self._aead = AESGCM(master)
        self._key_id = fingerprint(master)
        del master

    @property
    def key_id(self) -> str:
        return self._key_id

    def matches(self, wrapped: WrappedKey) -> bool:
        return wrapped.provider == self.family and wrapped.key_id == self._key_id

    def _aad(self, context: Mapping[str, str]) -> bytes:
        return _WRAP_AAD + self._key_id.encode() + b"\x00" + canonical_context(context)

    def generate_data_key(self, context: Mapping[str, str]) -> tuple[bytearray, WrappedKey]:
        data_key = bytearray(secrets.token_bytes(DATA_KEY_BYTES))
        return data_key, self.wrap(data_key, context)

    def wrap(self, data_key: bytes | bytearray, context: Mapping[str, str]) -> WrappedKey:
        nonce = secrets.token_bytes(12)
        blob = nonce + self._aead.encrypt(nonce, bytes(data_key), self._aad(context))
        return WrappedKey(self.family, self._key_id, blob)

    def unwrap(self, wrapped: WrappedKey, context: Mapping[str, str]) -> bytearray:
        if not self.matches(wrapped):
            raise KeyAccessError(f"object was wrapped by key {wrapped.key_id}, not {self._key_id}")
        if len(wrapped.blob) != 12 + DATA_KEY_BYTES + 16:
            raise IntegrityError(
                f"the data key wrapped for local key {self._key_id} has the wrong length: "
                "the envelope was altered"
            )
        try:
            plain = self._aead.decrypt(wrapped.blob[:12], wrapped.blob[12:], self._aad(context))
        except InvalidTag:
            # the recipient names this very key, so the envelope was altered (context or blob)
            raise IntegrityError(
                f"local key {self._key_id} cannot unwrap the data key: the envelope's wrapped "
                "key or encryption context was altered"
            ) from None
        return bytearray(plain)
