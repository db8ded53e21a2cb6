"""The keys that open legacy envelopes (``legacy_key_uris``): unwrap only, never wrap.

* ``rsa:///key.pem``: RSA private key (oss2 ``RsaProvider``/``LocalRsaProvider``, S3EC RSA);
* ``awskms://KEY``: AWS KMS ``Decrypt`` with the stored material description as encryption
  context (S3EC ``kms`` / ``kms+context``);
* ``alikms://KEY``: Alibaba KMS ``Decrypt`` of the ciphertext blobs oss2's ``AliKMSProvider``
  stores (data key and IV, each the base64 text of the bytes);
* ``local:///file`` / ``env://VAR``: a raw 256-bit AES key, base64 (S3EC ``AES/GCM``,
  ``AESWrap`` and legacy ``AES`` wraps).

``kms_options`` apply as to envstore's own key URIs.  Raw key bytes stay inside this object
(never in a message, repr or pickle).
"""

from __future__ import annotations

import base64
import binascii
import os
from collections.abc import Callable, Iterable, Mapping
from typing import Any, TypeVar

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import padding as sympadding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.keywrap import InvalidUnwrap, aes_key_unwrap

from envstore.errors import ConfigError, EnvstoreError, KeyAccessError
from envstore.keys import get_provider, scheme_of
from envstore.keys.base import WrappedKey

T = TypeVar("T")
_SCHEMES = ("rsa", "awskms", "alikms", "local", "env")


def _raw_local_key(uri: str, kms_options: Mapping[str, Any] | None) -> bytes:
    """The 32 raw bytes behind a local:// or env:// URI (validated like a master key)."""
    from envstore.keys.local import _decode_master

    get_provider(uri, kms_options)  # the same checks as for envstore keys (0600, format)
    scheme, _, rest = uri.partition("://")
    if scheme == "env":
        return _decode_master(os.environ[rest].encode(), f"environment variable {rest}")
    with open(rest, "rb") as f:
        return _decode_master(f.read(), f"key file {rest}")


