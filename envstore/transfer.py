"""Helpers for pipelines: upload, download, inspect, verify and rewrap ``envstore::`` URLs.

Every helper takes an ``envstore::`` URL and the same options as the filesystem
(``key_uri``, ``decrypt_key_uris``, ``context``, ``kms_options``, inner options under the
inner protocol's name such as ``{"s3": {...}}``), resolved with ``fsspec.core.url_to_fs``.
"""

from __future__ import annotations

import errno
import os
import posixpath
import threading
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from typing import Any, TypeVar

import fsspec
from fsspec.callbacks import DEFAULT_CALLBACK, Callback

from envstore.errors import ConfigError, EnvstoreError, NotEncryptedError, describe
from envstore.file import STREAM_STEP
from envstore.fs import EnvstoreFileSystem
from envstore.keys.ring import KeyRing
from envstore.objects import describe_envelope
from envstore.options import target_options_hint
from envstore.paths import require_object
from envstore.stores import EXTRAS, missing_extra

__all__ = ["download", "inspect", "open_url", "rewrap", "upload", "verify"]

_T = TypeVar("_T")
_R = TypeVar("_R")
#: plaintext bytes per read when streaming a whole object (verify, cat)
STEP = STREAM_STEP


def open_url(url: str, **options: Any) -> tuple[EnvstoreFileSystem, str]:
    """The envstore filesystem and inner path for ``url`` (``envstore::...``)."""
    if not isinstance(url, str) or not url.startswith("envstore::"):
        raise ConfigError(
            f"{url!r} is not an envstore URL (envstore::file://..., envstore::s3://...)"
        )
    if "target_options" in options or "target_protocol" in options:
        raise ConfigError(target_options_hint(url))
    try:
        fs, path = fsspec.core.url_to_fs(url, **options)
    except ImportError as exc:  # fsspec resolves the inner protocol first: name our extra
        inner = url.split("::", 1)[1].split("://", 1)[0]
        if inner in EXTRAS:
            raise missing_extra(inner, exc) from None
        raise
    if not isinstance(fs, EnvstoreFileSystem):
        raise ConfigError(f"{url!r} does not resolve to the envstore filesystem")
    return fs, path


def run_pool(jobs: int, work: Callable[[_T], _R], items: Sequence[_T]) -> list[_R]:
    """``work`` over ``items`` with at most ``jobs`` threads, results in order.

    The first error is raised once running items finish; items not yet started are dropped.
    """
    if jobs < 1:
        raise ConfigError(f"jobs must be at least 1, not {jobs}")
    if jobs == 1 or len(items) <= 1:
        return [work(item) for item in items]
    ex = ThreadPoolExecutor(min(jobs, len(items)), thread_name_prefix="envstore-transfer")
    try:
        futures = [ex.submit(work, item) for item in items]
        done, _ = wait(futures, return_when=FIRST_EXCEPTION)
        for future in futures:
            if future in done and future.exception() is not None:
                raise future.exception()  # type: ignore[misc]
        return [future.result() for future in futures]
    finally:
        ex.shutdown(wait=True, cancel_futures=True)


class _Shared(Callback):
    """Per-file callback adding byte counts to a shared one (thread-safe; per-file sizes and
    per-file completion are not forwarded: the shared callback knows the total)."""

    value: int

    def __init__(self, parent: Callback, lock: threading.Lock) -> None:
        super().__init__()
        self.parent = parent
        self.lock = lock

    def set_size(self, size: int | None) -> None:
        pass

    def absolute_update(self, value: int) -> None:
        inc, self.value = value - self.value, value
        self._forward(inc)

    def relative_update(self, inc: int = 1) -> None:
        self.value += inc
        self._forward(inc)

    def _forward(self, inc: int) -> None:
        if inc:
            with self.lock:
                self.parent.relative_update(inc)


def _local_tree(lpath: str) -> tuple[list[str], list[str]]:
    """Files and directories under ``lpath`` (relative, ``/``-separated, sorted)."""
    files: list[str] = []
    dirs: list[str] = []
    for root, dirnames, filenames in os.walk(lpath):
        rel = os.path.relpath(root, lpath)
        parts = [] if rel == "." else rel.split(os.sep)
        dirs.extend("/".join([*parts, d]) for d in dirnames)
        files.extend("/".join([*parts, f]) for f in filenames)
    return sorted(files), sorted(dirs)


