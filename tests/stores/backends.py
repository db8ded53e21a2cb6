"""One view of every store for the contract suite (tests/stores/test_contract.py).

A :class:`Backend` is one test's place on one store — memory, local files, S3 (moto or
SeaweedFS) or OSS (the project's server) — with the raw access the contract needs: the stored
bytes and user metadata of an object, writing raw objects (forgeries), pending multipart
uploads, the object names, and (object stores) the requests an envstore filesystem sends, named
in one vocabulary (S3's ``CreateMultipartUpload`` is ``InitiateMultipartUpload`` here).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import fsspec
from fsspec.implementations.memory import MemoryFileSystem

from envstore.fs import EnvstoreFileSystem

MiB = 1 << 20
KiB = 1 << 10

#: S3 operation names in the vocabulary of the OSS server's log
_S3_OPS = {"CreateMultipartUpload": "InitiateMultipartUpload"}


@dataclass(frozen=True)
class Call:
    op: str
    key: str  # the request path (S3: /bucket/key; OSS: the object key)
    range: str | None


class Recorder:
    """Requests an envstore filesystem sent, and GetObject body bytes it received."""

    def __init__(self) -> None:
        self._calls: list[Call] = []
        self._received = 0

    def calls(self, op: str | None = None) -> list[Call]:
        return [c for c in self._calls if op is None or c.op == op]

    def ops(self) -> list[str]:
        return [c.op for c in self.calls()]

    def received(self) -> int:
        return self._received

    def clear(self) -> None:
        self._calls.clear()
        self._received = 0


class _OssRecorder(Recorder):
    """The OSS server's own request log."""

    def __init__(self, env: Any) -> None:
        super().__init__()
        self.env = env
        env.clear()

    def calls(self, op: str | None = None) -> list[Call]:
        return [Call(c.op, c.key, c.range) for c in self.env.calls(op)]

    def received(self) -> int:
        return self.env.server.get_bytes

    def clear(self) -> None:
        self.env.clear()


@dataclass
class Backend:
    """Shared part: names, URLs, filesystems."""

    name: str  # "memory", "file", "s3" or "oss"
    root: str
    key_uri: str
    target: str  # the inner protocol
    part: int | None = None  # a lowered multipart part size (object stores)
    instances: list[EnvstoreFileSystem] = field(default_factory=list)

    @property
    def object_store(self) -> bool:
        return self.part is not None

    def path(self, name: str) -> str:
        return f"{self.root}/{name}"

    def url(self, name: str) -> str:
        return f"envstore::{self.target}://{self.path(name)}"

    def inner_options(self, **extra: Any) -> dict[str, Any]:
        return dict(extra)

    def storage_options(self, key_uri: str | list[str] | None = None, **kw: Any) -> dict[str, Any]:
        inner = self.inner_options(**kw.pop(self.target, {}))
        out = {"key_uri": key_uri or self.key_uri, **kw}
        if inner:
            out[self.target] = inner
        return out

    def efs(self, key_uri: str | list[str] | None = None, **kw: Any) -> EnvstoreFileSystem:
        """A fresh (uncached) envstore filesystem on this place."""
        inner = self.inner_options(**kw.pop(self.target, {}))
        fs = fsspec.filesystem(
            "envstore",
            target_protocol=self.target,
            target_options=inner,
            key_uri=key_uri or self.key_uri,
            skip_instance_cache=True,
            **kw,
        )
        self.instances.append(fs)
        return fs

    def multipart_efs(self, **kw: Any) -> EnvstoreFileSystem:
        """A filesystem whose writes go in parts of ``self.part`` bytes (object stores)."""
        return self.efs(**kw)

    def record(self, fs: EnvstoreFileSystem) -> Recorder | None:
        """The requests ``fs`` sends from now on; ``None`` where there are no requests."""
        return None

    # -- raw access (overridden per store) -------------------------------------------------------
    def get_raw(self, name: str) -> bytes:
        raise NotImplementedError

    def put_raw(self, name: str, body: bytes, metadata: dict[str, str] | None = None) -> None:
        raise NotImplementedError

    def metadata(self, name: str) -> dict[str, str]:
        """User metadata (names without the store's prefix); ``{}`` where there is none."""
        return {}

    def pending_uploads(self) -> list[Any]:
        return []

    def keys(self) -> list[str]:
        raise NotImplementedError


