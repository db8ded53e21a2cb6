"""The OSS adapter: :class:`OssStore` on :class:`~envstore.stores.oss.OSSFileSystem` (oss2),
the shared object-store machinery (:mod:`envstore.stores.objectstore`,
:mod:`envstore.stores.partsink`) with OSS's SDK calls: ``HeadObject``, ranged ``GetObject``
with ``x-oss-range-behavior: standard``, ``PutObject`` or a multipart upload (metadata on
initiate, ``upload_concurrency`` parts in flight, every upload with its Content-MD5, which
OSS verifies before storing), copies that keep the envelope (``CopyObject`` with
``x-oss-metadata-directive: COPY``; ``UploadPartCopy`` above 1 GB), metadata rewrites in
place that keep the other metadata and standard headers, the 8 KB user-metadata limit."""

from __future__ import annotations

import concurrent.futures
import errno
from collections.abc import Mapping, Sequence
from typing import Any

import oss2

from envstore.errors import ConfigError
from envstore.stores.base import Fields, Head
from envstore.stores.objectstore import Cached, ObjectStore, fields_digest
from envstore.stores.oss import (
    META_PREFIX,
    OSSFileSystem,
    call,
    content_md5,
    translate,
)
from envstore.stores.oss_ops import (
    FORBID_OVERWRITE,
    clean_uploads,
    commit_error,
    copy_error,
    exists_error,
    require_bucket,
)
from envstore.stores.partsink import PartSink, abort_failed

__all__ = ["DEFAULT_PART_SIZE", "OssStore"]

MiB = 1 << 20
DEFAULT_PART_SIZE = 16 * MiB
MAX_PARTS = 10_000
COPY_LIMIT = 1 << 30  # CopyObject handles sources up to 1 GB
#: Content-Type and the other standard headers OSS keeps with an object: a metadata REPLACE
#: drops them unless they are sent again, a multipart copy unless they are set on initiate
KEPT_HEADERS = (
    "Content-Type",
    "Cache-Control",
    "Content-Disposition",
    "Content-Encoding",
    "Content-Language",
    "Expires",
)


def _meta_headers(fields: Mapping[str, str] | None) -> dict[str, str]:
    return {META_PREFIX + k: v for k, v in (fields or {}).items()}


def _kept_headers(current: Mapping[str, str], envelope: bool) -> dict[str, str]:
    """What a metadata REPLACE or a multipart copy must send again to keep it: user metadata
    (the envelope only if ``envelope``) and the standard headers OSS stores."""
    out = {
        k: v
        for k, v in current.items()
        if k.lower().startswith(META_PREFIX)
        and (envelope or not k.lower().startswith(META_PREFIX + "envstore-"))
    }
    for name in KEPT_HEADERS:
        if current.get(name):
            out[name] = current[name]
    return out


