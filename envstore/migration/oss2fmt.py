"""oss2 ``CryptoBucket`` objects (Alibaba OSS client-side encryption, oss2 2.x).

Written from oss2's ``crypto.py``, ``models.py`` (``ContentCryptoMaterial``) and ``utils.py``
(``AESCTRCipher``).  User metadata (``x-oss-meta-`` prefix removed):

* ``client-side-encryption-key``: base64 of the wrapped data key (32 bytes once unwrapped);
* ``client-side-encryption-start``: base64 of the wrapped IV (16 bytes: the initial value of a
  128-bit big-endian counter);
* ``client-side-encryption-cek-alg``: ``AES/CTR/NoPadding``;
* ``client-side-encryption-wrap-alg``: ``RSA/NONE/PKCS1Padding`` (``RsaProvider``),
  ``RSA/NONE/OAEPWithSHA-1AndMGF1Padding`` (``LocalRsaProvider``) or ``KMS/ALICLOUD``
  (``AliKMSProvider``: the wrapped key is a KMS ciphertext blob of the base64 text of the data
  key, the IV a KMS ciphertext blob of the base64 text of the IV);
* optional ``client-side-encryption-unencrypted-content-length`` / ``-unencrypted-content-md5``
  (the plaintext's length and base64 MD5 when the writer sent them), ``-matdesc`` (JSON), and
  for multipart uploads ``-data-size`` (the whole plaintext size) and ``-part-size`` (a
  multiple of 16: part *n* continues the same counter stream at ``iv + offset / 16``).

Pre-2.9 objects use ``oss-crypto-key``, ``oss-crypto-start``, ``oss-cek-alg``,
``oss-wrap-alg`` (``kms`` or RSA OAEP), ``oss-crypto-unencrypted-content-*``; their "start" is
the initial counter as wrapped decimal text, and KMS blobs are stored as they are.
CTR has no authentication: the body is checked against the recorded lengths, the MD5 and the
store's CRC64 of the stored bytes where present, and is reported as unauthenticated.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping

from envstore.errors import FormatError, IntegrityError
from envstore.migration.base import Legacy, plain_int
from envstore.migration.ciphers import BLOCK, CtrDecoder, Decoder, checks
from envstore.migration.legacy_keys import LegacyKeys, b64

CEK_ALG = "AES/CTR/NoPadding"
_RSA = {
    "RSA/NONE/PKCS1Padding": "pkcs1v15",
    "RSA/NONE/OAEPWithSHA-1AndMGF1Padding": "oaep-sha1",
}
KMS = "KMS/ALICLOUD"
_NEW = "client-side-encryption-"
_OLD = {
    "key": "oss-crypto-key",
    "start": "oss-crypto-start",
    "cek-alg": "oss-cek-alg",
    "wrap-alg": "oss-wrap-alg",
    "unencrypted-content-length": "oss-crypto-unencrypted-content-length",
    "unencrypted-content-md5": "oss-crypto-unencrypted-content-md5",
}


def detect(meta: Mapping[str, str]) -> bool:
    return _NEW + "key" in meta or _OLD["key"] in meta


def _fields(meta: Mapping[str, str]) -> tuple[dict[str, str], bool]:
    """The envelope under the current names, and whether it used the pre-2.9 names."""
    if _NEW + "key" in meta:
        return {k[len(_NEW) :]: v for k, v in meta.items() if k.startswith(_NEW)}, False
    return {short: meta[long] for short, long in _OLD.items() if long in meta}, True


def _text_b64(text: str, what: str) -> bytes:
    try:
        return base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise IntegrityError(f"KMS returned a {what} that is not base64") from None


def _counter(text: bytes | bytearray | str) -> bytes:
    """Pre-2.9 objects wrap the initial counter as decimal text, not the IV bytes."""
    raw = text.decode("ascii", "replace") if isinstance(text, (bytes, bytearray)) else text
    if not raw.strip().isdigit() or len(raw.strip()) > 39:
        raise IntegrityError("oss2 envelope: the unwrapped counter is not a number (wrong key?)")
    return (int(raw.strip()) % (1 << 128)).to_bytes(BLOCK, "big")


def _unwrap_rsa(
    env: Mapping[str, str], old: bool, scheme: str, keys: LegacyKeys
) -> tuple[bytearray, bytes]:
    key = keys.rsa(b64(env.get("key"), "key"), scheme, 32)
    start = b64(env.get("start"), "start")
    if old:
        return key, _counter(keys.rsa(start, scheme))
    return key, bytes(keys.rsa(start, scheme, BLOCK))


def _unwrap_kms(env: Mapping[str, str], old: bool, keys: LegacyKeys) -> tuple[bytearray, bytes]:
    blob = env.get("key") or ""
    start = env.get("start") or ""
    if not old:  # the headers hold base64 of the blob text
        blob = b64(blob, "key").decode("ascii", "replace")
        start = b64(start, "start").decode("ascii", "replace")
    key = bytearray(_text_b64(keys.alikms_text(blob, {}), "data key"))
    iv_text = keys.alikms_text(start, {})
    return key, _counter(iv_text) if old else _text_b64(iv_text, "IV")


def _unwrap(env: Mapping[str, str], old: bool, keys: LegacyKeys) -> tuple[bytearray, bytes]:
    wrap = env.get("wrap-alg") or ""
    if old and wrap != "kms":
        wrap = "RSA/NONE/OAEPWithSHA-1AndMGF1Padding"
    if wrap in _RSA:
        return _unwrap_rsa(env, old, _RSA[wrap], keys)
    if wrap in (KMS, "kms"):
        return _unwrap_kms(env, old, keys)
    raise FormatError(f"oss2 envelope: unsupported key wrap algorithm {wrap!r}")


def _check_sizes(env: Mapping[str, str], stored: int) -> int:
    plain = plain_int(env, "unencrypted-content-length")
    data_size = plain_int(env, "data-size")
    part_size = plain_int(env, "part-size")
    if part_size is not None and (part_size == 0 or part_size % BLOCK):
        raise IntegrityError(f"oss2 envelope: part size {part_size} is not a multiple of 16")
    for name, value in (("unencrypted-content-length", plain), ("data-size", data_size)):
        if value is not None and value != stored:
            raise IntegrityError(
                f"oss2 object is {stored} bytes but its envelope's {name} says {value}: "
                "truncated or extended"
            )
    return stored


def parse(meta: Mapping[str, str], stored: int, crc64: str | None) -> Legacy:
    """The envelope of an oss2 CryptoBucket object (``meta`` without ``x-oss-meta-``)."""
    env, old = _fields(meta)
    cek = env.get("cek-alg")
    if cek not in (CEK_ALG, None) and not (old and cek == "AES/GCM/NoPadding"):
        raise FormatError(f"oss2 envelope: unsupported content cipher {cek!r}")
    plain = _check_sizes(env, stored)
    md5 = env.get("unencrypted-content-md5")

    def open_(keys: LegacyKeys) -> Decoder:
        key, iv = _unwrap(env, old, keys)
        try:
            return CtrDecoder(key, iv, checks(plain, md5, crc64))
        finally:
            key[:] = bytes(len(key))

    return Legacy("oss2-ctr", stored, plain, False, open_)