class MemoryBackend(Backend):
    def _mem(self) -> MemoryFileSystem:
        return MemoryFileSystem()

    def get_raw(self, name: str) -> bytes:
        return self._mem().cat_file(self.path(name))

    def put_raw(self, name: str, body: bytes, metadata: dict[str, str] | None = None) -> None:
        assert not metadata, "memory:// has no user metadata"
        self._mem().pipe_file(self.path(name), body)

    def keys(self) -> list[str]:
        found = self._mem().find(self.root)
        return sorted(p[len(self.root) + 1 :] for p in found)


class FileBackend(Backend):
    def inner_options(self, **extra: Any) -> dict[str, Any]:
        return {"auto_mkdir": True, **extra}

    def get_raw(self, name: str) -> bytes:
        return Path(self.path(name)).read_bytes()

    def put_raw(self, name: str, body: bytes, metadata: dict[str, str] | None = None) -> None:
        assert not metadata, "file:// has no user metadata"
        p = Path(self.path(name))
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(body)

    def keys(self) -> list[str]:
        out = []
        for dirpath, _, files in os.walk(self.root):
            for f in files:
                out.append(os.path.relpath(os.path.join(dirpath, f), self.root))
        return sorted(out)


@dataclass
class S3Backend(Backend):
    env: Any = None  # tests.stores.conftest.S3Env

    def inner_options(self, **extra: Any) -> dict[str, Any]:
        return self.env.s3_options(**extra)

    def multipart_efs(self, **kw: Any) -> EnvstoreFileSystem:
        s3 = {"default_block_size": self.part, **kw.pop("s3", {})}
        return self.efs(s3=s3, **kw)

    def record(self, fs: EnvstoreFileSystem) -> Recorder:
        rec = Recorder()

        def before_call(model: Any, params: dict[str, Any], **kw: Any) -> None:
            rng = (params.get("headers") or {}).get("Range")
            key = str(params.get("url_path", ""))
            rec._calls.append(Call(_S3_OPS.get(model.name, model.name), key, rng))

        def after_get(parsed: dict[str, Any], **kw: Any) -> None:
            rec._received += int(parsed.get("ContentLength") or 0)

        events = fs.fs.s3.meta.events
        events.register("before-call.s3", before_call)
        events.register("after-call.s3.GetObject", after_get)
        return rec

    def small_copies(self, fs: EnvstoreFileSystem, monkeypatch: Any, limit: int, part: int) -> None:
        """Copies above ``limit`` bytes go part by part (``part`` bytes each)."""
        fs.store.copy_threshold = limit
        fs.store.copy_part_size = part

    def fail_part_copy(self, fs: EnvstoreFileSystem, monkeypatch: Any, number: int) -> None:
        """Part ``number`` of every multipart copy fails with AccessDenied."""
        real = fs.fs._call_s3

        async def failing(method: str, *args: Any, **kwargs: Any) -> Any:
            if method == "upload_part_copy" and kwargs.get("PartNumber") == number:
                raise PermissionError("injected: access denied to the source range")
            return await real(method, *args, **kwargs)

        monkeypatch.setattr(fs.fs, "_call_s3", failing)

    def add_metadata(self, name: str, extra: dict[str, str], content_type: str) -> None:
        """Other user metadata and a content type beside the envelope (a raw CopyObject)."""
        env = self.env
        env.client.copy_object(
            Bucket=env.bucket,
            Key=env.key(name),
            CopySource={"Bucket": env.bucket, "Key": env.key(name)},
            Metadata={**self.metadata(name), **extra},
            ContentType=content_type,
            MetadataDirective="REPLACE",
        )

    def content_type(self, name: str) -> str:
        return self.env.head(name)["ContentType"]

    def get_raw(self, name: str) -> bytes:
        return self.env.raw(name)

    def put_raw(self, name: str, body: bytes, metadata: dict[str, str] | None = None) -> None:
        c = self.env.client
        c.put_object(
            Bucket=self.env.bucket, Key=self.env.key(name), Body=body, Metadata=metadata or {}
        )

    def metadata(self, name: str) -> dict[str, str]:
        return dict(self.env.head(name)["Metadata"])

    def pending_uploads(self) -> list[Any]:
        return self.env.pending_uploads()

    def start_upload(self, name: str) -> str:
        """A multipart upload started (and left) by someone else; its id."""
        c = self.env.client
        return c.create_multipart_upload(Bucket=self.env.bucket, Key=self.env.key(name))["UploadId"]

    def upload_id(self, upload: Any) -> str:
        return upload["UploadId"]

    def abort_upload(self, upload: Any) -> None:
        c = self.env.client
        c.abort_multipart_upload(
            Bucket=self.env.bucket, Key=upload["Key"], UploadId=upload["UploadId"]
        )

    def keys(self) -> list[str]:
        return self.env.keys()


