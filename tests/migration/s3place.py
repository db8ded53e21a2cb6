"""A fresh S3 bucket on the moto server that serves AWS KMS too, for the S3EC migration tests."""

from __future__ import annotations

import uuid
from typing import Any

import boto3

import envstore


class Place:
    """A fresh bucket on the moto server that serves KMS too."""

    def __init__(self, kms_env: Any, key_uri: str) -> None:
        import s3fs

        s3fs.S3FileSystem.clear_instance_cache()
        self.endpoint = kms_env.options["endpoint_url"]
        self.kms = kms_env.admin
        self.key_id = kms_env.key_id
        self.kms_uri = kms_env.uri
        self.kms_options = kms_env.kms_options
        self.key_uri = key_uri
        self.s3 = boto3.client("s3", endpoint_url=self.endpoint, region_name="us-east-1")
        self.bucket = f"mig-{uuid.uuid4().hex[:10]}"
        self.s3.create_bucket(Bucket=self.bucket)

    def put(self, name: str, body: bytes, meta: dict[str, str]) -> None:
        self.s3.put_object(Bucket=self.bucket, Key=name, Body=body, Metadata=meta)

    def raw(self, name: str) -> tuple[bytes, dict[str, str]]:
        out = self.s3.get_object(Bucket=self.bucket, Key=name)
        return out["Body"].read(), out["Metadata"]

    def keys(self) -> list[str]:
        out = self.s3.list_objects_v2(Bucket=self.bucket)
        return sorted(o["Key"] for o in out.get("Contents", []))

    def options(self) -> dict[str, Any]:
        s3 = {"endpoint_url": self.endpoint, "key": "testing", "secret": "testing"}
        return {"key_uri": self.key_uri, "kms_options": self.kms_options, "s3": s3}

    def migrate(self, src: str, dst: str, legacy: list[str], **kw: Any) -> list[dict[str, Any]]:
        return envstore.migrate(
            f"s3://{self.bucket}/{src}".rstrip("/"),
            f"envstore::s3://{self.bucket}/{dst}",
            legacy_key_uris=legacy,
            **self.options(),
            **kw,
        )

    def read(self, name: str) -> bytes:
        import fsspec

        fs = fsspec.filesystem(
            "envstore",
            target_protocol="s3",
            target_options=self.options()["s3"],
            key_uri=self.key_uri,
            skip_instance_cache=True,
        )
        return fs.cat_file(f"{self.bucket}/{name}")
