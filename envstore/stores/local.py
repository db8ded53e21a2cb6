"""Local files and fsspec's memory filesystem: header placement, atomic commits."""

from __future__ import annotations

import ctypes
import errno
import os
import re
import secrets
import stat
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from fsspec.implementations.memory import MemoryFile

from envstore.errors import ConcurrentModificationError
from envstore.stores.base import Fields, Head, Sink, Store, entry_token, exact

#: prefix of in-progress local writes (hidden from envstore listings)
TEMP_PREFIX = ".envstore-part-"
#: envstore's own temporary names: ``.envstore-part-<name>.<12 hex>`` (nothing else is
#: hidden from listings or removed by ``clean``)
_TEMP_NAME = re.compile(r"\.envstore-part-(.+)\.[0-9a-f]{12}", re.DOTALL)


def is_temp_name(name: str) -> bool:
    """Whether a file's base name is one of envstore's temporary names."""
    return _TEMP_NAME.fullmatch(name) is not None


_AT_FDCWD = -100
_RENAME_NOREPLACE = 1
_RENAME_EXCHANGE = 2


def _renameat2(src: str, dst: str, flags: int) -> bool:
    """Linux ``renameat2``; False where the system has none (OSError if it failed)."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        fn = ctypes.CDLL(None, use_errno=True).renameat2
    except (AttributeError, OSError):
        return False
    if fn(_AT_FDCWD, os.fsencode(src), _AT_FDCWD, os.fsencode(dst), flags) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.ENOSYS, errno.EINVAL, errno.ENOTSUP):
        return False  # kernel or filesystem without this flag
    raise OSError(err, os.strerror(err), dst)


def link_no_replace(src: str, dst: str) -> None:
    """Make the file ``src`` appear at ``dst`` only if nothing is there (atomic: one of any
    number of concurrent callers wins, the others get FileExistsError); ``src`` is gone after.
    A hard link where the filesystem has them, else ``renameat2(RENAME_NOREPLACE)``."""
    try:
        os.link(src, dst)
    except FileExistsError:
        raise FileExistsError(errno.EEXIST, "an object exists already", dst) from None
    except OSError as exc:  # no hard links here (EPERM, ENOTSUP...)
        if not _renameat2(src, dst, _RENAME_NOREPLACE):
            raise OSError(exc.errno, f"cannot create exclusively: {exc.strerror}", dst) from exc
        return
    os.unlink(src)


def _unexported(buf: bytearray) -> bool:
    """Whether no memoryview of ``buf`` is alive: resizing it is refused while one is (a
    one-byte shrink and regrowth, within its allocation: no copy)."""
    try:
        del buf[-1]
    except BufferError:
        return False
    buf.append(0)
    return True


def _pread(path: str, view: memoryview, start: int) -> int:
    """Read the file at ``path`` from ``start`` into ``view`` until it is full or the file
    ends; the number of bytes read."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
    try:
        got = 0
        while got < len(view):
            n = os.preadv(fd, [view[got:]], start + got)
            if n == 0:
                break
            got += n
        return got
    finally:
        os.close(fd)


def stat_token(st: os.stat_result) -> tuple[Any, ...]:
    """The change token fsspec's local ``info`` gives a file with this ``stat``."""
    created = getattr(st, "st_birthtime", st.st_ctime)  # as fsspec's LocalFileSystem.info
    return entry_token(
        {"size": st.st_size, "mtime": st.st_mtime, "ino": st.st_ino, "created": created}
    )


def _temp_name(path: str) -> str:
    head, tail = os.path.split(path)
    return os.path.join(head, f"{TEMP_PREFIX}{tail}.{secrets.token_hex(6)}")


#: reads up to this many stored bytes go into a buffer the store lends and reuses (one
#: 4 MiB streaming step of ciphertext fits); at most _POOL such buffers are kept
_LEND_MAX = 8 << 20
_POOL = 2


