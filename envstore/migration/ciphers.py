"""Streaming decryptors for legacy object bodies, with every check the formats allow.

Each decoder takes the stored bytes in order (``update``) and returns plaintext; ``finalize``
runs the end-of-object checks and raises :class:`IntegrityError` when one fails.  Only GCM
authenticates: a GCM decoder's output must be held back (staged) until ``finalize`` returns.
CTR and CBC bodies carry no authentication; their decoders check what the envelope recorded
(lengths, a plaintext MD5, the store's CRC64 of the stored bytes) and nothing else.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from typing import Any, Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import padding as sympadding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from envstore.errors import IntegrityError

BLOCK = 16
TAG = 16


class Decoder(Protocol):
    #: True where ``finalize`` authenticates the whole object (GCM)
    authenticated: bool

    def update(self, stored: bytes) -> bytes | memoryview: ...

    def finalize(self) -> bytes: ...


class _Checks:
    """Length, plaintext MD5 and stored-bytes CRC64 checks shared by CTR and CBC."""

    def __init__(self, plain_len: int | None, md5_b64: str | None, crc64: str | None) -> None:
        self.plain_len = plain_len
        self.md5 = hashlib.md5(usedforsecurity=False) if md5_b64 else None
        self.md5_b64 = md5_b64
        self.crc = None
        self.crc_expected = crc64
        if crc64:
            from oss2.utils import Crc64

            self.crc = Crc64(0)
        self.stored = 0
        self.plain = 0

    def saw_stored(self, data: bytes) -> None:
        self.stored += len(data)
        if self.crc is not None:
            self.crc.update(data)

    def saw_plain(self, data: bytes) -> None:
        self.plain += len(data)
        if self.md5 is not None:
            self.md5.update(data)

    def check(self) -> None:
        if self.plain_len is not None and self.plain != self.plain_len:
            raise IntegrityError(
                f"legacy object holds {self.plain} plaintext bytes, its envelope says "
                f"{self.plain_len}: truncated or extended"
            )
        if self.md5 is not None and self.md5_b64 is not None:
            got = base64.b64encode(self.md5.digest()).decode("ascii")
            if not hmac.compare_digest(got, self.md5_b64.strip()):
                raise IntegrityError("legacy object's plaintext does not match its stored MD5")
        if self.crc is not None and self.crc_expected is not None:
            if str(self.crc.crc) != self.crc_expected.strip():
                raise IntegrityError("legacy object's stored bytes do not match their CRC64")


class CtrDecoder:
    """AES-256-CTR with a 128-bit big-endian counter starting at ``iv`` (oss2 CryptoBucket)."""

    authenticated = False

    def __init__(self, key: bytes | bytearray, iv: bytes, checks: _Checks) -> None:
        if len(key) != 32 or len(iv) != BLOCK:
            raise IntegrityError("oss2 envelope: the data key or IV has the wrong length")
        self._dec = Cipher(algorithms.AES(bytes(key)), modes.CTR(iv)).decryptor()
        self.checks = checks

    def update(self, stored: bytes) -> bytes:
        self.checks.saw_stored(stored)
        out = self._dec.update(stored)
        self.checks.saw_plain(out)
        return out

    def finalize(self) -> bytes:
        self._dec.finalize()
        self.checks.check()
        return b""


class CbcDecoder:
    """AES-256-CBC with PKCS#5/7 padding (S3EC v1): the last block is held until the end."""

    authenticated = False

    def __init__(self, key: bytes | bytearray, iv: bytes, checks: _Checks) -> None:
        if len(key) != 32 or len(iv) != BLOCK:
            raise IntegrityError("S3EC envelope: the data key or IV has the wrong length")
        self._dec = Cipher(algorithms.AES(bytes(key)), modes.CBC(iv)).decryptor()
        self._unpad = sympadding.PKCS7(128).unpadder()
        self.checks = checks

    def update(self, stored: bytes) -> bytes:
        self.checks.saw_stored(stored)
        out = self._unpad.update(self._dec.update(stored))
        self.checks.saw_plain(out)
        return out

    def finalize(self) -> bytes:
        if self.checks.stored == 0 or self.checks.stored % BLOCK:
            raise IntegrityError(
                f"S3EC CBC object is {self.checks.stored} bytes, not a positive multiple of 16: "
                "truncated or extended"
            )
        try:
            out = self._unpad.update(self._dec.finalize()) + self._unpad.finalize()
        except ValueError:
            raise IntegrityError("S3EC CBC object has bad padding: altered or wrong key") from None
        self.checks.saw_plain(out)
        self.checks.check()
        return out


class GcmDecoder:
    """AES-256-GCM, body = ciphertext || 16-byte tag (S3EC v2/v3). ``finalize`` authenticates;
    nothing it returned before may be released until then."""

    authenticated = True

    def __init__(
        self, key: bytes | bytearray, iv: bytes, aad: bytes, plain_len: int | None
    ) -> None:
        if len(key) != 32 or len(iv) != 12:
            raise IntegrityError("S3EC envelope: the data key or IV has the wrong length")
        self._dec: Any = Cipher(algorithms.AES(bytes(key)), modes.GCM(iv)).decryptor()
        if aad:
            self._dec.authenticate_additional_data(aad)
        self._tail = b""
        self.plain_len = plain_len
        self.plain = 0

    def update(self, stored: bytes) -> bytes | memoryview:
        """Everything but the last 16 bytes seen so far (the tag candidate) is decrypted into
        one buffer, without copying the input."""
        view = memoryview(stored)
        if len(view) < TAG:
            data = self._tail + bytes(view)
            cut = max(0, len(data) - TAG)
            self._tail = data[cut:]
            out: bytes | memoryview = self._dec.update(data[:cut])
        else:
            buf = bytearray(len(self._tail) + len(view) + BLOCK)
            n = self._dec.update_into(self._tail, buf) if self._tail else 0
            n += self._dec.update_into(view[:-TAG], memoryview(buf)[n:])
            self._tail = bytes(view[-TAG:])
            out = memoryview(buf)[:n]
        self.plain += len(out)
        return out

    def finalize(self) -> bytes:
        if len(self._tail) != TAG:
            raise IntegrityError("S3EC GCM object is shorter than its tag: truncated")
        if self.plain_len is not None and self.plain != self.plain_len:
            raise IntegrityError(
                f"S3EC GCM object holds {self.plain} plaintext bytes, its envelope says "
                f"{self.plain_len}: truncated or extended"
            )
        try:
            return self._dec.finalize_with_tag(self._tail)
        except InvalidTag:
            raise IntegrityError(
                "S3EC GCM object failed authentication: altered, truncated or wrong key"
            ) from None


def checks(plain_len: int | None, md5_b64: str | None = None, crc64: str | None = None) -> _Checks:
    return _Checks(plain_len, md5_b64, crc64)
