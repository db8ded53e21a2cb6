"""Amazon S3 Encryption Client objects: formats V1, V2 and V3, in metadata or instruction files.

Written from the S3EC specification (aws-encryption-sdk-specification, ``s3-encryption/``:
``data-format/content-metadata.md``, ``metadata-strategy.md``, ``materials/*keyring*.md``,
``key-derivation.md``) and the clients' keyrings.  Fields (user metadata without
``x-amz-meta-``, or the JSON of ``<key>.instruction``):

* V1: ``x-amz-key`` (wrapped key), ``x-amz-iv``, ``x-amz-matdesc``, optional
  ``x-amz-unencrypted-content-length``; content AES/CBC/PKCS5Padding; key wrapped by
  ``x-amz-wrap-alg`` if present, else legacy ``AES`` (ECB) or ``RSA`` (PKCS#1 v1.5).
* V2: ``x-amz-key-v2``, ``x-amz-iv``, ``x-amz-matdesc``, ``x-amz-wrap-alg``, ``x-amz-cek-alg``
  (``AES/GCM/NoPadding`` with ``x-amz-tag-len`` 128, or ``AES/CBC/PKCS5Padding``).
* V3 (S3EC v4 clients): ``x-amz-c`` = ``115`` (AES-256-GCM, HKDF-SHA512, key commitment),
  ``x-amz-3`` (wrapped key), ``x-amz-w`` (``12`` = kms+context), ``x-amz-t`` (encryption
  context), ``x-amz-d`` (commitment), ``x-amz-i`` (message id); the first three of those stay
  in the object's metadata when an instruction file holds the rest.

Key wraps: ``kms`` / ``kms+context`` (AWS KMS ``Decrypt`` with the stored material
description / encryption context as EncryptionContext; for ``kms+context`` its
``aws:x-amz-cek-alg`` must name the object's content cipher), ``AES/GCM`` (``nonce(12) ||
ciphertext || tag``, AAD = the content cipher name), ``AESWrap``, ``RSA-OAEP-SHA1`` (the
plaintext is ``len(key) || key || content cipher name``), ``RSA/ECB/OAEPWithSHA-256AndMGF1Padding``.
GCM bodies are ``ciphertext || tag``, no AAD (V3: AAD = the suite id, IV twelve 0x01 bytes, key
derived with HKDF and checked against the stored commitment).
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Mapping

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDFExpand

from envstore.errors import FormatError, IntegrityError, KeyAccessError
from envstore.migration.base import Legacy, plain_int
from envstore.migration.ciphers import TAG, CbcDecoder, Decoder, GcmDecoder, checks
from envstore.migration.legacy_keys import LegacyKeys, b64

GCM = "AES/GCM/NoPadding"
CBC = "AES/CBC/PKCS5Padding"
V3_SUITE = b"\x00\x73"
INSTRUCTION_SUFFIX = ".instruction"
_V3_WRAP = {"02": "AES/GCM", "12": "kms+context", "22": "RSA-OAEP-SHA1"}
_MAX_INSTRUCTION = 64 * 1024


def detect(meta: Mapping[str, str]) -> bool:
    """Whether the object metadata alone holds an S3EC envelope."""
    return any(k in meta for k in ("x-amz-key", "x-amz-key-v2", "x-amz-3"))


def wants_instruction(meta: Mapping[str, str]) -> bool:
    """V3 objects whose key lives in an instruction file keep ``x-amz-c`` in metadata."""
    return "x-amz-c" in meta and "x-amz-3" not in meta


def parse_instruction(data: bytes) -> dict[str, str]:
    if len(data) > _MAX_INSTRUCTION:
        raise FormatError("S3EC instruction file is too large")
    try:
        doc = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise FormatError("S3EC instruction file is not JSON") from None
    if not isinstance(doc, dict) or not all(isinstance(v, str) for v in doc.values()):
        raise FormatError("S3EC instruction file is not a JSON object of strings")
    return {str(k).lower(): v for k, v in doc.items()}


def _json_map(text: str | None, what: str) -> dict[str, str]:
    if not text:
        return {}
    try:
        value = json.loads(text)
    except ValueError:
        raise FormatError(f"S3EC {what} is not JSON") from None
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        raise FormatError(f"S3EC {what} is not a JSON object of strings")
    return value


def _version(env: Mapping[str, str]) -> int:
    found = [v for k, v in (("x-amz-key", 1), ("x-amz-key-v2", 2), ("x-amz-3", 3)) if k in env]
    if len(found) != 1:
        raise FormatError("S3EC envelope names no single format version (V1/V2/V3 keys mixed)")
    return found[0]


def _kms_context(env: Mapping[str, str], wrap: str, cipher: str, version: int) -> dict[str, str]:
    context = _json_map(env.get("x-amz-t" if version == 3 else "x-amz-matdesc"), "context")
    named = context.get("aws:x-amz-cek-alg")
    # kms+context must name the content cipher; a plain "kms" wrap must not name another one
    # (a kms+context key relabelled "kms" would otherwise open a GCM body read as CBC)
    if (wrap == "kms+context" or named is not None) and named != cipher:
        raise IntegrityError(
            "S3EC envelope: the KMS encryption context names another content cipher than the "
            "object uses (altered metadata)"
        )
    return context


def _rsa_oaep_sha1(keys: LegacyKeys, blob: bytes, cipher: str) -> bytearray:
    pseudo = keys.rsa(blob, "oaep-sha1")
    try:
        n = pseudo[0] if pseudo else -1
        if n != 32 or bytes(pseudo[1 + n :]) != cipher.encode():
            raise IntegrityError(
                "S3EC RSA-OAEP-SHA1 wrapped key is bound to another content cipher"
            )
        return bytearray(pseudo[1 : 1 + n])
    finally:
        pseudo[:] = bytes(len(pseudo))


def unwrap(env: Mapping[str, str], version: int, cipher: str, keys: LegacyKeys) -> bytearray:
    """The data key of an S3EC envelope, with the wrap algorithm it names."""
    blob = b64(env.get({1: "x-amz-key", 2: "x-amz-key-v2", 3: "x-amz-3"}[version]), "key")
    wrap = env.get("x-amz-w" if version == 3 else "x-amz-wrap-alg")
    if version == 3:
        wrap = _V3_WRAP.get(wrap or "12")
        if wrap != "kms+context":
            raise FormatError(f"S3EC V3 key wrap {wrap!r} is not supported by envstore migrate")
    if wrap in ("kms", "kms+context"):
        return keys.awskms(blob, _kms_context(env, wrap, cipher, version))
    if wrap == "AES/GCM":
        return keys.aes_gcm(blob, cipher.encode())
    if wrap == "RSA-OAEP-SHA1":
        return _rsa_oaep_sha1(keys, blob, cipher)
    if wrap == "RSA/ECB/OAEPWithSHA-256AndMGF1Padding":
        return keys.rsa(blob, "oaep-sha256", 32)
    if wrap == "AESWrap":
        return keys.aes_wrap(blob)
    if wrap is None and version == 1:  # legacy V1: "AES" (ECB) or "RSA" (PKCS#1 v1.5)
        try:
            return keys.aes_ecb(blob)
        except KeyAccessError:
            return keys.rsa(blob, "pkcs1v15", 32)
    raise FormatError(f"S3EC envelope: unsupported key wrap algorithm {wrap!r}")


def _v3_key(key: bytearray, env: Mapping[str, str]) -> bytearray:
    message_id = b64(env.get("x-amz-i"), "x-amz-i")
    stored = b64(env.get("x-amz-d"), "x-amz-d")
    prk = hmac.new(message_id, bytes(key), hashlib.sha512).digest()  # HKDF-Extract
    derived = HKDFExpand(hashes.SHA512(), 32, V3_SUITE + b"DERIVEKEY").derive(prk)
    commit = HKDFExpand(hashes.SHA512(), 28, V3_SUITE + b"COMMITKEY").derive(prk)
    if not hmac.compare_digest(commit, stored):
        raise IntegrityError("S3EC V3 key commitment does not match: altered or wrong key")
    return bytearray(derived)


def _cipher(env: Mapping[str, str], version: int) -> str:
    if version == 1:
        return CBC
    if version == 3:
        if env.get("x-amz-c") != "115":
            raise FormatError(f"S3EC V3 content cipher {env.get('x-amz-c')!r} is not supported")
        return "115"
    cipher = env.get("x-amz-cek-alg")
    if cipher not in (GCM, CBC):
        raise FormatError(f"S3EC envelope: unsupported content cipher {cipher!r}")
    if cipher == GCM and env.get("x-amz-tag-len", "128") != "128":
        raise FormatError("S3EC envelope: GCM tag length other than 128 bits")
    return cipher


def parse(env: Mapping[str, str], stored: int, instruction: str | None = None) -> Legacy:
    """The envelope of an S3EC object (merged metadata and instruction file fields)."""
    version = _version(env)
    cipher = _cipher(env, version)
    plain = plain_int(env, "x-amz-unencrypted-content-length")
    gcm = cipher != CBC
    if gcm:
        if stored < TAG or (plain is not None and plain != stored - TAG):
            raise IntegrityError(
                f"S3EC GCM object is {stored} bytes; its envelope says {plain} plaintext bytes: "
                "truncated or extended"
            )
        plain = stored - TAG
    iv = b"\x01" * 12 if version == 3 else b64(env.get("x-amz-iv"), "x-amz-iv")

    def open_(keys: LegacyKeys) -> Decoder:
        key = unwrap(env, version, cipher, keys)
        try:
            if version == 3:
                derived = _v3_key(key, env)
                key[:] = bytes(len(key))
                key = derived
                return GcmDecoder(key, iv, V3_SUITE, plain)
            if gcm:
                return GcmDecoder(key, iv, b"", plain)
            return CbcDecoder(key, iv, checks(plain))
        finally:
            key[:] = bytes(len(key))

    name = f"s3ec-v{version}-{'gcm' if gcm else 'cbc'}"
    return Legacy(name, stored, plain, gcm, open_, instruction)