class LocalStore(Store):
    """``file://``: a temporary file beside the target, fsync'd and renamed into place."""

    def __init__(self, fs: Any) -> None:
        super().__init__(fs)
        self._pool: list[bytearray] = []  # idle lending buffers (ciphertext only)
        self._pool_lock = threading.Lock()

    def head(self, path: str) -> Head:
        """One ``stat`` (following links, as fsspec's ``info``): size and change token."""
        st = os.stat(self.fs._strip_protocol(path))
        if stat.S_ISDIR(st.st_mode):
            raise IsADirectoryError(path)
        return Head(st.st_size, None, stat_token(st))

    @contextmanager
    def fetching(self, path: str, start: int, end: int) -> Iterator[bytes | memoryview]:
        """``pread`` into a reused buffer: a fresh allocation per read (and the page faults
        of memory the allocator gave back meanwhile) would cost more than the read."""
        n = end - start
        if n > _LEND_MAX or not hasattr(os, "preadv"):
            yield self.read_exact(path, start, end)
            return
        with self._pool_lock:
            buf = next((b for b in self._pool if len(b) >= n), None)
            if buf is not None:
                self._pool.remove(buf)
        if buf is None:
            buf = bytearray(max(n, 1 << 20) + 1)  # + 1: see _unexported
        lent = memoryview(buf)[:n]
        try:
            got = _pread(self.fs._strip_protocol(path), lent, start)
            yield exact(lent if got == n else lent[:got], path, start, end)
        finally:
            try:
                lent.release()  # what the block was given is unusable after it
            except BufferError:  # exported by a holder: kept alive, see below
                pass
            with self._pool_lock:  # a view kept past the block (a traceback's): not reused
                if len(self._pool) < _POOL and _unexported(buf):
                    self._pool.append(buf)

    def open_sink(
        self, path: str, fields: Fields, hint: int | None, exclusive: bool = False
    ) -> Sink:
        if fields:
            raise NotImplementedError("local files have no user metadata")
        path = self.fs._strip_protocol(path)
        if self.fs.isdir(path):
            raise IsADirectoryError(path)
        # like an object store (and dask's writers), missing parent directories are created
        self.fs.makedirs(self.fs._parent(path), exist_ok=True)
        return _LocalSink(path, exclusive)

    def rewrite_header(
        self, path: str, header: bytes, body_offset: int, stored_size: int, expect: tuple[Any, ...]
    ) -> None:
        """Compare-and-swap: the body is copied from one open file (one version), and the new
        file is swapped in with ``renameat2(RENAME_EXCHANGE)``; if the file it displaced is not
        the one read, the swap is undone and ConcurrentModificationError raised."""
        path = self.fs._strip_protocol(path)
        with open(path, "rb") as src:
            st = os.fstat(src.fileno())
            if stat_token(st) != expect or st.st_size != stored_size:
                raise _replaced(path)
            sink = _LocalSink(path)
            try:
                sink.write(header)
                src.seek(body_offset)
                while data := src.read(4 << 20):
                    sink.write(data)
                sink.flush()
            except BaseException:
                sink.discard()
                raise
        _swap_if_same(sink.temp, path, (st.st_dev, st.st_ino))

    def clean(self, path: str, older_than: float, dry_run: bool) -> list[dict[str, Any]]:
        """Remove envstore's temporary files (``.envstore-part-<name>.<12 hex>``) under
        directory ``path`` (or of writes to file ``path``) last modified ``older_than``
        seconds ago or earlier (writes killed before their commit)."""
        root = self.fs._strip_protocol(path)
        now = time.time()
        out = []
        for name, mtime in _temp_files(root):
            age = now - mtime
            if age < older_than:
                continue
            if not dry_run:
                try:
                    os.unlink(name)
                except FileNotFoundError:
                    continue  # its writer committed or cleaned up meanwhile
            out.append({"kind": "temp-file", "path": name, "age": age, "removed": not dry_run})
        return out

    def move(self, src: str, dst: str) -> None:
        self.fs.mv(src, dst)


def _replaced(path: str) -> ConcurrentModificationError:
    return ConcurrentModificationError(
        f"{path} was replaced by another writer since it was read; nothing was changed"
    )


