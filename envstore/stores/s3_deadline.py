"""A bounded total time for S3 requests, s3fs's and botocore's retries included.

s3fs retries a failed request up to ``retries`` (5) times, and under each of those botocore
retries up to its own ``max_attempts`` (legacy mode: 5 attempts), each attempt waiting up to
``read_timeout`` (15 s) for an answer. A store that accepts connections but cannot place the
data (SeaweedFS with a volume server down waits 30 s per volume assignment, then answers 500)
turns one ``PutObject`` into 25 attempts of 15-30 s: measured, a write neither finished nor
failed within 9 minutes. :func:`within` cancels such a request once its deadline has passed
and raises a :class:`TimeoutError` that says what was asked; :func:`bounded` is its form for
writes (what is left of the object), ``S3Reads._within`` its form for reads.
"""

from __future__ import annotations

import asyncio
import errno
import time
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:  # s3fs is an optional dependency; this module is imported without it
    from s3fs import S3FileSystem

__all__ = ["DEFAULT_WRITE_DEADLINE", "bounded", "client_ready", "within", "write_limit"]

MiB = 1 << 20
#: seconds one S3 write request may take, retries included, plus one second per MiB it sends
#: (CompleteMultipartUpload: plus 0.1 s per part)
DEFAULT_WRITE_DEADLINE = 120.0

T = TypeVar("T")


async def client_ready(fs: S3FileSystem, coro: Coroutine[Any, Any, Any]) -> None:
    """Build s3fs's client if it is not built yet, before a deadline's clock starts: that is
    local work (botocore loading its service model, once per filesystem, about 0.1 s idle and
    over 1 s on a loaded machine), not the store's answer. ``coro`` is closed if it fails."""
    try:
        await fs.set_session()
    except BaseException:
        coro.close()
        raise


def write_limit(deadline: float | None, nbytes: int = 0) -> float | None:
    """The limit for one request sending ``nbytes``: ``deadline`` + 1 s per MiB (None: none)."""
    return None if deadline is None else float(deadline) + nbytes / MiB


async def within(
    fs: S3FileSystem,
    coro: Coroutine[Any, Any, T],
    limit: float | None,
    failure: Callable[[float], str],
    filename: str | None = None,
) -> T:
    """``await coro``; past ``limit`` seconds (None: no limit) cancel it and raise
    ``TimeoutError(ETIMEDOUT, failure(limit)[, filename])``.

    The clock starts once ``fs``'s client exists (see :func:`client_ready`). A
    ``TimeoutError`` from below (botocore's own read timeout, after its retries) passes
    unchanged when it comes before the deadline.
    """
    if limit is None:
        return await coro
    await client_ready(fs, coro)
    start = time.monotonic()
    try:
        return await asyncio.wait_for(coro, limit)
    except asyncio.TimeoutError:  # the deadline's own, or one from below (translated later)
        if time.monotonic() - start < limit:
            raise
    if filename is None:
        raise TimeoutError(errno.ETIMEDOUT, failure(limit))
    raise TimeoutError(errno.ETIMEDOUT, failure(limit), filename)


async def bounded(
    fs: S3FileSystem, coro: Coroutine[Any, Any, T], limit: float | None, what: str, after: str
) -> T:
    """:func:`within` for a write request: ``what`` names it ("PutObject of bucket/key"),
    ``after`` says what state the object is in once the request is given up."""
    return await within(
        fs,
        coro,
        limit,
        lambda limit: (
            f"S3 {what} did not finish within {limit:.0f} s, s3fs's and botocore's "
            f"retries included (write_deadline; the store accepts requests but does not complete "
            f"them); {after}"
        ),
    )
