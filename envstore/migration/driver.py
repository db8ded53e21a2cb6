"""``envstore.migrate``: legacy client-side-encrypted objects -> envstore, verified, resumable."""

from __future__ import annotations

import posixpath
import threading
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from fsspec.callbacks import DEFAULT_CALLBACK, Callback

from envstore.errors import ConfigError, EnvstoreError, describe
from envstore.migration.legacy_keys import LegacyKeys
from envstore.migration.objects import TEMP_SUFFIX, Item, Job, check_jobs, migrate_one, record
from envstore.migration.s3ec import INSTRUCTION_SUFFIX
from envstore.migration.source import Source, split_url
from envstore.transfer import open_url, run_pool, with_path

__all__ = ["migrate"]

#: option names that are inner-filesystem protocols (given under their protocol name)
_PROTOCOL_KEYS = {"s3", "s3a", "oss", "file", "local", "memory", "gcs", "gs", "abfs", "az"}


def _dst_options(dst: str, options: Mapping[str, Any]) -> dict[str, Any]:
    """The options for the destination: protocol-named entries only for its own layers."""
    layers = {part.split("://", 1)[0] for part in dst.split("::")}
    return {k: v for k, v in options.items() if k not in _PROTOCOL_KEYS or k in layers}


def _inner(dst: str) -> tuple[str, str]:
    tail = dst.split("::")[-1]
    protocol, _, path = tail.partition("://")
    return protocol, path.strip("/")


def _tree(source: Source, root: str, dst_root: str, in_place: bool) -> list[Item]:
    sizes = source.files(root)
    have = set(sizes)
    items = []
    for name in sorted(sizes):
        if name.endswith((INSTRUCTION_SUFFIX, TEMP_SUFFIX)):
            continue
        rel = posixpath.relpath(name, root)
        dst = posixpath.join(dst_root, rel) if rel != "." else dst_root
        items.append(
            Item(
                name,
                dst,
                in_place,
                sizes[name],
                instruction=(name + INSTRUCTION_SUFFIX) in have,
                temp=(dst + TEMP_SUFFIX) in have if in_place else None,
            )
        )
    return items


def _plan(source: Source, src: str, dst: str, fs: Any, recursive: bool) -> list[Item]:
    root = source.root
    d_proto, d_root = _inner(dst)
    same_store = d_proto == source.protocol or {d_proto, source.protocol} <= {"s3", "s3a"}
    head = source.head(root)
    if head is None:
        if not source.isdir(root):
            raise FileNotFoundError(f"{src}: no such object or prefix")
        if not recursive:
            raise IsADirectoryError(f"{src} is a prefix: pass recursive=True (-r)")
        return _tree(source, root, d_root, same_store and d_root == root)
    target = d_root
    if dst.endswith("/") or (d_root != root and fs.isdir(d_root)):
        target = posixpath.join(d_root, posixpath.basename(root))
    return [Item(root, target, same_store and target == root, head.size)]


def _run_one(job: Job, item: Item, raise_errors: bool) -> dict[str, Any]:
    try:
        return migrate_one(job, item)
    except EnvstoreError as exc:
        if raise_errors:
            raise with_path(exc, item.src) from exc
        return record(item, None, None, "failed", error=describe(exc))
    except OSError as exc:
        if raise_errors:
            raise
        return record(item, None, None, "failed", error=describe(exc))


def _open(
    src: str,
    dst: str,
    legacy_key_uris: str | Iterable[str],
    dry_run: bool,
    options: Mapping[str, Any],
) -> tuple[Source, Any, LegacyKeys | None]:
    """The source, the destination filesystem and the legacy keys (none for a dry run)."""
    split_url(src)
    if not isinstance(dst, str) or not dst.startswith("envstore::"):
        raise ConfigError(f"migrate writes to an envstore:: URL, not {dst!r}")
    source = Source(src, options)
    fs, _ = open_url(dst, **_dst_options(dst, options))
    keys = None if dry_run else LegacyKeys(legacy_key_uris, options.get("kms_options"))
    return source, fs, keys


def migrate(
    src: str,
    dst: str,
    recursive: bool = False,
    *,
    legacy_key_uris: str | Iterable[str],
    replace: bool = False,
    jobs: int = 4,
    callback: Callback | None = None,
    dry_run: bool = False,
    on_object: Callable[[dict[str, Any]], None] | None = None,
    **options: Any,
) -> list[dict[str, Any]]:
    """Move objects written by oss2 ``CryptoBucket`` or the Amazon S3 Encryption Client to
    envstore, each decrypted with ``legacy_key_uris``, re-encrypted for ``key_uri`` and read
    back before anything is replaced.

    ``src`` is a plain ``oss://`` or ``s3://`` URL (an object, or a prefix with
    ``recursive``); ``dst`` an ``envstore::`` URL naming the same objects (in place: each
    legacy object is replaced in one step once its new version verified) or another place.
    ``options`` are the filesystem options (``key_uri``, ``context``, ``kms_options``...,
    inner options under the protocol name: ``{"oss": {...}}``, ``{"s3": {...}}``), for the
    source and the destination alike.  ``replace`` lets a run overwrite destination objects
    (not in place) that are not already the migrated object.  ``dry_run`` reads only
    envelopes.  Objects already in envstore format, or already migrated to ``dst``, are
    skipped, so an interrupted run can be started again.

    Returns one record per object, in path order: ``path``, ``dst``, ``format`` (e.g.
    ``oss2-ctr``, ``s3ec-v2-gcm``, ``envstore``), ``size`` (plaintext bytes), ``result``
    (``migrated``, ``migrated, unauthenticated source``, ``would migrate...``,
    ``skipped: ...`` or ``failed``), ``authenticated`` and ``error``.  A single object that
    fails raises (:class:`~envstore.errors.IntegrityError` when authentication or a length
    check failed); a recursive run reports failures in the records and goes on.
    ``on_object`` is called with each record as soon as its object is done (one at a time).
    """
    check_jobs(jobs)
    source, fs, keys = _open(src, dst, legacy_key_uris, dry_run, options)
    items = _plan(source, src, dst, fs, recursive)
    callback = callback if callback is not None else DEFAULT_CALLBACK
    callback.set_size(0 if dry_run else sum(item.size for item in items))
    lock = threading.Lock()

    def progress(n: int) -> None:
        with lock:
            callback.relative_update(n)

    job = Job(source, fs, keys, replace, dry_run, progress)
    raise_errors = len(items) == 1 and not recursive

    def one(item: Item) -> dict[str, Any]:
        result = _run_one(job, item, raise_errors)
        if on_object is not None:
            with lock:
                on_object(result)
        return result

    return run_pool(jobs, one, items)