def _swap_if_same(temp: str, path: str, identity: tuple[int, int]) -> None:
    """Put ``temp`` at ``path`` if ``path`` is still the file ``identity`` (dev, inode)."""
    try:
        swapped = _renameat2(temp, path, _RENAME_EXCHANGE)
        if not swapped:  # no atomic exchange here: re-check just before the rename
            st = os.stat(path)
            if (st.st_dev, st.st_ino) != identity:
                raise _replaced(path)
            os.replace(temp, path)
            return
        st = os.stat(temp)  # the file displaced by the exchange
        if (st.st_dev, st.st_ino) != identity:
            _renameat2(temp, path, _RENAME_EXCHANGE)  # undo: the other writer's file is back
            raise _replaced(path)
    except BaseException:
        try:
            os.unlink(temp)
        except FileNotFoundError:
            pass
        raise
    os.unlink(temp)


def _temp_files(root: str) -> Iterator[tuple[str, float]]:
    """envstore's temporary files under directory ``root`` with their mtimes; for a file
    ``root`` (or a name that is not there), only the temporary files of writes to it."""
    if not os.path.isdir(root):
        head, tail = os.path.split(root.rstrip("/"))
        found = os.listdir(head) if os.path.isdir(head) else []
        for f in found:
            match = _TEMP_NAME.fullmatch(f)
            if match is not None and match.group(1) == tail:
                name = os.path.join(head, f)
                try:
                    yield name, os.stat(name).st_mtime
                except FileNotFoundError:
                    continue
        return
    for dirpath, _dirs, files in os.walk(root):
        for f in files:
            if is_temp_name(f):
                name = os.path.join(dirpath, f)
                try:
                    yield name, os.stat(name).st_mtime
                except FileNotFoundError:
                    continue


class _LocalSink:
    def __init__(self, path: str, exclusive: bool = False) -> None:
        self.path = path
        self.exclusive = exclusive
        self.temp = _temp_name(path)
        self.f = open(self.temp, "xb")

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.f.write(data)

    def flush(self) -> None:
        """Everything written is on disk (fsync) and the temp file closed."""
        self.f.flush()
        os.fsync(self.f.fileno())
        self.f.close()

    def commit(self) -> None:
        try:
            self.flush()
            if self.exclusive:
                link_no_replace(self.temp, self.path)
            else:
                os.replace(self.temp, self.path)
        except BaseException:
            self.discard()
            raise

    def discard(self) -> None:
        self.f.close()
        try:
            os.unlink(self.temp)
        except FileNotFoundError:
            pass


class MemoryStore(Store):
    """``memory://``: the object is built aside and enters the store on commit."""

    def read(self, path: str, start: int, end: int) -> memoryview:  # type: ignore[override]
        """A view of the stored bytes, no copy (committed objects are never written again:
        every write builds a new MemoryFile)."""
        path = self.fs._strip_protocol(path)
        try:
            f = self.fs.store[path]
        except KeyError:
            raise FileNotFoundError(path) from None
        return f.getbuffer()[start:end]

    def open_sink(
        self, path: str, fields: Fields, hint: int | None, exclusive: bool = False
    ) -> Sink:
        if fields:
            raise NotImplementedError("memory files have no user metadata")
        path = self.fs._strip_protocol(path)
        if self.fs.isdir(path) and path in getattr(self.fs, "pseudo_dirs", ()):
            raise IsADirectoryError(path)
        parent = self.fs._parent(path)
        while len(parent) > 1:  # as MemoryFileSystem._open: a file cannot be a parent
            if self.fs.isfile(parent):
                raise FileExistsError(parent)
            parent = self.fs._parent(parent)
        return _MemorySink(MemoryFile(self.fs, path), exclusive)


#: memory-store commits of exclusive writes check and store under this lock
_MEMORY_LOCK = threading.Lock()


class _MemorySink:
    def __init__(self, f: MemoryFile, exclusive: bool = False) -> None:
        self.f = f
        self.exclusive = exclusive

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.f.write(data)

    def commit(self) -> None:
        self.f.seek(0)
        if not self.exclusive:
            self.f.commit()
            return
        with _MEMORY_LOCK:
            if self.f.path in self.f.fs.store:
                self.discard()
                raise FileExistsError(errno.EEXIST, "an object exists already", self.f.path)
            self.f.commit()

    def discard(self) -> None:
        self.f.truncate(0)
