"""Migration of objects written by the real Amazon S3 Encryption Client for Python
(``amazon-s3-encryption-client-python``, KMS keyring) on moto (S3 + KMS).

The client pins cryptography 48, so it lives in its own environment (``.ci/run``'s third
environment; locally e.g. ``/work/venv-s3ec``); elsewhere this module is skipped.
"""

from __future__ import annotations

import io
from typing import Any

import pytest

from envstore.errors import IntegrityError
from tests.migration.helpers import payload

s3_encryption = pytest.importorskip("s3_encryption", reason="needs the S3 Encryption Client")
boto3 = pytest.importorskip("boto3")
pytest.importorskip("s3fs")

from s3_encryption import S3EncryptionClient, S3EncryptionClientConfig  # noqa: E402
from s3_encryption.materials.kms_keyring import KmsKeyring  # noqa: E402
from s3_encryption.materials.materials import AlgorithmSuite, CommitmentPolicy  # noqa: E402

from tests.migration.s3place import Place  # noqa: E402


@pytest.fixture
def place(awskms: Any, key_uri: str) -> Place:
    return Place(awskms, key_uri)


def client(place: Place, v2: bool = False) -> Any:
    kms = boto3.client("kms", endpoint_url=place.endpoint, region_name="us-east-1")
    keyring = KmsKeyring(kms_client=kms, kms_key_id=place.key_id)
    kw: dict[str, Any] = {}
    if v2:  # the V2 format (AES-GCM without key commitment), as older clients write it
        kw = {
            "encryption_algorithm": AlgorithmSuite.ALG_AES_256_GCM_IV12_TAG16_NO_KDF,
            "commitment_policy": CommitmentPolicy.FORBID_ENCRYPT_ALLOW_DECRYPT,
        }
    config = S3EncryptionClientConfig(keyring=keyring, **kw)
    s3 = boto3.client("s3", endpoint_url=place.endpoint, region_name="us-east-1")
    return S3EncryptionClient(wrapped_s3_client=s3, config=config)  # its own boto3 client


def test_v3_and_v2_objects_in_place(place: Place) -> None:
    objects = {"a/v3": payload(100_000, 1), "a/v3-empty": b"", "a/v2": payload(5_000, 2)}
    v3, v2 = client(place), client(place, v2=True)
    v3.put_object(
        Bucket=place.bucket, Key="a/v3", Body=objects["a/v3"], EncryptionContext={"team": "data"}
    )
    v3.put_object(Bucket=place.bucket, Key="a/v3-empty", Body=b"")
    v2.put_object(Bucket=place.bucket, Key="a/v2", Body=objects["a/v2"])
    assert "x-amz-c" in place.raw("a/v3")[1] and "x-amz-key-v2" in place.raw("a/v2")[1]
    records = place.migrate("a", "a", [place.kms_uri], recursive=True)
    assert [(r["path"].split("/", 1)[1], r["format"], r["result"]) for r in records] == [
        ("a/v2", "s3ec-v2-gcm", "migrated"),
        ("a/v3", "s3ec-v3-gcm", "migrated"),
        ("a/v3-empty", "s3ec-v3-gcm", "migrated"),
    ]
    for name, data in objects.items():
        assert place.read(name) == data
    again = place.migrate("a", "a", [place.kms_uri], recursive=True)
    assert {r["result"] for r in again} == {"skipped: already envstore"}


def test_multipart_upload_to_another_prefix(place: Place) -> None:
    data = payload(9 * 1024 * 1024 + 5, 3)  # above the client's 8 MiB multipart threshold
    client(place).upload_fileobj(io.BytesIO(data), place.bucket, "src/big")
    before = place.raw("src/big")
    records = place.migrate("src/big", "dst/big", [place.kms_uri])
    assert records[0]["result"] == "migrated" and records[0]["size"] == len(data)
    assert place.read("dst/big") == data
    assert place.raw("src/big") == before


def test_tampered_client_object_is_refused(place: Place) -> None:
    client(place).put_object(Bucket=place.bucket, Key="t", Body=payload(3000, 4))
    body, meta = place.raw("t")
    bad = body[:50] + bytes([body[50] ^ 1]) + body[51:]
    place.put("t", bad, meta)
    with pytest.raises(IntegrityError):
        place.migrate("t", "t", [place.kms_uri])
    assert place.raw("t") == (bad, meta)
