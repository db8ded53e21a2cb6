"""The GETs that S3 sequential scans keep open (see :meth:`S3Reads.read`).

Each open GET holds one connection of the s3fs filesystem's pool until it is closed, so they
are counted per filesystem (every envstore filesystem over one cached ``S3FileSystem`` shares
its pool), a slot is reserved before the request is sent, and a stream nobody is reading is
closed once it has been idle for :data:`IDLE` seconds, whatever became of the scan that
opened it.
"""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

__all__ = ["IDLE", "Stream", "open_streams", "reserve"]

#: seconds an open GET may sit unread before it is closed (its connection given back; the
#: check runs every IDLE/8 seconds, so it closes within IDLE * 9/8)
IDLE = 10.0
#: guards every stream's state and the per-filesystem lists
_LOCK = threading.Lock()
#: attribute of the S3FileSystem holding its open streams
_ATTR = "_envstore_scan_streams"


class Stream:
    """An open ranged GET: its body from ``pos`` to ``end`` not read yet.

    ``claimed`` while its scan reads from it (nobody else closes it then, except a scan
    dropped because its object changed); ``closed`` once given up (no further reads)."""

    __slots__ = ("body", "claimed", "closed", "end", "last", "loop", "pos")

    def __init__(self, loop: asyncio.AbstractEventLoop, pos: int) -> None:
        self.loop = loop
        self.body: Any = None  # set by attach() once the GET answered
        self.pos = self.end = pos
        self.claimed = True  # reserved by the scan that is opening it
        self.closed = False
        self.last = time.monotonic()

    async def read(self, n: int) -> bytes:
        """The next ``n`` bytes (fewer only where the body ends early)."""
        parts = []
        got = 0
        while got < n:
            piece = await self.body.read(n - got)
            if not piece:
                break
            parts.append(piece)
            got += len(piece)
        return parts[0] if len(parts) == 1 else b"".join(parts)

    def attach(self, body: Any, end: int) -> bool:
        """The GET answered: read ``body`` up to ``end``. False (and the body closed) if the
        stream was closed meanwhile."""
        with _LOCK:
            if not self.closed:
                self.body, self.end = body, end
                self.loop.call_soon_threadsafe(self._watch)
                return True
        self._close_body(body)
        return False

    def claim(self) -> bool:
        """Take the stream for one read; False if it was closed (open another)."""
        with _LOCK:
            if self.closed:
                return False
            self.claimed = True
            return True

    def release(self) -> None:
        with _LOCK:
            self.claimed = False
            self.last = time.monotonic()

    def close(self) -> None:
        """Close the response (its connection is dropped, not reused); any thread."""
        with _LOCK:
            body = self._shut()
        if body is not None:
            self._close_body(body)

    def _shut(self) -> Any:
        """Mark closed (under _LOCK); the body to close, if any."""
        if self.closed:
            return None
        self.closed = True
        return self.body

    def _close_body(self, body: Any) -> None:
        try:
            self.loop.call_soon_threadsafe(body.close)
        except RuntimeError:  # pragma: no cover - the loop is closed: nothing left to close
            pass

    def _watch(self) -> None:
        """On the loop: close the stream once unclaimed and idle for IDLE seconds."""
        with _LOCK:
            if self.closed:
                return
            left = IDLE - (time.monotonic() - self.last)
            body = self._shut() if left <= 0 and not self.claimed else None
        if body is not None:
            body.close()
        elif not self.closed:
            self.loop.call_later(max(left, IDLE / 8), self._watch)


def reserve(fs: Any, pos: int, most: int) -> Stream | None:
    """A new stream slot of ``fs`` (claimed) for a GET from ``pos``, or None when ``most``
    streams of ``fs`` are open and all are being read. At the limit, the stream idle longest
    is closed to make room."""
    if most < 1:
        return None
    victim = None
    with _LOCK:
        streams = [s for s in fs.__dict__.get(_ATTR, ()) if not s.closed]
        if len(streams) >= most:
            idle = [s for s in streams if not s.claimed]
            if not idle:
                return None
            oldest = min(idle, key=lambda s: s.last)
            streams.remove(oldest)
            victim = (oldest, oldest._shut())
        stream = Stream(fs.loop, pos)
        streams.append(stream)
        fs.__dict__[_ATTR] = streams
    if victim is not None and victim[1] is not None:
        victim[0]._close_body(victim[1])
    return stream


def open_streams(fs: Any) -> int:
    """How many scan streams of ``fs`` are open (or being opened)."""
    with _LOCK:
        return sum(not s.closed for s in fs.__dict__.get(_ATTR, ()))
