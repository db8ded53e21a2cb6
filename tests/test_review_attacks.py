"""Adversarial review of issue 10 (memory and local files).

Each ``xfail(strict=True)`` test is a confirmed hole (the report is /work/notes/t10-review.md):
it fails today and turns the suite red (XPASS) once fixed, so the marker must go with the fix.
Unmarked tests are attacks that the landed code withstood; they stay as extra coverage.
S3 cases are in tests/stores/test_review_attacks_s3.py.
"""

from __future__ import annotations

import asyncio
import base64
import os
import pickle
import random
import threading
import time
import traceback
import unicodedata
from pathlib import Path
from typing import Any

import fsspec
import pytest

import envstore
from envstore.errors import ConfigError, EnvstoreError, IntegrityError
from envstore.file import ObjectReader
from envstore.format import CHUNK
from envstore.fs import EnvstoreFileSystem
from envstore.keys.uri import looks_like_key
from envstore.stores.local import TEMP_PREFIX
from tests.test_read_trust import _forge

# -- reads: every path of fsspec's file object and wrappers -----------------------------------


def _handle_reads(fs: EnvstoreFileSystem, p: str) -> dict[str, Any]:
    """Read paths the issue's list did not name: cache types, fsspec helpers built on
    ``open``, a pickled handle, another thread, zarr's async wrapper."""
    from fsspec.implementations.asyn_wrapper import AsyncFileSystemWrapper

    reads: dict[str, Any] = {}
    for ct in ("none", "all", "readahead", "blockcache", "bytes", "first", "mmap", "parts"):
        reads[f"open-{ct}"] = lambda ct=ct: fs.open(p, "rb", cache_type=ct).read()
    reads["read_block"] = lambda: fs.read_block(p, 0, 10)
    reads["read_block-delimiter"] = lambda: fs.read_block(p, 0, 10, delimiter=b"\n")
    reads["head"] = lambda: fs.head(p)
    reads["tail"] = lambda: fs.tail(p)
    reads["cat"] = lambda: fs.cat(p)
    reads["read_text"] = lambda: fs.read_text(p)
    reads["cat_file-past-end"] = lambda: fs.cat_file(p, 10)
    reads["cat_ranges-negative"] = lambda: fs.cat_ranges([p], [-5], [None], on_error="raise")
    reads["text-iterate"] = lambda: list(fs.open(p, "r"))
    reads["seek-past-end-read"] = lambda: (lambda f: (f.seek(100), f.read()))(fs.open(p))
    reads["pickled-handle"] = lambda: pickle.loads(pickle.dumps(fs.open(p))).read()
    reads["readuntil"] = lambda: fs.open(p).readuntil(b"\n")
    reads["async-wrapper-cat_file"] = lambda: asyncio.run(AsyncFileSystemWrapper(fs)._cat_file(p))

    def other_thread() -> Any:
        f, out = fs.open(p), []

        def run() -> None:
            try:
                out.append(f.read())
            except BaseException as exc:  # re-raised in the caller's thread
                out.append(exc)

        t = threading.Thread(target=run)
        t.start()
        t.join()
        if isinstance(out[0], BaseException):
            raise out[0]
        return out[0]

    reads["other-thread"] = other_thread
    return reads


@pytest.mark.parametrize(
    "how", ["cut-to-empty", "flipped-tag", "forged-no-recipient", "forged-planted"]
)
def test_claimed_empty_objects_through_more_read_paths(efs, how: str, other_key_uri: str) -> None:
    """Held: none of these paths releases ``b""`` for an object claiming to be empty."""
    fs, root = efs
    p = f"{root}/obj"
    _forge(fs, p, how, other_key_uri)
    released = {}
    for name, read in _handle_reads(fs, p).items():
        fs.invalidate_cache()
        try:
            released[name] = read()
        except EnvstoreError:
            continue
        except ValueError:  # fsspec's get/read_block refusals are not releases either
            continue
    assert not released, released


