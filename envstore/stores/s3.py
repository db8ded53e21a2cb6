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

import asyncio
import concurrent.futures
import errno
import logging
import math
import threading
import time
from collections import OrderedDict
from collections.abc import Coroutine, Mapping, Sequence
from typing import Any, TypeVar

from s3fs import S3FileSystem

from envstore.errors import FormatError, IntegrityError
from envstore.format import WIRE_CHUNK, has_envelope, plain_size
from envstore.stores.base import DEFAULT_READ_DEADLINE, Head, Sink, Store, entry_token
from envstore.stores.failures import translating
from envstore.stores.s3_deadline import DEFAULT_WRITE_DEADLINE, bounded, write_limit
from envstore.stores.s3_ops import (
    clean_uploads,
    commit_error,
    copy_error,
    replaced,
    require_bucket,
)

__all__ = ["DEFAULT_PART_SIZE", "S3Store"]

logger = logging.getLogger(__name__)

MiB = 1 << 20
GiB = 1 << 30
MIN_PART_SIZE = 5 * MiB  # S3: every part but the last
MAX_PART_SIZE = 5 * GiB  # S3: largest part, largest single PUT / CopyObject source
MAX_PARTS = 10_000
#: like the AWS CLI's multipart_chunksize: aiohttp holds up to 3 more copies of the part in
#: flight, so extra memory is about 5-6 part sizes (~45 MiB at 8 MiB)
DEFAULT_PART_SIZE = 8 * MiB
META_PREFIX = "x-amz-meta-"
#: seconds to wait for in-flight requests to stop after a failure, before aborting anyway
_CANCEL_WAIT = 30.0
#: sequential-scan bookkeeping: idle scans are dropped after this many seconds; a random
#: read keeps this many of its last bytes (a following read may restart inside its last chunk)
_SCAN_IDLE = 10.0
_SCAN_TAIL = 2 * WIRE_CHUNK
_SCANS_PER_OBJECT = 4

T = TypeVar("T")


