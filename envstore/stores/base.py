"""The store-adapter interface, and the generic adapter for any fsspec filesystem.

An adapter moves *stored* bytes (ciphertext, headers) and envelope metadata for one backend
family; it never sees plaintext or keys.  The generic adapter has no user metadata, so
envelopes live in the in-object header; S3 and OSS adapters store them as user metadata.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Protocol

from fsspec import AbstractFileSystem
from fsspec.spec import AbstractBufferedFile

from envstore.errors import ConcurrentModificationError, IntegrityError

#: envelope fields for user metadata (None: the store keeps the envelope in the object)
Fields = Mapping[str, str] | None
#: the size of the object about to be written, when known
Hint = int | None

#: default of the envstore option ``read_deadline``: seconds one read request to a remote
#: store (a HEAD, a ranged GET) may take, retries included (plus 1 s per MiB fetched)
DEFAULT_READ_DEADLINE = 120.0


@dataclass(frozen=True)
class Head:
    """What one metadata request says about a stored object."""

    size: int  # stored bytes (header + body)
    fields: Mapping[str, str] | None  # user metadata (lowercase keys); None: backend has none
    token: tuple[Any, ...] = ()  # changes when the object is replaced (ETag, mtime)


class Sink(Protocol):
    """A pending object: bytes written are consumed before ``write`` returns."""

    def write(self, data: bytes | bytearray | memoryview) -> None: ...

    def commit(self) -> None:
        """Make the object visible at its path, atomically where the backend allows."""

    def discard(self) -> None:
        """Drop everything written; nothing appears at the path."""


def entry_token(entry: Mapping[str, Any]) -> tuple[Any, ...]:
    """A change token from a listing/info entry (whatever the backend offers)."""
    return tuple(
        entry.get(k)
        for k in (
            "size",
            "ETag",
            "etag",
            "mtime",
            "ino",
            "LastModified",
            "last_modified",
            "created",
        )
    )


def exact(blob: Any, path: str, start: int, end: int) -> Any:
    """``blob`` if it is the whole stored range ``[start, end)``, else IntegrityError.

    The one length check of the read path (FORMAT.md, Reading): a store that answers a range
    short (the object was truncated or replaced after it was located, a proxy cut the body)
    or long must never pass, even when the cut falls on a chunk boundary.
    """
    if len(blob) != end - start:
        raise IntegrityError(
            f"{path}: the store answered {len(blob)} bytes for stored range [{start}, {end}) "
            f"of {end - start} bytes (object truncated, extended or replaced while read)"
        )
    return blob


class Store:
    """Generic adapter over any fsspec filesystem; envelopes go into the in-object header."""

    #: byte limit of user metadata, or None where the backend has none (header placement)
    metadata_limit: int | None = None
    #: the ``read_deadline`` option; honoured by the remote adapters (S3, OSS)
    read_deadline: float | None = DEFAULT_READ_DEADLINE

    def __init__(self, fs: AbstractFileSystem) -> None:
        self.fs = fs

    def __repr__(self) -> str:
        return f"<{type(self).__name__} over {type(self.fs).__name__}>"

    # -- metadata ----------------------------------------------------------------------------
    def head(self, path: str) -> Head:
        info = self.fs.info(path)
        if info.get("type") == "directory":
            raise IsADirectoryError(path)
        return Head(int(info["size"]), None, entry_token(info))

    def info(self, path: str, **kwargs: Any) -> dict[str, Any]:
        """The inner filesystem's entry for one path (an adapter may answer from a cache)."""
        return self.fs.info(path, **kwargs)

    def isfile(self, path: str) -> bool:
        return self.fs.isfile(path)

    def forget(self, path: str | None = None) -> None:
        """Drop what the adapter caches about ``path`` and below it (everything if None);
        called after envstore writes, copies, moves and removals."""

    def metadata_size(self, fields: Mapping[str, str]) -> int:
        return sum(len(k.encode()) + len(v.encode()) for k, v in fields.items())

    def listing_plain_size(self, entry: Mapping[str, Any]) -> int | None:
        """Plaintext size from a listing entry alone, or None if a read is needed."""
        return None

    def listing_encrypted(self, entry: Mapping[str, Any]) -> bool | None:
        """For an entry ``listing_plain_size`` sized: True if metadata seen for that very
        object (a recent HEAD) holds an envelope, None if only its size suggested one."""
        return None

    def set_metadata(
        self, path: str, fields: Mapping[str, str], expect: tuple[Any, ...] | None = None
    ) -> None:
        """Replace the envelope fields of ``path``; with ``expect`` (a :attr:`Head.token`), only
        if the object is still that version (else :class:`ConcurrentModificationError`)."""
        raise NotImplementedError(f"{type(self).__name__} has no user metadata")

    def makedirs(self, path: str) -> None:
        """Make ``path`` usable as a parent of new objects (never creates a bucket)."""
        self.fs.makedirs(path, exist_ok=True)

    def mkdir(self, path: str, create_parents: bool = True, **kwargs: Any) -> None:
        """A directory where the store has them (object stores: never a bucket)."""
        self.fs.mkdir(path, create_parents=create_parents, **kwargs)

    def check_token(self, path: str, expect: tuple[Any, ...] | None) -> None:
        """ConcurrentModificationError unless ``path`` is still the version ``expect`` names."""
        if expect is None:
            return
        self.forget(path)
        if self.head(path).token != expect:
            raise ConcurrentModificationError(
                f"{path} was replaced by another writer since it was read; nothing was changed"
            )

    def rewrite_header(
        self, path: str, header: bytes, body_offset: int, stored_size: int, expect: tuple[Any, ...]
    ) -> None:
        """Store ``header`` + the object's body bytes at ``path`` in one commit, only if the
        object is still the version ``expect`` names.

        Generic stores re-check the version before reading, after reading and just before the
        commit: a writer that replaces the object inside that last window is not detected
        (local files override this with an atomic exchange).
        """
        self.check_token(path, expect)
        sink = self.open_sink(path, None, len(header) + stored_size - body_offset)
        try:
            sink.write(header)
            step = 4 << 20
            for pos in range(body_offset, stored_size, step):
                sink.write(self.read_exact(path, pos, min(pos + step, stored_size)))
            self.check_token(path, expect)
            sink.commit()
        except BaseException:
            sink.discard()
            raise

    # -- content -----------------------------------------------------------------------------
    def read(self, path: str, start: int, end: int) -> bytes:
        return self.fs.cat_file(path, start=start, end=end)

    def read_exact(self, path: str, start: int, end: int) -> bytes:
        """Stored bytes ``[start, end)``, exactly: every range envstore reads lies inside the
        object as it was located, so any other length is an IntegrityError (see
        :func:`exact`), and so is a store refusing the range as past the end of the object
        (:meth:`range_gone`). Readers call this, never :meth:`read`, for content."""
        try:
            blob = self.read(path, start, end)
        except OSError as exc:
            if not self.range_gone(exc):
                raise
            blob = b""
        return exact(blob, path, start, end)

    @contextmanager
    def fetching(self, path: str, start: int, end: int) -> Iterator[bytes | memoryview]:
        """Stored bytes ``[start, end)`` exactly (as :meth:`read_exact`), valid inside the
        ``with`` block only: a store may lend a buffer it reuses afterwards (local files), so
        decrypt inside the block and keep nothing of it. Object readers fetch through here."""
        yield self.read_exact(path, start, end)

    def range_gone(self, exc: BaseException) -> bool:
        """Whether ``exc`` is the store refusing a range that starts past the object's end
        (S3: 416 InvalidRange). Stores that answer such ranges with no bytes need nothing."""
        return False

    def read_many(
        self, paths: Sequence[str], starts: Sequence[int], ends: Sequence[int]
    ) -> list[bytes]:
        out = self.fs.cat_ranges(list(paths), list(starts), list(ends), on_error="raise")
        for r in out:
            if isinstance(r, BaseException):
                raise r
        return out

    def open_sink(
        self, path: str, fields: Fields, hint: int | None, exclusive: bool = False
    ) -> Sink:
        """A pending object at ``path``.  With ``exclusive`` the commit fails with
        FileExistsError if an object appeared at ``path`` meanwhile (generic stores check just
        before the commit; the local, S3 and OSS adapters make the check atomic)."""
        if fields:
            raise NotImplementedError(f"{type(self).__name__} has no user metadata")
        return _FileSink(self.fs, path, exclusive)

    def copy(self, src: str, dst: str) -> None:
        """Copy a stored object with its envelope (header placement: the bytes carry it)."""
        self.fs.cp_file(src, dst)

    def move(self, src: str, dst: str) -> None:
        self.fs.mv(src, dst)