class LegacyKeys:
    """Legacy key URIs, grouped by scheme; each method tries every key of its kind."""

    def __init__(
        self, uris: Iterable[str], kms_options: Mapping[str, Mapping[str, Any]] | None = None
    ) -> None:
        self.uris = [uris] if isinstance(uris, str) else list(uris)
        if not self.uris:
            raise ConfigError("migrate needs at least one legacy key URI (legacy_key_uris)")
        self.kms_options = dict(kms_options or {})
        self._by_scheme: dict[str, list[str]] = {}
        for uri in self.uris:
            scheme = scheme_of(uri)
            if scheme not in _SCHEMES:
                raise ConfigError(
                    f"{scheme}:// cannot be a legacy key URI; use one of "
                    + ", ".join(f"{s}://" for s in _SCHEMES)
                )
            self._by_scheme.setdefault("local" if scheme == "env" else scheme, []).append(uri)
        self._raw = [_raw_local_key(u, self.kms_options) for u in self._by_scheme.get("local", [])]
        for uri in self._by_scheme.get("rsa", []):
            get_provider(uri, self.kms_options)  # fail early on a bad key file

    def __repr__(self) -> str:
        return f"<LegacyKeys {self.uris}>"

    def __reduce__(self) -> Any:
        raise TypeError("LegacyKeys must not be pickled; pickle the key URIs")

    def _try(self, kind: str, what: str, attempts: list[Callable[[], T]]) -> T:
        if not attempts:
            raise KeyAccessError(f"{what}: no {kind} key among the legacy key URIs")
        last: EnvstoreError | None = None
        for attempt in attempts:
            try:
                return attempt()
            except EnvstoreError as exc:
                last = exc
        raise KeyAccessError(f"{what}: no legacy {kind} key opens it ({last})")

    # -- RSA ----------------------------------------------------------------------------------
    def rsa(self, blob: bytes, scheme: str, size: int | None = None) -> bytearray:
        """RSA-decrypt with each rsa:// key.  ``size``: the length the plaintext must have
        (PKCS#1 v1.5 decryption with a wrong key returns random bytes instead of failing)."""

        def one(uri: str) -> Callable[[], bytearray]:
            def attempt() -> bytearray:
                out = get_provider(uri, self.kms_options).decrypt(blob, scheme)  # type: ignore[attr-defined]
                if size is not None and len(out) != size:
                    out[:] = bytes(len(out))
                    raise KeyAccessError(f"{uri} is not the key of this object")
                return out

            return attempt

        return self._try("rsa://", f"RSA ({scheme}) wrapped key", [one(u) for u in self._rsa()])

    def _rsa(self) -> list[str]:
        return self._by_scheme.get("rsa", [])

    # -- AWS KMS ------------------------------------------------------------------------------
    def awskms(self, blob: bytes, context: Mapping[str, str]) -> bytearray:
        wrapped = WrappedKey("awskms", "", bytes(blob))

        def one(uri: str) -> Callable[[], bytearray]:
            return lambda: get_provider(uri, self.kms_options).unwrap(wrapped, context)

        uris = self._by_scheme.get("awskms", [])
        return self._try("awskms://", "AWS KMS wrapped key", [one(u) for u in uris])

    # -- Alibaba KMS --------------------------------------------------------------------------
    def alikms_text(self, blob_text: str, context: Mapping[str, str]) -> str:
        """KMS ``Decrypt`` of a ciphertext blob: the plaintext *text* (oss2 stores base64)."""

        def one(uri: str) -> Callable[[], str]:
            return lambda: _alikms_decrypt(get_provider(uri, self.kms_options), blob_text, context)

        uris = self._by_scheme.get("alikms", [])
        return self._try("alikms://", "Alibaba KMS wrapped key", [one(u) for u in uris])

    # -- raw AES keys -------------------------------------------------------------------------
    def aes_gcm(self, blob: bytes, aad: bytes) -> bytearray:
        """S3EC ``AES/GCM``: ``nonce(12) || ciphertext || tag``, AAD the content cipher name."""
        if len(blob) < 12 + 16:
            raise KeyAccessError("AES/GCM wrapped key is too short")

        def one(raw: bytes) -> Callable[[], bytearray]:
            def attempt() -> bytearray:
                try:
                    return bytearray(AESGCM(raw).decrypt(blob[:12], blob[12:], aad))
                except InvalidTag:
                    raise KeyAccessError("AES/GCM unwrap failed") from None

            return attempt

        return self._try("local://", "AES/GCM wrapped key", [one(r) for r in self._raw])

    def aes_wrap(self, blob: bytes) -> bytearray:
        """S3EC ``AESWrap`` (RFC 3394)."""

        def one(raw: bytes) -> Callable[[], bytearray]:
            def attempt() -> bytearray:
                try:
                    return bytearray(aes_key_unwrap(raw, bytes(blob)))
                except (InvalidUnwrap, ValueError):
                    raise KeyAccessError("AESWrap unwrap failed") from None

            return attempt

        return self._try("local://", "AESWrap wrapped key", [one(r) for r in self._raw])

    def aes_ecb(self, blob: bytes) -> bytearray:
        """S3EC v1 ``AES`` (Java ``AES`` = AES/ECB/PKCS5Padding; unauthenticated)."""

        def one(raw: bytes) -> Callable[[], bytearray]:
            def attempt() -> bytearray:
                if not blob or len(blob) % 16:
                    raise KeyAccessError("AES wrapped key has a bad length")
                dec = Cipher(algorithms.AES(raw), modes.ECB()).decryptor()
                unpad = sympadding.PKCS7(128).unpadder()
                try:
                    out = unpad.update(dec.update(bytes(blob)) + dec.finalize()) + unpad.finalize()
                except ValueError:
                    raise KeyAccessError("AES unwrap failed (bad padding)") from None
                if len(out) != 32:  # a wrong key can leave valid-looking padding
                    raise KeyAccessError("AES unwrap failed (wrong key)")
                return bytearray(out)

            return attempt

        return self._try("local://", "AES wrapped key", [one(r) for r in self._raw])


def _alikms_decrypt(provider: Any, blob_text: str, context: Mapping[str, str]) -> str:
    """One ``Decrypt`` through an :class:`~envstore.keys.alikms.AliKmsProvider`'s client."""
    from alibabacloud_kms20160120 import models as kms_models

    request = kms_models.DecryptRequest(
        ciphertext_blob=blob_text, encryption_context=dict(context) if context else None
    )
    body = provider.call("Decrypt", lambda: provider.client.decrypt(request)).body
    text = str(body.plaintext or "")
    body.plaintext = None
    if not text:
        raise KeyAccessError(f"alikms Decrypt returned no plaintext [request id {body.request_id}]")
    return text


def b64(text: str | None, what: str) -> bytes:
    """Strict base64 of a legacy metadata field (FormatError names the field, not the value)."""
    from envstore.errors import FormatError

    if text is None:
        raise FormatError(f"legacy envelope lacks {what}")
    try:
        return base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise FormatError(f"legacy envelope field {what} is not base64") from None
