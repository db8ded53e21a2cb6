"""S3's SDK calls for the shared write machine (:class:`~envstore.stores.partsink.PartSink`):
``PutObject``, ``CreateMultipartUpload``, ``UploadPart`` on s3fs's event loop,
``CompleteMultipartUpload``, ``AbortMultipartUpload``, each within the write deadline; and
the multipart server-side copy (``UploadPartCopy``)."""

from __future__ import annotations

import asyncio
import hashlib
import math
from typing import TYPE_CHECKING, Any

from envstore.stores.partsink import PartSink, abort_failed
from envstore.stores.s3_deadline import bounded, write_limit
from envstore.stores.s3_ops import commit_error, copy_error, lost_put
from envstore.stores.s3_read import run

if TYPE_CHECKING:
    from envstore.stores.s3 import S3Store

__all__ = ["S3Sink", "multipart_copy"]

MiB = 1 << 20
MIN_PART_SIZE = 5 * MiB  # S3: every part but the last
MAX_PARTS = 10_000
#: CompleteMultipartUpload's deadline grows by 0.1 s per part (the 1 s/MiB rule applied to
#: 1/10 MiB per part: 10,000 parts add 1,000 s)
_COMPLETE_PER_PART = MiB // 10
#: a PutObject / CompleteMultipartUpload given up: the store may still finish it
_UNKNOWN = (
    "outcome unknown: the store may still complete the request, so the object is either "
    "absent or whole (never partial): check it (exists, envstore verify) before relying on it"
)


class S3Sink(PartSink):
    """A pending S3 object.  Memory: at most two part buffers — the one being filled and the
    one being uploaded (the upload runs on s3fs's event loop while the caller encrypts)."""

    def __init__(
        self,
        store: S3Store,
        bucket: str,
        key: str,
        metadata: dict[str, str],
        size_hint: int | None,
        part_size: int,
    ) -> None:
        super().__init__(f"{bucket}/{key}", size_hint, part_size, 1)
        self.store = store
        self.fs = store.fs
        self.bucket = bucket
        self.key = key
        self.metadata = metadata

    def __repr__(self) -> str:
        return f"<S3 sink s3://{self.bucket}/{self.key}>"

    def _call(self, op: str, nbytes: int, after: str, **kw: Any) -> Any:
        """``fs.call_s3(op, **kw)`` within the write deadline (``after``: the state if not)."""
        limit = write_limit(self.store.write_deadline, nbytes)
        api = "".join(word.title() for word in op.split("_"))  # put_object -> PutObject
        what = f"{api} of {self.bucket}/{self.key}"
        call = self.fs._call_s3(op, Bucket=self.bucket, Key=self.key, **kw)
        return run(self.fs, bounded(self.fs, call, limit, what, after))

    def _meta(self) -> dict[str, Any]:
        return {"Metadata": self.metadata} if self.metadata else {}

    def _cond(self) -> dict[str, str]:
        if self.if_match is not None:
            return {"IfMatch": self.if_match}
        return {"IfNoneMatch": "*"} if self.exclusive else {}

    # -- hooks -------------------------------------------------------------------------------
    def _initiate(self) -> str:
        mpu = self._call("create_multipart_upload", 0, "nothing was written", **self._meta())
        return str(mpu["UploadId"])

    def _send_part(self, number: int, body: bytearray) -> Any:
        return asyncio.run_coroutine_threadsafe(self._upload(number, body), self.fs.loop)

    async def _upload(self, number: int, body: bytearray) -> None:
        call = self.fs._call_s3(
            "upload_part",
            Bucket=self.bucket,
            Key=self.key,
            UploadId=self.upload_id,
            PartNumber=number,
            Body=body,
        )
        limit = write_limit(self.store.write_deadline, len(body))
        what = f"UploadPart {number} of {self.bucket}/{self.key}"
        out = await bounded(
            self.fs, call, limit, what, "the multipart upload is aborted; no object"
        )
        self.parts[number - 1] = {"PartNumber": number, "ETag": out["ETag"]}

    def _put(self, body: bytearray) -> None:
        self._call("put_object", len(body), _UNKNOWN, Body=body, **self._meta(), **self._cond())

    def _complete(self) -> None:
        self._call(
            "complete_multipart_upload",
            len(self.parts) * _COMPLETE_PER_PART,  # S3 may take minutes for many parts
            _UNKNOWN,
            UploadId=self.upload_id,
            MultipartUpload={"Parts": self.parts},
            **self._cond(),
        )

    def _abort(self, upload_id: str) -> None:
        call = self.fs._call_s3(
            "abort_multipart_upload", Bucket=self.bucket, Key=self.key, UploadId=upload_id
        )
        limit = write_limit(self.store.write_deadline)
        run(
            self.fs,
            bounded(self.fs, call, limit, f"AbortMultipartUpload of {self.name}", "upload left"),
        )

    def _commit_error(self, exc: BaseException, what: str) -> BaseException | None:
        """As :func:`~envstore.stores.s3_ops.commit_error` reads it (FileExistsError, a
        definite refusal, or OutcomeUnknownError).  A conditional PutObject refused (412)
        although the object in place holds this very body (a retried request met its own
        first attempt) is never "exists" / "nothing changed": an in-place rewrite (If-Match)
        did land (success); an exclusive create reports OutcomeUnknownError (its own object is
        in place, but the store never confirmed this writer won)."""
        conditional = self.exclusive or self.if_match is not None
        if what == "PutObject" and conditional and self._own_object(exc):
            return None if self.if_match is not None else lost_put(self.name)
        error = commit_error(exc, self.name, what, self.exclusive)
        if self.if_match is not None and error is exc:
            error = copy_error(exc, self.name)  # 412: the object is not the one read
        return error

    def _own_object(self, exc: BaseException) -> bool:
        """After a refused conditional PutObject: does the stored object have this body?"""
        if not isinstance(exc, Exception):
            return False
        try:
            out = self.fs.call_s3("head_object", Bucket=self.bucket, Key=self.key)
        except Exception:
            return False
        etag = str(out.get("ETag", "")).strip('"')
        return etag == hashlib.md5(self.buf, usedforsecurity=False).hexdigest()


