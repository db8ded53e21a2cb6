"""zarr v3 / xarray and duckdb through envstore URLs on local files (issue 13 items 1, 2);
the README's "xarray / zarr" and "duckdb" snippets run in tests/test_readme.py."""

from __future__ import annotations

from pathlib import Path

import fsspec
import pytest

from envstore.format import MAGIC
from tests.ecosystem import (
    duckdb_round_trip,
    read_inner_chunk,
    sharded_array,
    zarr_round_trip,
)

pytest.importorskip("zarr", minversion="3")
pytest.importorskip("xarray")
pytest.importorskip("duckdb")

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")  # zarr: consolidated metadata


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def test_xarray_and_zarr_through_a_local_url(tmp_path: Path, key_uri: str) -> None:
    store = tmp_path / "d" / "x.zarr"
    raw = zarr_round_trip(f"envstore::file://{store}", {"key_uri": key_uri}, lambda: _files(store))
    assert all(body.startswith(MAGIC) for body in raw.values())
    assert not [n for n in raw if "envstore-part" in n]  # no leftover temporary files


def test_a_slice_of_a_zarr_shard_reads_a_few_envstore_chunks(
    tmp_path: Path, key_uri: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Sharding: zarr reads the shard index and one inner chunk by byte range; envstore
    fetches and authenticates only the 16 KiB chunks those ranges fall in."""
    from envstore.stores.local import LocalStore

    url, so = f"envstore::file://{tmp_path}/s.zarr", {"key_uri": key_uri}
    data, size = sharded_array(url, so)
    fetched: list[int] = []
    original = LocalStore.fetching

    def fetching(self, path, start, end):
        if "/c/" in path:
            fetched.append(end - start)
        return original(self, path, start, end)

    monkeypatch.setattr(LocalStore, "fetching", fetching)
    read_inner_chunk(url, so, data)
    assert 0 < sum(fetched) < size // 10, fetched  # ~25 KB of a 525 KB shard


def test_zarr_options_fsspec_consumers_pass_are_accepted(tmp_path: Path, key_uri: str) -> None:
    """zarr's FsspecStore.from_url adds asynchronous=True; envstore stays synchronous and zarr
    wraps it in fsspec's AsyncFileSystemWrapper (the convention for sync filesystems)."""
    from zarr.storage import FsspecStore

    url = f"envstore::file://{tmp_path}/o.zarr"
    store = FsspecStore.from_url(url, storage_options={"key_uri": key_uri, "auto_mkdir": True})
    assert type(store.fs).__name__ == "AsyncFileSystemWrapper"
    assert store.fs.sync_fs.async_impl is False
    assert store.fs.sync_fs.protocol[0] == "envstore"


def test_zarr_store_built_by_hand(tmp_path: Path, key_uri: str) -> None:
    """The README's FsspecStore(AsyncFileSystemWrapper(fs, asynchronous=True), path=...)."""
    import warnings

    import numpy as np
    import zarr
    from fsspec.implementations.asyn_wrapper import AsyncFileSystemWrapper
    from zarr.storage import FsspecStore

    fs = fsspec.filesystem("envstore", target_protocol="file", key_uri=key_uri)
    path = f"{tmp_path}/hand.zarr"
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # e.g. zarr's "not created with asynchronous=True"
        store = FsspecStore(AsyncFileSystemWrapper(fs, asynchronous=True), path=path)
    z = zarr.create_array(store, shape=(10,), chunks=(5,), dtype="i4")
    z[:] = np.arange(10)
    assert list(zarr.open_array(store, mode="r")[2:7]) == [2, 3, 4, 5, 6]
    assert (tmp_path / "hand.zarr" / "c" / "1").read_bytes().startswith(MAGIC)


def test_duckdb_reads_and_writes_local_files(tmp_path: Path, key_uri: str) -> None:
    fs = fsspec.filesystem(
        "envstore", target_protocol="file", key_uri=key_uri, skip_instance_cache=True
    )
    duckdb_round_trip(fs, str(tmp_path), lambda name: (tmp_path / name).read_bytes())
    assert (tmp_path / "t.parquet").read_bytes().startswith(MAGIC)


def test_unstrip_protocol_round_trips_and_routes(tmp_path: Path, key_uri: str) -> None:
    fs = fsspec.filesystem(
        "envstore", target_protocol="file", key_uri=key_uri, skip_instance_cache=True
    )
    path = f"{tmp_path}/a.bin"
    url = fs.unstrip_protocol(path)
    assert url == f"envstore::file://{path}"
    assert fs._strip_protocol(url) == path
    assert fs._strip_protocol(f"envstore://{path}") == path
    # duckdb routes a path to the filesystem whose protocol + "://" starts it
    assert any(url.startswith(p + "://") for p in fs.protocol)
    assert fs.protocol[0] == "envstore"  # what fsspec, pyarrow and duckdb name it by


# -- the README snippets --------------------------------------------------------------------
def test_readme_has_the_xarray_zarr_and_duckdb_snippets() -> None:
    """tests/test_readme.py runs every Python block under "Use with ..." as written (in a
    fresh directory, checking that only ciphertext reached the disk); ours are among them."""
    from tests.test_readme import use_with_snippets

    blocks = {b.title: b.code for b in use_with_snippets()}
    assert "xarray / zarr" in blocks and "duckdb" in blocks
    assert "to_zarr(url, storage_options=so" in blocks["xarray / zarr"]
    assert "zarr.open_group(url, storage_options=so" in blocks["xarray / zarr"]
    assert "con.register_filesystem(fs)" in blocks["duckdb"]
    assert "read_parquet('{root}/*.parquet')" in blocks["duckdb"]


# -- one read handle, several threads (duckdb's parquet reader) ----------------------------
def test_a_handle_shared_by_threads_reads_where_each_thread_sought(memfs, memroot) -> None:
    from concurrent.futures import ThreadPoolExecutor

    data = bytes(range(256)) * 400
    memfs.pipe_file(f"{memroot}/shared", data)
    a, b = ThreadPoolExecutor(1), ThreadPoolExecutor(1)  # two threads with stable identities
    try:
        with memfs.open(f"{memroot}/shared", "rb") as f:
            a.submit(f.seek, 100).result()
            b.submit(f.seek, 50_000).result()  # between a's seek and a's read
            assert b.submit(f.read, 10).result() == data[50_000:50_010]
            assert a.submit(f.read, 10).result() == data[100:110]
            assert f.read(5) == data[110:115]  # a read without a seek continues the handle
            f.seek(7)
            assert f.read(3) == data[7:10] and f.tell() == 10
    finally:
        a.shutdown()
        b.shutdown()


def test_duckdb_multithreaded_scan_of_one_file(tmp_path: Path, key_uri: str) -> None:
    import duckdb

    fs = fsspec.filesystem(
        "envstore", target_protocol="file", key_uri=key_uri, skip_instance_cache=True
    )
    con = duckdb.connect()
    con.register_filesystem(fs)
    con.sql("SET threads=4")
    url = f"envstore://{tmp_path}/big.parquet"
    con.sql(
        "COPY (SELECT range AS i, random() AS r, 'v' || range AS s FROM range(2000000)) "
        f"TO '{url}' (FORMAT parquet, ROW_GROUP_SIZE 100000)"
    )
    for _ in range(10):  # before the fix: a parquet error in about one scan of three
        got = con.sql(f"SELECT count(*), sum(i), max(s) FROM read_parquet('{url}')").fetchall()
        assert got == [(2000000, 2000000 * 1999999 // 2, "v999999")]