def _run(fs: S3FileSystem, coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro`` on s3fs's event loop and wait; an interrupt cancels it (and waits for it).

    Unlike ``fsspec.asyn.sync``, an interrupt (``KeyboardInterrupt``) while waiting reaches the
    coroutine as a cancellation, so its cleanup (aborting an upload) runs before we return.
    """
    future = asyncio.run_coroutine_threadsafe(coro, fs.loop)
    try:
        return future.result()
    except BaseException:
        if not future.done():
            future.cancel()
            try:
                concurrent.futures.wait([future], timeout=_CANCEL_WAIT)
            except BaseException:  # pragma: no cover - a second interrupt: give up waiting
                pass
        raise


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


class _Scan:
    """One sequential reader of an object: its last range, the bytes fetched for it (``blob``
    from ``blob_start``) and at most one fetch in flight for the bytes after them."""

    __slots__ = (
        "ahead",
        "blob",
        "blob_start",
        "busy",
        "end",
        "span",
        "start",
        "tail",
        "tail_start",
        "used",
    )

    def __init__(self, start: int, end: int, blob_start: int, blob: bytes) -> None:
        self.start = start
        self.end = end
        self.span = 0  # bytes per read-ahead GET; 0 until the reads prove sequential
        self.blob_start = blob_start
        self.blob = blob
        self.tail_start, self.tail = 0, b""  # the last bytes of the blob before this one
        #: GETs in flight for the bytes after ``blob``, in order: (start, end, future)
        self.ahead: list[tuple[int, int, concurrent.futures.Future[bytes]]] = []
        self.busy = False  # claimed by a thread
        self.used = time.monotonic()

    def replace(self, start: int, blob: bytes) -> None:
        old = self.blob[-_SCAN_TAIL:]
        self.tail_start, self.tail = self.blob_start + len(self.blob) - len(old), old
        self.blob_start, self.blob = start, blob

    def drop(self) -> None:
        for _, _, future in self.ahead:
            future.cancel()
        self.ahead = []
        self.blob = self.tail = b""


class _Cached:
    """One HEAD result: the object's Head (None for a directory) and its info entry."""

    __slots__ = ("entry", "expires", "extra", "head")

    def __init__(self, head: Head | None, entry: dict[str, Any], expires: float) -> None:
        self.head = head
        self.entry = entry
        self.expires = expires
        self.extra: dict[str, Any] = {}


class S3Store(Store):
    """Adapter for ``s3fs.S3FileSystem`` (protocols ``s3``, ``s3a``)."""

    #: S3's user-metadata limit in bytes (AWS: the UTF-8 bytes of keys and values)
    metadata_limit = 2048
    #: seconds a HEAD result serves ``head``/``info`` of the same path
    head_ttl: float = 5.0
    #: most paths whose HEAD is remembered
    head_cache_size: int = 4096
    #: objects larger than this are copied part by part (``UploadPartCopy``)
    copy_threshold: int = MAX_PART_SIZE
    #: part size of multipart copies (raised to fit 10,000 parts)
    copy_part_size: int = 512 * MiB
    #: concurrent ``UploadPartCopy`` requests
    copy_concurrency: int = 8
    #: most bytes a sequential scan fetches per GET; None: s3fs's ``default_block_size``
    #: (50 MiB unless set), the block of s3fs's own read-ahead cache; 0: no read-ahead
    readahead_max: int | None = None
    #: read-ahead GETs a sequential scan keeps in flight while the caller consumes the bytes
    #: in hand (memory per scanning reader: up to (1 + depth) x readahead_max)
    readahead_depth: int = 1
    #: objects whose sequential-scan state (and read-ahead bytes) are kept
    readahead_objects: int = 4
    #: seconds one read request (a HEAD, a ranged GET) may take in total, s3fs's and
    #: botocore's retries included, plus one second per MiB it fetches; None: no limit.
    #: Set from the envstore option ``read_deadline``.
    read_deadline: float | None = DEFAULT_READ_DEADLINE
    #: ranged GETs of one batch in flight at once (botocore's default connection pool)
    read_concurrency: int = 10
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
        self._heads: OrderedDict[str, _Cached] = OrderedDict()
        self._scans: OrderedDict[str, list[_Scan]] = OrderedDict()
        self._lock = threading.Lock()
        self._buckets: set[str] = set()  # buckets known to exist

    # -- paths -------------------------------------------------------------------------------
    def _split(self, path: str) -> tuple[str, str, str | None]:
        return self.fs.split_path(self.fs._strip_protocol(path))

    def _name(self, path: str) -> str:
        bucket, key, _ = self._split(path)
        return f"{bucket}/{key}" if key else bucket

    # -- the HEAD cache ----------------------------------------------------------------------
    def forget(self, path: str | None = None) -> None:
        """Drop cached HEADs and read-ahead of ``path`` and below it (everything if None)."""
        with self._lock:
            if path is None:
                self._heads.clear()
                dropped = [c for scans in self._scans.values() for c in scans]
                self._scans.clear()
            else:
                name = self._name(path).rstrip("/")
                below = name + "/"
                for p in [p for p in self._heads if p == name or p.startswith(below)]:
                    del self._heads[p]
                dropped = []
                for p in [p for p in self._scans if p == name or p.startswith(below)]:
                    dropped += self._scans.pop(p)
                while "/" in name:  # a new or removed object changes what its parents are
                    name = name.rsplit("/", 1)[0]
                    self._heads.pop(name, None)
        for scan in dropped:
            scan.drop()

    def _lookup(self, path: str, fresh: bool = False) -> _Cached:
        """HEAD ``path`` (one request), or the cached result of one made in the last
        ``head_ttl`` seconds.  A key that does not exist but is a prefix of others is a
        directory (cached too, ``head`` None); FileNotFoundError otherwise (not cached)."""
        bucket, key, version = self._split(path)
        if not key:
            raise IsADirectoryError(path)
        name = f"{bucket}/{key}" + (f"?versionId={version}" if version else "")
        now = time.monotonic()
        if not fresh:
            with self._lock:
                hit = self._heads.get(name)
                if hit is not None and hit.expires > now:
                    return hit
        kw = {"VersionId": version} if version else {}
        try:
            head = self.fs._call_s3("head_object", self.fs.kwargs, Bucket=bucket, Key=key, **kw)
            out = _run(self.fs, self._within(head, name))
        except FileNotFoundError:
            if version:
                raise
            cached = _Cached(None, self._directory(bucket, key), now + self.head_ttl)
        else:
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
            head = Head(entry["size"], fields, entry_token(entry))
            cached = _Cached(head, entry, now + self.head_ttl)
            cached.extra = {k: out[k] for k in _CONTENT_HEADERS if out.get(k)}
        with self._lock:
            self._heads[name] = cached
            self._heads.move_to_end(name)
            while len(self._heads) > self.head_cache_size:
                self._heads.popitem(last=False)
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

    def _file(self, path: str, fresh: bool = False) -> _Cached:
        cached = self._lookup(path, fresh)
        if cached.head is None:
            raise IsADirectoryError(path)
        return cached

    # -- metadata ----------------------------------------------------------------------------
    def head(self, path: str) -> Head:
        head = self._file(path).head
        assert head is not None
        return head

    def info(self, path: str, **kwargs: Any) -> dict[str, Any]:
        """One path's entry from the (cached) HEAD; buckets and versions as s3fs says."""
        _, key, _ = self._split(path)
        if not key or kwargs.get("version_id") is not None:
            return self.fs.info(path, **kwargs)
        return dict(self._lookup(path, fresh=bool(kwargs.get("refresh"))).entry)

    def isfile(self, path: str) -> bool:
        try:
            return self.info(path)["type"] == "file"
        except (FileNotFoundError, IsADirectoryError):
            return False

    def metadata_size(self, fields: Mapping[str, str]) -> int:
        """Bytes of user metadata as S3 counts them, with the ``x-amz-meta-`` prefix on every
        key (AWS documents keys + values; counting the prefix too keeps every server happy)."""
        return sum(
            len(META_PREFIX) + len(k.encode("utf-8")) + len(v.encode("utf-8"))
            for k, v in fields.items()
        )

    def listing_plain_size(self, entry: Mapping[str, Any]) -> int | None:
        """Plaintext size without a request.

        The rule: an object whose HEAD is known (``info`` of that path, a recent open) is
        judged by its metadata; any other listed object is taken to carry its envelope in
        metadata (what envstore writes on S3 unless the envelope exceeds 2 KB), so its
        plaintext size follows from its stored size.  Sizes no envstore body can have return
        None (envstore then reads the object's first bytes to tell).
        """
        size = entry.get("size")
        if size is None:
            return None
        with self._lock:
            hit = self._heads.get(str(entry.get("name", "")))
        if (
            hit is not None
            and hit.head is not None
            and hit.head.size == int(size)
            and hit.entry.get("ETag") == entry.get("ETag", hit.entry.get("ETag"))
            and not has_envelope(hit.head.fields)
        ):
            return None  # header placement or not envstore: the core reads the object
        try:
            return plain_size(int(size))
        except (IntegrityError, FormatError):
            return None

    def listing_encrypted(self, entry: Mapping[str, Any]) -> bool | None:
        """True when a cached HEAD of this very object (same size and ETag) shows an
        envelope; None otherwise (S3 listings carry no metadata)."""
        with self._lock:
            hit = self._heads.get(str(entry.get("name", "")))
        if (
            hit is not None
            and hit.head is not None
            and hit.head.size == entry.get("size")
            and hit.entry.get("ETag") == entry.get("ETag", hit.entry.get("ETag"))
            and has_envelope(hit.head.fields)
        ):
            return True
        return None

    def set_metadata(
        self, path: str, fields: Mapping[str, str], expect: tuple[Any, ...] | None = None
    ) -> None:
        """Replace the envelope fields in place (a copy onto itself with ``REPLACE``; multipart
        above ``copy_threshold``); other user metadata and the content headers are kept.

        The copy is conditional (``CopySourceIfMatch``) on the ETag of the version ``expect``
        names (else of a fresh HEAD): an object replaced meanwhile is never rewritten
        (ConcurrentModificationError)."""
        used = self.metadata_size(fields)
        if used > self.metadata_limit:
            raise FormatError(
                f"envelope needs {used} bytes of user metadata, over S3's "
                f"{self.metadata_limit}-byte limit; use fewer recipients"
            )
        cached = self._file(path, fresh=True)
        assert cached.head is not None and cached.head.fields is not None
        if expect is not None and cached.head.token != expect:
            raise replaced(path)
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
            self.fs.invalidate_cache(self._name(path))

    def rewrite_header(
        self, path: str, header: bytes, body_offset: int, stored_size: int, expect: tuple[Any, ...]
    ) -> None:
        """Header placement on S3 (rewrap of an envelope too large for metadata): the new
        object's commit carries ``If-Match`` with the ETag read, so it never replaces an object
        another writer stored meanwhile (ConcurrentModificationError); a body read across a
        replacement is refused the same way."""
        cached = self._file(path, fresh=True)
        assert cached.head is not None
        if cached.head.token != expect:
            raise replaced(path)
        sink = self.open_sink(path, None, len(header) + stored_size - body_offset)
        assert isinstance(sink, _S3Sink)
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

    # -- buckets and leftovers ---------------------------------------------------------------
    def makedirs(self, path: str) -> None:
        """S3 has no directories; the bucket must exist (FileNotFoundError, never created)."""
        bucket, _, _ = self._split(path)
        if bucket not in self._buckets:  # one HEAD per bucket, not per file
            require_bucket(self.fs, bucket)
            self._buckets.add(bucket)

    def mkdir(self, path: str, create_parents: bool = True, **kwargs: Any) -> None:
        self.makedirs(path)

    def clean(self, path: str, older_than: float, dry_run: bool) -> list[dict[str, Any]]:
        """Abort multipart uploads whose key starts with ``path``'s key, ``older_than`` s old."""
        bucket, key, _ = self._split(path)
        return clean_uploads(self.fs, bucket, key, older_than, dry_run)

    # -- content -----------------------------------------------------------------------------
    def read(self, path: str, start: int, end: int) -> bytes:
        """Stored bytes ``[start, end)``: one ranged GET (above s3fs's ``default_block_size``,
        concurrent GETs of that size, as s3fs's own ``cat_file`` does).

        Random access fetches exactly its range.  A read that continues where an earlier read
        of the same object ended is a sequential scan (``get``, ``read_csv``, streaming reads):
        it reads ahead (16x the read, growing 4x per step up to ``readahead_max``) with the
        next span fetched in the background, so a scan costs a few large GETs overlapped with
        the caller's work instead of one GET per caller read.
        """
        if start >= end:
            return b""
        if self.readahead_max == 0:
            return self._fetch(path, start, end)
        name = self._name(path)
        now = time.monotonic()
        with self._lock:
            scans = self._scans.pop(name, [])
            self._scans[name] = scans  # most recently used last
            scan = next((c for c in scans if not c.busy and c.start < start <= c.end), None)
            if scan is not None:
                scan.busy = True
            stale = [c for c in scans if not c.busy and now - c.used > _SCAN_IDLE]
            for c in stale:
                scans.remove(c)
            while len(self._scans) > max(1, self.readahead_objects):
                stale += self._scans.popitem(last=False)[1]
        for c in stale:
            c.drop()
        if scan is None:  # random access: exactly the range
            blob = self._fetch(path, start, end)
            tail = blob[-_SCAN_TAIL:]  # a following read may restart inside the last chunk
            fresh = _Scan(start, end, start + len(blob) - len(tail), tail)
            with self._lock:
                scans = self._scans.setdefault(name, [])
                scans.append(fresh)
                while len(scans) > _SCANS_PER_OBJECT:
                    scans.pop(0).drop()
            return blob
        try:
            return self._continue(scan, path, name, start, end)
        except BaseException:
            scan.drop()
            raise
        finally:
            scan.used = time.monotonic()
            scan.busy = False

    def _continue(self, scan: _Scan, path: str, name: str, start: int, end: int) -> bytes:
        size = self._known_size(name)
        most = self.fs.default_block_size if self.readahead_max is None else self.readahead_max
        scan.span = min(int(most), max(4 * scan.span, 16 * (end - start), MiB))
        pieces: list[memoryview] = []
        pos = start
        while pos < end:
            held = next(
                (
                    (got, lo)
                    for got, lo in ((scan.blob, scan.blob_start), (scan.tail, scan.tail_start))
                    if lo <= pos < lo + len(got)
                ),
                None,
            )
            if held is not None:  # fetched already
                got, lo = held
                take = min(end, lo + len(got)) - pos
                pieces.append(memoryview(got)[pos - lo : pos - lo + take])
                pos += take
                continue
            if scan.ahead and not scan.ahead[0][0] <= pos < scan.ahead[0][1]:
                scan.drop()  # the scan moved elsewhere: start over here
            blob = b""
            if scan.ahead:  # fetched in the background
                ahead_start, _, future = scan.ahead.pop(0)
                try:
                    blob = future.result()
                except Exception:  # fetched again below; a real error surfaces there
                    blob = b""
                if blob:
                    scan.replace(ahead_start, blob)
            if not blob:
                stop = max(end, pos + scan.span)
                if pos < scan.blob_start < stop:  # fill the gap before the bytes in hand
                    stop = scan.blob_start
                blob = self._fetch(path, pos, stop if size is None else min(stop, size))
                if not blob:
                    break  # past the end: a short read, as for any range
                if stop != scan.blob_start:
                    scan.replace(pos, blob)
                else:
                    pieces.append(memoryview(blob)[: end - pos])
                    pos += min(len(blob), end - pos)
                    continue
            # keep the pipeline full: up to readahead_depth GETs after the bytes in hand
            after = scan.ahead[-1][1] if scan.ahead else scan.blob_start + len(scan.blob)
            while len(scan.ahead) < self.readahead_depth and (size is None or after < size):
                stop = after + scan.span if size is None else min(after + scan.span, size)
                got = self.fs._cat_file(path, start=after, end=stop)
                coro = self._within(got, path, stop - after)
                future = asyncio.run_coroutine_threadsafe(coro, self.fs.loop)
                scan.ahead.append((after, stop, future))
                after = stop
        scan.start, scan.end = start, end
        if size is not None and end >= size:
            scan.drop()  # the scan reached the end
        return b"".join(pieces)

    async def _within(self, coro: Coroutine[Any, Any, T], path: str, nbytes: int = 0) -> T:
        """``await coro``, cancelled with a TimeoutError once the read deadline has passed."""
        if self.read_deadline is None:
            return await coro
        limit = self.read_deadline + nbytes / MiB
        start = time.monotonic()
        try:
            return await asyncio.wait_for(coro, limit)
        except asyncio.TimeoutError:  # the deadline's own, or one from below (translated later)
            if time.monotonic() - start < limit:
                raise
        raise TimeoutError(
            errno.ETIMEDOUT,
            f"reading {path} did not finish within {limit:.0f}s, retries included "
            f"(read_deadline={self.read_deadline:g}s plus 1s per MiB)",
            path,
        )

    async def _gather(
        self, paths: Sequence[str], starts: Sequence[int], ends: Sequence[int]
    ) -> list[bytes]:
        """Ranged GETs, ``read_concurrency`` at a time, each within the read deadline; the
        first failure cancels the others."""
        sem = asyncio.Semaphore(max(1, self.read_concurrency))

        async def one(path: str, start: int, end: int) -> bytes:
            async with sem:
                got = self.fs._cat_file(path, start=start, end=end)
                return await self._within(got, path, end - start)

        tasks = [
            asyncio.ensure_future(one(p, s, e)) for p, s, e in zip(paths, starts, ends, strict=True)
        ]
        try:
            return list(await asyncio.gather(*tasks))
        except BaseException:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            raise

    def range_gone(self, exc: BaseException) -> bool:
        """s3fs turns a 416 ``InvalidRange`` (the object is now shorter than the range start)
        into a generic ``OSError(EINVAL)``: find the S3 error code along the cause chain."""
        seen: BaseException | None = exc
        for _ in range(8):
            if seen is None:
                return False
            response = getattr(seen, "response", None)
            if isinstance(response, dict) and (
                response.get("Error", {}).get("Code") == "InvalidRange"
                or response.get("ResponseMetadata", {}).get("HTTPStatusCode") == 416
            ):
                return True
            seen = seen.__cause__ or seen.__context__
        return False

    def _known_size(self, name: str) -> int | None:
        with self._lock:
            hit = self._heads.get(name)
        return hit.head.size if hit is not None and hit.head is not None else None

    def _fetch(self, path: str, start: int, end: int) -> bytes:
        if start >= end:
            return b""
        piece = int(self.fs.default_block_size)
        if end - start > piece:
            starts = list(range(start, end, piece))
            ends = [*starts[1:], end]
            return b"".join(self.read_many([path] * len(starts), starts, ends))
        got = self.fs._cat_file(path, start=start, end=end)
        return _run(self.fs, self._within(got, path, end - start))

    def read_many(
        self, paths: Sequence[str], starts: Sequence[int], ends: Sequence[int]
    ) -> list[bytes]:
        todo = [i for i, (s, e) in enumerate(zip(starts, ends, strict=True)) if s < e]
        out: list[bytes] = [b""] * len(paths)
        if todo:
            got = _run(
                self.fs,
                self._gather(
                    [paths[i] for i in todo], [starts[i] for i in todo], [ends[i] for i in todo]
                ),
            )
            for i, blob in zip(todo, got, strict=True):
                if isinstance(blob, BaseException):
                    raise blob
                out[i] = blob
        return out

    def open_sink(
        self,
        path: str,
        metadata: Mapping[str, str] | None,
        size_hint: int | None,
        exclusive: bool = False,
    ) -> Sink:
        """A pending object; with ``exclusive``, ``PutObject`` and ``CompleteMultipartUpload``
        carry ``If-None-Match: *`` (S3 refuses atomically if the key exists: FileExistsError)."""
        bucket, key, version = self._split(path)
        if not key:
            raise IsADirectoryError(path)
        if version:
            raise ValueError(f"cannot write to a specific version: {path}")
        if metadata:
            used = self.metadata_size(metadata)
            if used > self.metadata_limit:  # the core checks first; this guards direct use
                raise FormatError(
                    f"envelope needs {used} bytes of user metadata, over S3's "
                    f"{self.metadata_limit}-byte limit"
                )
        part = self.part_size
        if size_hint is not None and size_hint > part * MAX_PARTS:
            part = math.ceil(size_hint / MAX_PARTS / MiB) * MiB
        sink = _S3Sink(self, bucket, key, dict(metadata or {}), size_hint, min(part, MAX_PART_SIZE))
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
            self.fs.invalidate_cache(self._name(dst))

    def _copy(
        self,
        b1: str,
        k1: str,
        v1: str | None,
        b2: str,
        k2: str,
        cached: _Cached,
        replace: dict[str, Any] | None,
    ) -> None:
        """Copy ``b1/k1`` as HEAD'ed in ``cached`` to ``b2/k2``: its metadata, or ``replace``
        (``Metadata`` and content headers).  The source must still have the HEAD's ETag."""
        assert cached.head is not None
        source: dict[str, str] = {"Bucket": b1, "Key": k1}
        if v1:
            source["VersionId"] = v1
        etag = cached.entry["ETag"]
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
        same = {"IfMatch": etag} if (b1, k1, v1) == (b2, k2, None) else {}
        _run(self.fs, self._multipart_copy(source, b2, k2, cached.head.size, etag, create, same))

    def move(self, src: str, dst: str) -> None:
        self.copy(src, dst)
        self.fs.rm_file(self._name(src))
        self.forget(src)

    async def _multipart_copy(
        self,
        source: dict[str, str],
        b2: str,
        k2: str,
        size: int,
        etag: str,
        create_kw: dict[str, Any],
        complete_kw: dict[str, Any] | None = None,
    ) -> None:
        """``UploadPartCopy`` in parts; metadata on ``CreateMultipartUpload``; abort on failure."""
        fs = self.fs
        part = max(self.copy_part_size, MIN_PART_SIZE, math.ceil(size / MAX_PARTS))
        mpu = await fs._call_s3("create_multipart_upload", Bucket=b2, Key=k2, **create_kw)
        upload_id = mpu["UploadId"]
        sem = asyncio.Semaphore(max(1, self.copy_concurrency))

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
            await _abort(fs, b2, k2, upload_id)
            raise


async def _abort(
    fs: S3FileSystem, bucket: str, key: str, upload_id: str, limit: float | None = None
) -> None:
    """Abort a multipart upload; never raises (the error that led here is the one to see)."""
    try:
        call = fs._call_s3("abort_multipart_upload", Bucket=bucket, Key=key, UploadId=upload_id)
        await bounded(call, limit, f"AbortMultipartUpload of {bucket}/{key}", "upload left")
    except FileNotFoundError:
        pass  # already gone (NoSuchUpload)
    except Exception as exc:
        logger.warning(
            "could not abort multipart upload %s of %s/%s: %s (a bucket lifecycle rule "
            "AbortIncompleteMultipartUpload removes it eventually)",
            upload_id,
            bucket,
            key,
            exc,
        )


#: CompleteMultipartUpload's deadline grows by 0.1 s per part (the 1 s/MiB rule applied to
#: 1/10 MiB per part: 10,000 parts add 1,000 s)
_COMPLETE_PER_PART = MiB // 10
#: a PutObject / CompleteMultipartUpload given up: the store may still finish it
_UNKNOWN = (
    "outcome unknown: the store may still complete the request, so the object is either "
    "absent or whole (never partial): check it (exists, envstore verify) before relying on it"
)


class _S3Sink:
    """A pending S3 object: one ``PutObject`` if it fits one part, else a multipart upload.

    Memory: at most two part buffers — the one being filled and the one being uploaded (the
    upload runs on s3fs's event loop while the caller keeps encrypting).
    """

    def __init__(
        self,
        store: S3Store,
        bucket: str,
        key: str,
        metadata: dict[str, str],
        size_hint: int | None,
        part_size: int,
    ) -> None:
        self.store = store
        self.fs = store.fs
        self.bucket = bucket
        self.key = key
        self.metadata = metadata
        self.part_size = part_size
        first = part_size if size_hint is None else max(1, min(part_size, size_hint))
        self.buf = bytearray(min(first, MiB) if size_hint is None else first)
        self.fill = 0
        self.upload_id: str | None = None
        self.parts: list[dict[str, Any]] = []
        self.inflight: tuple[concurrent.futures.Future[Any], bytearray] | None = None
        self.done = False
        self.exclusive = False  # If-None-Match: * on the commit
        self.if_match: str | None = None  # If-Match: the commit replaces only this ETag

    def __repr__(self) -> str:
        return f"<S3 sink s3://{self.bucket}/{self.key}>"

    # -- writing -----------------------------------------------------------------------------
    def _target(self) -> int:
        """Size of the part being filled (doubling every 1,000 parts: 10,000 parts reach
        ~8 TiB from 8 MiB, more than S3's 5 TiB object limit)."""
        return min(MAX_PART_SIZE, self.part_size << (len(self.parts) // 1000))

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if self.done:
            raise ValueError("write to a committed or discarded sink")
        view = memoryview(data).cast("B")
        while len(view):
            target = self._target()
            if self.fill == target:  # full, and more is coming: it is not the last part
                self._ship()
                target = self._target()
            if len(self.buf) < target and self.fill + len(view) > len(self.buf):
                grown = bytearray(min(target, max(2 * len(self.buf), self.fill + len(view))))
                grown[: self.fill] = memoryview(self.buf)[: self.fill]
                self.buf = grown
            take = min(len(view), target - self.fill)
            self.buf[self.fill : self.fill + take] = view[:take]
            self.fill += take
            view = view[take:]

    def _ship(self) -> None:
        """Upload the full buffer as the next part; continue in the other buffer."""
        if self.upload_id is None:
            mpu = self._call(
                "create_multipart_upload",
                0,
                "nothing was written",
                Bucket=self.bucket,
                Key=self.key,
                **({"Metadata": self.metadata} if self.metadata else {}),
            )
            self.upload_id = mpu["UploadId"]
        spare = self._settle()
        body, number = self.buf, len(self.parts) + 1
        if self.fill < len(body):
            del body[self.fill :]
        self.parts.append({"PartNumber": number})
        future = asyncio.run_coroutine_threadsafe(self._upload(number, body), self.fs.loop)
        self.inflight = (future, body)
        target = self._target()
        self.buf = spare if spare is not None and len(spare) >= target else bytearray(target)
        self.fill = 0

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
        out = await bounded(call, limit, what, "the multipart upload is aborted; no object")
        self.parts[number - 1]["ETag"] = out["ETag"]

    def _call(self, op: str, nbytes: int, after: str, **kw: Any) -> Any:
        """``fs.call_s3(op, **kw)`` within the write deadline (``after``: the state if not)."""
        limit = write_limit(self.store.write_deadline, nbytes)
        api = "".join(word.title() for word in op.split("_"))  # put_object -> PutObject
        what = f"{api} of {self.bucket}/{self.key}"
        return _run(self.fs, bounded(self.fs._call_s3(op, **kw), limit, what, after))

    def _settle(self) -> bytearray | None:
        """Wait for the part in flight; its buffer is free again."""
        if self.inflight is None:
            return None
        future, body = self.inflight
        self.inflight = None
        future.result()
        return body

    # -- finishing ---------------------------------------------------------------------------
    def commit(self) -> None:
        if self.done:
            raise ValueError("sink already committed or discarded")
        cond = {"IfNoneMatch": "*"} if self.exclusive else {}
        if self.if_match is not None:
            cond = {"IfMatch": self.if_match}
        try:
            if self.upload_id is None:
                body = self.buf
                if self.fill < len(body):
                    del body[self.fill :]
                self._final(
                    "PutObject",
                    "put_object",
                    len(body),
                    Body=body,
                    **({"Metadata": self.metadata} if self.metadata else {}),
                    **cond,
                )
            else:
                if self.fill:
                    self._ship()
                self._settle()
                self._final(
                    "CompleteMultipartUpload",
                    "complete_multipart_upload",
                    len(self.parts) * _COMPLETE_PER_PART,  # S3 may take minutes for many parts
                    UploadId=self.upload_id,
                    MultipartUpload={"Parts": self.parts},
                    **cond,
                )
        except BaseException:
            self.discard()
            raise
        self.done = True
        self._release()
        self.store.forget(f"{self.bucket}/{self.key}")
        self.fs.invalidate_cache(f"{self.bucket}/{self.key}")

    def _final(self, what: str, method: str, nbytes: int, **kw: Any) -> None:
        """The commit request, within the write deadline (``nbytes``: what it sends); its
        failure as :func:`~envstore.stores.s3_ops.commit_error` reads it (FileExistsError, a
        definite refusal, or OutcomeUnknownError)."""
        try:
            self._call(method, nbytes, _UNKNOWN, Bucket=self.bucket, Key=self.key, **kw)
        except BaseException as exc:
            name = f"{self.bucket}/{self.key}"
            error = commit_error(exc, name, what, self.exclusive)
            if self.if_match is not None and error is exc:
                error = copy_error(exc, name)  # 412: the object is not the one read
            if error is exc:
                raise
            raise error from exc

    def discard(self) -> None:
        """Stop the part in flight and abort the multipart upload: nothing is left behind."""
        if self.done:
            return
        self.done = True
        try:
            if self.inflight is not None:
                future, _ = self.inflight
                self.inflight = None
                future.cancel()
                concurrent.futures.wait([future], timeout=_CANCEL_WAIT)
            if self.upload_id is not None:
                upload_id, self.upload_id = self.upload_id, None
                limit = write_limit(self.store.write_deadline)
                _run(self.fs, _abort(self.fs, self.bucket, self.key, upload_id, limit))
        finally:
            self._release()

    def _release(self) -> None:
        self.buf = bytearray()
        self.inflight = None


# -- backend failures -> builtin OSErrors ---------------------------------------------------
# One place: transport failures (unreachable endpoint, reset, body cut short, timeouts) leave
# the adapter as ConnectionError / TimeoutError / OSError with the original chained
# (envstore.stores.failures.FAILURE_TO_EXCEPTION); s3fs already maps S3 error responses.
def _store_path(store: S3Store, path: str, *args: Any, **kwargs: Any) -> str:
    return path


def _sink_path(sink: _S3Sink, *args: Any, **kwargs: Any) -> str:
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
    setattr(_S3Sink, _name, translating(_sink_path, "writing")(getattr(_S3Sink, _name)))
