"""Reading and writing one encrypted object: the object reader and the file objects."""

from __future__ import annotations

import functools
import io
import threading
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

from fsspec.spec import AbstractBufferedFile

from envstore.cipher import Decryptor, Encryptor
from envstore.errors import EnvstoreError, IntegrityError
from envstore.format import (
    CHUNK,
    PREFIX,
    WIRE_CHUNK,
    Envelope,
    chunk_span,
    context_bytes,
    final_chunk,
    wire_span,
)
from envstore.stores.base import Sink, Store, exact

if TYPE_CHECKING:
    from envstore.keys.ring import KeyRing

#: keep the last decrypted run for follow-up reads up to this size
_RUN_CACHE = (4 << 20) + 2 * CHUNK
#: plaintext bytes per piece when streaming a whole object (ObjectReader.stream)
STREAM_STEP = 256 * CHUNK
_F = TypeVar("_F", bound=Callable[..., Any])


@contextmanager
def naming(path: str) -> Iterator[None]:
    """Make every envstore error raised inside name the object ``path``.

    The one place where read errors get their object (a 1,000-part dataset read by pandas or
    dask must say which part is bad): the exception keeps its type, attributes and traceback;
    its message gains a ``path: `` prefix unless it names the path already, and ``exc.path``
    is set. Backend ``OSError``s are left as they are.
    """
    try:
        yield
    except EnvstoreError as exc:
        if getattr(exc, "path", None) is None:
            exc.path = path  # type: ignore[attr-defined]
            text = str(exc)
            if path not in text:
                exc.args = (f"{path}: {text}", *exc.args[1:])
        raise


def _named(method: _F) -> _F:
    """Run an :class:`ObjectReader` method under :func:`naming` of its object's path."""

    @functools.wraps(method)
    def wrapper(self: ObjectReader, *args: Any, **kwargs: Any) -> Any:
        with naming(self.loc.path):
            return method(self, *args, **kwargs)

    return wrapper  # type: ignore[return-value]


@dataclass(frozen=True)
class Located:
    """An envstore object found and parsed (no key needed): where its body is, how big."""

    path: str
    envelope: Envelope
    placement: str  # "metadata" or "header"
    body_offset: int
    stored_size: int
    plain_len: int
    token: tuple[Any, ...]
    #: the whole stored object, when locating a small header-placement object read it all
    #: (its reader then needs no second read); never kept in the locate cache
    stored: bytes | None = field(default=None, compare=False, repr=False)


