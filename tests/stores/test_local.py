"""The local-file adapter's own read path: ``pread`` into a buffer it lends and reuses."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from envstore.errors import IntegrityError
from envstore.stores.local import LocalStore


def test_lent_buffers_are_reused_only_when_nothing_holds_them(tmp_path: Path) -> None:
    """What a ``fetching`` block was given is released after it; a view kept past the block
    (a slice, a traceback's frame) keeps its bytes: that buffer is never lent again."""
    import fsspec

    store = LocalStore(fsspec.filesystem("file"))
    a, b = tmp_path / "a", tmp_path / "b"
    a.write_bytes(os.urandom(100_000))
    b.write_bytes(os.urandom(100_000))
    with store.fetching(str(a), 10, 90_010) as got:
        assert bytes(got) == a.read_bytes()[10:90_010]
    with pytest.raises(ValueError):  # released: unusable after the block
        bytes(got)
    with store.fetching(str(a), 0, 1000) as again:
        kept = again[:1000]  # held past the block
    with store.fetching(str(b), 0, 1000) as other:
        assert bytes(other) == b.read_bytes()[:1000]
    assert bytes(kept) == a.read_bytes()[:1000]  # not overwritten by the later read
    assert len(store._pool) <= 2


def test_a_file_shorter_than_the_range_is_an_integrity_error(tmp_path: Path) -> None:
    import fsspec

    store = LocalStore(fsspec.filesystem("file"))
    f = tmp_path / "f"
    f.write_bytes(b"x" * 500)
    with pytest.raises(IntegrityError, match="answered 400 bytes"):
        with store.fetching(str(f), 100, 1000):
            pass
    with pytest.raises(FileNotFoundError):
        with store.fetching(str(tmp_path / "missing"), 0, 10):
            pass
