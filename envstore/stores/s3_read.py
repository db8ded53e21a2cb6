"""S3 reads: ranged GETs within the read deadline, batches of them, and sequential scans
that keep one GET open and read it as they go (see :meth:`S3Reads.read`)."""

from __future__ import annotations

import asyncio
import concurrent.futures
import errno
import time
from collections import OrderedDict
from collections.abc import Coroutine, Sequence
from typing import Any, TypeVar

from s3fs import S3FileSystem

from envstore.format import WIRE_CHUNK
from envstore.stores.base import DEFAULT_READ_DEADLINE
from envstore.stores.s3_deadline import within
from envstore.stores.s3_stream import Stream, reserve

__all__ = ["S3Reads", "run"]

MiB = 1 << 20
#: seconds to wait for in-flight requests to stop after a failure, before aborting anyway
CANCEL_WAIT = 30.0
#: sequential-scan bookkeeping: idle scans are dropped after this many seconds; a random
#: read keeps this many of its last bytes (a following read may restart inside its last chunk)
_SCAN_IDLE = 10.0
_SCAN_TAIL = 2 * WIRE_CHUNK
_SCANS_PER_OBJECT = 4

T = TypeVar("T")


def run(fs: S3FileSystem, coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro`` on s3fs's event loop and wait; an interrupt cancels it (and waits for it).

    Unlike ``fsspec.asyn.sync``, an interrupt (``KeyboardInterrupt``) while waiting reaches the
    coroutine as a cancellation, so its cleanup (aborting an upload) runs before we return.
    """
    future = asyncio.run_coroutine_threadsafe(coro, fs.loop)
    try:
        return future.result()
    except BaseException:
        if not future.done():
            future.cancel()
            try:
                concurrent.futures.wait([future], timeout=CANCEL_WAIT)
            except BaseException:  # pragma: no cover - a second interrupt: give up waiting
                pass
        raise


class _Scan:
    """One sequential reader of an object: its last range, the last bytes it returned (a
    following read may restart inside their last chunk) and, once the reads prove sequential,
    one GET kept open for the bytes after them (``stream``, read as the scan goes on)."""

    __slots__ = (
        "busy",
        "dropped",
        "end",
        "failed",
        "held",
        "held_start",
        "start",
        "stream",
        "used",
    )

    def __init__(self, start: int, end: int, blob: bytes) -> None:
        """A scan whose first read was ``[start, end)``, answered by ``blob``."""
        self.start = start
        self.end = end
        self.hold(start, blob)
        self.stream: Stream | None = None
        self.failed = False  # a stream of this scan broke: plain ranged GETs from now on
        self.dropped = False  # forgotten (maybe while busy): its thread closes its stream
        self.busy = False  # claimed by a thread
        self.used = time.monotonic()

    def hold(self, start: int, blob: bytes | memoryview) -> None:
        kept = bytes(memoryview(blob)[-_SCAN_TAIL:])
        self.held_start, self.held = start + len(blob) - len(kept), kept

    def close_stream(self) -> None:
        stream, self.stream = self.stream, None
        if stream is not None:
            stream.close()

    def drop(self) -> None:
        self.dropped = True
        self.close_stream()
        self.held = b""


class S3Reads:
    """The read half of :class:`envstore.stores.s3.S3Store` (a mixin: it uses the store's
    ``fs``, ``_lock``, ``_heads`` and ``_name``)."""

    fs: S3FileSystem
    _lock: Any
    _heads: Any
    #: a sequential scan's GET asks for the rest of the object (None), or for at most this
    #: many bytes beyond the read (then another GET); 0: no read-ahead, one GET per read
    readahead_max: int | None = None
    #: objects whose sequential-scan state is kept
    readahead_objects: int = 4
    #: GETs kept open by sequential scans over one S3 filesystem at once, at most half its
    #: connection pool (each holds one connection until its scan ends or moves, another scan
    #: needs it, or it has been idle for about 10 s); 0: none
    readahead_streams: int = 4
    #: seconds one read request (a HEAD, a ranged GET) may take in total, s3fs's and
    #: botocore's retries included, plus one second per MiB it fetches; None: no limit.
    #: Set from the envstore option ``read_deadline``.
    read_deadline: float | None = DEFAULT_READ_DEADLINE
    #: ranged GETs of one batch in flight at once (botocore's default connection pool)
    read_concurrency: int = 10

    def _name(self, path: str) -> str:
        raise NotImplementedError

    def _init_scans(self) -> None:
        self._scans: OrderedDict[str, list[_Scan]] = OrderedDict()

    def _drop_scans(self, name: str | None) -> None:
        """Forget the sequential scans of ``name`` and below it (all if None)."""
        with self._lock:
            if name is None:
                dropped = [c for scans in self._scans.values() for c in scans]
                self._scans.clear()
            else:
                below = name.rstrip("/") + "/"
                dropped = []
                for p in [p for p in self._scans if p == name.rstrip("/") or p.startswith(below)]:
                    dropped += self._scans.pop(p)
        for scan in dropped:
            scan.drop()

    def read(self, path: str, start: int, end: int) -> bytes:
        """Stored bytes ``[start, end)``: one ranged GET (above s3fs's ``default_block_size``,
        concurrent GETs of that size, as s3fs's own ``cat_file`` does).

        Random access fetches exactly its range.  A read that continues where an earlier read
        of the same object ended is a sequential scan (``get``, ``read_csv``, streaming reads):
        it opens one GET for the rest of the object and reads its body as the scan goes on,
        so the whole scan costs one more request and holds only the bytes of the read in hand
        (the server's sending is paced by the socket, not buffered here).
        """
        if start >= end:
            return b""
        if self.readahead_max == 0:
            return self._fetch(path, start, end)
        name = self._name(path)
        now = time.monotonic()
        with self._lock:
            scans = self._scans.pop(name, [])
            self._scans[name] = scans  # most recently used last
            scan = next(
                (c for c in scans if not (c.busy or c.dropped) and c.start < start <= c.end),
                None,
            )
            if scan is not None:
                scan.busy = True
            stale = [c for c in scans if not c.busy and (c.dropped or now - c.used > _SCAN_IDLE)]
            for c in stale:
                scans.remove(c)
            while len(self._scans) > max(1, self.readahead_objects):
                stale += self._scans.popitem(last=False)[1]
        for c in stale:
            c.drop()
        if scan is None:  # random access: exactly the range
            blob = self._fetch(path, start, end)
            fresh = _Scan(start, end, blob)
            with self._lock:
                scans = self._scans.setdefault(name, [])
                scans.append(fresh)
                while len(scans) > _SCANS_PER_OBJECT:
                    scans.pop(0).drop()
            return blob
        try:
            return self._continue(scan, path, name, start, end)
        except BaseException:
            scan.drop()
            raise
        finally:
            scan.used = time.monotonic()
            scan.busy = False
            if scan.dropped:  # forgotten meanwhile: a stream it opened since is closed too
                scan.close_stream()

    def _continue(self, scan: _Scan, path: str, name: str, start: int, end: int) -> bytes:
        size = self._known_size(name)
        stop = end if size is None else min(end, size)
        pieces: list[bytes | memoryview] = []
        pos = start
        lo, held = scan.held_start, scan.held
        if lo <= pos < lo + len(held):  # the restart inside the last chunk: fetched already
            take = min(stop, lo + len(held)) - pos
            pieces.append(memoryview(held)[pos - lo : pos - lo + take])
            pos += take
        if pos < stop:
            pieces.append(self._from_stream(scan, path, pos, stop, size))
        blob = bytes(pieces[0]) if len(pieces) == 1 else b"".join(pieces)
        scan.start, scan.end = start, end
        scan.hold(start, blob)
        if size is not None and start + len(blob) >= size:
            scan.close_stream()  # the scan reached the end
        return blob

    def _from_stream(self, scan: _Scan, path: str, pos: int, stop: int, size: int | None) -> bytes:
        """Stored bytes ``[pos, stop)`` from the scan's open GET (opened here if needed); a
        GET that breaks is closed and the bytes fetched by a plain ranged GET instead."""
        stream = scan.stream
        if stream is not None and (stream.pos != pos or not stream.claim()):
            scan.close_stream()  # elsewhere, or closed (idle, or its connection taken)
            stream = None
        if stream is None and not scan.failed:
            stream = scan.stream = self._open_stream(scan, path, pos, stop, size)
        if stream is None:
            return self._fetch(path, pos, stop)
        try:
            want = min(stop, stream.end) - pos
            try:
                blob = run(self.fs, self._within(stream.read(want), path, want))
            except Exception as exc:
                scan.close_stream()
                if isinstance(exc, TimeoutError) and exc.errno == errno.ETIMEDOUT:
                    raise  # the read deadline passed: no second attempt
                scan.failed, blob = True, b""  # a broken connection, a cut body: fetch it
            stream.pos += len(blob)
        finally:
            stream.release()
        if stream.pos >= stream.end or len(blob) < stop - pos:
            scan.close_stream()
        if len(blob) < stop - pos:
            blob += self._fetch(path, pos + len(blob), stop)
        return blob

    def _open_stream(
        self, scan: _Scan, path: str, pos: int, stop: int, size: int | None
    ) -> Stream | None:
        """A GET of ``[pos, ...)`` for ``scan`` (claimed), or None where the streams this S3
        filesystem may keep open (:meth:`_stream_limit`) are open and all being read."""
        stream = reserve(self.fs, pos, self._stream_limit())
        if stream is None:
            return None
        try:  # from here on, an error or an interrupt closes what was opened
            most = self.readahead_max
            last = min(pos + max(stop - pos, most), size or 1 << 62) if most else size
            bucket, key, version = self.fs.split_path(path)
            got = self.fs._call_s3(
                "get_object",
                Bucket=bucket,
                Key=key,
                Range=f"bytes={pos}-{'' if last is None else last - 1}",
                **({"VersionId": version} if version else {}),
            )

            async def opened() -> Any:
                resp = await self._within(got, path)
                # attached on the loop: an interrupt after the answer still closes its body
                stream.attach(resp["Body"], pos + int(resp.get("ContentLength") or 0))
                return resp

            resp = run(self.fs, opened())
            if stream.closed:  # pragma: no cover - a reserved stream is closed only here
                return None
            if not str(resp.get("ContentRange", "")).startswith(f"bytes {pos}-"):
                stream.close()  # not the range asked for: read it the plain way
                scan.failed = True
                return None
        except BaseException:
            stream.close()
            raise
        return stream

    def _stream_limit(self) -> int:
        """``readahead_streams``, at most half of the s3fs filesystem's connection pool
        (botocore's ``max_pool_connections``, 10 unless configured): idle scan GETs must
        never leave plain requests without a connection."""
        config = getattr(getattr(getattr(self.fs, "s3", None), "meta", None), "config", None)
        pool = getattr(config, "max_pool_connections", None) or 10
        return min(self.readahead_streams, pool // 2)

    async def _within(self, coro: Coroutine[Any, Any, T], path: str, nbytes: int = 0) -> T:
        """``await coro`` within the read deadline, plus 1 s per MiB of ``nbytes`` (see
        :func:`~envstore.stores.s3_deadline.within`)."""
        deadline = self.read_deadline
        return await within(
            self.fs,
            coro,
            None if deadline is None else deadline + nbytes / MiB,
            lambda limit: (
                f"reading {path} did not finish within {limit:.0f}s, retries included "
                f"(read_deadline={deadline:g}s plus 1s per MiB)"
            ),
            path,
        )

    async def _gather(
        self, paths: Sequence[str], starts: Sequence[int], ends: Sequence[int]
    ) -> list[bytes]:
        """Ranged GETs, ``read_concurrency`` at a time, each within the read deadline; the
        first failure cancels the others."""
        sem = asyncio.Semaphore(max(1, self.read_concurrency))

        async def one(path: str, start: int, end: int) -> bytes:
            async with sem:
                got = self.fs._cat_file(path, start=start, end=end)
                return await self._within(got, path, end - start)

        tasks = [
            asyncio.ensure_future(one(p, s, e)) for p, s, e in zip(paths, starts, ends, strict=True)
        ]
        try:
            return list(await asyncio.gather(*tasks))
        except BaseException:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            raise

    def range_gone(self, exc: BaseException) -> bool:
        """s3fs turns a 416 ``InvalidRange`` (the object is now shorter than the range start)
        into a generic ``OSError(EINVAL)``: find the S3 error code along the cause chain."""
        seen: BaseException | None = exc
        for _ in range(8):
            if seen is None:
                return False
            response = getattr(seen, "response", None)
            if isinstance(response, dict) and (
                response.get("Error", {}).get("Code") == "InvalidRange"
                or response.get("ResponseMetadata", {}).get("HTTPStatusCode") == 416
            ):
                return True
            seen = seen.__cause__ or seen.__context__
        return False

    def _known_size(self, name: str) -> int | None:
        with self._lock:
            hit = self._heads.get(name)
        return hit.head.size if hit is not None and hit.head is not None else None

    def _fetch(self, path: str, start: int, end: int) -> bytes:
        if start >= end:
            return b""
        piece = int(self.fs.default_block_size)
        if end - start > piece:
            starts = list(range(start, end, piece))
            ends = [*starts[1:], end]
            return b"".join(self.read_many([path] * len(starts), starts, ends))
        got = self.fs._cat_file(path, start=start, end=end)
        return run(self.fs, self._within(got, path, end - start))

    def read_many(
        self, paths: Sequence[str], starts: Sequence[int], ends: Sequence[int]
    ) -> list[bytes]:
        todo = [i for i, (s, e) in enumerate(zip(starts, ends, strict=True)) if s < e]
        out: list[bytes] = [b""] * len(paths)
        if todo:
            got = run(
                self.fs,
                self._gather(
                    [paths[i] for i in todo], [starts[i] for i in todo], [ends[i] for i in todo]
                ),
            )
            for i, blob in zip(todo, got, strict=True):
                if isinstance(blob, BaseException):
                    raise blob
                out[i] = blob
        return out
