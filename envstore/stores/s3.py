"""Amazon S3 (and S3-compatible stores) through s3fs: the envelope as ``x-amz-meta-envstore-*``.

What this adapter adds over the generic one:

* **metadata placement**: envelope fields are S3 user metadata, set on ``PutObject`` or on
  ``CreateMultipartUpload``; the 2 KB user-metadata limit is checked before any upload (keys
  counted with their ``x-amz-meta-`` prefix, so no S3 implementation can count more);
* **streaming multipart writes** with bounded memory: two part buffers at most (one filling,
  one uploading), one ``PutObject`` when the whole object fits in one part, and on any failure
  (exception, ``KeyboardInterrupt``, server error after s3fs's retries) the multipart upload is
  aborted, so neither an object nor a stale upload is left;
* **one HEAD per object**: ``head``/``info`` share a short per-path cache (``head_ttl``
  seconds) that envstore's own writes, copies and removals invalidate;
* **copies that keep the envelope** at every size: ``CopyObject`` (metadata copied) up to
  ``copy_threshold``, a multipart copy (``UploadPartCopy``, metadata on
  ``CreateMultipartUpload``) above it; s3fs's own managed copy drops user metadata;
* **sizes from listings**: an S3 listing carries no metadata, so a listed object is taken to
  use metadata placement and its plaintext size follows from its stored size; objects written
  with the header fallback are only told apart by a HEAD, which ``info`` of one path does.

Part size: s3fs's ``default_block_size`` when it is given explicitly (``"s3":
{"default_block_size": 64 * 2**20}``), else :data:`DEFAULT_PART_SIZE`; never below 5 MiB, raised
so that a known size fits 10,000 parts, and doubled every 1,000 parts when the size is unknown.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from s3fs import S3FileSystem

from envstore.stores.base import Fields, Head, Sink, entry_token
from envstore.stores.failures import translating
from envstore.stores.objectstore import Cached, ObjectStore, fields_digest
from envstore.stores.s3_deadline import DEFAULT_WRITE_DEADLINE
from envstore.stores.s3_ops import clean_uploads, copy_error, require_bucket
from envstore.stores.s3_read import S3Reads, run
from envstore.stores.s3_write import S3Sink, multipart_copy

__all__ = ["DEFAULT_PART_SIZE", "S3Store"]

MiB = 1 << 20
GiB = 1 << 30
MIN_PART_SIZE = 5 * MiB  # S3: every part but the last
MAX_PART_SIZE = 5 * GiB  # S3: largest part, largest single PUT / CopyObject source
MAX_PARTS = 10_000
#: like the AWS CLI's multipart_chunksize: aiohttp holds up to 3 more copies of the part in
#: flight, so extra memory is about 5-6 part sizes (~45 MiB at 8 MiB)
DEFAULT_PART_SIZE = 8 * MiB
META_PREFIX = "x-amz-meta-"

#: content headers a copy with ``MetadataDirective="REPLACE"`` must restate to keep them
_CONTENT_HEADERS = (
    "CacheControl",
    "ContentDisposition",
    "ContentEncoding",
    "ContentLanguage",
    "ContentType",
    "Expires",
    "WebsiteRedirectLocation",
)


class S3Store(S3Reads, ObjectStore):
    """Adapter for ``s3fs.S3FileSystem`` (protocols ``s3``, ``s3a``)."""

    #: S3's user-metadata limit in bytes (AWS: the UTF-8 bytes of keys and values)
    metadata_limit = 2048
    meta_prefix = META_PREFIX
    label = "S3"
    #: objects larger than this are copied part by part (``UploadPartCopy``)
    copy_threshold: int = MAX_PART_SIZE
    #: part size of multipart copies (raised to fit 10,000 parts)
    copy_part_size: int = 512 * MiB
    #: concurrent ``UploadPartCopy`` requests
    copy_concurrency: int = 8
    #: seconds one write request (PutObject, CreateMultipartUpload, UploadPart,
    #: CompleteMultipartUpload, AbortMultipartUpload) may take in total, s3fs's and botocore's
    #: retries included, plus one second per MiB it sends; then TimeoutError. None: no limit.
    #: Set from the envstore option ``write_deadline``.
    write_deadline: float | None = DEFAULT_WRITE_DEADLINE

    def __init__(self, fs: S3FileSystem) -> None:  # type: ignore[override]
        super().__init__(fs)
        self.fs: S3FileSystem = fs
        given = fs.storage_options.get("default_block_size")
        self.part_size = max(MIN_PART_SIZE, int(given) if given else DEFAULT_PART_SIZE)
        self._init_scans()

    # -- paths and the hooks of ObjectStore --------------------------------------------------
    def _split(self, path: str) -> tuple[str, str, str | None]:
        return self.fs.split_path(self.fs._strip_protocol(path))

    def _name(self, path: str) -> str:
        bucket, key, _ = self._split(path)
        return f"{bucket}/{key}" if key else bucket

    def _key(self, path: str) -> tuple[str, str, str]:
        bucket, key, version = self._split(path)
        name = f"{bucket}/{key}" if key else bucket
        return bucket, key, name + (f"?versionId={version}" if version else "")

    def _forgotten(self, path: str | None) -> None:
        self._drop_scans(None if path is None else self._name(path))

    def _head_object(self, path: str, bucket: str, key: str) -> Cached:
        """One HEAD; a key that does not exist but is a prefix of others is a directory (one
        LIST); FileNotFoundError otherwise."""
        _, _, version = self._split(path)
        if not key:
            raise IsADirectoryError(path)
        kw = {"VersionId": version} if version else {}
        try:
            head = self.fs._call_s3("head_object", self.fs.kwargs, Bucket=bucket, Key=key, **kw)
            out = run(self.fs, self._within(head, self._key(path)[2]))
        except FileNotFoundError:
            if version:
                raise
            return Cached(None, self._directory(bucket, key))
        entry = {
            "ETag": out.get("ETag", ""),
            "LastModified": out.get("LastModified", ""),
            "size": int(out["ContentLength"]),
            "name": f"{bucket}/{key}",
            "type": "file",
            "StorageClass": out.get("StorageClass", "STANDARD"),
            "VersionId": out.get("VersionId"),
            "ContentType": out.get("ContentType"),
        }
        fields = {k.lower(): v for k, v in (out.get("Metadata") or {}).items()}
        token = (*entry_token(entry), fields_digest(fields))
        cached = Cached(Head(entry["size"], fields, token), entry)
        cached.extra = {k: out[k] for k in _CONTENT_HEADERS if out.get(k)}
        return cached

    def _directory(self, bucket: str, key: str) -> dict[str, Any]:
        """The entry of a prefix holding objects (one LIST), as s3fs's ``info`` reports it."""
        out = self.fs.call_s3(
            "list_objects_v2",
            self.fs.kwargs,
            Bucket=bucket,
            Prefix=key.rstrip("/") + "/",
            Delimiter="/",
            MaxKeys=1,
        )
        if out.get("KeyCount", 0) > 0 or out.get("Contents") or out.get("CommonPrefixes"):
            return {
                "name": f"{bucket}/{key.rstrip('/')}",
                "type": "directory",
                "size": 0,
                "StorageClass": "DIRECTORY",
            }
        raise FileNotFoundError(f"{bucket}/{key}")

    def _require_bucket(self, bucket: str) -> None:
        require_bucket(self.fs, bucket)

    def _clean(self, bucket: str, key: str, older_than: float, dry_run: bool) -> list[dict]:
        return clean_uploads(self.fs, bucket, key, older_than, dry_run)

    def info(self, path: str, **kwargs: Any) -> dict[str, Any]:
        """One path's entry from the (cached) HEAD; buckets and versions as s3fs says."""
        _, key, _ = self._split(path)
        if not key or kwargs.get("version_id") is not None:
            return self.fs.info(path, **kwargs)
        return super().info(path, **kwargs)

    # -- envelope rewrites -------------------------------------------------------------------
    def set_metadata(
        self, path: str, fields: Mapping[str, str], expect: tuple[Any, ...] | None = None
    ) -> None:
        """Replace the envelope fields in place (a copy onto itself with ``REPLACE``; multipart
        above ``copy_threshold``); other user metadata and the content headers are kept.

        The version ``expect`` names (its ETag and envelope) must still be in place just
        before the copy, and the copy is conditional (``CopySourceIfMatch``) on its ETag: an
        object replaced or rewrapped meanwhile is never rewritten (ConcurrentModificationError).
        Afterwards a HEAD checks the stored envelope is the one written.  Residual window: a
        metadata-only rewrite by another writer landing between that last HEAD and the copy
        keeps the ETag and is not seen (S3 has no condition on metadata)."""
        self.check_metadata(fields)
        cached = self.fresh_for_rewrite(path, expect)
        assert cached.head is not None and cached.head.fields is not None
        bucket, key, _ = self._split(path)
        metadata = {k: v for k, v in cached.head.fields.items() if not k.startswith("envstore-")}
        metadata.update(fields)
        kw: dict[str, Any] = {"Metadata": metadata, **cached.extra}
        if cached.entry.get("StorageClass", "STANDARD") != "STANDARD":
            kw["StorageClass"] = cached.entry["StorageClass"]
        try:
            self._copy(bucket, key, None, bucket, key, cached, kw)
        except BaseException as exc:
            raise copy_error(exc, path) from exc
        finally:
            self.forget(path)
        self.confirm_rewrite(path, fields)

    def rewrite_header(
        self, path: str, header: bytes, body_offset: int, stored_size: int, expect: tuple[Any, ...]
    ) -> None:
        """Header placement on S3 (rewrap of an envelope too large for metadata): the new
        object's commit carries ``If-Match`` with the ETag read, so it never replaces an object
        another writer stored meanwhile (ConcurrentModificationError); a body read across a
        replacement is refused the same way."""
        cached = self.fresh_for_rewrite(path, expect)
        sink = self.open_sink(path, None, len(header) + stored_size - body_offset)
        assert isinstance(sink, S3Sink)
        sink.if_match = cached.entry["ETag"]
        try:
            sink.write(header)
            step = 4 * MiB
            for pos in range(body_offset, stored_size, step):
                sink.write(self.read_exact(path, pos, min(pos + step, stored_size)))
            sink.commit()
        except BaseException:
            sink.discard()
            raise

    # -- writes and copies -------------------------------------------------------------------
    def open_sink(
        self, path: str, fields: Fields, hint: int | None, exclusive: bool = False
    ) -> Sink:
        """A pending object; with ``exclusive``, ``PutObject`` and ``CompleteMultipartUpload``
        carry ``If-None-Match: *`` (S3 refuses atomically if the key exists: FileExistsError)."""
        bucket, key, version = self._split(path)
        if not key:
            raise IsADirectoryError(path)
        if version:
            raise ValueError(f"cannot write to a specific version: {path}")
        if fields:
            self.check_metadata(fields)  # the core checks first; this guards direct use
        part = self.part_size
        if hint is not None and hint > part * MAX_PARTS:
            part = math.ceil(hint / MAX_PARTS / MiB) * MiB
        sink = S3Sink(self, bucket, key, dict(fields or {}), hint, min(part, MAX_PART_SIZE))
        sink.exclusive = exclusive
        return sink

    def copy(self, src: str, dst: str) -> None:
        """Server-side copy that keeps the envelope (user metadata) at every size."""
        cached = self._file(src, fresh=True)
        b1, k1, v1 = self._split(src)
        b2, k2, v2 = self._split(dst)
        if not k2 or v2:
            raise ValueError(f"cannot copy to {dst}")
        try:
            self._copy(b1, k1, v1, b2, k2, cached, None)
        finally:
            self.forget(dst)

    def _copy(
        self,
        b1: str,
        k1: str,
        v1: str | None,
        b2: str,
        k2: str,
        cached: Cached,
        replace: dict[str, Any] | None,
    ) -> None:
        """Copy ``b1/k1`` as HEAD'ed in ``cached`` to ``b2/k2``: its metadata, or ``replace``
        (``Metadata`` and content headers).  The source must still have the HEAD's ETag; in
        place, also its envelope (a HEAD just before the copy)."""
        assert cached.head is not None
        source: dict[str, str] = {"Bucket": b1, "Key": k1}
        if v1:
            source["VersionId"] = v1
        etag = cached.entry["ETag"]
        in_place = (b1, k1, v1) == (b2, k2, None)
        if in_place:
            self.fresh_for_rewrite(f"{b1}/{k1}", cached.head.token)
        if cached.head.size <= self.copy_threshold:
            directive = (
                {"MetadataDirective": "COPY"}
                if replace is None
                else {"MetadataDirective": "REPLACE", **replace}
            )
            self.fs.call_s3(
                "copy_object",
                Bucket=b2,
                Key=k2,
                CopySource=source,
                CopySourceIfMatch=etag,
                **directive,
            )
            return
        # CreateMultipartUpload never copies metadata: state it (the source's, or the new one)
        create = (
            {"Metadata": dict(cached.head.fields or {}), **cached.extra}
            if replace is None
            else replace
        )
        # in place (rewrap): the Complete must not land on an object replaced meanwhile
        same = {"IfMatch": etag} if in_place else {}
        copy = multipart_copy(self, source, (b2, k2), cached.head.size, etag, create, same)
        run(self.fs, copy)


# -- backend failures -> builtin OSErrors ---------------------------------------------------
# One place: transport failures (unreachable endpoint, reset, body cut short, timeouts) leave
# the adapter as ConnectionError / TimeoutError / OSError with the original chained
# (envstore.stores.failures.FAILURE_TO_EXCEPTION); s3fs already maps S3 error responses.
def _store_path(store: S3Store, path: str, *args: Any, **kwargs: Any) -> str:
    return path


def _sink_path(sink: S3Sink, *args: Any, **kwargs: Any) -> str:
    return f"{sink.bucket}/{sink.key}"


for _name in (
    "head",
    "info",
    "isfile",
    "set_metadata",
    "rewrite_header",
    "makedirs",
    "mkdir",
    "clean",
    "read",
    "read_many",
    "copy",
    "move",
):
    setattr(S3Store, _name, translating(_store_path)(getattr(S3Store, _name)))
for _name in ("write", "commit", "discard"):
    setattr(S3Sink, _name, translating(_sink_path, "writing")(getattr(S3Sink, _name)))