def test_cat_ranges_and_cat_file_match_slicing(efs) -> None:
    """Held: random ranges (negative, reversed, overlapping, past the end, None) over objects
    of 0..4 chunks give exactly Python's slicing with fsspec's rules, in batches too."""
    fs, root = efs
    rnd = random.Random(10)
    objs = {}
    for i, n in enumerate([0, 1, CHUNK, CHUNK + 1, 3 * CHUNK + 5]):
        objs[f"{root}/o{i}"] = os.urandom(n)
        fs.pipe_file(f"{root}/o{i}", objs[f"{root}/o{i}"])

    def ref(data: bytes, s: int | None, e: int | None) -> bytes:
        n = len(data)
        s = 0 if s is None else (max(0, n + s) if s < 0 else s)
        e = n if e is None else (max(0, n + e) if e < 0 else min(e, n))
        return data[s:e] if s < e else b""

    def pos() -> int | None:
        return rnd.choice([None, rnd.randint(-4 * CHUNK, 4 * CHUNK), 0, -1, CHUNK, CHUNK - 1])

    for _ in range(150):
        k = rnd.randint(1, 8)
        paths = [rnd.choice(list(objs)) for _ in range(k)]
        starts, ends = [pos() for _ in range(k)], [pos() for _ in range(k)]
        got = fs.cat_ranges(paths, starts, ends, on_error="raise")
        assert got == [ref(objs[p], s, e) for p, s, e in zip(paths, starts, ends, strict=True)]
        p, s, e = paths[0], starts[0], ends[0]
        assert fs.cat_file(p, s, e) == ref(objs[p], s, e)


def test_shared_handle_seek_end_during_read_never_returns_wrong_bytes(
    memfs: EnvstoreFileSystem, memroot: str, monkeypatch
) -> None:
    """duckdb-style use of one handle from several threads: thread A reads chunk 0; thread B
    calls ``seek(0, 2)``, whose ``authenticate_end`` runs *outside* the handle's lock and
    decrypts the final chunk into the reader's reused scratch buffer, over the plaintext A is
    about to copy out. A returns the final chunk's bytes in place of chunk 0's: authenticated
    bytes at the wrong position, i.e. wrong plaintext. The interleaving is forced here; it
    happens by itself wherever a seek-to-end meets a read (the window is the copy).
    Fixed: the seek takes the handle's lock, and the reader's own lock covers decrypt + copy."""
    fs, p = memfs, f"{memroot}/o"
    data = os.urandom(3 * CHUNK + 100)
    with fs.open(p, "wb") as f:  # streamed: the final chunk is not yet authenticated on open
        f.write(data)
    f = fs.open(p, "rb")
    got = _race_end_against_read(monkeypatch, lambda: f.read(1000), lambda: f.seek(0, 2))
    assert got == [data[:1000]], "wrong plaintext: " + (
        "the final chunk's bytes" if got[0][:100] == data[3 * CHUNK :][:100] else "other bytes"
    )


def _race_end_against_read(monkeypatch, read: Any, end: Any) -> list[bytes]:
    """Run ``read`` in thread A and ``end`` in thread B, B let in right after A decrypted its
    run (before A copies out of the buffer); what A read. Where B is (rightly) kept out until
    A is done, A goes on after a second."""
    a_decrypted, b_started, b_decrypted = threading.Event(), threading.Event(), threading.Event()
    original = ObjectReader.open_run

    def open_run(self: ObjectReader, *args: Any, **kwargs: Any) -> Any:
        out = original(self, *args, **kwargs)
        if threading.current_thread().name == "reader-A":
            a_decrypted.set()
            b_started.wait(5)
            b_decrypted.wait(1)  # B decrypts now (if it can), before A copies its slice
        else:
            b_decrypted.set()
        return out

    monkeypatch.setattr(ObjectReader, "open_run", open_run)
    got: list[bytes] = []

    def b() -> None:
        a_decrypted.wait(5)
        b_started.set()
        end()

    tb = threading.Thread(target=b)
    ta = threading.Thread(target=lambda: got.append(read()), name="reader-A")
    tb.start()
    ta.start()
    ta.join()
    tb.join()
    assert b_decrypted.is_set()
    return got