async def multipart_copy(
    store: S3Store,
    source: dict[str, str],
    dst: tuple[str, str],
    size: int,
    etag: str,
    create_kw: dict[str, Any],
    complete_kw: dict[str, Any] | None = None,
) -> None:
    """``UploadPartCopy`` in parts; metadata on ``CreateMultipartUpload``; abort on failure."""
    fs, (b2, k2) = store.fs, dst
    part = max(store.copy_part_size, MIN_PART_SIZE, math.ceil(size / MAX_PARTS))
    mpu = await fs._call_s3("create_multipart_upload", Bucket=b2, Key=k2, **create_kw)
    upload_id = mpu["UploadId"]
    sem = asyncio.Semaphore(max(1, store.copy_concurrency))

    async def one(number: int, start: int, end: int) -> dict[str, Any]:
        async with sem:
            out = await fs._call_s3(
                "upload_part_copy",
                Bucket=b2,
                Key=k2,
                UploadId=upload_id,
                PartNumber=number,
                CopySource=source,
                CopySourceRange=f"bytes={start}-{end - 1}",
                CopySourceIfMatch=etag,
            )
        return {"PartNumber": number, "ETag": out["CopyPartResult"]["ETag"]}

    tasks = [
        asyncio.ensure_future(one(n, s, min(s + part, size)))
        for n, s in enumerate(range(0, size, part), 1)
    ]
    try:
        parts = await asyncio.gather(*tasks)
        await fs._call_s3(
            "complete_multipart_upload",
            Bucket=b2,
            Key=k2,
            UploadId=upload_id,
            MultipartUpload={"Parts": sorted(parts, key=lambda p: p["PartNumber"])},
            **(complete_kw or {}),
        )
    except BaseException:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        try:
            await fs._call_s3("abort_multipart_upload", Bucket=b2, Key=k2, UploadId=upload_id)
        except FileNotFoundError:
            pass
        except Exception as exc:  # the error that led here is the one to see
            abort_failed(upload_id, f"{b2}/{k2}", exc)
        raise
