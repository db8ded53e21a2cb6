"""Writes are all-or-nothing (issue 10, write side) on local files and memory: size-checked
uploads, exclusive creation under concurrency, rewrap applied only to the version read,
the key cache's byte budget, and ``envstore clean`` for what killed writes leave."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Any

import fsspec
import pytest
from click.testing import CliRunner
from fsspec.callbacks import Callback

import envstore
from envstore.cli import main
from envstore.errors import ConcurrentModificationError, ConfigError
from envstore.fs import EnvstoreFileSystem
from envstore.keys.local import LocalKeyProvider
from envstore.stores import local as local_store
from envstore.stores.local import TEMP_PREFIX
from envstore.transfer import open_url
from tests.race import race

KiB = 1 << 10
MiB = 1 << 20


def _temps(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.name.startswith(TEMP_PREFIX)]


# -- item 6: put_file of a source that changes size ---------------------------------------------
class _Recorder(Callback):
    def __init__(self, on_first: Any = None) -> None:
        super().__init__()
        self.sizes: list[int | None] = []
        self.updates: list[int] = []
        self.on_first = on_first

    def set_size(self, size: int | None) -> None:
        self.sizes.append(size)

    def relative_update(self, inc: int = 1) -> None:
        if not self.updates and self.on_first is not None:
            self.on_first()
        self.updates.append(inc)


@pytest.mark.parametrize("change", ["grow", "shrink"])
def test_put_file_source_changing_size_keeps_old_object(efs, tmp_path: Path, change: str) -> None:
    fs, root = efs
    dst = f"{root}/obj"
    fs.pipe_file(dst, b"the old object")
    src = tmp_path / "src.bin"
    src.write_bytes(os.urandom(3 * MiB))

    def mutate() -> None:
        if change == "grow":
            with open(src, "ab") as f:
                f.write(b"x" * MiB)
        else:
            os.truncate(src, 2 * MiB)

    cb = _Recorder(mutate)
    with pytest.raises(OSError, match="declared as 3145728 bytes"):
        fs.put_file(str(src), dst, callback=cb, block_size=MiB)
    assert fs.cat_file(dst) == b"the old object"  # never replaced
    assert cb.sizes == [3 * MiB] and cb.updates  # fsspec-style progress kept
    if fs.store.__class__.__name__ == "LocalStore":
        assert not _temps(Path(root))


def test_put_and_get_file_report_progress(efs, tmp_path: Path) -> None:
    fs, root = efs
    src = tmp_path / "src.bin"
    data = os.urandom(2 * MiB + 5)
    src.write_bytes(data)
    up = _Recorder()
    fs.put_file(str(src), f"{root}/o", callback=up, block_size=MiB)
    assert up.sizes == [len(data)] and sum(up.updates) == len(data)
    down = _Recorder()
    fs.get_file(f"{root}/o", str(tmp_path / "back"), callback=down)
    assert down.sizes == [len(data)] and sum(down.updates) == len(data)
    assert (tmp_path / "back").read_bytes() == data


def test_writer_of_declared_size_refuses_more_or_less(efs) -> None:
    fs, root = efs
    fs.pipe_file(f"{root}/o", b"old")
    w = fs.objects.writer(f"{root}/o", size=4)
    with pytest.raises(OSError, match="declared as 4 bytes"):
        w.write(b"12345")
    w = fs.objects.writer(f"{root}/o", size=4)
    w.write(b"123")
    with pytest.raises(OSError, match="declared as 4 bytes"):
        w.close()
    assert fs.cat_file(f"{root}/o") == b"old"


# -- item 7: exclusive creation --------------------------------------------------------------
@pytest.mark.parametrize("how", ["pipe", "open", "put"])
def test_exclusive_create_one_winner(efs, tmp_path: Path, monkeypatch, how: str) -> None:
    """N concurrent creators: exactly one object, the others FileExistsError.  The early
    exists() check is disabled so that every writer reaches the commit (the atomic part)."""
    fs, root = efs
    path = f"{root}/sub/once"
    monkeypatch.setattr(type(fs), "exists", lambda self, p, **kw: False)
    for i in range(8):
        (tmp_path / f"src{i}").write_bytes(f"writer {i}".encode())

    def create(i: int) -> None:
        body = f"writer {i}".encode()
        if how == "pipe":
            fs.pipe_file(path, body, mode="create")
        elif how == "open":
            with fs.open(path, "xb") as f:
                f.write(body)
        else:
            fs.put_file(str(tmp_path / f"src{i}"), path, mode="create")

    won, lost = race(8, create)
    assert len(won) == 1, (won, lost)
    assert len(lost) == 7 and all(isinstance(e, FileExistsError) for e in lost), lost
    monkeypatch.undo()
    assert fs.cat_file(path) == f"writer {won[0]}".encode()
    if fs.store.__class__.__name__ == "LocalStore":
        assert not _temps(Path(root))


def test_exclusive_create_after_the_fact(efs) -> None:
    fs, root = efs
    fs.pipe_file(f"{root}/x", b"first")
    with pytest.raises(FileExistsError):
        fs.pipe_file(f"{root}/x", b"second", mode="create")
    with pytest.raises(FileExistsError):
        fs.open(f"{root}/x", "xb")
    assert fs.cat_file(f"{root}/x") == b"first"


def test_link_no_replace_without_hard_links(tmp_path: Path, monkeypatch) -> None:
    """Filesystems without hard links fall back to renameat2(RENAME_NOREPLACE)."""

    def no_link(src: str, dst: str) -> None:
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(local_store.os, "link", no_link)
    (tmp_path / "a").write_bytes(b"a")
    (tmp_path / "b").write_bytes(b"b")
    (tmp_path / "c").write_bytes(b"c")
    local_store.link_no_replace(str(tmp_path / "a"), str(tmp_path / "new"))
    assert (tmp_path / "new").read_bytes() == b"a" and not (tmp_path / "a").exists()
    with pytest.raises(FileExistsError):
        local_store.link_no_replace(str(tmp_path / "b"), str(tmp_path / "c"))
    assert (tmp_path / "c").read_bytes() == b"c"


# -- item 4: rewrap applies only to the version it read -----------------------------------------
def test_rewrap_never_rewrites_a_replaced_object(
    tmp_path: Path, key_uri: str, other_key_uri: str, monkeypatch
) -> None:
    """A writer replaces the object after rewrap opened its key: rewrap must fail and leave
    the new object readable (the old code wrapped the old key onto the new object)."""
    url = f"envstore::file://{tmp_path}/store/o"
    fs, path = open_url(url, key_uri=key_uri)
    fs.pipe_file(path, b"version 1")
    writer = fsspec.filesystem(
        "envstore", target_protocol="file", key_uri=key_uri, skip_instance_cache=True
    )
    original = LocalKeyProvider.wrap

    raced: list[bool] = []

    def wrap_then_race(self, key, context):
        out = original(self, key, context)
        if not raced:
            raced.append(True)
            writer.pipe_file(path, b"version 2 by another writer")
        return out

    monkeypatch.setattr(LocalKeyProvider, "wrap", wrap_then_race)
    with pytest.raises(ConcurrentModificationError, match="replaced by another writer"):
        envstore.rewrap(url, other_key_uri, key_uri=key_uri)
    monkeypatch.undo()
    reader = fsspec.filesystem(
        "envstore", target_protocol="file", key_uri=key_uri, skip_instance_cache=True
    )
    assert reader.cat_file(path) == b"version 2 by another writer"
    assert not _temps(tmp_path / "store")


def test_rewrap_swap_detects_replacement_in_the_last_window(
    tmp_path: Path, key_uri: str, other_key_uri: str, monkeypatch
) -> None:
    """The object is replaced after the new file was written, just before the swap: the
    exchange sees it and puts the other writer's file back."""
    fs = fsspec.filesystem(
        "envstore", target_protocol="file", key_uri=key_uri, skip_instance_cache=True
    )
    path = str(tmp_path / "o")
    fs.pipe_file(path, b"version 1")
    fs.pipe_file(str(tmp_path / "other"), b"version 2")
    original = local_store._LocalSink.flush

    def flush_then_race(self) -> None:
        original(self)
        os.replace(tmp_path / "other", path)

    monkeypatch.setattr(local_store._LocalSink, "flush", flush_then_race)
    with pytest.raises(ConcurrentModificationError):
        envstore.rewrap(f"envstore::file://{path}", other_key_uri, key_uri=key_uri)
    monkeypatch.undo()
    fs.invalidate_cache()
    assert fs.cat_file(path) == b"version 2"
    assert not _temps(tmp_path)