def test_shared_reader_end_during_read_never_returns_wrong_bytes(
    memfs: EnvstoreFileSystem, memroot: str, monkeypatch
) -> None:
    """The same race one level down, without the file handle's lock: an ``ObjectReader`` used
    by two threads (``read`` against ``authenticate_end``) keeps its scratch buffer to one."""
    fs, p = memfs, f"{memroot}/o"
    data = os.urandom(3 * CHUNK + 100)
    with fs.open(p, "wb") as f:
        f.write(data)
    reader = fs.objects.reader(p)
    got = _race_end_against_read(monkeypatch, lambda: reader.read(0, 1000), reader.authenticate_end)
    assert got == [data[:1000]]


def test_open_run_outside_the_reader_lock_is_refused(memfs: EnvstoreFileSystem, memroot: str):
    """``open_run`` hands out the reader's reused buffer: only under ``locked()``."""
    fs, p = memfs, f"{memroot}/o"
    fs.pipe_file(p, os.urandom(CHUNK + 1))
    reader = fs.objects.reader(p)
    first, _last, s, e = reader.plan(0, 10)
    with pytest.raises(RuntimeError, match="locked"), reader.fetching(s, e) as stored:
        reader.open_run(first, stored, s)
    with reader.fetching(s, e) as stored, reader.locked(), reader.locked():  # re-entrant
        assert bytes(reader.open_run(first, stored, s)[:10]) == reader.read(0, 10)


