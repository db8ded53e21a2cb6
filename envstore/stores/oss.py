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
* :class:`~envstore.stores.oss_store.OssStore` — the adapter (HEAD cache, ranged reads,
  single or multipart uploads with Content-MD5, copies that keep the envelope, metadata
  rewrites in place; see that module).  oss2's client-side CRC64 is off unless
  ``enable_crc=True``: it holds the GIL at ~300 MB/s and oss2 never compares it on downloads.

OSS errors become the builtin ``OSError`` subclasses s3fs users know: ``FileNotFoundError``
(NoSuchKey, NoSuchBucket), ``PermissionError`` (AccessDenied, SignatureDoesNotMatch,
InvalidAccessKeyId), ``ConnectionError`` (no response), ``OSError`` otherwise.
"""

from __future__ import annotations

import base64
import errno
import hashlib
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from glob import has_magic
from typing import Any, TypeVar

import oss2
from fsspec.spec import AbstractBufferedFile, AbstractFileSystem

from envstore.errors import (
    ConfigError,
)
from envstore.stores.failures import translate as transport_failure
from envstore.stores.oss_protocol import strip_oss

__all__ = ["OSSFileSystem", "call", "translate"]

MiB = 1 << 20
META_PREFIX = "x-oss-meta-"
STANDARD_RANGE = {"x-oss-range-behavior": "standard"}
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

    def find(self, path: str, maxdepth: int | None = None, **kwargs: Any) -> Any:
        """Every object below ``path`` in one listing (fsspec's walk for a ``maxdepth``)."""
        withdirs, detail = kwargs.pop("withdirs", False), kwargs.pop("detail", False)
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


def __getattr__(name: str) -> Any:
    """``OssStore`` and ``DEFAULT_PART_SIZE`` live in :mod:`envstore.stores.oss_store` (they
    import this module); kept importable from here."""
    if name in ("OssStore", "DEFAULT_PART_SIZE", "OssSink"):
        from envstore.stores import oss_store

        return getattr(oss_store, name)
    raise AttributeError(name)
