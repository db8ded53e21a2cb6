"""Reading and writing one encrypted object: the object reader and the file objects."""

from __future__ import annotations

import io
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NoReturn

from fsspec.spec import AbstractBufferedFile

from envstore.cipher import Decryptor, Encryptor
from envstore.errors import IntegrityError
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
from envstore.keys.base import WrappedKey
from envstore.stores.base import Sink, Store

if TYPE_CHECKING:
    from envstore.keys.ring import KeyRing

#: keep the last decrypted run for follow-up reads up to this size
_RUN_CACHE = (4 << 20) + 2 * CHUNK


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

    def __repr__(self) -> str:
        return f"<ObjectReader {self.loc.path} size={self.plain_len}>"

    def __reduce__(self) -> NoReturn:
        raise TypeError("ObjectReader holds key material and must not be pickled")

    @property
    def decryptor(self) -> Decryptor:
        if self._dec is None:
            env = self.loc.envelope
            key = self.ring.open_data_key(env.recipients, env.context)
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

    def open_run(self, first: int, stored: bytes | memoryview, stored_start: int) -> memoryview:
        """Authenticate and decrypt the run of chunks from ``first`` fetched at ``stored_start``.

        The result may live in a buffer reused by the next call: copy what you keep.
        """
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

    def read(self, start: int, end: int) -> bytes:
        """Plaintext ``[start, end)`` (clipped to the object). Reaching the end authenticates
        the final chunk, so a short read is never taken on trust."""
        end = min(end, self.plain_len)
        if start >= end:
            if start >= self.plain_len:
                self.authenticate_end()
            return b""
        if self._run is not None:
            first, plain = self._run
            lo = first * CHUNK
            if lo <= start and end <= lo + len(plain) and (end < self.plain_len or self._end_ok):
                return bytes(memoryview(plain)[start - lo : end - lo])
        first, _last, s, e = self.plan(start, end)
        plain = self.open_run(first, self.store.read(self.loc.path, s, e), s)
        lo = first * CHUNK
        return bytes(memoryview(plain)[start - lo : end - lo])

    def authenticate_end(self) -> None:
        """Fetch and authenticate the final chunk (size and end-relative positions rely on it)."""
        if not self._end_ok:
            start = self.final * CHUNK
            first, _last, s, e = self.plan(start, self.plain_len)
            self.open_run(first, self.store.read(self.loc.path, s, e), s)
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

    def seek(self, loc: int, whence: int = 0) -> int:
        if whence == 2:
            self.reader.authenticate_end()
        return super().seek(loc, whence)


class EnvstoreWriteFile(io.RawIOBase):
    """Streaming encrypting writer: bounded memory, nothing visible until a clean close.

    An exception inside ``with``, :meth:`discard`, or garbage collection without ``close``
    drops the object: a partial object never appears at the destination.
    """

    def __init__(
        self,
        fs: Any,
        path: str,
        sink: Sink,
        encryptor: Encryptor,
        header: bytes | None,
        recipients: list[WrappedKey],
        block_size: int | None = None,
    ) -> None:
        super().__init__()
        self.fs = fs
        self.path = path
        self.mode = "wb"
        self._sink = sink
        self._enc = encryptor
        self._recipients = recipients
        nchunks = max(1, (block_size or 4 << 20) // CHUNK)
        self.blocksize = nchunks * CHUNK
        self._buf = bytearray(self.blocksize)
        self._fill = 0
        # two ciphertext buffers: one being written by the sink thread, one being filled
        self._outs = [bytearray(nchunks * WIRE_CHUNK)]
        self._flip = 0
        self._pool: ThreadPoolExecutor | None = None
        self._inflight: Future[None] | None = None
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

    def _seal(self, data: memoryview, last: bool = False) -> None:
        """Encrypt full chunks and hand them to the sink.

        From the second block on, the sink writes on a helper thread while the next block is
        encrypted (network and file writes, and pyca's native cipher, release the GIL).
        """
        if len(self._outs) <= self._flip:
            self._outs.append(bytearray(len(self._outs[0])))
        out = self._outs[self._flip]
        n = self._enc.encrypt_full_into(data, memoryview(out))
        self._wait()
        if last and self._pool is None:
            self._sink.write(memoryview(out)[:n])
            return
        if self._pool is None:
            self._pool = ThreadPoolExecutor(1, thread_name_prefix="envstore-write")
        self._inflight = self._pool.submit(self._sink.write, memoryview(out)[:n])
        self._flip ^= 1

    def _wait(self) -> None:
        if self._inflight is not None:
            inflight, self._inflight = self._inflight, None
            inflight.result()

    def write(self, data: Any) -> int:
        if self.closed:
            raise ValueError("write to closed file")
        view = memoryview(data).cast("B")
        n = len(view)
        try:
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
                self._buf[: len(view)] = view
                self._fill = len(view)
        except BaseException:
            self.discard()
            raise
        self._pos += n
        return n

    def flush(self) -> None:
        """Buffered data is sealed in whole chunks on close; nothing to do early."""

    def close(self) -> None:
        if self.closed:
            return
        try:
            full = (self._fill // CHUNK) * CHUNK
            if full:
                self._seal(memoryview(self._buf)[:full], last=True)
            self._wait()
            tail = self._enc.update(memoryview(self._buf)[full : self._fill])
            assert not tail
            self._sink.write(self._enc.finalize())
            self._sink.commit()
        except BaseException:
            self.discard()
            raise
        self._done = True
        self._release()
        self.fs._written(self.path, self._recipients, self._pos)

    def discard(self) -> None:
        """Abandon the object: nothing is written at the destination."""
        if self.closed:
            return
        try:
            try:
                self._wait()
            except BaseException:
                pass
            self._sink.discard()
        finally:
            self._release()

    def _release(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None
        self._buf = bytearray()
        self._outs = []
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
