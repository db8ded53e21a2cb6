"""S3 Encryption Client objects built from the S3EC specification with boto3 (and moto KMS).

Not the S3EC itself: this writer follows ``s3-encryption/data-format/content-metadata.md`` and
the keyrings (KMS ``kms+context``/``kms``, ``AES/GCM``, ``RSA-OAEP-SHA1``, legacy ``AES``), so
formats and wraps the Python client cannot write (it has a KMS keyring only) are covered too.
``tests/migration/test_s3ec_client.py`` runs against the real client where it is installed.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
from typing import Any

from cryptography.hazmat.primitives import hashes, padding, serialization
from cryptography.hazmat.primitives.asymmetric import padding as asympadding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDFExpand

GCM = "AES/GCM/NoPadding"
CBC = "AES/CBC/PKCS5Padding"


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def kms_data_key(kms: Any, key_id: str, context: dict[str, str]) -> tuple[bytes, bytes]:
    out = kms.generate_data_key(KeyId=key_id, KeySpec="AES_256", EncryptionContext=context)
    return bytes(out["Plaintext"]), bytes(out["CiphertextBlob"])


def gcm_body(key: bytes, data: bytes) -> tuple[bytes, bytes]:
    iv = os.urandom(12)
    return iv, AESGCM(key).encrypt(iv, data, None)


def cbc_body(key: bytes, data: bytes) -> tuple[bytes, bytes]:
    iv = os.urandom(16)
    pad = padding.PKCS7(128).padder()
    enc = Cipher(algorithms.AES(key), modes.CBC(iv)).encryptor()
    return iv, enc.update(pad.update(data) + pad.finalize()) + enc.finalize()


def v2_gcm_kms(
    kms: Any, key_id: str, data: bytes, keys: list[bytes] | None = None
) -> tuple[bytes, dict[str, str]]:
    context = {"aws:x-amz-cek-alg": GCM, "team": "data"}
    key, blob = kms_data_key(kms, key_id, context)
    if keys is not None:
        keys.append(key)
    iv, body = gcm_body(key, data)
    return body, {
        "x-amz-key-v2": b64(blob),
        "x-amz-iv": b64(iv),
        "x-amz-cek-alg": GCM,
        "x-amz-wrap-alg": "kms+context",
        "x-amz-matdesc": json.dumps(context),
        "x-amz-tag-len": "128",
        "x-amz-unencrypted-content-length": str(len(data)),
    }


def v2_gcm_aes(
    raw_key: bytes, data: bytes, keys: list[bytes] | None = None
) -> tuple[bytes, dict[str, str]]:
    key = os.urandom(32)
    if keys is not None:
        keys.append(key)
    nonce = os.urandom(12)
    wrapped = nonce + AESGCM(raw_key).encrypt(nonce, key, GCM.encode())
    iv, body = gcm_body(key, data)
    return body, {
        "x-amz-key-v2": b64(wrapped),
        "x-amz-iv": b64(iv),
        "x-amz-cek-alg": GCM,
        "x-amz-wrap-alg": "AES/GCM",
        "x-amz-matdesc": "{}",
        "x-amz-tag-len": "128",
        "x-amz-unencrypted-content-length": str(len(data)),
    }


def v2_gcm_rsa(public_pem: bytes, data: bytes) -> tuple[bytes, dict[str, str]]:
    key = os.urandom(32)
    public = serialization.load_pem_public_key(public_pem)
    oaep = asympadding.OAEP(asympadding.MGF1(hashes.SHA1()), hashes.SHA1(), None)
    wrapped = public.encrypt(bytes([32]) + key + GCM.encode(), oaep)  # type: ignore[union-attr]
    iv, body = gcm_body(key, data)
    return body, {
        "x-amz-key-v2": b64(wrapped),
        "x-amz-iv": b64(iv),
        "x-amz-cek-alg": GCM,
        "x-amz-wrap-alg": "RSA-OAEP-SHA1",
        "x-amz-matdesc": "{}",
        "x-amz-tag-len": "128",
        "x-amz-unencrypted-content-length": str(len(data)),
    }


def v2_cbc_kms(kms: Any, key_id: str, data: bytes) -> tuple[bytes, dict[str, str]]:
    """The Java v1 client's ``kms`` mode: V2 metadata, CBC content, ``kms_cmk_id`` matdesc."""
    context = {"kms_cmk_id": key_id}
    key, blob = kms_data_key(kms, key_id, context)
    iv, body = cbc_body(key, data)
    return body, {
        "x-amz-key-v2": b64(blob),
        "x-amz-iv": b64(iv),
        "x-amz-cek-alg": CBC,
        "x-amz-wrap-alg": "kms",
        "x-amz-matdesc": json.dumps(context),
        "x-amz-unencrypted-content-length": str(len(data)),
    }


def v1_cbc_aes(raw_key: bytes, data: bytes) -> tuple[bytes, dict[str, str]]:
    """V1: ``x-amz-key`` = AES/ECB/PKCS5Padding of the data key under the master key."""
    key = os.urandom(32)
    pad = padding.PKCS7(128).padder()
    ecb = Cipher(algorithms.AES(raw_key), modes.ECB()).encryptor()
    wrapped = ecb.update(pad.update(key) + pad.finalize()) + ecb.finalize()
    iv, body = cbc_body(key, data)
    return body, {
        "x-amz-key": b64(wrapped),
        "x-amz-iv": b64(iv),
        "x-amz-matdesc": "{}",
        "x-amz-unencrypted-content-length": str(len(data)),
    }


def v3_kms(kms: Any, key_id: str, data: bytes) -> tuple[bytes, dict[str, str]]:
    """V3 (S3EC v4 default): HKDF-SHA512 derived key, commitment, fixed IV, AAD suite id."""
    suite = b"\x00\x73"
    context = {"aws:x-amz-cek-alg": "115"}
    key, blob = kms_data_key(kms, key_id, context)
    message_id = os.urandom(28)
    prk = hmac.new(message_id, key, hashlib.sha512).digest()
    derived = HKDFExpand(hashes.SHA512(), 32, suite + b"DERIVEKEY").derive(prk)
    commit = HKDFExpand(hashes.SHA512(), 28, suite + b"COMMITKEY").derive(prk)
    body = AESGCM(derived).encrypt(b"\x01" * 12, data, suite)
    return body, {
        "x-amz-c": "115",
        "x-amz-3": b64(blob),
        "x-amz-w": "12",
        "x-amz-t": json.dumps(context),
        "x-amz-d": b64(commit),
        "x-amz-i": b64(message_id),
    }