class OssStore(ObjectStore):
    """Adapter for :class:`OSSFileSystem`."""

    #: OSS's user-metadata limit (keys with their ``x-oss-meta-`` prefix, plus values)
    metadata_limit = 8192
    meta_prefix = META_PREFIX
    label = "OSS"
    copy_part_size: int = 256 * MiB
    #: multipart upload parts in flight per writer (each holds one part buffer)
    upload_concurrency: int = 2
    filesystem_class = OSSFileSystem

    def __init__(self, fs: OSSFileSystem) -> None:  # type: ignore[override]
        if not isinstance(fs, OSSFileSystem):
            raise ConfigError(
                "envstore reads and writes OSS through oss2 (ossfs loses metadata and range "
                "bytes): use target_protocol='oss' / envstore::oss:// rather than an ossfs "
                "instance"
            )
        super().__init__(fs)
        self.fs: OSSFileSystem = fs
        self.part_size = DEFAULT_PART_SIZE

    @classmethod
    def make_filesystem(cls, options: Mapping[str, Any]) -> OSSFileSystem:
        return OSSFileSystem(**dict(options))

    # -- the hooks of ObjectStore ------------------------------------------------------------
    def _key(self, path: str) -> tuple[str, str, str]:
        name = self.fs._strip_protocol(path)
        bucket, key = self.fs.split_path(name)
        return bucket, key, name

    def _forgotten(self, path: str | None) -> None:
        if path is not None:
            self.fs.invalidate_cache(path)

    def _head_object(self, path: str, bucket: str, key: str) -> Cached:
        name = self._key(path)[2]
        try:
            result = self.fs.bucket(bucket).head_object(key) if key else None
        except oss2.exceptions.NotFound:
            result = None
        except oss2.exceptions.OssError as exc:
            raise translate(exc, name) from exc
        if result is None:  # a directory (one LIST; the HEAD was just made), or not found
            found = self.fs.directory(name)
            if found is None:
                raise FileNotFoundError(errno.ENOENT, "no such object or prefix", name)
            return Cached(None, found)
        fields = {
            k.lower()[len(META_PREFIX) :]: v
            for k, v in result.headers.items()
            if k.lower().startswith(META_PREFIX + "envstore-")
        }
        token = (result.content_length, result.etag, result.last_modified, fields_digest(fields))
        entry = OSSFileSystem._file_entry(
            bucket, key, result.content_length, result.etag, result.last_modified
        )
        cached = Cached(Head(int(result.content_length), fields, token), entry)
        cached.extra = dict(result.headers)
        return cached

    def _require_bucket(self, bucket: str) -> None:
        require_bucket(self.fs.bucket(bucket), bucket)

    def _clean(self, bucket: str, key: str, older_than: float, dry_run: bool) -> list[dict]:
        return clean_uploads(self.fs.bucket(bucket), bucket, key, older_than, dry_run)

    # -- envelope rewrites -------------------------------------------------------------------
    def set_metadata(
        self, path: str, fields: Mapping[str, str], expect: tuple[Any, ...] | None = None
    ) -> None:
        """Replace the envelope in place (CopyObject onto itself, metadata REPLACE), keeping
        the object's other user metadata, Content-Type and the other standard headers.

        The version ``expect`` names (ETag and envelope) must be in place, and the copy
        carries ``x-oss-copy-source-if-match`` with its ETag: an object replaced meanwhile is
        never rewritten (ConcurrentModificationError).  Afterwards a HEAD checks the stored
        envelope is the one written (the residual window is S3's, see ``S3Store``)."""
        self.check_metadata(fields)
        bucket, key, name = self._key(path)
        cached = self.fresh_for_rewrite(name, expect)
        headers = _kept_headers(cached.extra, envelope=False)
        headers.update(_meta_headers(fields))
        headers["x-oss-copy-source-if-match"] = f'"{cached.entry["ETag"]}"'
        try:
            self.fs.bucket(bucket).update_object_meta(key, headers)
        except oss2.exceptions.OssError as exc:
            error = copy_error(exc, name)
            raise (translate(exc, name) if error is exc else error) from exc
        finally:
            self.forget(name)
        self.confirm_rewrite(name, fields)

    # -- content -----------------------------------------------------------------------------
    def read(self, path: str, start: int, end: int) -> bytes:
        if self.read_deadline is None:
            return self.fs.cat_file(path, start=start, end=end)
        limit = self.read_deadline + max(0, end - start) / MiB  # as for S3: + 1 s per MiB
        return self.fs.cat_file(path, start=start, end=end, deadline=limit)

    def read_many(
        self, paths: Sequence[str], starts: Sequence[int], ends: Sequence[int]
    ) -> list[bytes]:
        if len(paths) <= 1:
            return [self.read(p, s, e) for p, s, e in zip(paths, starts, ends, strict=True)]
        with concurrent.futures.ThreadPoolExecutor(min(len(paths), self.fs.max_concurrency)) as ex:
            return list(ex.map(self.read, paths, starts, ends))

    def open_sink(
        self, path: str, fields: Fields, hint: int | None, exclusive: bool = False
    ) -> OssSink:
        """A pending object; with ``exclusive`` every request that could create it carries
        ``x-oss-forbid-overwrite: true`` (OSS refuses atomically: FileExistsError)."""
        bucket, key, name = self._key(path)
        if not key:
            raise IsADirectoryError(errno.EISDIR, "cannot write to a bucket", name)
        part = self.part_size
        if hint is not None:
            part = max(part, -(-hint // MAX_PARTS))
        headers = _meta_headers(fields)
        if exclusive:
            headers.update(FORBID_OVERWRITE)
        sink = OssSink(self, bucket, key, headers, hint, part)
        sink.exclusive = exclusive
        return sink

    def copy(self, src: str, dst: str) -> None:
        _, _, s_name = self._key(src)
        sb, sk, _ = self._key(src)
        db, dk, d_name = self._key(dst)
        target = self.fs.bucket(db)
        size = self.head(s_name).size
        try:
            if size <= COPY_LIMIT:
                headers = {"x-oss-metadata-directive": "COPY"}
                call(target.copy_object, s_name, sb, sk, dk, headers=headers)
            else:
                self._multipart_copy(s_name, (sb, sk), target, dk, size)
        finally:
            self.forget(d_name)

    def _multipart_copy(
        self, s_name: str, source: tuple[str, str], target: oss2.Bucket, dk: str, size: int
    ) -> None:
        """UploadPartCopy for large objects; metadata (the envelope), Content-Type and the other
        standard headers set on initiate, as CopyObject's COPY directive would keep them."""
        sb, sk = source
        current = call(self.fs.bucket(sb).head_object, s_name, sk)
        headers = _kept_headers(current.headers, envelope=True)
        upload_id = call(target.init_multipart_upload, dk, dk, headers=headers).upload_id
        part = max(self.copy_part_size, -(-size // MAX_PARTS))
        try:

            def one(item: tuple[int, int]) -> oss2.models.PartInfo:
                number, start = item
                last = min(start + part, size) - 1
                out = call(
                    target.upload_part_copy, dk, sb, sk, (start, last), dk, upload_id, number
                )
                return oss2.models.PartInfo(number, out.etag)

            with concurrent.futures.ThreadPoolExecutor(self.fs.max_concurrency) as ex:
                parts = list(ex.map(one, enumerate(range(0, size, part), 1)))
            call(target.complete_multipart_upload, dk, dk, upload_id, parts)
        except BaseException:
            try:
                target.abort_multipart_upload(dk, upload_id)
            except oss2.exceptions.NoSuchUpload:
                pass
            except Exception as exc:  # the original error matters more
                abort_failed(upload_id, dk, exc)
            raise


class OssSink(PartSink):
    """A pending OSS object: ``PutObject`` if it fits one part, else a multipart upload with up
    to ``store.upload_concurrency`` parts in flight on helper threads while the next one fills
    (``upload_concurrency + 1`` part buffers at most).  Every upload carries its Content-MD5,
    which OSS verifies before it stores anything."""

    def __init__(
        self,
        store: OssStore,
        bucket: str,
        key: str,
        headers: dict[str, str],
        size_hint: int | None,
        part_size: int,
    ) -> None:
        super().__init__(f"{bucket}/{key}", size_hint, part_size, store.upload_concurrency)
        self.bucket = store.fs.bucket(bucket)
        self.key = key
        self.headers = headers
        self.pool: concurrent.futures.ThreadPoolExecutor | None = None

    def __repr__(self) -> str:
        return f"<OSS sink oss://{self.name}>"

    def _initiate(self) -> str:
        try:
            result = call(
                self.bucket.init_multipart_upload, self.name, self.key, headers=self.headers
            )
        except OSError as exc:
            error = exists_error(exc, self.name)  # exclusive: the key exists already
            if error is exc:
                raise
            raise error from exc
        self.pool = concurrent.futures.ThreadPoolExecutor(
            self.concurrency, thread_name_prefix="envstore-oss"
        )
        return str(result.upload_id)

    def _send_part(self, number: int, body: bytearray) -> concurrent.futures.Future[Any]:
        assert self.pool is not None
        return self.pool.submit(self._upload, number, body)

    def _upload(self, number: int, body: bytearray) -> None:
        # the buffer itself is sent (no copy; it is reused only after this call returned),
        # except through oss2's CRC adapter, which reads bytes only
        data: bytes | bytearray = bytes(body) if self.bucket.enable_crc else body
        result = call(
            self.bucket.upload_part,
            self.name,
            self.key,
            self.upload_id,
            number,
            data,
            headers={"Content-MD5": content_md5(data)},
        )
        self.parts[number - 1] = oss2.models.PartInfo(number, result.etag)

    def _put(self, body: bytearray) -> None:
        data = bytes(body)
        headers = {**self.headers, "Content-MD5": content_md5(data)}
        call(self.bucket.put_object, self.name, self.key, data, headers=headers)

    def _complete(self) -> None:
        cond = FORBID_OVERWRITE if self.exclusive else None
        call(
            self.bucket.complete_multipart_upload,
            self.name,
            self.key,
            self.upload_id,
            self.parts,
            headers=cond,
        )

    def _abort(self, upload_id: str) -> None:
        try:
            self.bucket.abort_multipart_upload(self.key, upload_id)
        except oss2.exceptions.NoSuchUpload:
            pass

    def _commit_error(self, exc: BaseException, what: str) -> BaseException:
        return commit_error(exc, self.name, what, self.exclusive)

    def _release(self) -> None:
        super()._release()
        if self.pool is not None:
            self.pool.shutdown(wait=True)
            self.pool = None