@dataclass
class OssBackend(Backend):
    env: Any = None  # tests.stores.conftest_oss.OssEnv

    def inner_options(self, **extra: Any) -> dict[str, Any]:
        return self.env.oss_options(**extra)

    def multipart_efs(self, **kw: Any) -> EnvstoreFileSystem:
        fs = self.efs(**kw)
        fs.store.part_size = self.part
        return fs

    def record(self, fs: EnvstoreFileSystem) -> Recorder:
        return _OssRecorder(self.env)

    def small_copies(self, fs: EnvstoreFileSystem, monkeypatch: Any, limit: int, part: int) -> None:
        from envstore.stores import oss_store as oss_module

        monkeypatch.setattr(oss_module, "COPY_LIMIT", limit)
        fs.store.copy_part_size = part

    def fail_part_copy(self, fs: EnvstoreFileSystem, monkeypatch: Any, number: int) -> None:
        self.env.server.fail_next(
            lambda c: c.op == "UploadPartCopy" and c.query.get("partNumber") == str(number),
            status=403,
            code="AccessDenied",
            count=2,
        )

    def add_metadata(self, name: str, extra: dict[str, str], content_type: str) -> None:
        headers = {f"x-oss-meta-{k}": v for k, v in extra.items()}
        headers["Content-Type"] = content_type
        self.env.client.update_object_meta(
            self.env.key_of(name), {**self.env.meta_headers(name), **headers}
        )

    def content_type(self, name: str) -> str:
        return self.env.head(name).content_type

    def get_raw(self, name: str) -> bytes:
        return self.env.raw(name)

    def put_raw(self, name: str, body: bytes, metadata: dict[str, str] | None = None) -> None:
        headers = {f"x-oss-meta-{k}": v for k, v in (metadata or {}).items()}
        self.env.client.put_object(self.env.key_of(name), body, headers=headers)

    def metadata(self, name: str) -> dict[str, str]:
        return self.env.meta(name)

    def pending_uploads(self) -> list[Any]:
        return self.env.pending_uploads()

    def start_upload(self, name: str) -> str:
        return self.env.client.init_multipart_upload(self.env.key_of(name)).upload_id

    def upload_id(self, upload: Any) -> str:
        return upload.upload_id

    def abort_upload(self, upload: Any) -> None:
        self.env.client.abort_multipart_upload(upload.key, upload.upload_id)

    def keys(self) -> list[str]:
        return self.env.keys()