class _FileSink:
    """Writes through the inner filesystem to a temporary name beside the target
    (``.envstore-part-<name>.<12 hex>``, hidden from listings, removed by ``envstore clean``)
    and moves it into place on commit: filesystems whose ``open("wb")`` writes in place (dirfs
    over local files, sftp, ftp, smb, hdfs...) never hold a partial object at the target, and
    a failed write leaves the old object as it was."""

    def __init__(self, fs: AbstractFileSystem, path: str, exclusive: bool = False) -> None:
        self.fs = fs
        self.path = path
        self.exclusive = exclusive
        parent, _, name = path.rstrip("/").rpartition("/")
        temp = f".envstore-part-{name}.{secrets.token_hex(6)}"
        self.temp = f"{parent}/{temp}" if parent else temp
        self.f = fs.open(self.temp, "wb")

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.f.write(bytes(data) if isinstance(data, memoryview) else data)

    def commit(self) -> None:
        if self.exclusive and self.fs.exists(self.path):
            self.discard()
            raise FileExistsError(self.path)
        try:
            self.f.close()
            self.fs.mv(self.temp, self.path)
        except BaseException:
            self._remove_temp()
            raise

    def discard(self) -> None:
        discard = getattr(self.f, "discard", None)
        try:
            if discard is not None:
                discard()  # e.g. abort a multipart upload already begun
        except Exception:
            pass
        if isinstance(self.f, AbstractBufferedFile):
            self.f.closed = True  # its __del__ would otherwise close (= upload) what was written
        else:
            try:
                self.f.close()  # a plain file written in place: close it, then remove it
            except Exception:
                pass
        self._remove_temp()

    def _remove_temp(self) -> None:
        try:
            self.fs.rm_file(self.temp)
        except (FileNotFoundError, OSError):
            pass  # never created (buffered upload discarded), or gone: nothing is left