def test_rewrap_still_works(tmp_path: Path, key_uri: str, other_key_uri: str) -> None:
    url = f"envstore::file://{tmp_path}/o"
    fs, path = open_url(url, key_uri=key_uri)
    fs.pipe_file(path, b"data" * 1000)
    assert envstore.rewrap(url, other_key_uri, key_uri=key_uri) == [{"path": path, "changed": True}]
    new, p = open_url(url, key_uri=other_key_uri, skip_instance_cache=True)
    assert new.cat_file(p) == b"data" * 1000
    assert not _temps(tmp_path)


# -- item 10: key cache max_bytes ------------------------------------------------------------
def _data_key_of(fs: EnvstoreFileSystem, path: str) -> Any:
    fs.invalidate_cache()
    return fs.envelope(path).envelope.recipients[0].blob


def test_key_cache_max_bytes_concurrent_writers(memroot: str, key_uri: str) -> None:
    fs = fsspec.filesystem(
        "envstore",
        target_protocol="memory",
        key_uri=key_uri,
        key_cache={"max_bytes": MiB},
        skip_instance_cache=True,
    )
    size = 200 * KiB
    fs.pipe_file(f"{memroot}/first", b"1")  # a cached key exists when the writers start
    barrier = threading.Barrier(16)

    def one(i: int) -> None:
        barrier.wait()
        fs.pipe_file(f"{memroot}/{i}", os.urandom(size))

    threads = [threading.Thread(target=one, args=(i,)) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    per_key: dict[Any, int] = {_data_key_of(fs, f"{memroot}/first"): 1}
    for i in range(16):
        k = _data_key_of(fs, f"{memroot}/{i}")
        per_key[k] = per_key.get(k, 0) + size
    assert max(per_key.values()) <= MiB, sorted(per_key.values())
    assert len(per_key) < 16  # the cache still works


def test_key_cache_max_bytes_sequential(memroot: str, key_uri: str) -> None:
    fs = fsspec.filesystem(
        "envstore",
        target_protocol="memory",
        key_uri=key_uri,
        key_cache={"max_bytes": MiB},
        skip_instance_cache=True,
    )
    for i in range(3):
        fs.pipe_file(f"{memroot}/{i}", bytes(400 * KiB))
    keys = [_data_key_of(fs, f"{memroot}/{i}") for i in range(3)]
    assert keys[0] == keys[1] and keys[2] != keys[0]  # 800 KiB, then a fresh key


def test_key_cache_streamed_write_gets_its_own_key(memroot: str, key_uri: str) -> None:
    fs = fsspec.filesystem(
        "envstore",
        target_protocol="memory",
        key_uri=key_uri,
        key_cache={"max_bytes": MiB},
        skip_instance_cache=True,
    )
    fs.pipe_file(f"{memroot}/a", b"a")
    with fs.open(f"{memroot}/stream", "wb") as f:  # size unknown: could overrun the budget
        f.write(bytes(2 * MiB))
    fs.pipe_file(f"{memroot}/b", b"b")
    a, s, b = (_data_key_of(fs, f"{memroot}/{n}") for n in ("a", "stream", "b"))
    assert s != a and a == b


# -- item 9: leftovers and envstore clean ----------------------------------------------------
def test_clean_local_temp_files(tmp_path: Path, key_uri: str) -> None:
    root = tmp_path / "store"
    (root / "d").mkdir(parents=True)
    old = root / "d" / f"{TEMP_PREFIX}x.0123456789ab"  # envstore's own temp names
    new = root / f"{TEMP_PREFIX}y.abcdef012345"
    keep = root / "d" / "data.bin"
    for p in (old, new, keep):
        p.write_bytes(b"x")
    past = time.time() - 3 * 86400
    os.utime(old, (past, past))
    os.utime(keep, (past, past))
    url = f"envstore::file://{root}"
    found = envstore.clean(url, older_than="1d", dry_run=True, key_uri=key_uri)
    assert [f["path"] for f in found] == [str(old)] and not found[0]["removed"]
    assert old.exists()
    found = envstore.clean(url, older_than="1d", key_uri=key_uri)
    assert [(f["kind"], f["path"], f["removed"]) for f in found] == [("temp-file", str(old), True)]
    assert not old.exists() and new.exists() and keep.exists()
    assert [f["path"] for f in envstore.clean(url, older_than=0)] == [str(new)]
    with pytest.raises(ConfigError, match="not an age"):
        envstore.clean(url, older_than="yesterday")


_KILLED_WRITER = """
import sys, time, fsspec, envstore
fs = fsspec.filesystem("envstore", target_protocol="file", key_uri=sys.argv[1])
f = fs.open(sys.argv[2], "wb")
f.write(b"x" * (9 << 20))
print("ready", flush=True)
time.sleep(600)
"""


def test_sigkill_mid_write_then_clean(tmp_path: Path, key_uri: str) -> None:
    root = tmp_path / "store"
    root.mkdir()
    target = root / "big.bin"
    env = {**os.environ, "PYTHONPATH": str(Path(envstore.__file__).resolve().parents[1])}
    proc = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(_KILLED_WRITER), key_uri, str(target)],
        stdout=subprocess.PIPE,
        env=env,
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == b"ready"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    assert not target.exists()  # nothing committed
    leftovers = _temps(root)
    assert len(leftovers) == 1
    fs = fsspec.filesystem(
        "envstore", target_protocol="file", key_uri=key_uri, skip_instance_cache=True
    )
    assert fs.ls(str(root), detail=False) == []  # hidden from listings
    url = f"envstore::file://{root}"
    result = CliRunner().invoke(main, ["clean", url, "--older-than", "0", "--dry-run"])
    assert result.exit_code == 0, result.output
    assert "would remove" in result.output and str(leftovers[0]) in result.output
    assert _temps(root) == leftovers
    result = CliRunner().invoke(main, ["clean", url, "--older-than", "1h"])
    assert result.exit_code == 0 and _temps(root) == leftovers  # too young
    result = CliRunner().invoke(main, ["clean", url, "--older-than", "0s"])
    assert result.exit_code == 0 and "removed" in result.output
    assert _temps(root) == []
