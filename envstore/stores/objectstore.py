"""What every metadata-capable object store shares (S3, OSS): the HEAD cache, the
listing-size rule, the user-metadata limit, move, bucket checks and the in-place envelope
rewrite's conditions.  An adapter supplies its SDK calls as hooks: :meth:`ObjectStore._head_object`
(one HEAD, or the directory entry of a prefix), :meth:`ObjectStore._require_bucket`,
:meth:`ObjectStore._clean`, and its own sink (:class:`envstore.stores.partsink.PartSink`).
"""

from __future__ import annotations

import errno
import hashlib
import threading
from collections.abc import Mapping
from typing import Any

from cachetools import TLRUCache

from envstore.errors import ConcurrentModificationError, FormatError, IntegrityError
from envstore.format import has_envelope, plain_size
from envstore.stores.base import Head, Store

__all__ = ["Cached", "ObjectStore", "fields_digest", "replaced", "under"]


class Cached:
    """One HEAD result: the object's Head (None for a directory), its info entry, and the
    content headers a metadata rewrite must send again (``extra``)."""

    __slots__ = ("entry", "extra", "head")

    def __init__(self, head: Head | None, entry: dict[str, Any]) -> None:
        self.head = head
        self.entry = entry
        self.extra: dict[str, Any] = {}


def fields_digest(fields: Mapping[str, str] | None) -> str:
    """A digest of the envelope fields (part of the change token): a metadata-only copy keeps
    the ETag, so the token must see the envelope itself change."""
    items = sorted((k, v) for k, v in (fields or {}).items() if k.startswith("envstore-"))
    return hashlib.sha256(repr(items).encode("utf-8")).hexdigest()[:32]


