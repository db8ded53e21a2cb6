"""EnvstoreFileSystem: the ``envstore`` protocol layered over any fsspec filesystem.

Content-free operations (listing, deletion, directories) are delegated explicitly, one method
at a time, in the style of fsspec's ``dirfs``; sizes are translated to plaintext sizes.
Every content path (open, cat, pipe, put, get, copy) goes through envstore's encrypting and
authenticating code.  Nothing is forwarded implicitly: a method envstore does not implement
raises instead of moving bytes.
"""

from __future__ import annotations

import io
import os
from collections.abc import Mapping, Sequence
from typing import Any

import fsspec
from fsspec.callbacks import DEFAULT_CALLBACK, Callback
from fsspec.implementations.chained import ChainedFileSystem

from envstore.errors import ConfigError
from envstore.file import EnvstoreReadFile, EnvstoreTextWriter, EnvstoreWriteFile, Located
from envstore.format import MAX_RECIPIENTS, WrappedKey, check_context
from envstore.keys.ring import KeyRing, parse_key_cache
from envstore.keys.uri import safe_uri
from envstore.objects import Objects
from envstore.options import (
    check_deadline,
    check_kms_options,
    check_placement,
    key_uri_list,
    split_options,
)
from envstore.paths import check_inner_protocol, require_object, write_aside
from envstore.ranges import plain_range, read_ranges
from envstore.stores import Store, inner_filesystem, store_for
from envstore.stores.base import DEFAULT_READ_DEADLINE
from envstore.stores.failures import translating
from envstore.stores.local import is_temp_name
from envstore.stores.s3_deadline import DEFAULT_WRITE_DEADLINE

__all__ = ["EnvstoreFileSystem"]


def _protocol_names(fs: fsspec.AbstractFileSystem) -> tuple[str, ...]:
    proto = fs.protocol
    return (proto,) if isinstance(proto, str) else tuple(proto)


