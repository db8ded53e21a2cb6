"""Alibaba Cloud OSS through oss2: the envelope as ``x-oss-meta-envstore-*`` user metadata.

ossfs cannot carry envstore's content (range reads return one byte too many, a range ending
at EOF returns the whole object, ``open("wb")`` drops metadata headers, and there is no
metadata read), so envstore talks to OSS with oss2 only:

* :class:`OSSFileSystem` — a small fsspec filesystem on oss2 for the namespace (``ls``,
  ``info``, ``find``, ``rm``, ``mkdir``, ``exists``) and raw ranged reads.  It is what
  ``envstore::oss://bucket/key`` uses as its inner filesystem, whether or not ossfs is
  installed.  Plain ``oss://`` URLs are ossfs's (see :mod:`envstore.stores.oss_protocol`).
  Options use the names ossfs users know: ``endpoint``, ``key``, ``secret``, ``token``; when
  absent, ``OSS_ENDPOINT``, ``OSS_ACCESS_KEY_ID``, ``OSS_ACCESS_KEY_SECRET``,
  ``OSS_SESSION_TOKEN`` (or the ``ALIBABA_CLOUD_*`` equivalents) apply.
* :class:`OssStore` — the adapter: one ``HeadObject`` per object (cached briefly per path;
  a directory costs one HEAD and one LIST), ranged ``GetObject`` always with
  ``x-oss-range-behavior: standard``, bodies read as stored in one piece, ``PutObject`` or a
  multipart upload (metadata on initiate, two parts in flight, aborted on any failure), every
  upload with its Content-MD5 (OSS verifies it before storing; oss2's client-side CRC64 is off
  unless ``enable_crc=True``: it holds the GIL at ~300 MB/s and oss2 never compares it on
  downloads), copies that keep the envelope (``CopyObject`` with
  ``x-oss-metadata-directive: COPY``; ``UploadPartCopy`` above 1 GB), metadata rewrites in
  place (rewrap) that keep the other metadata and standard headers, the 8 KB user-metadata
  limit.

OSS errors become the builtin ``OSError`` subclasses s3fs users know: ``FileNotFoundError``
(NoSuchKey, NoSuchBucket), ``PermissionError`` (AccessDenied, SignatureDoesNotMatch,
InvalidAccessKeyId), ``ConnectionError`` (no response), ``OSError`` otherwise.
"""

from __future__ import annotations

import base64
import concurrent.futures
import errno
import hashlib
import os
import socket
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from glob import has_magic
from typing import Any, TypeVar

import oss2
from fsspec.spec import AbstractBufferedFile, AbstractFileSystem

from envstore.errors import (
    ConcurrentModificationError,
    ConfigError,
    FormatError,
    IntegrityError,
)
from envstore.format import has_envelope, plain_size
from envstore.stores.base import Head, Store
from envstore.stores.failures import translate as transport_failure
from envstore.stores.oss_ops import (
    FORBID_OVERWRITE,
    clean_uploads,
    commit_error,
    copy_error,
    exists_error,
    require_bucket,
)
from envstore.stores.oss_protocol import strip_oss

__all__ = ["OSSFileSystem", "OssStore"]

MiB = 1 << 20
META_PREFIX = "x-oss-meta-"
MIN_PART_SIZE = 100 * 1024  # OSS: every part but the last
DEFAULT_PART_SIZE = 16 * MiB
MAX_PARTS = 10_000
COPY_LIMIT = 1 << 30  # CopyObject handles sources up to 1 GB
STANDARD_RANGE = {"x-oss-range-behavior": "standard"}
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

T = TypeVar("T")

_PERMISSION = {
    "AccessDenied",
    "SignatureDoesNotMatch",
    "InvalidAccessKeyId",
    "SecurityTokenExpired",
}


def translate(exc: oss2.exceptions.OssError, path: str) -> OSError:
    """An oss2 error as the builtin OSError a filesystem user expects (as s3fs does)."""
    code = getattr(exc, "code", "") or ""
    rid = getattr(exc, "request_id", "") or ""
    message = getattr(exc, "message", "") or str(exc)
    text = f"{code}: {message} (request id {rid})" if code else message
    if isinstance(exc, oss2.exceptions.RequestError):  # no answer: timeout, refused, reset
        cause = getattr(exc, "exception", None)
        known = None if cause is None else transport_failure(cause, path, "OSS request")
        return known or ConnectionError(errno.ECONNREFUSED, f"OSS request failed: {exc}", path)
    if isinstance(exc, oss2.exceptions.NotFound) or exc.status == 404:
        return FileNotFoundError(errno.ENOENT, text, path)
    if code in _PERMISSION or exc.status == 403:
        return PermissionError(errno.EACCES, text, path)
    return OSError(errno.EIO, text, path)