class ObjectStore(Store):
    """Base of the S3 and OSS adapters (see the module docstring)."""

    #: the store's user-metadata limit in bytes (keys with ``meta_prefix``, plus values)
    metadata_limit = 2048
    #: the header prefix of user metadata (counted in ``metadata_limit``)
    meta_prefix = "x-amz-meta-"
    #: the store's name in messages
    label = "S3"
    #: seconds a HEAD result serves ``head``/``info`` of the same path
    head_ttl: float = 5.0
    #: most paths whose HEAD is remembered
    head_cache_size: int = 4096

    def __init__(self, fs: Any) -> None:
        super().__init__(fs)
        self._heads: TLRUCache[str, Cached] = TLRUCache(
            maxsize=self.head_cache_size, ttu=lambda _k, _v, now: now + self.head_ttl
        )
        self._lock = threading.Lock()
        self._buckets: set[str] = set()  # buckets known to exist

    # -- hooks -------------------------------------------------------------------------------
    def _key(self, path: str) -> tuple[str, str, str]:
        """(bucket, key, cache name) of ``path``."""
        raise NotImplementedError

    def _head_object(self, path: str, bucket: str, key: str) -> Cached:
        """HEAD ``bucket/key``: its Cached; a prefix holding objects: the directory entry
        (``head`` None); FileNotFoundError otherwise."""
        raise NotImplementedError

    def _require_bucket(self, bucket: str) -> None:
        raise NotImplementedError

    def _clean(self, bucket: str, key: str, older_than: float, dry_run: bool) -> list[dict]:
        raise NotImplementedError

    def _forgotten(self, path: str | None) -> None:
        """Also drop what the adapter keeps besides HEADs (read-ahead, listings)."""

    # -- the HEAD cache ----------------------------------------------------------------------
    def forget(self, path: str | None = None) -> None:
        """Drop cached HEADs of ``path``, below it and its parents (everything if None)."""
        with self._lock:
            if path is None:
                self._heads.clear()
            else:
                name = self._key(path)[2].rstrip("/")
                below = name + "/"
                for p in [p for p in list(self._heads.keys()) if p == name or p.startswith(below)]:
                    self._heads.pop(p, None)
                while "/" in name:  # a new or removed object changes what its parents are
                    name = name.rsplit("/", 1)[0]
                    self._heads.pop(name, None)
        self._forgotten(path)

    def _lookup(self, path: str, fresh: bool = False) -> Cached:
        """HEAD ``path`` (one request), or the cached result of one made in the last
        ``head_ttl`` seconds.  FileNotFoundError is not cached."""
        bucket, key, name = self._key(path)
        if not fresh:
            with self._lock:
                hit = self._heads.get(name)
            if hit is not None:
                return hit
        cached = self._head_object(path, bucket, key)
        with self._lock:
            self._heads[name] = cached
        return cached

    def _file(self, path: str, fresh: bool = False) -> Cached:
        cached = self._lookup(path, fresh)
        if cached.head is None:
            raise IsADirectoryError(errno.EISDIR, "is a directory", path)
        return cached

    def _cached_head(self, entry: Mapping[str, Any]) -> Cached | None:
        """The cached HEAD of this very listed object (same size and ETag), if any."""
        with self._lock:
            hit = self._heads.get(str(entry.get("name", "")))
        if hit is None or hit.head is None or hit.head.size != entry.get("size"):
            return None
        if hit.entry.get("ETag") != entry.get("ETag", hit.entry.get("ETag")):
            return None
        return hit

    # -- metadata ----------------------------------------------------------------------------
    def head(self, path: str) -> Head:
        head = self._file(path).head
        assert head is not None
        return head

    def info(self, path: str, **kwargs: Any) -> dict[str, Any]:
        return dict(self._lookup(path, fresh=bool(kwargs.get("refresh"))).entry)

    def isfile(self, path: str) -> bool:
        try:
            return self._lookup(path).head is not None
        except (FileNotFoundError, IsADirectoryError):
            return False

    def metadata_size(self, fields: Mapping[str, str]) -> int:
        """Bytes of user metadata, every key counted with its header prefix (AWS documents
        keys + values; counting the prefix too keeps every server happy)."""
        return sum(
            len(self.meta_prefix) + len(k.encode("utf-8")) + len(v.encode("utf-8"))
            for k, v in fields.items()
        )

    def check_metadata(self, fields: Mapping[str, str]) -> None:
        used = self.metadata_size(fields)
        if used > self.metadata_limit:
            raise FormatError(
                f"envelope needs {used} bytes of user metadata, over {self.label}'s "
                f"{self.metadata_limit}-byte limit; use fewer recipients"
            )

    def listing_plain_size(self, entry: Mapping[str, Any]) -> int | None:
        """Plaintext size without a request.

        The rule: an object whose HEAD is known (``info`` of that path, a recent open) is
        judged by its metadata; any other listed object is taken to carry its envelope in
        metadata (what envstore writes unless the envelope exceeds the metadata limit), so its
        plaintext size follows from its stored size.  Sizes no envstore body can have return
        None (envstore then reads the object's first bytes to tell).
        """
        size = entry.get("size")
        if size is None:
            return None
        hit = self._cached_head({**entry, "size": int(size)})
        if hit is not None and hit.head is not None and not has_envelope(hit.head.fields):
            return None  # header placement or not envstore: the core reads the object
        try:
            return plain_size(int(size))
        except (IntegrityError, FormatError):
            return None

    def listing_encrypted(self, entry: Mapping[str, Any]) -> bool | None:
        """True when a cached HEAD of this very object shows an envelope; None otherwise
        (listings carry no metadata)."""
        hit = self._cached_head(entry)
        if hit is not None and hit.head is not None and has_envelope(hit.head.fields):
            return True
        return None

    def fresh_for_rewrite(self, path: str, expect: tuple[Any, ...] | None) -> Cached:
        """A fresh HEAD of ``path`` for an in-place rewrite; ConcurrentModificationError if it
        is not the version ``expect`` names (the token includes the envelope's digest, so a
        metadata-only rewrap by another writer is seen although it keeps the ETag)."""
        cached = self._file(path, fresh=True)
        assert cached.head is not None
        if expect is not None and cached.head.token != expect:
            raise replaced(path)
        return cached

    def confirm_rewrite(self, path: str, fields: Mapping[str, str]) -> None:
        """After an in-place metadata rewrite: HEAD again and check the stored envelope is the
        one written; another writer's rewrite that landed in between is reported
        (ConcurrentModificationError naming the residual race), never silently lost."""
        stored = self._file(path, fresh=True).head
        assert stored is not None
        if fields_digest(stored.fields) != fields_digest(fields):
            raise ConcurrentModificationError(
                f"{path}: another writer changed the envelope while it was rewritten; the "
                "stored recipients are not the ones written: read its envelope and retry"
            )

    # -- buckets, leftovers, moves -----------------------------------------------------------
    def makedirs(self, path: str) -> None:
        """No directories; the bucket must exist (FileNotFoundError, never created)."""
        bucket = self._key(path)[0]
        if bucket not in self._buckets:  # one request per bucket, not per file
            self._require_bucket(bucket)
            self._buckets.add(bucket)

    def mkdir(self, path: str, create_parents: bool = True, **kwargs: Any) -> None:
        self.makedirs(path)

    def clean(self, path: str, older_than: float, dry_run: bool) -> list[dict[str, Any]]:
        """Abort multipart uploads at or below ``path``'s key (``data`` covers ``data`` and
        ``data/...``, not ``data-archive``), ``older_than`` seconds old.  A listing of pending
        uploads carries no metadata: uploads of other tools there are aborted too."""
        bucket, key, _ = self._key(path)
        return self._clean(bucket, key, older_than, dry_run)

    def move(self, src: str, dst: str) -> None:
        self.copy(src, dst)
        bucket, key, _ = self._key(src)
        self.fs.rm_file(f"{bucket}/{key}")
        self.forget(src)


def under(prefix: str, key: str) -> bool:
    """Whether ``key`` is ``prefix`` or below it as a path (``a`` holds ``a/b``, not ``ab``)."""
    if not prefix or prefix.endswith("/"):
        return key.startswith(prefix)
    return key == prefix or key.startswith(prefix + "/")


def replaced(path: str) -> ConcurrentModificationError:
    return ConcurrentModificationError(
        f"{path} was replaced by another writer since it was read; nothing was changed"
    )
