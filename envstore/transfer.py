"""Helpers for pipelines: upload, download, inspect, verify and rewrap ``envstore::`` URLs.

Every helper takes an ``envstore::`` URL and the same options as the filesystem
(``key_uri``, ``decrypt_key_uris``, ``context``, ``kms_options``, inner options under the
inner protocol's name such as ``{"s3": {...}}``).
"""

from __future__ import annotations

import os
import posixpath
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import fsspec
from fsspec.callbacks import DEFAULT_CALLBACK, Callback

from envstore.errors import ConfigError, EnvstoreError
from envstore.fs import EnvstoreFileSystem

__all__ = ["download", "inspect", "open_url", "rewrap", "upload", "verify"]


def open_url(url: str, **options: Any) -> tuple[EnvstoreFileSystem, str]:
    """The envstore filesystem and inner path for ``url`` (``envstore::...``)."""
    if not url.startswith("envstore::"):
        raise ConfigError(
            f"{url!r} is not an envstore URL (envstore::file://..., envstore::s3://...)"
        )
    fs, path = fsspec.core.url_to_fs(url, **options)
    if not isinstance(fs, EnvstoreFileSystem):
        raise ConfigError(f"{url!r} does not resolve to the envstore filesystem")
    return fs, path


def _pool(
    jobs: int, work: Callable[[tuple[Any, ...]], Any], items: Sequence[tuple[Any, ...]]
) -> None:
    """Run ``work`` over ``items`` with at most ``jobs`` threads; the first error is raised."""
    if jobs <= 1 or len(items) <= 1:
        for item in items:
            work(item)
        return
    with ThreadPoolExecutor(min(jobs, len(items)), thread_name_prefix="envstore-transfer") as ex:
        for future in [ex.submit(work, item) for item in items]:
            future.result()