def upload(
    lpath: str | os.PathLike[str],
    url: str,
    recursive: bool = False,
    *,
    callback: Callback = DEFAULT_CALLBACK,
    jobs: int = 4,
    **options: Any,
) -> list[str]:
    """Encrypt a local file, or with ``recursive`` a directory tree, to ``url``.

    A file goes to ``url`` itself, or into it when ``url`` is an existing directory or ends
    with ``/``. A tree's contents go under ``url`` (``src/a/b`` → ``url/a/b``), empty
    directories included where the store has directories. Files stream through the
    filesystem's ``put_file`` (bounded memory), up to ``jobs`` at a time; ``callback`` (e.g.
    ``fsspec.callbacks.TqdmCallback()``) gets the total size, then the bytes as they go.
    Returns the written paths.
    """
    fs, root = open_url(url, **options)
    require_object(root, url)  # envstore::s3:// would put files into buckets named after them
    lpath = os.fspath(lpath)
    if os.path.isdir(lpath):
        if not recursive:
            raise IsADirectoryError(f"{lpath} is a directory: pass recursive=True (cp -r)")
        files, dirs = _local_tree(lpath)
        for d in dirs:
            fs.makedirs(posixpath.join(root, d), exist_ok=True)
        pairs = [(os.path.join(lpath, *f.split("/")), posixpath.join(root, f)) for f in files]
    else:
        if not os.path.exists(lpath):
            raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), lpath)
        if url.endswith("/") or fs.isdir(root):
            root = posixpath.join(root, os.path.basename(lpath))
        pairs = [(lpath, root)]
    callback.set_size(sum(os.path.getsize(src) for src, _ in pairs))
    lock = threading.Lock()

    def one(pair: tuple[str, str]) -> str:
        src, dst = pair
        fs.put_file(src, dst, callback=_Shared(callback, lock))
        return dst

    return run_pool(jobs, one, pairs)


def download(
    url: str,
    lpath: str | os.PathLike[str],
    recursive: bool = False,
    *,
    callback: Callback = DEFAULT_CALLBACK,
    jobs: int = 4,
    **options: Any,
) -> list[str]:
    """Decrypt ``url`` (an object or, with ``recursive``, a tree) to local files.

    An object goes to ``lpath``, or into it when ``lpath`` is a directory or ends with a
    separator; a tree's contents go under ``lpath``. Each file is written aside and renamed
    into place only once every chunk authenticated (no partial or unauthenticated file).
    Returns the written local paths.
    """
    fs, root = open_url(url, **options)
    lpath = os.fspath(lpath)
    if fs.isdir(root):
        if not recursive:
            raise IsADirectoryError(f"{url} is a directory: pass recursive=True (cp -r)")
        os.makedirs(lpath, exist_ok=True)
        items = []
        for name, entry in sorted(fs.find(root, withdirs=True, detail=True).items()):
            rel = posixpath.relpath(name, root)
            if rel == "." or rel.startswith("../"):
                continue
            target = os.path.join(lpath, *rel.split("/"))
            if entry["type"] == "directory":
                os.makedirs(target, exist_ok=True)
            else:
                items.append((name, target, int(entry.get("size") or 0)))
    else:
        target = lpath
        if lpath.endswith((os.sep, "/")) or os.path.isdir(lpath):
            os.makedirs(lpath, exist_ok=True)
            target = os.path.join(lpath, posixpath.basename(root))
        items = [(root, target, int(fs.info(root).get("size") or 0))]
    callback.set_size(sum(size for _, _, size in items))
    lock = threading.Lock()

    def one(item: tuple[str, str, int]) -> str:
        src, dst, _ = item
        fs.get_file(src, dst, callback=_Shared(callback, lock))
        return dst

    return run_pool(jobs, one, items)


def inspect(url: str, **options: Any) -> dict[str, Any]:
    """The envelope of one object as a plain dict; no key needed, never key material.

    Keys: ``path``, ``format_version``, ``suite``, ``placement`` (``metadata``/``header``),
    ``plaintext_size``, ``stored_size``, ``size_field`` (the size recorded at write time, if
    any), ``context``, ``recipients`` (``provider``, ``key_id``, non-secret ``params``). The
    wrapped data keys themselves are left out.
    """
    fs, path = open_url(url, **options)
    return describe_envelope(fs.objects.envelope(path))