class ObjectReader:
    """Random-access plaintext of one object; every chunk authenticated before release."""

    def __init__(self, store: Store, ring: KeyRing, located: Located) -> None:
        self.store = store
        self.ring = ring
        self.loc = located
        self.plain_len = located.plain_len
        self.final = final_chunk(located.plain_len)
        self._dec: Decryptor | None = None
        self._run: tuple[int, memoryview] | None = None  # (first chunk, plaintext)
        self._scratch = bytearray()  # reused decryption buffer (at most _RUN_CACHE)
        self._end_ok = False
        # one thread at a time decrypts into the scratch buffer and copies out of it
        self._lock = threading.RLock()

    def __repr__(self) -> str:
        return f"<ObjectReader {self.loc.path} size={self.plain_len}>"

    def __reduce__(self) -> NoReturn:
        raise TypeError("ObjectReader holds key material and must not be pickled")

    def locked(self) -> AbstractContextManager[bool]:
        """Hold this reader (re-entrant) while decrypting into its scratch buffer and copying
        out; :meth:`read` and :meth:`authenticate_end` take it, callers of :meth:`open_run` too."""
        return self._lock

    @property
    @_named
    def decryptor(self) -> Decryptor:
        if self._dec is None:
            env = self.loc.envelope
            key = self.ring.open_envelope(env)  # a key matching the commitment, or an error
            try:
                self._dec = Decryptor(key, context_bytes(env.context), env.salt + env.commitment)
            finally:
                key[:] = bytes(len(key))
        return self._dec

    # -- planning and decrypting runs of chunks (shared with cat_ranges) --------------------
    def plan(self, start: int, end: int) -> tuple[int, int, int, int]:
        """Chunks ``first..last`` for plaintext ``[start, end)`` and the stored byte range."""
        first, last = chunk_span(start, end, self.plain_len)
        ws, we = wire_span(first, last, self.plain_len)
        if first == 0 and self.loc.placement == "metadata":
            ws = 0  # the body's own salt/commitment come with chunk 0: checked against metadata
        return first, last, self.loc.body_offset + ws, self.loc.body_offset + we

    def fetching(self, start: int, end: int) -> AbstractContextManager[bytes | memoryview]:
        """Stored bytes ``[start, end)`` of this object, exactly (else IntegrityError), valid
        inside the ``with`` block only (the store may lend a buffer it reuses)."""
        if self.loc.stored is not None:  # read whole when located (one consistent read)
            return nullcontext(
                exact(memoryview(self.loc.stored)[start:end], self.loc.path, start, end)
            )
        return self.store.fetching(self.loc.path, start, end)

    @_named
    def open_run(self, first: int, stored: bytes | memoryview, stored_start: int) -> memoryview:
        """Authenticate and decrypt the run of chunks from ``first`` fetched at ``stored_start``
        (by :meth:`fetch`, or a batch answer checked by ``stores.base.exact``: the length is
        already exact)

        The result may live in a buffer reused by the next call: call this under
        :meth:`locked` and copy what you keep before leaving it (else RuntimeError).
        """
        if not self._lock._is_owned():  # type: ignore[attr-defined]  # (CPython RLock)
            raise RuntimeError("ObjectReader.open_run must be called under reader.locked()")
        view = memoryview(stored)
        if stored_start == self.loc.body_offset:
            self.loc.envelope.check_prefix(bytes(view[:PREFIX]))
            view = view[PREFIX:]
        self._run = None
        size = (len(view) // WIRE_CHUNK) * CHUNK + len(view) % WIRE_CHUNK
        out = None
        if size <= _RUN_CACHE:
            if len(self._scratch) < size:
                self._scratch = bytearray(min(_RUN_CACHE, max(size, 2 * len(self._scratch))))
            out = self._scratch
        plain = self.decryptor.decrypt_chunks(first, view, self.final, out)
        if len(view) % WIRE_CHUNK:  # a short run end is the final chunk, now authenticated
            self._end_ok = True
        if out is not None:
            self._run = (first, plain)
        return plain

    @_named
    def read(self, start: int, end: int) -> bytes:
        """Plaintext ``[start, end)`` (clipped to the object). Reaching the end authenticates
        the final chunk, so a short read is never taken on trust."""
        end = min(end, self.plain_len)
        if start >= end:
            if start >= self.plain_len:
                self.authenticate_end()
            return b""
        with self.locked():  # the run cache and scratch buffer are shared by threads
            cached = self._cached(start, end)
        if cached is not None:
            return cached
        first, last, s, e = self.plan(start, end)
        lo = first * CHUNK
        # the fetch is outside the lock: other threads' fetches run meanwhile
        with self.fetching(s, e) as stored, self.locked():
            if start == lo and (end == self.plain_len or end % CHUNK == 0):
                sequential = self._native_run(first, last, stored, s)
                if sequential is not None:  # whole chunks, decrypted straight into the result
                    return sequential
            plain = self.open_run(first, stored, s)
            return bytes(memoryview(plain)[start - lo : end - lo])

    def _native_run(self, first: int, last: int, stored: Any, stored_start: int) -> bytes | None:
        """Chunks ``first..last`` by the sequential native pass (Decryptor.native_run), or None."""
        view = memoryview(stored)
        if stored_start == self.loc.body_offset:
            self.loc.envelope.check_prefix(bytes(view[:PREFIX]))
            view = view[PREFIX:]
        plain = self.decryptor.native_run(first, view, self.final)
        if plain is not None and last == self.final:
            self._end_ok = True
        return plain

    def _cached(self, start: int, end: int) -> bytes | None:
        """``[start, end)`` copied from the last decrypted run, if it holds it (under the lock)."""
        if self._run is None:
            return None
        first, plain = self._run
        lo = first * CHUNK
        if lo <= start and end <= lo + len(plain) and (end < self.plain_len or self._end_ok):
            return bytes(memoryview(plain)[start - lo : end - lo])
        return None

    def stream(self, step: int = STREAM_STEP) -> Iterator[bytes]:
        """The whole plaintext in pieces of ``step`` bytes, then the final chunk authenticated:
        the one way envstore reads an object to its end (cat, get_file, verify, migrate)."""
        for pos in range(0, self.plain_len, step):
            yield self.read(pos, pos + step)
        self.authenticate_end()

    @_named
    def authenticate_end(self) -> None:
        """Fetch and authenticate the final chunk (size and end-relative positions rely on it).

        This is what makes an empty object safe: its body is only the final chunk, so the
        key is unwrapped, the commitment checked and the empty chunk verified here."""
        if self._end_ok:
            return
        with self.locked():
            if not self._end_ok:  # another thread may have done it meanwhile
                start = self.final * CHUNK
                first, _last, s, e = self.plan(start, self.plain_len)
                with self.fetching(s, e) as stored:
                    self.open_run(first, stored, s)
            if not self._end_ok:  # pragma: no cover - open_run sets it for the final chunk
                raise IntegrityError("final chunk not authenticated")


class EnvstoreReadFile(AbstractBufferedFile):
    """Buffered random-access reader; ``cache_type`` applies on top of chunk-aligned reads."""

    def __init__(
        self,
        fs: Any,
        path: str,
        reader: ObjectReader,
        block_size: int | None = None,
        cache_type: str = "none",
        cache_options: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        self.reader = reader
        self._thread_lock = threading.Lock()
        self._sought: dict[int, int] = {}  # thread id -> position of its last seek
        super().__init__(
            fs,
            path,
            mode="rb",
            block_size=block_size or CHUNK * 64,
            autocommit=True,
            cache_type=cache_type,
            cache_options=cache_options,
            size=reader.plain_len,
            **kwargs,
        )

    def _fetch_range(self, start: int, end: int) -> bytes:
        return self.reader.read(start, end)

    # -- one handle, several threads ------------------------------------------------------
    # duckdb's Python filesystem reads one handle from several threads as seek(pos) + read(n)
    # pairs (its positional read); Python code can switch threads between the two calls. A
    # thread's seek is remembered for that thread's next read, so each pair reads where it
    # sought; reads are serialized (the reader's buffers are per handle). One thread alone
    # sees ordinary file semantics.
    def seek(self, loc: int, whence: int = 0) -> int:
        with self._thread_lock:  # never beside another thread's read (the reader's buffers)
            if whence == 2:
                self.reader.authenticate_end()
            pos = super().seek(loc, whence)
            self._sought[threading.get_ident()] = pos
        return pos

    def read(self, length: int = -1) -> bytes:
        """As fsspec's, but end of data is reported only after the final chunk authenticated.

        fsspec's buffered reader returns ``b""`` without fetching anything when the position
        is at the (claimed) size, e.g. always for a 0-byte object: an object cut to an empty
        body or forged with no usable recipient would read as empty. ``readline``,
        ``readlines``, iteration, ``readinto`` and text mode all read through here.
        """
        with self._thread_lock:
            pos = self._sought.pop(threading.get_ident(), None)
            if pos is not None:
                self.loc = pos
            out = super().read(length)
            if self.loc >= self.size:
                self.reader.authenticate_end()
            return out


class EnvstoreWriteFile(io.RawIOBase):
    """Streaming encrypting writer: bounded memory, nothing visible until a clean close.

    An exception inside ``with``, :meth:`discard`, or garbage collection without ``close``
    drops the object: a partial object never appears at the destination.
    """

    def __init__(
        self,
        on_commit: Callable[[str], None],
        path: str,
        sink: Sink,
        encryptor: Encryptor,
        header: bytes | None,
        block_size: int | None = None,
        size: int | None = None,
    ) -> None:
        super().__init__()
        #: called with the path once the object is committed (the object layer's forget)
        self.on_commit = on_commit
        #: plaintext bytes this object must have (declared in its envelope), or None
        self.size = size
        self.path = path
        self.mode = "wb"
        self._sink = sink
        self._enc = encryptor
        nchunks = max(1, (block_size or 4 << 20) // CHUNK)
        if size is not None:  # a known size needs no buffer beyond the object (+1 chunk)
            nchunks = min(nchunks, size // CHUNK + 1)
        self.blocksize = nchunks * CHUNK
        self._buf = bytearray()  # plaintext of an incomplete block, allocated when needed
        self._fill = 0
        self._out = bytearray(nchunks * WIRE_CHUNK)  # ciphertext of one block
        self._pos = 0
        self._done = False
        try:
            if header is not None:
                sink.write(header)
            sink.write(encryptor.prefix)
        except BaseException:
            self.discard()
            raise

    def __repr__(self) -> str:
        return f"<EnvstoreWriteFile {self.path}>"

    def __reduce__(self) -> NoReturn:
        raise TypeError("an open envstore writer cannot be pickled")

    def writable(self) -> bool:
        return True

    def readable(self) -> bool:
        return False

    def seekable(self) -> bool:
        return False

    def tell(self) -> int:
        return self._pos

    def _seal(self, data: memoryview) -> None:
        """Encrypt full chunks and hand them to the sink, on the caller's thread.

        The sink is the one layer of write concurrency: the S3 and OSS sinks copy the bytes
        into a part buffer and upload parts in the background (:mod:`envstore.stores.partsink`)
        while the next block is encrypted; local and memory sinks write at memory speed.
        """
        out = self._out
        n = self._enc.encrypt_full_into(data, memoryview(out))
        self._sink.write(memoryview(out)[:n])

    def write(self, data: Any) -> int:
        if self.closed:
            raise ValueError("write to closed file")
        view = memoryview(data).cast("B")
        n = len(view)
        if self.size is not None and self._pos + n > self.size:
            self.discard()
            raise OSError(
                f"{self.path}: {self._pos + n} bytes written to an object declared as "
                f"{self.size} bytes (the source changed size?); nothing was stored"
            )
        try:
            if not self._fill and self.size is not None and self._pos + n == self.size:
                view = self._seal_last(view)  # the write completing a known size
            if self._fill:
                take = min(self.blocksize - self._fill, len(view))
                self._buf[self._fill : self._fill + take] = view[:take]
                self._fill += take
                view = view[take:]
                if self._fill == self.blocksize:
                    self._seal(memoryview(self._buf))
                    self._fill = 0
            while len(view) >= self.blocksize:
                self._seal(view[: self.blocksize])
                view = view[self.blocksize :]
            if len(view):
                self._buf = self._buf or bytearray(self.blocksize)
                self._buf[: len(view)] = view
                self._fill = len(view)
        except BaseException:
            self.discard()
            raise
        self._pos += n
        return n

    def _seal_last(self, view: memoryview) -> memoryview:
        """Seal the full chunks of the write completing the declared size straight from the
        caller's buffer (no copy into the block buffer); the partial chunk left is returned."""
        full = min(len(view) // CHUNK, self.blocksize // CHUNK) * CHUNK
        if full and len(view) - full < CHUNK:
            self._seal(view[:full])
            return view[full:]
        return view

    def flush(self) -> None:
        """Buffered data is sealed in whole chunks on close; nothing to do early."""

    def close(self) -> None:
        if self.closed:
            return
        if self.size is not None and self._pos != self.size:
            self.discard()
            raise OSError(
                f"{self.path}: {self._pos} bytes written to an object declared as "
                f"{self.size} bytes (the source changed size?); nothing was stored"
            )
        try:
            full = (self._fill // CHUNK) * CHUNK
            if full:
                self._seal(memoryview(self._buf)[:full])
            tail = self._enc.update(memoryview(self._buf)[full : self._fill])
            assert not tail
            self._sink.write(self._enc.finalize())
            self._sink.commit()
        except BaseException:
            self.discard()
            raise
        self._done = True
        self._release()
        self.on_commit(self.path)

    def discard(self) -> None:
        """Abandon the object: nothing is written at the destination."""
        if self.closed:
            return
        try:
            self._sink.discard()
        finally:
            self._release()

    def _release(self) -> None:
        self._buf = bytearray()
        self._out = bytearray()
        self._enc = None  # type: ignore[assignment]
        super().close()

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc_type is not None:
            self.discard()
        else:
            self.close()

    def __del__(self) -> None:
        if not self.closed:
            try:
                self.discard()
            except Exception:
                pass


class EnvstoreTextWriter(io.TextIOWrapper):
    """Text-mode writer that, like the binary one, drops the object on an exception."""

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc_type is not None:
            self.buffer.discard()  # type: ignore[attr-defined]
        super().__exit__(exc_type, exc, tb)