def _local_files(lpath: str, recursive: bool) -> tuple[list[str], list[str]]:
    """Files and (empty or not) directories under ``lpath``, relative to it."""
    if not os.path.isdir(lpath):
        return [""], []
    if not recursive:
        raise IsADirectoryError(f"{lpath} is a directory: pass recursive=True")
    files, dirs = [], []
    for root, dirnames, filenames in os.walk(lpath):
        rel = os.path.relpath(root, lpath)
        rel = "" if rel == "." else rel
        dirs.extend(os.path.join(rel, d) for d in dirnames)
        files.extend(os.path.join(rel, f) for f in filenames)
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
    """Encrypt a local file or tree to ``url``; returns the written paths.

    Files are streamed (bounded memory) and up to ``jobs`` go in parallel; ``callback``
    (e.g. ``fsspec.callbacks.TqdmCallback()``) sees the total size and the bytes sent.
    """
    fs, root = open_url(url, **options)
    lpath = os.fspath(lpath)
    files, dirs = _local_files(lpath, recursive)
    if files == [""]:
        if fs.isdir(root) or url.endswith("/"):
            root = posixpath.join(root, os.path.basename(lpath))
        pairs = [(lpath, root)]
    else:
        pairs = [(os.path.join(lpath, f), posixpath.join(root, *f.split(os.sep))) for f in files]
        for d in dirs:
            fs.makedirs(posixpath.join(root, *d.split(os.sep)), exist_ok=True)
    callback.set_size(sum(os.path.getsize(src) for src, _ in pairs))

    def one(pair: tuple[str, str]) -> None:
        src, dst = pair
        fs.put_file(src, dst, callback=_Relay(callback))

    _pool(jobs, one, pairs)
    return [dst for _, dst in pairs]


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

    Each file is written aside and renamed into place once every chunk authenticated.
    """
    fs, root = open_url(url, **options)
    lpath = os.fspath(lpath)
    if fs.isdir(root):
        if not recursive:
            raise IsADirectoryError(f"{url} is a directory: pass recursive=True")
        found = fs.find(root, withdirs=True, detail=True)
        pairs = []
        os.makedirs(lpath, exist_ok=True)
        for name, entry in found.items():
            rel = posixpath.relpath(name, root)
            target = os.path.join(lpath, *rel.split("/"))
            if entry["type"] == "directory":
                os.makedirs(target, exist_ok=True)
            else:
                pairs.append((name, target, entry.get("size") or 0))
    else:
        target = lpath
        if os.path.isdir(lpath):
            target = os.path.join(lpath, posixpath.basename(root))
        pairs = [(root, target, fs.info(root).get("size") or 0)]
    callback.set_size(sum(size for _, _, size in pairs))

    def one(item: tuple[str, str, int]) -> None:
        src, dst, _ = item
        fs.get_file(src, dst, callback=_Relay(callback))

    _pool(jobs, one, pairs)
    return [dst for _, dst, _ in pairs]


class _Relay(Callback):
    """Per-file callback forwarding byte counts to a shared one (ignores per-file sizes)."""

    def __init__(self, parent: Callback) -> None:
        super().__init__()
        self.parent = parent

    def set_size(self, size: int | None) -> None:
        pass

    def relative_update(self, inc: int = 1) -> None:
        self.parent.relative_update(inc)


def inspect(url: str, **options: Any) -> dict[str, Any]:
    """The envelope of one object as a plain dict: never key material, no key needed."""
    fs, path = open_url(url, **options)
    loc = fs.envelope(path)
    env = loc.envelope
    return {
        "path": path,
        "format_version": env.version,
        "suite": env.suite,
        "placement": loc.placement,
        "plaintext_size": loc.plain_len,
        "stored_size": loc.stored_size,
        "size_field": env.size,
        "context": dict(env.context),
        "recipients": [
            {"provider": r.provider, "key_id": r.key_id, "params": dict(r.params)}
            for r in env.recipients
        ],
    }


def _objects(fs: EnvstoreFileSystem, path: str, recursive: bool) -> list[str]:
    if fs.isdir(path):
        if not recursive:
            raise IsADirectoryError(f"{path} is a directory: pass recursive=True")
        return fs.find(path)
    return [path]


def verify(url: str, recursive: bool = False, **options: Any) -> list[dict[str, Any]]:
    """Authenticate every chunk of each object (plaintext is discarded, never written).

    Returns one ``{"path", "ok", "size", "error"}`` per object; errors are reported, not raised.
    """
    fs, root = open_url(url, **options)
    results = []
    for path in _objects(fs, root, recursive):
        try:
            reader = fs._reader(path)
            step = 256 * 16384
            for pos in range(0, reader.plain_len, step):
                reader.read(pos, pos + step)
            reader.authenticate_end()
        except (EnvstoreError, OSError) as exc:
            results.append(
                {"path": path, "ok": False, "size": None, "error": f"{type(exc).__name__}: {exc}"}
            )
        else:
            results.append({"path": path, "ok": True, "size": reader.plain_len, "error": None})
    return results


def rewrap(
    url: str,
    new_key_uri: str | Sequence[str],
    recursive: bool = False,
    *,
    replace: bool = True,
    **options: Any,
) -> list[str]:
    """Re-wrap each object's data key for ``new_key_uri`` without re-encrypting its data.

    ``options`` (``key_uri``/``decrypt_key_uris``) open the current envelope. With
    ``replace`` the new recipients replace the old ones (old keys no longer open the object);
    otherwise they are added. The body bytes never change: on S3/OSS only metadata is
    rewritten; with header placement the header is rewritten atomically. Each object is
    switched in one step, so an interrupted rewrap leaves every object readable with the old
    or the new key.
    """
    new = [new_key_uri] if isinstance(new_key_uri, str) else list(new_key_uri)
    if not new:
        raise ConfigError("rewrap needs at least one new key URI")
    fs, root = open_url(url, **options)
    done = []
    for path in _objects(fs, root, recursive):
        loc = fs.envelope(path)
        env = loc.envelope
        key = fs.ring.open_data_key(env.recipients, env.context)
        try:
            wrapped = [fs.ring.provider(uri).wrap(key, env.context) for uri in new]
        finally:
            key[:] = bytes(len(key))
        recipients = wrapped if replace else [*env.recipients, *wrapped]
        fs.set_recipients(path, recipients)
        done.append(path)
    return done
