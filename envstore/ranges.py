"""Plaintext ranges of many objects at once (``cat_ranges``): plan the chunk runs each range
needs, merge overlapping or touching runs per object, fetch all runs in one batch from the
store, authenticate and decrypt each run, then cut every range out of its run."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import nullcontext
from typing import Any

from envstore.file import ObjectReader
from envstore.format import CHUNK
from envstore.stores import Store
from envstore.stores.base import exact

#: one merged run: (path, stored start, stored end, first chunk, indexes of the ranges in it)
Run = tuple[str, int, int, int, list[int]]


def plain_range(start: int | None, end: int | None, size: int) -> tuple[int, int, bool]:
    """``[start, end)`` resolved against ``size`` (negative: from the end, as fsspec's), and
    whether it was end-relative (then the object's end must be authenticated first)."""
    rel = (start is not None and start < 0) or (end is not None and end < 0)
    s = 0 if start is None else (max(0, size + start) if start < 0 else start)
    e = size if end is None else (max(0, size + end) if end < 0 else min(end, size))
    return s, e, rel


def read_ranges(
    store: Store,
    open_reader: Callable[[str], ObjectReader],
    paths: list[str],
    starts: list[Any],
    ends: list[Any],
    on_error: str = "return",
) -> list[Any]:
    """Plaintext ``[starts[i], ends[i])`` of ``paths[i]`` (inner paths); with ``on_error=
    "return"`` a failing range holds its exception, otherwise the first error is raised."""
    out: list[Any] = [None] * len(paths)
    readers = _readers(open_reader, paths, on_error)
    runs = _plan(readers, paths, starts, ends, out, on_error)
    if runs:
        _fetch(store, readers, runs, out, on_error)
    return out


def _readers(
    open_reader: Callable[[str], ObjectReader], paths: list[str], on_error: str
) -> dict[str, ObjectReader | BaseException]:
    readers: dict[str, ObjectReader | BaseException] = {}
    for p in paths:
        if p not in readers:
            try:
                readers[p] = open_reader(p)
            except Exception as exc:
                if on_error != "return":
                    raise
                readers[p] = exc
    return readers


def _plan(
    readers: dict[str, ObjectReader | BaseException],
    paths: list[str],
    starts: list[Any],
    ends: list[Any],
    out: list[Any],
    on_error: str,
) -> list[Run]:
    """Per object, the chunk runs needed (``out[i]`` becomes the resolved range, or the final
    result where nothing needs fetching); overlapping or touching runs merged."""
    wanted: dict[str, list[tuple[int, int, int, int]]] = {}
    for i, (p, s, e) in enumerate(zip(paths, starts, ends, strict=True)):
        r = readers[p]
        if isinstance(r, BaseException):
            out[i] = r
            continue
        s, e, rel = plain_range(s, e, r.plain_len)
        try:
            if rel or s >= r.plain_len:
                r.authenticate_end()
        except Exception as exc:
            if on_error != "return":
                raise
            out[i] = exc
            continue
        if s >= e:
            out[i] = b""
            continue
        first, _last, ws, we = r.plan(s, e)
        wanted.setdefault(p, []).append((ws, we, first, i))
        out[i] = (s, e)
    runs: list[Run] = []
    for p, items in wanted.items():
        items.sort()
        for ws, we, first, i in items:
            if runs and runs[-1][0] == p and ws <= runs[-1][2]:
                rp, rs, re_, rf, idx = runs[-1]
                runs[-1] = (rp, rs, max(re_, we), rf, [*idx, i])
            else:
                runs.append((p, ws, we, first, [i]))
    return runs


def _fetch(
    store: Store,
    readers: dict[str, ObjectReader | BaseException],
    runs: list[Run],
    out: list[Any],
    on_error: str,
) -> None:
    try:
        blobs: list[Any] = store.read_many(
            [r[0] for r in runs], [r[1] for r in runs], [r[2] for r in runs]
        )
    except Exception:  # read each run alone: each gets its own outcome (error)
        blobs = [None] * len(runs)
    for (p, ws, we, first, idx), blob in zip(runs, blobs, strict=True):
        reader = readers[p]
        assert isinstance(reader, ObjectReader)
        try:
            fetched = (
                reader.fetching(ws, we) if blob is None else nullcontext(exact(blob, p, ws, we))
            )
            # the run lives in the reader's buffer (and the stored bytes maybe in the
            # store's): copy out inside
            with fetched as stored, reader.locked():
                plain = reader.open_run(first, stored, ws)
                lo = first * CHUNK
                for i in idx:
                    s, e = out[i]
                    out[i] = bytes(plain[s - lo : e - lo]) if s < e else b""
        except Exception as exc:
            if on_error != "return":
                raise
            for i in idx:
                out[i] = exc