def _objects(fs: EnvstoreFileSystem, path: str, recursive: bool) -> list[str]:
    if fs.isdir(path):
        if not recursive:
            raise IsADirectoryError(f"{path} is a directory: pass recursive=True (-r)")
        return fs.find(path)
    return [path]


def verify(
    url: str, recursive: bool = False, *, jobs: int = 4, **options: Any
) -> list[dict[str, Any]]:
    """Authenticate every chunk of each object, final chunk included; plaintext is discarded.

    Returns one ``{"path", "ok", "size", "error"}`` per object, in path order (``size`` is
    the plaintext size when ``ok``, ``error`` a one-line message otherwise): failures of
    single objects are reported, not raised. Up to ``jobs`` objects are checked at a time.
    """
    fs, root = open_url(url, **options)

    def one(path: str) -> dict[str, Any]:
        try:
            size = fs.objects.verify(path)
        except (EnvstoreError, OSError) as exc:
            return {"path": path, "ok": False, "size": None, "error": describe(exc)}
        return {"path": path, "ok": True, "size": size, "error": None}

    return run_pool(jobs, one, _objects(fs, root, recursive))


def with_path(exc: EnvstoreError, path: str) -> EnvstoreError:
    if path in str(exc):
        return exc
    return type(exc)(f"{path}: {exc}")


def rewrap(
    url: str,
    new_key_uri: str | Iterable[str],
    recursive: bool = False,
    *,
    replace: bool = True,
    skip_plain: bool = False,
    on_object: Callable[[dict[str, Any]], None] | None = None,
    **options: Any,
) -> list[dict[str, Any]]:
    """Wrap each object's data key for ``new_key_uri`` without re-encrypting its data.

    ``options`` (``key_uri``/``decrypt_key_uris``/``kms_options``) open the current envelope;
    the new providers' ``wrap`` makes the new recipients. With ``replace`` they replace the
    old ones (old keys no longer open the object); otherwise they are added (recipients
    already present are not added twice). The body bytes never change: on S3/OSS only the
    metadata is rewritten, with header placement the header is rewritten atomically. Each
    object switches in one step, and objects the new keys already open are rewrapped from
    them, so an interrupted rewrap can simply be run again. The new envelope is applied
    only to the object version that was read (S3: ``CopySourceIfMatch`` on its ETag; OSS:
    ``x-oss-copy-source-if-match``; local files: an atomic exchange checked against the file
    read): if a concurrent writer replaced the object meanwhile,
    :class:`~envstore.errors.ConcurrentModificationError` is raised and its object is kept.

    Returns one ``{"path", "changed"}`` per object (``changed`` is False where the envelope
    already held exactly the wanted recipients). Stops at the first object that fails. With
    ``skip_plain``, objects without an envelope are passed over as ``{"path", "changed":
    False, "skipped": "plain"}`` instead of failing. ``on_object`` is called with each result
    as soon as that object is done (progress; what changed before a failure).
    """
    new = [new_key_uri] if isinstance(new_key_uri, str) else list(new_key_uri)
    if not new:
        raise ConfigError("rewrap needs at least one new key URI")
    fs, root = open_url(url, **options)
    fallback = KeyRing([], new, fs.kms_options)  # opens objects an earlier run already did
    results: list[dict[str, Any]] = []
    for path in _objects(fs, root, recursive):
        if skip_plain and _is_plain(fs, path):
            _done(results, on_object, {"path": path, "changed": False, "skipped": "plain"})
            continue
        try:
            changed = fs.objects.rewrap(path, new, replace, fallback)
        except EnvstoreError as exc:
            raise with_path(exc, path) from exc
        _done(results, on_object, {"path": path, "changed": changed})
    return results


def _is_plain(fs: EnvstoreFileSystem, path: str) -> bool:
    """No envelope at all (the located envelope is cached: rewrap's own lookup is free)."""
    try:
        fs.objects.envelope(path)
    except NotEncryptedError:
        return True
    return False


def _done(
    results: list[dict[str, Any]],
    on_object: Callable[[dict[str, Any]], None] | None,
    result: dict[str, Any],
) -> None:
    results.append(result)
    if on_object is not None:
        on_object(result)
