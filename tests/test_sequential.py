"""Issue 12 fast paths: pyca's native decryptor for sequential reads, known-size writers.

Each test runs with the native decryptor (cryptography >= 50) and without it (the per-chunk
path every cryptography 41-49 install uses), so both keep the read guarantees.
"""

from __future__ import annotations

import os
import threading

import fsspec
import pytest

import envstore.cipher as cipher
from envstore.cipher import Decryptor
from envstore.errors import IntegrityError
from envstore.format import CHUNK, PREFIX, WIRE_CHUNK

NATIVE = cipher._NativeDec is not None


@pytest.fixture(params=["native", "per-chunk"])
def mode(request, monkeypatch):
    if request.param == "native" and not NATIVE:
        pytest.skip("pyca's Cobblestone256Decryptor needs cryptography >= 50")
    if request.param == "per-chunk":
        monkeypatch.setattr(cipher, "_NativeDec", None)
    return request.param


@pytest.fixture
def fs(tmp_path):
    from envstore.keys.local import keygen

    key = keygen(tmp_path / "master.key")
    return fsspec.filesystem(
        "envstore", target_protocol="memory", key_uri=f"local://{key}", skip_instance_cache=True
    )


def _put(fs, path: str, data: bytes) -> bytes:
    fs.pipe_file(path, data)
    return fs.objects.store.fs.cat_file(path)


def _tamper(fs, path: str, pos: int) -> None:
    """Flip one stored byte at ``pos`` (from the end if negative)."""
    inner = fs.objects.store.fs
    raw = bytearray(inner.cat_file(path))
    raw[pos] ^= 1
    inner.pipe_file(path, bytes(raw))
    fs.objects.forget(path)


def _body_start(fs, path: str) -> int:
    return fs.objects.locate(path).body_offset


def test_sequential_reads_use_one_native_pass(fs, monkeypatch):
    if not NATIVE:
        pytest.skip("needs cryptography >= 50")
    data = os.urandom(10 * CHUNK + 123)
    _put(fs, "/b/o", data)
    per_chunk = []
    real = Decryptor.decrypt_chunks
    monkeypatch.setattr(
        Decryptor, "decrypt_chunks", lambda *a, **k: per_chunk.append(1) or real(*a, **k)
    )
    out = []
    with fs.open("/b/o", "rb") as f:
        while piece := f.read(2 * CHUNK):
            out.append(piece)
    assert b"".join(out) == data
    assert per_chunk == []  # every chunk, the final one included, through the native pass


def test_whole_object_cat_is_the_decrypted_result_itself(fs, monkeypatch, mode):
    data = os.urandom(8 * CHUNK)  # chunk-aligned: no tail to join
    _put(fs, "/b/o", data)
    results = []
    real = Decryptor.native_run
    monkeypatch.setattr(
        Decryptor, "native_run", lambda *a, **k: results.append(real(*a, **k)) or results[-1]
    )
    got = fs.cat_file("/b/o")
    assert got == data
    if mode == "native":
        assert got is results[-1]  # decrypted straight into the result: no second copy
    else:
        assert results == [None]


@pytest.mark.parametrize("chunk", [0, 3, 9])
def test_a_tampered_chunk_releases_nothing_of_its_read(fs, mode, chunk):
    data = os.urandom(9 * CHUNK + 500)  # chunk 9 is the final (short) chunk
    _put(fs, "/b/o", data)
    _tamper(fs, "/b/o", _body_start(fs, "/b/o") + PREFIX + chunk * WIRE_CHUNK + 7)
    got = []
    with fs.open("/b/o", "rb") as f:
        with pytest.raises(IntegrityError):
            while piece := f.read(2 * CHUNK):
                got.append(piece)
    assert b"".join(got) == data[: (chunk // 2) * 2 * CHUNK]
    with pytest.raises(IntegrityError):
        fs.cat_file("/b/o")


def test_a_cut_final_chunk_fails_at_the_end(fs, mode):
    data = os.urandom(4 * CHUNK)  # final chunk: the 16-byte tag of an empty chunk
    _put(fs, "/b/o", data)
    inner = fs.objects.store.fs
    raw = inner.cat_file("/b/o")
    inner.pipe_file("/b/o", raw[:-16] + raw[-16 - 16 :][:16])  # same length, wrong final tag
    fs.objects.forget("/b/o")
    with fs.open("/b/o", "rb") as f:
        assert f.read(4 * CHUNK - 1) == data[:-1]  # not the end yet
        with pytest.raises(IntegrityError):
            f.read(1)  # the final chunk is read and fails: no end of data


def test_seeking_back_falls_back_to_random_access(fs, mode):
    data = os.urandom(6 * CHUNK + 17)
    _put(fs, "/b/o", data)
    with fs.open("/b/o", "rb") as f:
        assert f.read(2 * CHUNK) == data[: 2 * CHUNK]
        f.seek(CHUNK)
        assert f.read(2 * CHUNK) == data[CHUNK : 3 * CHUNK]
        assert f.read() == data[3 * CHUNK :]
        f.seek(0)
        assert f.read() == data


def test_threads_sharing_a_handle_read_right_bytes(fs, mode):
    data = os.urandom(32 * CHUNK + 9)
    _put(fs, "/b/o", data)
    errors = []
    with fs.open("/b/o", "rb") as f:

        def work(start: int) -> None:
            for _ in range(20):
                f.seek(start)
                if f.read(2 * CHUNK) != data[start : start + 2 * CHUNK]:
                    errors.append(start)

        threads = [threading.Thread(target=work, args=(i * 4 * CHUNK,)) for i in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert errors == []


@pytest.mark.parametrize("size", [0, 1000, CHUNK, 64 * CHUNK, 256 * CHUNK])
def test_known_size_writers_fit_the_object(fs, size):
    w = fs.objects.writer("/b/k", size=size)
    try:
        assert w.blocksize <= (size // CHUNK + 1) * CHUNK
        assert w.blocksize <= 4 << 20
    finally:
        w.discard()


def test_a_known_size_object_is_sealed_on_the_callers_thread(fs, monkeypatch):
    import threading

    def no_thread(*a, **k):
        raise AssertionError("a helper thread started for a known-size object in memory")

    monkeypatch.setattr(threading.Thread, "start", no_thread)
    data = os.urandom(4 << 20)  # exactly one default block: the old writer used a thread
    fs.pipe_file("/b/w", data)
    assert fs.cat_file("/b/w") == data
    fs.pipe_file("/b/w2", data[:-5])
    assert fs.cat_file("/b/w2") == data[:-5]
