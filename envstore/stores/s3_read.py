"""S3 reads: ranged GETs within the read deadline, batches of them, and sequential scans
that read ahead in the background (see :meth:`S3Reads.read`)."""

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
    """One sequential reader of an object: its last range, the bytes fetched for it (``blob``
    from ``blob_start``) and at most one fetch in flight for the bytes after them."""

    __slots__ = (
        "ahead",
        "blob",
        "blob_start",
        "busy",
        "end",
        "span",
        "start",
        "tail",
        "tail_start",
        "used",
    )

    def __init__(self, start: int, end: int, blob_start: int, blob: bytes) -> None:
        self.start = start
        self.end = end
        self.span = 0  # bytes per read-ahead GET; 0 until the reads prove sequential
        self.blob_start = blob_start
        self.blob = blob
        self.tail_start, self.tail = 0, b""  # the last bytes of the blob before this one
        #: GETs in flight for the bytes after ``blob``, in order: (start, end, future)
        self.ahead: list[tuple[int, int, concurrent.futures.Future[bytes]]] = []
        self.busy = False  # claimed by a thread
        self.used = time.monotonic()

    def replace(self, start: int, blob: bytes) -> None:
        old = self.blob[-_SCAN_TAIL:]
        self.tail_start, self.tail = self.blob_start + len(self.blob) - len(old), old
        self.blob_start, self.blob = start, blob

    def drop(self) -> None:
        for _, _, future in self.ahead:
            future.cancel()
        self.ahead = []
        self.blob = self.tail = b""


class S3Reads:
    """The read half of :class:`envstore.stores.s3.S3Store` (a mixin: it uses the store's
    ``fs``, ``_lock``, ``_heads`` and ``_name``)."""

    fs: S3FileSystem
    _lock: Any
    _heads: Any
    #: most bytes a sequential scan fetches per GET; None: s3fs's ``default_block_size``
    #: (50 MiB unless set), the block of s3fs's own read-ahead cache; 0: no read-ahead
    readahead_max: int | None = None
    #: read-ahead GETs a sequential scan keeps in flight while the caller consumes the bytes
    #: in hand (memory per scanning reader: up to (1 + depth) x readahead_max)
    readahead_depth: int = 1
    #: objects whose sequential-scan state (and read-ahead bytes) are kept
    readahead_objects: int = 4
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
        it reads ahead (16x the read, growing 4x per step up to ``readahead_max``) with the
        next span fetched in the background, so a scan costs a few large GETs overlapped with
        the caller's work instead of one GET per caller read.
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
            scan = next((c for c in scans if not c.busy and c.start < start <= c.end), None)
            if scan is not None:
                scan.busy = True
            stale = [c for c in scans if not c.busy and now - c.used > _SCAN_IDLE]
            for c in stale:
                scans.remove(c)
            while len(self._scans) > max(1, self.readahead_objects):
                stale += self._scans.popitem(last=False)[1]
        for c in stale:
            c.drop()
        if scan is None:  # random access: exactly the range
            blob = self._fetch(path, start, end)
            tail = blob[-_SCAN_TAIL:]  # a following read may restart inside the last chunk
            fresh = _Scan(start, end, start + len(blob) - len(tail), tail)
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

    def _continue(self, scan: _Scan, path: str, name: str, start: int, end: int) -> bytes:
        size = self._known_size(name)
        most = self.fs.default_block_size if self.readahead_max is None else self.readahead_max
        scan.span = min(int(most), max(4 * scan.span, 16 * (end - start), MiB))
        pieces: list[memoryview] = []
        pos = start
        while pos < end:
            held = next(
                (
                    (got, lo)
                    for got, lo in ((scan.blob, scan.blob_start), (scan.tail, scan.tail_start))
                    if lo <= pos < lo + len(got)
                ),
                None,
            )
            if held is not None:  # fetched already
                got, lo = held
                take = min(end, lo + len(got)) - pos
                pieces.append(memoryview(got)[pos - lo : pos - lo + take])
                pos += take
                continue
            if scan.ahead and not scan.ahead[0][0] <= pos < scan.ahead[0][1]:
                scan.drop()  # the scan moved elsewhere: start over here
            blob = b""
            if scan.ahead:  # fetched in the background
                ahead_start, _, future = scan.ahead.pop(0)
                try:
                    blob = future.result()
                except Exception:  # fetched again below; a real error surfaces there
                    blob = b""
                if blob:
                    scan.replace(ahead_start, blob)
            if not blob:
                stop = max(end, pos + scan.span)
                if pos < scan.blob_start < stop:  # fill the gap before the bytes in hand
                    stop = scan.blob_start
                blob = self._fetch(path, pos, stop if size is None else min(stop, size))
                if not blob:
                    break  # past the end: a short read, as for any range
                if stop != scan.blob_start:
                    scan.replace(pos, blob)
                else:
                    pieces.append(memoryview(blob)[: end - pos])
                    pos += min(len(blob), end - pos)
                    continue
            # keep the pipeline full: up to readahead_depth GETs after the bytes in hand
            after = scan.ahead[-1][1] if scan.ahead else scan.blob_start + len(scan.blob)
            while len(scan.ahead) < self.readahead_depth and (size is None or after < size):
                stop = after + scan.span if size is None else min(after + scan.span, size)
                got = self.fs._cat_file(path, start=after, end=stop)
                coro = self._within(got, path, stop - after)
                future = asyncio.run_coroutine_threadsafe(coro, self.fs.loop)
                scan.ahead.append((after, stop, future))
                after = stop
        scan.start, scan.end = start, end
        if size is not None and end >= size:
            scan.drop()  # the scan reached the end
        return b"".join(pieces)

    async def _within(self, coro: Coroutine[Any, Any, T], path: str, nbytes: int = 0) -> T:
        """``await coro``, cancelled with a TimeoutError once the read deadline has passed."""
        if self.read_deadline is None:
            return await coro
        limit = self.read_deadline + nbytes / MiB
        start = time.monotonic()
        try:
            return await asyncio.wait_for(coro, limit)
        except asyncio.TimeoutError:  # the deadline's own, or one from below (translated later)
            if time.monotonic() - start < limit:
                raise
        raise TimeoutError(
            errno.ETIMEDOUT,
            f"reading {path} did not finish within {limit:.0f}s, retries included "
            f"(read_deadline={self.read_deadline:g}s plus 1s per MiB)",
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
