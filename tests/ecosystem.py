"""Scenarios shared by the local (tests/test_ecosystem.py) and S3 (tests/stores/) runs:
zarr v3 / xarray and duckdb through envstore URLs, as a user writes them."""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np

from envstore.fs import EnvstoreFileSystem
from envstore.objects import Objects

#: the dataset: 64 x 64 float64, chunks of 16 x 16 -> 16 chunk objects under t/c/<i>/<j>
SHAPE, CHUNKS = (64, 64), (16, 16)


def dataset() -> Any:
    import xarray as xr

    data = np.arange(SHAPE[0] * SHAPE[1], dtype="f8").reshape(SHAPE)
    ds = xr.Dataset({"t": (("x", "y"), data)})
    return ds.chunk({"x": CHUNKS[0], "y": CHUNKS[1]})


@contextmanager
def objects_read() -> Iterator[list[str]]:
    """Inner paths of every object envstore opens for content (one entry per open)."""
    seen: list[str] = []
    lock = threading.Lock()
    original = Objects.reader

    def spy(self: Objects, path: str, shown: Any = None) -> Any:
        with lock:
            seen.append(path)
        return original(self, path, shown)

    Objects.reader = spy  # type: ignore[method-assign]
    try:
        yield seen
    finally:
        Objects.reader = original  # type: ignore[method-assign]


def chunk_keys(paths: list[str], var: str = "t") -> set[str]:
    """The chunk objects ("0/1") among ``paths``."""
    out = set()
    for p in paths:
        m = re.search(rf"/{var}/c/(\d+)/(\d+)$", p)
        if m:
            out.add(f"{m.group(1)}/{m.group(2)}")
    return out


def zarr_round_trip(
    url: str, so: dict[str, Any], stored: Callable[[], dict[str, bytes]]
) -> dict[str, bytes]:
    """xarray to_zarr / open_zarr and zarr.open_group through ``url``; ``stored()`` returns
    the raw stored objects (name -> bytes), returned for the caller's envelope checks."""
    import xarray as xr
    import zarr

    ds = dataset()
    ds.to_zarr(url, storage_options=so, mode="w")
    raw = stored()
    chunks = [name for name in raw if re.search(r"t/c/\d+/\d+$", name)]
    assert len(chunks) == 16, sorted(raw)
    plain = ds.t.values
    for name, body in raw.items():
        assert b"zarr_format" not in body, name  # metadata documents are encrypted too

    back = xr.open_zarr(url, storage_options=so)
    np.testing.assert_array_equal(back.t.values, plain)

    # a slice reads only the chunk objects it needs
    lazy = xr.open_zarr(url, storage_options=so, chunks=None)
    with objects_read() as seen:
        part = lazy.t.isel(x=slice(16, 32), y=slice(32, 48)).values
    np.testing.assert_array_equal(part, plain[16:32, 32:48])
    assert chunk_keys(seen) == {"1/2"}, seen

    group = zarr.open_group(url, storage_options=so, mode="r")
    with objects_read() as seen:
        corner = group["t"][0:20, 0:5]
    np.testing.assert_array_equal(corner, plain[0:20, 0:5])
    assert chunk_keys(seen) == {"0/0", "1/0"}, seen

    # zarr writes through the URL too (one chunk rewritten, read back)
    rw = zarr.open_group(url, storage_options=so, mode="r+")
    rw["t"][0:16, 0:16] = -1.0
    np.testing.assert_array_equal(
        xr.open_zarr(url, storage_options=so).t.values[0:16, 0:16], np.full((16, 16), -1.0)
    )
    return raw


def duckdb_round_trip(fs: EnvstoreFileSystem, root: str, stored: Callable[[str], bytes]) -> None:
    """COPY TO and read_parquet / read_csv / globs through a registered envstore filesystem.

    ``root`` is the inner path of a directory (``/tmp/..`` or ``bucket/prefix``)."""
    import duckdb

    con = duckdb.connect()
    con.register_filesystem(fs)
    con.sql(
        "COPY (SELECT range AS i, range * 2 AS j, 'row ' || range AS s FROM range(5000)) "
        f"TO 'envstore://{root}/t.parquet' (FORMAT parquet, ROW_GROUP_SIZE 1000)"
    )
    con.sql(f"COPY (SELECT 7 AS a, 'seven' AS b) TO 'envstore://{root}/small.csv' (HEADER)")
    assert b"row 4999" not in stored("t.parquet") and b"seven" not in stored("small.csv")

    full = fs.unstrip_protocol(f"{root}/t.parquet")  # the chained URL, e.g. envstore::s3://..
    for url in (f"envstore://{root}/t.parquet", full):
        q = f"SELECT count(*), sum(j), max(s) FROM read_parquet('{url}')"
        assert con.sql(q).fetchall() == [(5000, 24995000, "row 999")]
    q = f"SELECT sum(j) FROM read_parquet('envstore://{root}/t.parquet') WHERE i >= 4000"
    assert con.sql(q).fetchall() == [(sum(2 * i for i in range(4000, 5000)),)]
    q = f"SELECT * FROM read_csv('envstore://{root}/small.csv')"
    assert con.sql(q).fetchall() == [(7, "seven")]
    q = (
        "SELECT filename, count(*) FROM "
        f"read_parquet('envstore://{root}/*.parquet', filename=true) GROUP BY 1"
    )
    assert con.sql(q).fetchall() == [(full, 5000)]
    con.close()


def sharded_array(url: str, so: dict[str, Any]) -> tuple[Any, int]:
    """A 256 x 256 float64 array in ONE shard object (256 inner chunks of 16 x 16, no
    compression): returns (the data, the shard's plaintext size)."""
    import zarr

    data = np.arange(256 * 256, dtype="f8").reshape(256, 256)
    a = zarr.create_array(
        url,
        storage_options=so,
        shape=data.shape,
        chunks=(16, 16),
        shards=data.shape,
        dtype="f8",
        compressors=None,
        overwrite=True,
    )
    a[:] = data
    return data, data.nbytes


def read_inner_chunk(url: str, so: dict[str, Any], data: Any) -> None:
    """Read a slice inside one inner chunk of the shard (zarr asks for byte ranges)."""
    import zarr

    b = zarr.open_array(url, storage_options=so, mode="r")
    np.testing.assert_array_equal(b[100:110, 200:203], data[100:110, 200:203])
