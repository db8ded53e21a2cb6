"""The write machine every object store shares: one ``PutObject`` when the object fits one
part, else a multipart upload with parts uploaded in the background while the next one
fills, and on any failure (exception, ``KeyboardInterrupt``, a refused or unanswered
request) the upload aborted, so neither an object nor a stale upload is left.

An adapter supplies only its SDK calls (the shape of fsspec's ``AbstractBufferedFile``
hooks): :meth:`PartSink._initiate`, :meth:`PartSink._send_part`, :meth:`PartSink._put`,
:meth:`PartSink._complete`, :meth:`PartSink._abort` and :meth:`PartSink._commit_error`.

This is the one layer of write concurrency: the encrypting writer
(:class:`envstore.file.EnvstoreWriteFile`) hands its ciphertext to :meth:`PartSink.write`
on the caller's thread, which only copies it into the part buffer; uploads run in the
background (at most ``concurrency`` parts in flight, ``concurrency + 1`` part buffers).
"""

from __future__ import annotations

import concurrent.futures
import logging
from collections import deque
from typing import Any

__all__ = ["PartSink", "abort_failed"]

logger = logging.getLogger(__name__)

MiB = 1 << 20
#: seconds a discard waits for a part in flight to stop
CANCEL_WAIT = 30.0


def abort_failed(upload_id: str, name: str, exc: BaseException) -> None:
    """The one policy for an abort that failed (the error that led to it is the one raised):
    a WARNING naming the upload and the object, and the failure's class only (no message,
    which could quote a request)."""
    logger.warning(
        "could not abort multipart upload %s of %s (%s); a bucket lifecycle rule "
        "(AbortIncompleteMultipartUpload) or `envstore clean` removes it",
        upload_id,
        name,
        type(exc).__name__,
    )


class PartSink:
    """A pending object (see the module docstring).

    ``part_size`` doubles every ``grow_every`` parts up to ``max_part`` when the size is not
    known (10,000 parts then reach far beyond any store's object limit).
    """

    grow_every = 1000
    max_part = 5 << 30

    def __init__(self, name: str, size_hint: int | None, part_size: int, concurrency: int) -> None:
        self.name = name
        self.part_size = part_size
        self.concurrency = max(1, concurrency)
        first = part_size if size_hint is None else max(1, min(part_size, size_hint))
        self.buf = bytearray(min(first, MiB) if size_hint is None else first)
        self.fill = 0
        self.upload_id: str | None = None
        self.parts: list[Any] = []
        self.inflight: deque[tuple[concurrent.futures.Future[Any], bytearray]] = deque()
        self.done = False
        self.exclusive = False  # the commit must not replace an existing object
        self.if_match: str | None = None  # the commit replaces only this ETag

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name}>"

    # -- hooks (the SDK calls) ---------------------------------------------------------------
    def _initiate(self) -> str:
        """Start a multipart upload (metadata, conditions); its upload id."""
        raise NotImplementedError

    def _send_part(self, number: int, body: bytearray) -> concurrent.futures.Future[Any]:
        """Start uploading part ``number`` in the background; store its ETag in
        ``self.parts[number - 1]`` when done."""
        raise NotImplementedError

    def _put(self, body: bytearray) -> None:
        """The whole object in one request."""
        raise NotImplementedError

    def _complete(self) -> None:
        """Complete the multipart upload from ``self.parts``."""
        raise NotImplementedError

    def _abort(self, upload_id: str) -> None:
        """Abort the multipart upload (FileNotFoundError: it is gone already)."""
        raise NotImplementedError

    def _commit_error(self, exc: BaseException, what: str) -> BaseException | None:
        """What a failed commit request means (``exc`` itself to pass it on; None: the object
        in place is this very write's, it succeeded)."""
        return exc

    # -- writing -----------------------------------------------------------------------------
    def _target(self) -> int:
        return min(self.max_part, self.part_size << (len(self.parts) // self.grow_every))

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if self.done:
            raise ValueError("write to a committed or discarded sink")
        view = memoryview(data).cast("B")
        while len(view):
            target = self._target()
            if self.fill == target:  # full, and more is coming: it is not the last part
                self._ship()
                target = self._target()
            if len(self.buf) < target and self.fill + len(view) > len(self.buf):
                grown = bytearray(min(target, max(2 * len(self.buf), self.fill + len(view))))
                grown[: self.fill] = memoryview(self.buf)[: self.fill]
                self.buf = grown
            take = min(len(view), target - self.fill)
            self.buf[self.fill : self.fill + take] = view[:take]
            self.fill += take
            view = view[take:]

    def _ship(self) -> None:
        """Upload the full buffer as the next part; continue in a free buffer."""
        if self.upload_id is None:
            self.upload_id = self._initiate()
        spare = self._settle(self.concurrency - 1)
        body, number = self.buf, len(self.parts) + 1
        if self.fill < len(body):
            del body[self.fill :]
        self.parts.append(None)
        self.inflight.append((self._send_part(number, body), body))
        target = self._target()
        self.buf = spare if spare is not None and len(spare) >= target else bytearray(target)
        self.fill = 0

    def _settle(self, keep: int) -> bytearray | None:
        """Wait until at most ``keep`` parts are in flight; a finished part's buffer."""
        spare = None
        while len(self.inflight) > keep:
            future, body = self.inflight.popleft()
            future.result()
            spare = body
        return spare

    # -- finishing ---------------------------------------------------------------------------
    def commit(self) -> None:
        if self.done:
            raise ValueError("sink already committed or discarded")
        try:
            if self.upload_id is None:
                body = self.buf
                if self.fill < len(body):
                    del body[self.fill :]
                self._final("PutObject", self._put, body)
            else:
                if self.fill:
                    self._ship()
                self._settle(0)
                self._final("CompleteMultipartUpload", self._complete)
        except BaseException:
            self.discard()
            raise
        self.done = True
        self._release()

    def _final(self, what: str, fn: Any, *args: Any) -> None:
        try:
            fn(*args)
        except BaseException as exc:
            error = self._commit_error(exc, what)
            if error is None:
                return  # the request did succeed (an earlier attempt's answer was lost)
            if error is exc:
                raise
            raise error from exc

    def discard(self) -> None:
        """Stop the parts in flight and abort the multipart upload: nothing is left behind.
        An abort that fails is logged at WARNING (the upload id and object name only; a
        bucket lifecycle rule or ``envstore clean`` removes the upload)."""
        if self.done:
            return
        self.done = True
        try:
            while self.inflight:
                future, _ = self.inflight.popleft()
                future.cancel()
                concurrent.futures.wait([future], timeout=CANCEL_WAIT)
            if self.upload_id is not None:
                upload_id, self.upload_id = self.upload_id, None
                try:
                    self._abort(upload_id)
                except FileNotFoundError:
                    pass  # already gone (NoSuchUpload)
                except Exception as exc:
                    abort_failed(upload_id, self.name, exc)
        finally:
            self._release()

    def _release(self) -> None:
        self.buf = bytearray()
        self.inflight.clear()