class EnvstoreFileSystem(ChainedFileSystem):
    """Client-side envelope encryption over any fsspec filesystem.

    Parameters (all plain, picklable data; key *references*, never key bytes):
    ``key_uri`` (str or list: every object's data key is wrapped for each),
    ``decrypt_key_uris`` (more keys accepted when reading), ``context`` (encryption context),
    ``placement`` (``auto``/``metadata``/``header``), ``kms_options`` (per key-URI scheme),
    ``key_cache`` (data-key cache limits, off by default), ``read_deadline`` (seconds one read
    request to a remote store may take, retries included; None: no limit), ``write_deadline``
    (S3: seconds per write request, retries included, + 1 s/MiB; then TimeoutError; None: no
    limit); ``target_protocol`` + ``target_options`` or ``fs`` name the inner filesystem.
    """

    protocol = "envstore"
    root_marker = ""
    _strip_tokenize_options = ("fo",)

    def __init__(
        self,
        target_protocol: str | None = None,
        target_options: Mapping[str, Any] | None = None,
        fs: fsspec.AbstractFileSystem | None = None,
        fo: str | None = None,
        key_uri: str | Sequence[str] | None = None,
        decrypt_key_uris: str | Sequence[str] | None = None,
        context: Mapping[str, str] | None = None,
        placement: str = "auto",
        kms_options: Mapping[str, Mapping[str, Any]] | None = None,
        key_cache: Mapping[str, float] | bool | None = None,
        write_deadline: float | None = DEFAULT_WRITE_DEADLINE,
        read_deadline: float | None = DEFAULT_READ_DEADLINE,
        **kwargs: Any,
    ) -> None:
        # -- options: envstore's, the base class's, consumers', the inner layer's (options.py)
        base_options, target_options = split_options(kwargs, target_protocol, target_options, fs)
        super().__init__(**base_options)
        if fs is None:
            fs = inner_filesystem(target_protocol or "file", target_options)
        elif target_protocol is not None:
            raise ConfigError("give either fs= or target_protocol=, not both")
        # duckdb routes a path to a registered filesystem by its protocols ("<p>://" prefix):
        # "envstore::s3" makes the chained URLs that unstrip_protocol returns its own too
        self.protocol = (  # type: ignore[assignment]
            "envstore",
            *(f"envstore::{p}" for p in _protocol_names(fs)),
        )
        # -- end of option handling; each value checked here, when the filesystem is made
        self.fs = fs
        store = store_for(fs)
        store.read_deadline = check_deadline(read_deadline, "read_deadline")
        if hasattr(store, "write_deadline"):  # S3: bounded write requests
            store.write_deadline = check_deadline(write_deadline, "write_deadline")
        self.key_uris = key_uri_list(key_uri, "key_uri", MAX_RECIPIENTS)
        self.decrypt_key_uris = key_uri_list(decrypt_key_uris, "decrypt_key_uris")
        self.context = check_context(context)
        self.placement = check_placement(placement)
        self.kms_options = check_kms_options(kms_options)
        self.key_cache = parse_key_cache(key_cache)
        #: the object layer: envelopes, placement, keys, recipient changes, cache invalidation
        self.objects = Objects(
            fs,
            store,
            key_uris=self.key_uris,
            decrypt_key_uris=self.decrypt_key_uris,
            kms_options=self.kms_options,
            key_cache=self.key_cache,
            context=self.context,
            placement=placement,
        )
        # fsspec calls _strip_protocol on the class; on an instance, use the inner rules
        self._strip_protocol = self._strip_inner  # type: ignore[method-assign]

    # -- paths -------------------------------------------------------------------------------
    @classmethod
    def _strip_protocol(cls, path: str) -> str:  # type: ignore[override]
        path = fsspec.utils.stringify_path(path)
        for prefix in ("envstore::", "envstore://"):
            if path.startswith(prefix):
                path = path[len(prefix) :]
        return path

    def _strip_inner(self, path: Any) -> Any:
        if isinstance(path, list):
            return [self._strip_inner(p) for p in path]
        outer = type(self)._strip_protocol(path)
        check_inner_protocol(outer, self.fs)  # never a silent wrong target (paths.py)
        return self.fs._strip_protocol(outer)

    def unstrip_protocol(self, name: str) -> str:
        return "envstore::" + self.fs.unstrip_protocol(name)

    def _parent(self, path: str) -> str:  # type: ignore[override]
        return self.fs._parent(path)

    def __repr__(self) -> str:
        return f"<EnvstoreFileSystem over {self.fs!r} keys={[safe_uri(u) for u in self.key_uris]}>"

    @property
    def store(self) -> Store:
        """The store adapter of the inner filesystem (the object layer's)."""
        return self.objects.store

    @store.setter
    def store(self, store: Store) -> None:
        self.objects.store = store

    # -- keys and envelopes (the object layer) ---------------------------------------------
    @property
    def ring(self) -> KeyRing:
        """The process-local key ring (created on first use, never pickled)."""
        return self.objects.ring

    def envelope(self, path: str) -> Located:
        """The parsed envelope and layout of one object (no key needed, nothing secret)."""
        return self.objects.envelope(self._strip_protocol(path))

    def set_recipients(
        self, path: str, recipients: Sequence[WrappedKey], expect: Located | None = None
    ) -> None:
        """Replace an object's recipients without touching its body (Objects.set_recipients)."""
        self.objects.set_recipients(self._strip_protocol(path), recipients, expect)

    def _reader(self, path: str) -> Any:
        return self.objects.reader(self._strip_protocol(path), path)

    def _visible(self, entries: Any) -> list[tuple[str, Any]]:
        """``(name, entry)`` pairs with plaintext sizes; envstore's temporary files left out."""
        return [
            (name, self.objects.plain_entry(e))
            for name, e in entries
            if not is_temp_name(os.path.basename(name.rstrip("/")))
        ]

    # -- delegated, content-free operations --------------------------------------------------
    def ls(self, path: str, detail: bool = True, **kwargs: Any) -> list[Any]:
        entries = self.fs.ls(self._strip_protocol(path), detail=True, **kwargs)
        shown = [e for _, e in self._visible((e["name"], e) for e in entries)]
        return shown if detail else [e["name"] for e in shown]

    def info(self, path: str, **kwargs: Any) -> dict[str, Any]:
        entry = self.store.info(self._strip_protocol(path), **kwargs)
        return self.objects.plain_entry(entry, exact=True)

    def find(
        self,
        path: str,
        maxdepth: int | None = None,
        withdirs: bool = False,
        detail: bool = False,
        **kwargs: Any,
    ) -> Any:
        path = self._strip_protocol(path)
        found = self.fs.find(path, maxdepth=maxdepth, withdirs=withdirs, detail=True, **kwargs)
        shown = dict(self._visible(found.items()))
        return shown if detail else sorted(shown)

    def exists(self, path: str, **kwargs: Any) -> bool:
        return self.fs.exists(self._strip_protocol(path), **kwargs)

    def lexists(self, path: str, **kwargs: Any) -> bool:
        return self.fs.lexists(self._strip_protocol(path), **kwargs)

    def isfile(self, path: str) -> bool:
        return self.store.isfile(self._strip_protocol(path))

    def isdir(self, path: str) -> bool:
        return self.fs.isdir(self._strip_protocol(path))

    def mkdir(self, path: str, create_parents: bool = True, **kwargs: Any) -> None:
        """Directories where the store has them; never a bucket (FileNotFoundError)."""
        path = require_object(self._strip_protocol(path), path)
        self.store.mkdir(path, create_parents, **kwargs)

    def makedirs(self, path: str, exist_ok: bool = False) -> None:
        path = require_object(self._strip_protocol(path), path)
        if not exist_ok and self.exists(path):
            raise FileExistsError(path)
        self.store.makedirs(path)

    def rmdir(self, path: str) -> None:
        self.fs.rmdir(self._strip_protocol(path))

    def rm_file(self, path: str) -> None:
        path = self._strip_protocol(path)
        try:
            self.fs.rm_file(path)
        finally:
            self.objects.forget(path)

    def _rm(self, path: str) -> None:
        self.rm_file(path)

    def rm(self, path: Any, recursive: bool = False, maxdepth: int | None = None) -> None:
        path = self._strip_protocol(path)
        try:
            self.fs.rm(path, recursive=recursive, maxdepth=maxdepth)
        finally:
            for p in path if isinstance(path, list) else [path]:
                self.objects.forget(p)

    def modified(self, path: str) -> Any:
        return self.fs.modified(self._strip_protocol(path))

    def created(self, path: str) -> Any:
        return self.fs.created(self._strip_protocol(path))

    def invalidate_cache(self, path: str | None = None) -> None:
        self.objects.forget_all(None if path is None else self._strip_protocol(path))

    def sign(self, path: str, expiration: int = 100, **kwargs: Any) -> str:
        raise NotImplementedError("a signed URL would hand out ciphertext; envstore has none")

    # -- reading -----------------------------------------------------------------------------
    def _open(
        self,
        path: str,
        mode: str = "rb",
        block_size: int | None = None,
        autocommit: bool = True,
        cache_options: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> Any:
        path = self._strip_protocol(path)
        if not autocommit:
            raise NotImplementedError(
                "envstore writes commit on close; transactions are not supported"
            )
        if mode == "rb":
            return EnvstoreReadFile(
                self,
                path,
                self._reader(path),
                block_size=block_size,
                cache_type=kwargs.pop("cache_type", "none"),
                cache_options=cache_options,
            )
        if mode in ("wb", "xb"):
            if mode == "xb" and self.exists(path):
                raise FileExistsError(path)  # early; the commit checks again, atomically
            return self.objects.writer(path, block_size=block_size, exclusive=mode == "xb")
        raise ValueError(f"envstore supports modes rb, wb, xb (and text r, w, x), not {mode!r}")

    def open(self, path: str, mode: str = "rb", **kwargs: Any) -> Any:
        if "b" in mode:
            return super().open(path, mode, **kwargs)
        text = {k: kwargs.pop(k) for k in ("encoding", "errors", "newline") if k in kwargs}
        raw = super().open(path, mode.replace("t", "") + "b", **kwargs)
        wrapper = EnvstoreTextWriter if isinstance(raw, EnvstoreWriteFile) else io.TextIOWrapper
        return wrapper(raw, **text)

    def cat_file(
        self, path: str, start: int | None = None, end: int | None = None, **kwargs: Any
    ) -> bytes:
        reader = self._reader(path)
        s, e, rel = plain_range(start, end, reader.plain_len)
        if rel:
            reader.authenticate_end()
        return reader.read(s, e)

    def cat_ranges(
        self,
        paths: list[str],
        starts: Any,
        ends: Any,
        max_gap: int | None = None,
        on_error: str = "return",
        **kwargs: Any,
    ) -> list[Any]:
        """Plaintext ranges; chunk ranges are merged per object and fetched in one batch."""
        if not isinstance(paths, list):
            raise TypeError("paths must be a list")
        starts = starts if isinstance(starts, list) else [starts] * len(paths)
        ends = ends if isinstance(ends, list) else [ends] * len(paths)
        if len(starts) != len(paths) or len(ends) != len(paths):
            raise ValueError("paths, starts and ends must have the same length")
        inner = [self._strip_protocol(p) for p in paths]
        return read_ranges(self.store, self._reader, inner, starts, ends, on_error)

    def get_file(
        self,
        rpath: str,
        lpath: Any,
        callback: Callback = DEFAULT_CALLBACK,
        outfile: Any = None,
        **kwargs: Any,
    ) -> None:
        """Decrypt to a local file (written aside and renamed: no partial file on failure)."""
        require_object(self._strip_protocol(rpath), rpath)
        if outfile is None and fsspec.utils.isfilelike(lpath):
            outfile = lpath
        if outfile is None and self.isdir(rpath):
            os.makedirs(lpath, exist_ok=True)
            return
        reader = self._reader(rpath)
        callback.set_size(reader.plain_len)

        def pump(f: Any) -> None:
            for data in reader.stream():
                f.write(data)
                callback.relative_update(len(data))

        if outfile is not None:
            pump(outfile)
        else:
            write_aside(os.fspath(lpath), pump)

    # -- writing -----------------------------------------------------------------------------
    def pipe_file(self, path: str, value: bytes, mode: str = "overwrite", **kwargs: Any) -> None:
        if mode == "create" and self.exists(path):
            raise FileExistsError(path)  # early; the commit checks again, atomically
        path = require_object(self._strip_protocol(path), path)
        with self.objects.writer(path, size=len(value), exclusive=mode == "create") as f:
            f.write(value)

    def put_file(
        self,
        lpath: Any,
        rpath: str,
        callback: Callback = DEFAULT_CALLBACK,
        mode: str = "overwrite",
        **kwargs: Any,
    ) -> None:
        if mode == "create" and self.exists(rpath):
            raise FileExistsError(rpath)
        if os.path.isdir(lpath):
            self.makedirs(rpath, exist_ok=True)
            return
        with open(lpath, "rb") as src:
            size = os.fstat(src.fileno()).st_size
            callback.set_size(size)
            path = self._strip_protocol(rpath)
            parent = self._parent(path)
            if parent:
                self.store.makedirs(parent)
            # the writer takes exactly ``size`` bytes: a source that grows or shrinks meanwhile
            # is an error before the commit, and the object already at rpath stays as it was
            block = kwargs.get("block_size")
            path = require_object(path, rpath)
            with self.objects.writer(path, size, block, exclusive=mode == "create") as dst:
                while data := src.read(dst.blocksize):
                    dst.write(data)
                    callback.relative_update(len(data))

    def touch(self, path: str, truncate: bool = True, **kwargs: Any) -> None:
        if truncate or not self.exists(path):
            self.pipe_file(path, b"")
        else:
            self.fs.touch(self._strip_protocol(path), truncate=False, **kwargs)

    # -- copies inside the store keep the envelope -------------------------------------------
    def cp_file(self, path1: str, path2: str, **kwargs: Any) -> None:
        path1, path2 = self._strip_protocol(path1), self._strip_protocol(path2)
        if self.isdir(path1):
            self.makedirs(path2, exist_ok=True)
            return
        self.objects.copy(path1, path2)

    def mv(
        self,
        path1: Any,
        path2: Any,
        recursive: bool = False,
        maxdepth: int | None = None,
        **kwargs: Any,
    ) -> None:
        if isinstance(path1, str) and isinstance(path2, str) and not recursive:
            p1, p2 = self._strip_protocol(path1), self._strip_protocol(path2)
            if p1 != p2 and self.isfile(p1):
                if self.isdir(p2):
                    p2 = p2.rstrip("/") + "/" + p1.rstrip("/").rsplit("/", 1)[-1]
                self.objects.move(p1, p2)
                return
        super().mv(path1, path2, recursive=recursive, maxdepth=maxdepth, **kwargs)


# -- backend failures -> builtin OSErrors ---------------------------------------------------
# Namespace operations go to the inner filesystem directly; a transport failure there (an
# unreachable endpoint, a reset) leaves as ConnectionError / TimeoutError / OSError with the
# original chained, as it does from the store adapters (envstore.stores.failures).
def _path_arg(fs: EnvstoreFileSystem, path: Any = "", *args: Any, **kwargs: Any) -> str:
    return str(path)


for _name in (
    "ls",
    "find",
    "exists",
    "lexists",
    "isdir",
    "mkdir",
    "makedirs",
    "rmdir",
    "rm_file",
    "rm",
    "modified",
    "created",
):
    setattr(EnvstoreFileSystem, _name, translating(_path_arg)(getattr(EnvstoreFileSystem, _name)))
