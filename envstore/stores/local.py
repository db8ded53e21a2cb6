"""Local files and fsspec's memory filesystem: header placement, atomic commits."""

from __future__ import annotations

import os
import secrets
from collections.abc import Mapping

from fsspec.implementations.memory import MemoryFile

from envstore.stores.base import Sink, Store

#: prefix of in-progress local writes (hidden from envstore listings)
TEMP_PREFIX = ".envstore-part-"


class LocalStore(Store):
    """``file://``: a temporary file beside the target, fsync'd and renamed into place."""

    def open_sink(
        self, path: str, metadata: Mapping[str, str] | None, size_hint: int | None
    ) -> Sink:
        if metadata:
            raise NotImplementedError("local files have no user metadata")
        path = self.fs._strip_protocol(path)
        if self.fs.isdir(path):
            raise IsADirectoryError(path)
        # like an object store (and dask's writers), missing parent directories are created
        self.fs.makedirs(self.fs._parent(path), exist_ok=True)
        return _LocalSink(path)

    def move(self, src: str, dst: str) -> None:
        self.fs.mv(src, dst)


class _LocalSink:
    def __init__(self, path: str) -> None:
        head, tail = os.path.split(path)
        self.path = path
        self.temp = os.path.join(head, f"{TEMP_PREFIX}{tail}.{secrets.token_hex(6)}")
        self.f = open(self.temp, "xb")

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.f.write(data)

    def commit(self) -> None:
        try:
            self.f.flush()
            os.fsync(self.f.fileno())
            self.f.close()
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
        self, path: str, metadata: Mapping[str, str] | None, size_hint: int | None
    ) -> Sink:
        if metadata:
            raise NotImplementedError("memory files have no user metadata")
        path = self.fs._strip_protocol(path)
        if self.fs.isdir(path) and path in getattr(self.fs, "pseudo_dirs", ()):
            raise IsADirectoryError(path)
        parent = self.fs._parent(path)
        while len(parent) > 1:  # as MemoryFileSystem._open: a file cannot be a parent
            if self.fs.isfile(parent):
                raise FileExistsError(parent)
            parent = self.fs._parent(parent)
        return _MemorySink(MemoryFile(self.fs, path))


class _MemorySink:
    def __init__(self, f: MemoryFile) -> None:
        self.f = f

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.f.write(data)

    def commit(self) -> None:
        self.f.seek(0)
        self.f.commit()

    def discard(self) -> None:
        self.f.truncate(0)