def test_many_threads_on_one_handle_read_their_own_ranges(
    memfs: EnvstoreFileSystem, memroot: str
) -> None:
    """duckdb's pattern unforced: 6 threads do seek+read / seek-to-end / cat_ranges on one
    handle and one reader; every read is exactly its slice."""
    fs, p = memfs, f"{memroot}/o"
    data = os.urandom(20 * CHUNK + 33)
    fs.pipe_file(p, data)
    for _ in range(3):
        f, errors = fs.open(p, "rb"), []

        def work(seed: int, f: Any = f, errors: list[str] = errors) -> None:
            rnd = random.Random(seed)
            for _ in range(60):
                s = rnd.randrange(len(data))
                n = rnd.randrange(1, 3 * CHUNK)
                if rnd.random() < 0.2:
                    f.seek(-rnd.randrange(1, 100), 2)
                    continue
                f.seek(s)
                got = f.read(n)
                if got != data[s : s + n]:
                    errors.append(f"{seed}: [{s}:{s + n}]")

        threads = [threading.Thread(target=work, args=(i,)) for i in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors, errors


def test_download_never_writes_outside_the_target(memfs, memroot: str, tmp_path: Path) -> None:
    """Held: an object key with ``..`` segments (legal on S3) is skipped by envstore.download
    and refused by fsspec's get: nothing lands outside the destination."""
    fs = memfs
    fs.pipe_file(f"{memroot}/d/ok", b"ok")
    fs.pipe_file(f"{memroot}/d/sub/../../../../..{tmp_path}/pwned", b"evil")
    envstore.download(
        fs.unstrip_protocol(f"{memroot}/d"),
        str(tmp_path / "out"),
        recursive=True,
        key_uri=fs.key_uris[0],
    )
    with pytest.raises(ValueError):
        fs.get(f"{memroot}/d", str(tmp_path / "out2") + "/", recursive=True)
    assert not (tmp_path / "pwned").exists()
    assert (tmp_path / "out" / "ok").read_bytes() == b"ok"


# -- read context -------------------------------------------------------------------------------


def test_read_context_is_exact_not_normalised(efs, key_uri: str) -> None:
    """Held: a stored value in NFD does not satisfy a required NFC value (nor a case variant
    of the key); the message names the key, never either value."""
    fs, root = efs
    nfd = unicodedata.normalize("NFD", "Zürich")
    writer = fsspec.filesystem(
        "envstore", fs=fs.fs, key_uri=key_uri, context={"site": nfd}, skip_instance_cache=True
    )
    writer.pipe_file(f"{root}/c", b"data")
    for required in ({"site": unicodedata.normalize("NFC", "Zürich")}, {"Site": nfd}):
        reader = fsspec.filesystem(
            "envstore", fs=fs.fs, key_uri=key_uri, context=required, skip_instance_cache=True
        )
        with pytest.raises(IntegrityError) as info:
            reader.cat_file(f"{root}/c")
        assert "Z" not in str(info.value).replace(root, "")
    ok = fsspec.filesystem(
        "envstore", fs=fs.fs, key_uri=key_uri, context={"site": nfd}, skip_instance_cache=True
    )
    assert ok.cat_file(f"{root}/c") == b"data"


# -- writes ----------------------------------------------------------------------------------


def test_exclusive_text_mode_one_winner(efs, monkeypatch) -> None:
    """Held: text mode ``"x"`` is exclusive at the commit too (8 threads, early check off)."""
    fs, root = efs
    path = f"{root}/once.txt"
    monkeypatch.setattr(type(fs), "exists", lambda self, p, **kw: False)
    won, lost, lock = [], [], threading.Lock()

    def create(i: int) -> None:
        try:
            with fs.open(path, "x") as f:
                f.write(f"writer {i}")
        except FileExistsError as exc:
            with lock:
                lost.append(exc)
        else:
            with lock:
                won.append(i)

    threads = [threading.Thread(target=create, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(won) == 1 and len(lost) == 7
    monkeypatch.undo()
    assert fs.cat_file(path) == f"writer {won[0]}".encode()


def test_key_cache_budget_with_mixed_sizes(memroot: str, key_uri: str) -> None:
    """Held: sequential writes of mixed sizes (some over the budget alone, some empty) never
    put more than max_bytes or max_objects under one data key."""
    budget, max_objects = 1000, 4
    fs = fsspec.filesystem(
        "envstore",
        target_protocol="memory",
        key_uri=key_uri,
        skip_instance_cache=True,
        key_cache={"max_bytes": budget, "max_objects": max_objects},
    )
    sizes = [600, 300, 200, 900, 0, 0, 50, 2000, 10, 0, 0, 0, 0, 999, 1, 1000]
    per_key: dict[bytes, list[int]] = {}
    for i, n in enumerate(sizes):
        fs.pipe_file(f"{memroot}/{i}", bytes(n))
        fs.invalidate_cache()
        blob = fs.envelope(f"{memroot}/{i}").envelope.recipients[0].blob
        per_key.setdefault(blob, []).append(n)
    for group in per_key.values():
        assert len(group) == 1 or (sum(group) <= budget and len(group) <= max_objects), group


# -- clean -----------------------------------------------------------------------------------


def _old(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x")
    past = time.time() - 3 * 86400
    os.utime(path, (past, past))


def test_clean_of_a_file_stays_with_that_file(tmp_path: Path, key_uri: str) -> None:
    """``envstore clean /home/me/report.csv`` walks all of /home/me recursively (the parent of
    a file is taken as the root) and removes leftovers of unrelated writes anywhere below."""
    (tmp_path / "report.csv").write_bytes(b"data")
    other = tmp_path / "deep" / "project" / f"{TEMP_PREFIX}model.bin.0123456789ab"
    _old(other)
    found = envstore.clean(f"envstore::file://{tmp_path}/report.csv", key_uri=key_uri)
    assert other.exists(), found


def test_clean_removes_only_envstore_temp_names(tmp_path: Path, key_uri: str) -> None:
    """envstore's temp files are ``.envstore-part-<name>.<12 hex>``; clean (and ls/find, which
    hide them) match the prefix alone, so a user's own ``.envstore-part-notes`` is deleted."""
    mine = tmp_path / f"{TEMP_PREFIX}notes"
    _old(mine)
    ours = tmp_path / f"{TEMP_PREFIX}obj.0123456789ab"
    _old(ours)
    found = envstore.clean(f"envstore::file://{tmp_path}", key_uri=key_uri)
    assert not ours.exists()
    assert mine.exists(), found


# -- secrets: pasted keys ------------------------------------------------------------------------

_KEY = bytes(range(32))
_HEX = _KEY.hex()
_B64 = base64.b64encode(_KEY).decode()


def _forms(key: bytes) -> list[str]:
    hexa, b64 = key.hex(), base64.b64encode(key).decode()
    return [
        hexa,
        hexa.upper(),
        b64,
        b64[:30],
        hexa[:40],
        ":".join(hexa[i : i + 2] for i in range(0, 64, 2)),
    ]


def _message_of(uri: str) -> str:
    try:
        fs = EnvstoreFileSystem(
            key_uri=uri, fs=fsspec.filesystem("memory"), skip_instance_cache=True
        )
        fs.pipe_file("/review-pasted", b"x")
    except Exception as exc:  # any error: its whole text is checked
        return "".join(traceback.format_exception(exc))
    return repr(fs)


@pytest.mark.parametrize(
    "uri",
    [
        f"env://0x{_HEX}",
        f"local:///0x{_HEX}",
        "env://" + ":".join(_HEX[i : i + 2] for i in range(0, 64, 2)),
    ],
    ids=["env-0x-hex", "local-0x-hex", "env-colon-hex"],
)
def test_pasted_key_variants_are_never_echoed(uri: str) -> None:
    text = _message_of(uri)
    assert not any(form in text for form in _forms(_KEY)), text


@pytest.mark.parametrize(
    "uri",
    [
        _B64,
        _B64.rstrip("="),
        _HEX,
        f"env://{_B64}",
        f"local:{_B64}",
        f"local:///{_B64}",
        f"  {_B64}\n",
        f"env://{_HEX.upper()}",
        base64.urlsafe_b64encode(_KEY).decode().rstrip("="),
    ],
)
def test_pasted_key_forms_that_are_caught(uri: str) -> None:
    """Held: the documented forms (and whitespace around them) are refused and described."""
    assert looks_like_key(uri)
    text = _message_of(uri)
    assert not any(form in text for form in _forms(_KEY)), text


def test_long_env_var_name_is_a_reference(monkeypatch) -> None:
    """Any 43 characters of [A-Za-z0-9_-] decode as url-safe base64 to 32 bytes, so a
    descriptive variable name of that length is refused as 'a pasted key'."""
    name = "ENVSTORE_MASTER_KEY_FOR_PRODUCTION_TENANT_A"
    assert len(name) == 43
    monkeypatch.setenv(name, base64.b64encode(os.urandom(32)).decode())
    fs = EnvstoreFileSystem(
        key_uri=f"env://{name}", fs=fsspec.filesystem("memory"), skip_instance_cache=True
    )
    path = f"/review-env-name-{os.getpid()}-{time.monotonic_ns()}"
    fs.pipe_file(path, b"x")
    assert fs.cat_file(path) == b"x"
    fs.fs.rm(path)


def test_raw_key_bytes_as_key_uri_are_not_echoed() -> None:
    """Held: bytes (a key read in binary mode) given as key_uri are refused without a repr."""
    with pytest.raises(ConfigError) as info:
        EnvstoreFileSystem(key_uri=_KEY, fs=fsspec.filesystem("memory"), skip_instance_cache=True)
    text = "".join(traceback.format_exception(info.value))
    assert repr(_KEY)[2:20] not in text and _HEX not in text


# -- writes through a generic fsspec filesystem --------------------------------------------------


def test_failed_write_over_dirfs_keeps_the_old_object(tmp_path: Path, key_uri: str) -> None:
    """envstore over ``DirFileSystem`` (``envstore::dir::file://...``; the same holds for any
    fsspec filesystem whose ``open("wb")`` writes in place: sftp, ftp, smb, hdfs) goes through
    the generic ``_FileSink``, which opens the *target* for writing: the old object is
    truncated at open, and a write that fails midway leaves a partial object (IntegrityError
    for every reader) where the intact old object was. README: "nothing partial ever appears"
    and a failed write leaves the old object intact."""
    from fsspec.implementations.dirfs import DirFileSystem

    (tmp_path / "data").mkdir()
    inner = DirFileSystem(path=str(tmp_path / "data"), fs=fsspec.filesystem("file"))
    fs = fsspec.filesystem("envstore", fs=inner, key_uri=key_uri, skip_instance_cache=True)
    fs.pipe_file("a", b"old object")
    with pytest.raises(RuntimeError), fs.open("a", "wb") as f:
        f.write(os.urandom(5 << 20))
        raise RuntimeError("the writer fails midway")
    assert fs.cat_file("a") == b"old object"