def call(fn: Callable[..., T], path: str, *args: Any, **kwargs: Any) -> T:
    try:
        return fn(*args, **kwargs)
    except oss2.exceptions.OssError as exc:
        raise translate(exc, path) from exc


def content_md5(data: bytes | bytearray | memoryview) -> str:
    """The Content-MD5 header of an upload (hashlib releases the GIL on large buffers)."""
    return base64.b64encode(hashlib.md5(data).digest()).decode("ascii")


def _env(*names: str) -> str | None:
    for name in names:
        value = os.environ.get(name)
        if value:
            return value
    return None


class OSSFileSystem(AbstractFileSystem):
    """fsspec filesystem for Alibaba Cloud OSS on oss2 (paths ``bucket/key``)."""

    protocol = ("oss",)
    root_marker = ""

    def __init__(
        self,
        endpoint: str | None = None,
        key: str | None = None,
        secret: str | None = None,
        token: str | None = None,
        connect_timeout: float | None = None,
        max_concurrency: int = 8,
        enable_crc: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        endpoint = endpoint or _env("OSS_ENDPOINT", "ALIBABA_CLOUD_OSS_ENDPOINT")
        if not endpoint:
            raise ConfigError(
                'OSS needs an endpoint: storage_options={"oss": {"endpoint": '
                '"https://oss-cn-hangzhou.aliyuncs.com", ...}} or OSS_ENDPOINT'
            )
        self.endpoint = endpoint
        key = key or _env("OSS_ACCESS_KEY_ID", "ALIBABA_CLOUD_ACCESS_KEY_ID")
        secret = secret or _env("OSS_ACCESS_KEY_SECRET", "ALIBABA_CLOUD_ACCESS_KEY_SECRET")
        token = token or _env("OSS_SESSION_TOKEN", "ALIBABA_CLOUD_SECURITY_TOKEN")
        if key and secret:
            self.auth: Any = oss2.StsAuth(key, secret, token) if token else oss2.Auth(key, secret)
        else:
            self.auth = oss2.AnonymousAuth()
        self.connect_timeout = connect_timeout
        self.max_concurrency = max_concurrency
        self.enable_crc = enable_crc
        self._buckets: dict[str, oss2.Bucket] = {}
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"<OSSFileSystem {self.endpoint}>"

    # -- paths and clients -------------------------------------------------------------------
    @classmethod
    def _strip_protocol(cls, path: Any) -> Any:
        return strip_oss(path)

    def unstrip_protocol(self, name: str) -> str:
        return "oss://" + self._strip_protocol(name)

    def split_path(self, path: str) -> tuple[str, str]:
        path = self._strip_protocol(path)
        bucket, _, key = path.partition("/")
        if not bucket:
            raise ValueError("OSS path needs a bucket: oss://bucket/key")
        return bucket, key

    def bucket(self, name: str) -> oss2.Bucket:
        with self._lock:
            b = self._buckets.get(name)
            if b is None:
                kw = (
                    {}
                    if self.connect_timeout is None
                    else {"connect_timeout": self.connect_timeout}
                )
                b = self._buckets[name] = oss2.Bucket(
                    self.auth, self.endpoint, name, enable_crc=self.enable_crc, **kw
                )
        return b

    # -- namespace ---------------------------------------------------------------------------
    @staticmethod
    def _file_entry(bucket: str, key: str, size: int, etag: str | None, mtime: Any) -> dict:
        return {
            "name": f"{bucket}/{key}",
            "size": int(size),
            "type": "file",
            "ETag": etag,
            "LastModified": mtime,
        }

    def _iter(self, bucket: str, prefix: str, delimiter: str) -> Iterator[Any]:
        b = self.bucket(bucket)
        try:
            yield from oss2.ObjectIteratorV2(b, prefix=prefix, delimiter=delimiter, max_keys=1000)
        except oss2.exceptions.OssError as exc:
            raise translate(exc, f"{bucket}/{prefix}") from exc

    def ls(self, path: str, detail: bool = True, **kwargs: Any) -> list[Any]:
        path = self._strip_protocol(path)
        if not path:
            buckets = [
                {"name": b.name, "size": 0, "type": "directory"}
                for b in call(
                    lambda: list(oss2.BucketIterator(oss2.Service(self.auth, self.endpoint))), ""
                )
            ]
            return buckets if detail else [b["name"] for b in buckets]
        bucket, key = self.split_path(path)
        prefix = f"{key}/" if key else ""
        out: list[dict[str, Any]] = []
        for obj in self._iter(bucket, prefix, "/"):
            if obj.is_prefix():
                out.append(
                    {"name": f"{bucket}/{obj.key.rstrip('/')}", "size": 0, "type": "directory"}
                )
            elif obj.key != prefix:
                out.append(self._file_entry(bucket, obj.key, obj.size, obj.etag, obj.last_modified))
        if not out and key:  # not a directory (or an empty one): a file, or nothing
            head = self._head(bucket, key, path)
            if head is None:
                raise FileNotFoundError(errno.ENOENT, "no such object or prefix", path)
            out = [
                self._file_entry(bucket, key, head.content_length, head.etag, head.last_modified)
            ]
        return out if detail else [e["name"] for e in out]

    def _head(self, bucket: str, key: str, path: str) -> Any:
        """HeadObject, or None where there is no such object (404)."""
        try:
            return self.bucket(bucket).head_object(key)
        except oss2.exceptions.NotFound:
            return None
        except oss2.exceptions.OssError as exc:
            raise translate(exc, path) from exc

    def directory(self, path: str) -> dict[str, Any] | None:
        """The entry of ``path`` as a directory (anything listed under ``key/``, or a bucket),
        else None; one LIST of at most one key, no HEAD (FileNotFoundError: no such bucket)."""
        path = self._strip_protocol(path)
        bucket, key = self.split_path(path)
        prefix = f"{key}/" if key else ""
        b = self.bucket(bucket)
        page = call(b.list_objects_v2, path, prefix=prefix, delimiter="/", max_keys=1)
        if page.object_list or page.prefix_list or not key:  # an empty bucket is a directory
            return {"name": path, "size": 0, "type": "directory"}
        return None

    def info(self, path: str, **kwargs: Any) -> dict[str, Any]:
        path = self._strip_protocol(path)
        bucket, key = self.split_path(path)
        head = self._head(bucket, key, path) if key else None
        if head is not None:
            return self._file_entry(bucket, key, head.content_length, head.etag, head.last_modified)
        entry = self.directory(path)
        if entry is None:
            raise FileNotFoundError(errno.ENOENT, "no such object or prefix", path)
        return entry

    def isdir(self, path: str) -> bool:
        try:
            return self.directory(path) is not None
        except FileNotFoundError:
            return False

    def find(
        self,
        path: str,
        maxdepth: int | None = None,
        withdirs: bool = False,
        detail: bool = False,
        **kwargs: Any,
    ) -> Any:
        if maxdepth is not None:
            return super().find(path, maxdepth=maxdepth, withdirs=withdirs, detail=detail, **kwargs)
        path = self._strip_protocol(path)
        bucket, key = self.split_path(path)
        out: dict[str, dict[str, Any]] = {}
        prefix = f"{key}/" if key else ""
        for obj in self._iter(bucket, prefix, ""):
            if obj.key.endswith("/"):
                continue
            entry = self._file_entry(bucket, obj.key, obj.size, obj.etag, obj.last_modified)
            out[entry["name"]] = entry
            if withdirs:
                parent = entry["name"].rsplit("/", 1)[0]
                while len(parent) > len(path) and parent not in out:
                    out[parent] = {"name": parent, "size": 0, "type": "directory"}
                    parent = parent.rsplit("/", 1)[0]
        if not out and key:
            try:
                entry = self.info(path)
            except FileNotFoundError:
                entry = None  # type: ignore[assignment]
            if entry is not None and entry["type"] == "file":
                out[path] = entry
        names = sorted(out)
        return {n: out[n] for n in names} if detail else names

    def mkdir(self, path: str, create_parents: bool = True, **kwargs: Any) -> None:
        bucket, key = self.split_path(path)
        if not key and not self.exists(bucket):
            call(self.bucket(bucket).create_bucket, bucket)

    def makedirs(self, path: str, exist_ok: bool = False) -> None:
        self.mkdir(path)

    def rmdir(self, path: str) -> None:
        bucket, key = self.split_path(path)
        if not key:
            call(self.bucket(bucket).delete_bucket, bucket)

    def rm_file(self, path: str) -> None:
        bucket, key = self.split_path(path)
        call(self.bucket(bucket).delete_object, path, key)
        self.invalidate_cache(path)

    def _rm(self, path: str) -> None:
        self.rm_file(path)

    def rm(self, path: Any, recursive: bool = False, maxdepth: int | None = None) -> None:
        files: list[str] = []
        for p in path if isinstance(path, list) else [path]:
            if recursive and not has_magic(p):  # one listing, not a HEAD per object
                found = self.find(p, maxdepth=maxdepth)
                if not found:
                    raise FileNotFoundError(errno.ENOENT, "no such object or prefix", p)
                files.extend(found)
            else:
                expanded = self.expand_path(p, recursive=recursive, maxdepth=maxdepth)
                files.extend(x for x in expanded if self.isfile(x))
        by_bucket: dict[str, list[str]] = {}
        for p in files:
            bucket, key = self.split_path(p)
            if key:
                by_bucket.setdefault(bucket, []).append(key)
        for bucket, keys in by_bucket.items():
            for i in range(0, len(keys), 1000):
                call(self.bucket(bucket).batch_delete_objects, bucket, keys[i : i + 1000])

    def modified(self, path: str) -> Any:
        import datetime

        mtime = self.info(path).get("LastModified")
        return datetime.datetime.fromtimestamp(mtime, tz=datetime.timezone.utc) if mtime else None

    # -- raw content (ranged reads; writes go through envstore's adapter) ---------------------
    def cat_file(
        self, path: str, start: int | None = None, end: int | None = None, **kw: Any
    ) -> bytes:
        bucket, key = self.split_path(path)
        if (start is not None and start < 0) or (end is not None and end < 0):
            size = self.info(path)["size"]
            start = None if start is None else (max(0, size + start) if start < 0 else start)
            end = None if end is None else (max(0, size + end) if end < 0 else end)
        start = start or 0
        if end is not None and end <= start:
            return b""
        limit = kw.get("deadline")  # seconds for the whole request (OssStore.read_deadline)
        deadline = None if limit is None else time.monotonic() + float(limit)
        if start == 0 and end is None:
            result = call(self.bucket(bucket).get_object, path, key)
            return _body(result, path, deadline)
        byte_range = (start, None if end is None else end - 1)
        try:
            result = self.bucket(bucket).get_object(
                key, byte_range=byte_range, headers=STANDARD_RANGE
            )
        except oss2.exceptions.ServerError as exc:
            if exc.status == 416:  # start past the end: like a file, nothing to read
                return b""
            raise translate(exc, path) from exc
        except oss2.exceptions.OssError as exc:
            raise translate(exc, path) from exc
        return _body(result, path, deadline)

    def pipe_file(self, path: str, value: bytes, mode: str = "overwrite", **kwargs: Any) -> None:
        """Raw upload (no encryption): for tools and tests; envstore writes through OssStore."""
        if mode == "create" and self.exists(path):
            raise FileExistsError(path)
        bucket, key = self.split_path(path)
        headers = {**(kwargs.get("headers") or {}), "Content-MD5": content_md5(value)}
        call(self.bucket(bucket).put_object, path, key, value, headers=headers)
        self.invalidate_cache(path)

    def _open(self, path: str, mode: str = "rb", **kwargs: Any) -> Any:
        if mode != "rb":
            raise NotImplementedError(
                "OSSFileSystem writes only through envstore (envstore::oss://) or pipe_file"
            )
        return _OSSFile(self, path, mode, **kwargs)


def _body(result: Any, path: str, deadline: float | None = None) -> bytes:
    """A GetObject body as stored, in one read of the HTTP stream.

    oss2's ``GetObjectResult.read()`` iterates the body in 8 KiB pieces through a Python CRC64
    adapter whose value it never compares for ``get_object`` (only ``get_object_to_file``
    does): about 5x slower than reading the stream at once.  envstore authenticates every chunk
    with AES-GCM, so the bytes are read directly, undecoded (a ``Content-Encoding`` set on an
    object must not make requests "decode" ciphertext), and their length is checked.
    """
    raw = result.resp.response.raw
    watchdog = _Watchdog(result.resp.response, deadline)
    try:
        data = raw.read()
    except Exception as exc:  # urllib3/requests transport errors: the connection broke
        watchdog.check(path)
        raise ConnectionError(errno.ECONNRESET, f"OSS read failed: {exc}", path) from exc
    finally:
        watchdog.cancel()
    watchdog.check(path)
    expected = result.content_length
    if expected is not None and len(data) != expected:
        raise ConnectionError(errno.EIO, f"OSS returned {len(data)} of {expected} body bytes", path)
    return data


def _socket_of(response: Any) -> socket.socket | None:
    """The socket under a requests response (urllib3 1.x and 2.x), if it can be found."""
    raw = getattr(response, "raw", None)
    for path in (("connection", "sock"), ("_connection", "sock"), ("_fp", "fp", "raw", "_sock")):
        obj: Any = raw
        for name in path:
            obj = getattr(obj, name, None)
            if obj is None:
                break
        if isinstance(obj, socket.socket):
            return obj
    return None


class _Watchdog:
    """Closes a response whose body is still being read when the read deadline passes (a
    blocking read of a store that trickles bytes would otherwise go on for as long as each
    socket read returns something within the timeout)."""

    def __init__(self, response: Any, deadline: float | None) -> None:
        self.fired = False
        self.timer: threading.Timer | None = None
        if deadline is not None:
            self.timer = threading.Timer(max(0.0, deadline - time.monotonic()), self._fire)
            self.timer.daemon = True
            self.response = response
            self.timer.start()

    def _fire(self) -> None:
        self.fired = True
        sock = _socket_of(self.response)
        try:
            if sock is not None:  # wakes a recv blocked in another thread (close does not)
                sock.shutdown(socket.SHUT_RDWR)
            self.response.close()
        except Exception:  # pragma: no cover - closing a broken response
            pass

    def cancel(self) -> None:
        if self.timer is not None:
            self.timer.cancel()

    def check(self, path: str) -> None:
        if self.fired:
            raise TimeoutError(
                errno.ETIMEDOUT, "OSS read did not finish within read_deadline", path
            )


class _OSSFile(AbstractBufferedFile):
    def _fetch_range(self, start: int, end: int) -> bytes:
        return self.fs.cat_file(self.path, start=start, end=end)


class _Cached:
    __slots__ = ("entry", "expires", "head")

    def __init__(self, head: Head | None, entry: dict[str, Any], expires: float) -> None:
        self.head = head
        self.entry = entry
        self.expires = expires


class OssStore(Store):
    """Adapter for :class:`OSSFileSystem`."""

    #: OSS's user-metadata limit (keys with their ``x-oss-meta-`` prefix, plus values)
    metadata_limit = 8192
    head_ttl: float = 5.0
    head_cache_size: int = 4096
    copy_part_size: int = 256 * MiB
    #: multipart upload parts in flight per writer (each holds one part buffer)
    upload_concurrency: int = 2

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
        self._heads: OrderedDict[str, _Cached] = OrderedDict()
        self._lock = threading.Lock()
        self._buckets: set[str] = set()  # buckets known to exist

    filesystem_class = OSSFileSystem

    @classmethod
    def make_filesystem(cls, options: Mapping[str, Any]) -> OSSFileSystem:
        return OSSFileSystem(**dict(options))

    # -- HEAD cache --------------------------------------------------------------------------
    def forget(self, path: str | None = None) -> None:
        with self._lock:
            if path is None:
                self._heads.clear()
                return
            name = self.fs._strip_protocol(path)
            for p in [p for p in self._heads if p == name or p.startswith(name + "/")]:
                del self._heads[p]
        self.fs.invalidate_cache(path)

    def _lookup(self, path: str) -> _Cached:
        name = self.fs._strip_protocol(path)
        now = time.monotonic()
        with self._lock:
            hit = self._heads.get(name)
            if hit is not None and hit.expires > now:
                return hit
        bucket, key = self.fs.split_path(name)
        head: Head | None = None
        try:
            result = self.fs.bucket(bucket).head_object(key) if key else None
        except oss2.exceptions.NotFound:
            result = None
        except oss2.exceptions.OssError as exc:
            raise translate(exc, name) from exc
        if result is not None:
            fields = {
                k.lower()[len(META_PREFIX) :]: v
                for k, v in result.headers.items()
                if k.lower().startswith(META_PREFIX + "envstore-")
            }
            head = Head(
                int(result.content_length),
                fields,
                (result.content_length, result.etag, result.last_modified),
            )
            entry = OSSFileSystem._file_entry(
                bucket, key, result.content_length, result.etag, result.last_modified
            )
        else:  # a directory (one LIST; the HEAD was just made), or FileNotFoundError
            found = self.fs.directory(name)
            if found is None:
                raise FileNotFoundError(errno.ENOENT, "no such object or prefix", name)
            entry = found
        cached = _Cached(head, entry, now + self.head_ttl)
        with self._lock:
            self._heads[name] = cached
            self._heads.move_to_end(name)
            while len(self._heads) > self.head_cache_size:
                self._heads.popitem(last=False)
        return cached

    def head(self, path: str) -> Head:
        cached = self._lookup(path)
        if cached.head is None:
            raise IsADirectoryError(errno.EISDIR, "is a directory", path)
        return cached.head

    def info(self, path: str, **kwargs: Any) -> dict[str, Any]:
        return dict(self._lookup(path).entry)

    def isfile(self, path: str) -> bool:
        try:
            return self._lookup(path).head is not None
        except FileNotFoundError:
            return False

    def metadata_size(self, fields: Mapping[str, str]) -> int:
        return sum(
            len(META_PREFIX) + len(k.encode("utf-8")) + len(v.encode("utf-8"))
            for k, v in fields.items()
        )

    def listing_plain_size(self, entry: Mapping[str, Any]) -> int | None:
        """As on S3: a listed object is taken to carry its envelope in metadata unless a
        recent HEAD of that very object says otherwise; impossible sizes return None."""
        size = entry.get("size")
        if size is None:
            return None
        with self._lock:
            hit = self._heads.get(str(entry.get("name", "")))
        if hit is not None and hit.head is not None and hit.head.size == int(size):
            if not has_envelope(hit.head.fields):
                return None
        try:
            return plain_size(int(size))
        except (IntegrityError, FormatError):
            return None

    def listing_encrypted(self, entry: Mapping[str, Any]) -> bool | None:
        """As on S3: True only when a cached HEAD of this object shows an envelope."""
        with self._lock:
            hit = self._heads.get(str(entry.get("name", "")))
        if hit is not None and hit.head is not None and hit.head.size == entry.get("size"):
            same = hit.entry.get("ETag") == entry.get("ETag", hit.entry.get("ETag"))
            if same and has_envelope(hit.head.fields):
                return True
        return None

    @staticmethod
    def _meta_headers(fields: Mapping[str, str] | None) -> dict[str, str]:
        return {META_PREFIX + k: v for k, v in (fields or {}).items()}

    @staticmethod
    def _kept_headers(current: Mapping[str, str], envelope: bool) -> dict[str, str]:
        """What a metadata REPLACE or a multipart copy must send again to keep it: user
        metadata (the envelope only if ``envelope``) and the standard headers OSS stores."""
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

    def set_metadata(
        self, path: str, fields: Mapping[str, str], expect: tuple[Any, ...] | None = None
    ) -> None:
        """Replace the envelope in place (CopyObject onto itself, metadata REPLACE), keeping
        the object's other user metadata, Content-Type and the other standard headers.

        The copy carries ``x-oss-copy-source-if-match`` with the ETag of the version
        ``expect`` names (else of a fresh HEAD): an object replaced meanwhile is never
        rewritten (ConcurrentModificationError)."""
        used = self.metadata_size(fields)
        if used > self.metadata_limit:
            raise FormatError(
                f"envelope needs {used} bytes of OSS metadata (limit {self.metadata_limit})"
            )
        name = self.fs._strip_protocol(path)
        bucket, key = self.fs.split_path(name)
        b = self.fs.bucket(bucket)
        current = call(b.head_object, name, key)
        token = (current.content_length, current.etag, current.last_modified)
        if expect is not None and token != expect:
            raise ConcurrentModificationError(
                f"{name} was replaced by another writer since it was read; nothing was changed"
            )
        headers = self._kept_headers(current.headers, envelope=False)
        headers.update(self._meta_headers(fields))
        headers["x-oss-copy-source-if-match"] = f'"{current.etag}"'
        try:
            b.update_object_meta(key, headers)
        except oss2.exceptions.OssError as exc:
            error = copy_error(exc, name)
            raise (translate(exc, name) if error is exc else error) from exc
        finally:
            self.forget(name)

    # -- buckets and leftovers ---------------------------------------------------------------
    def makedirs(self, path: str) -> None:
        """OSS has no directories; the bucket must exist (FileNotFoundError, never created)."""
        bucket, _ = self.fs.split_path(self.fs._strip_protocol(path))
        if bucket not in self._buckets:  # one request per bucket, not per file
            require_bucket(self.fs.bucket(bucket), bucket)
            self._buckets.add(bucket)

    def mkdir(self, path: str, create_parents: bool = True, **kwargs: Any) -> None:
        self.makedirs(path)

    def clean(self, path: str, older_than: float, dry_run: bool) -> list[dict[str, Any]]:
        """Abort multipart uploads whose key starts with ``path``'s key, ``older_than`` s old."""
        bucket, key = self.fs.split_path(self.fs._strip_protocol(path))
        return clean_uploads(self.fs.bucket(bucket), bucket, key, older_than, dry_run)

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
        self,
        path: str,
        metadata: Mapping[str, str] | None,
        size_hint: int | None,
        exclusive: bool = False,
    ) -> _OssSink:
        """A pending object; with ``exclusive`` every request that could create it carries
        ``x-oss-forbid-overwrite: true`` (OSS refuses atomically: FileExistsError)."""
        name = self.fs._strip_protocol(path)
        bucket, key = self.fs.split_path(name)
        if not key:
            raise IsADirectoryError(errno.EISDIR, "cannot write to a bucket", name)
        part = self.part_size
        if size_hint is not None:
            part = max(part, -(-size_hint // MAX_PARTS))
        self.forget(name)
        headers = self._meta_headers(metadata)
        if exclusive:
            headers.update(FORBID_OVERWRITE)
        return _OssSink(self, bucket, key, headers, size_hint, part)

    def copy(self, src: str, dst: str) -> None:
        s_name, d_name = self.fs._strip_protocol(src), self.fs._strip_protocol(dst)
        sb, sk = self.fs.split_path(s_name)
        db, dk = self.fs.split_path(d_name)
        target = self.fs.bucket(db)
        size = self.head(s_name).size
        if size <= COPY_LIMIT:
            call(
                target.copy_object, s_name, sb, sk, dk, headers={"x-oss-metadata-directive": "COPY"}
            )
        else:
            self._multipart_copy(s_name, sb, sk, target, dk, size)
        self.forget(d_name)

    def _multipart_copy(
        self, s_name: str, sb: str, sk: str, target: oss2.Bucket, dk: str, size: int
    ) -> None:
        """UploadPartCopy for large objects; metadata (the envelope), Content-Type and the other
        standard headers set on initiate, as CopyObject's COPY directive would keep them."""
        current = call(self.fs.bucket(sb).head_object, s_name, sk)
        headers = self._kept_headers(current.headers, envelope=True)
        upload_id = call(target.init_multipart_upload, dk, dk, headers=headers).upload_id
        part = max(self.copy_part_size, -(-size // MAX_PARTS))
        try:
            ranges = list(enumerate(range(0, size, part), 1))

            def one(item: tuple[int, int]) -> oss2.models.PartInfo:
                number, start = item
                last = min(start + part, size) - 1
                out = call(
                    target.upload_part_copy, dk, sb, sk, (start, last), dk, upload_id, number
                )
                return oss2.models.PartInfo(number, out.etag)

            with concurrent.futures.ThreadPoolExecutor(self.fs.max_concurrency) as ex:
                parts = list(ex.map(one, ranges))
            call(target.complete_multipart_upload, dk, dk, upload_id, parts)
        except BaseException:
            _abort(target, dk, upload_id)
            raise

    def move(self, src: str, dst: str) -> None:
        self.copy(src, dst)
        self.fs.rm_file(src)
        self.forget(src)


def _abort(bucket: oss2.Bucket, key: str, upload_id: str) -> None:
    try:
        bucket.abort_multipart_upload(key, upload_id)
    except oss2.exceptions.NoSuchUpload:
        pass
    except Exception:  # the original error matters more; the upload is listed for cleanup
        pass


class _OssSink:
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
        self.store = store
        self.bucket = store.fs.bucket(bucket)
        self.name = f"{bucket}/{key}"
        self.key = key
        self.headers = headers
        self.exclusive = FORBID_OVERWRITE.items() <= headers.items()
        self.part_size = part_size
        self.concurrency = max(1, store.upload_concurrency)
        first = part_size if size_hint is None else max(1, min(part_size, size_hint))
        self.buf = bytearray(min(first, MiB) if size_hint is None else first)
        self.fill = 0
        self.upload_id: str | None = None
        self.parts: list[oss2.models.PartInfo] = []
        self.pool: concurrent.futures.ThreadPoolExecutor | None = None
        self.inflight: deque[tuple[concurrent.futures.Future[Any], bytearray]] = deque()
        self.done = False

    def __repr__(self) -> str:
        return f"<OSS sink oss://{self.name}>"

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if self.done:
            raise ValueError("write to a committed or discarded sink")
        view = memoryview(data).cast("B")
        while len(view):
            if self.fill == self.part_size:
                self._ship()
            if self.fill + len(view) > len(self.buf) and len(self.buf) < self.part_size:
                grown = bytearray(
                    min(self.part_size, max(2 * len(self.buf), self.fill + len(view)))
                )
                grown[: self.fill] = memoryview(self.buf)[: self.fill]
                self.buf = grown
            take = min(len(view), self.part_size - self.fill)
            self.buf[self.fill : self.fill + take] = view[:take]
            self.fill += take
            view = view[take:]

    def _ship(self) -> None:
        if self.upload_id is None:
            try:
                result = call(
                    self.bucket.init_multipart_upload, self.name, self.key, headers=self.headers
                )
            except OSError as exc:
                error = exists_error(exc, self.name)  # exclusive: the key exists already
                if error is exc:
                    raise
                raise error from exc
            self.upload_id = result.upload_id
            self.pool = concurrent.futures.ThreadPoolExecutor(
                self.concurrency, thread_name_prefix="envstore-oss"
            )
        spare = self._settle(self.concurrency - 1)
        body = self.buf
        if self.fill < len(body):
            del body[self.fill :]
        number = len(self.parts) + 1
        self.parts.append(oss2.models.PartInfo(number, ""))
        assert self.pool is not None
        future = self.pool.submit(self._upload, number, body)
        self.inflight.append((future, body))
        self.buf = (
            spare
            if spare is not None and len(spare) >= self.part_size
            else bytearray(self.part_size)
        )
        self.fill = 0

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

    def _settle(self, keep: int) -> bytearray | None:
        """Wait until at most ``keep`` parts are in flight; a finished part's buffer."""
        spare = None
        while len(self.inflight) > keep:
            future, body = self.inflight.popleft()
            future.result()
            spare = body
        return spare

    def commit(self) -> None:
        if self.done:
            raise ValueError("sink already committed or discarded")
        try:
            if self.upload_id is None:
                data = bytes(memoryview(self.buf)[: self.fill])
                headers = {**self.headers, "Content-MD5": content_md5(data)}
                self._final("PutObject", self.bucket.put_object, self.key, data, headers=headers)
            else:
                if self.fill:
                    self._ship()
                self._settle(0)
                cond = FORBID_OVERWRITE if self.exclusive else None
                self._final(
                    "CompleteMultipartUpload",
                    self.bucket.complete_multipart_upload,
                    self.key,
                    self.upload_id,
                    self.parts,
                    headers=cond,
                )
        except BaseException:
            self.discard()
            raise
        self._release()
        self.store.forget(self.name)

    def _final(self, what: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
        """The commit request; its failure read by :func:`oss_ops.commit_error`."""
        try:
            call(fn, self.name, *args, **kwargs)
        except BaseException as exc:
            error = commit_error(exc, self.name, what, self.exclusive)
            if error is exc:
                raise
            raise error from exc

    def discard(self) -> None:
        if self.done:
            return
        try:
            while self.inflight:
                future, _body = self.inflight.popleft()
                try:
                    future.result()
                except BaseException:
                    pass
            if self.upload_id is not None:
                _abort(self.bucket, self.key, self.upload_id)
        finally:
            self._release()

    def _release(self) -> None:
        self.done = True
        self.buf = bytearray()
        if self.pool is not None:
            self.pool.shutdown(wait=True)
            self.pool = None
