"""zarr v3 / xarray and duckdb through envstore::s3:// URLs (moto, or the endpoint of
ENVSTORE_TEST_S3_ENDPOINT): issue 13 items 1 and 2 on S3."""

from __future__ import annotations

import re

import fsspec
import pytest

from tests.ecosystem import (
    chunk_keys,
    duckdb_round_trip,
    objects_read,
    read_inner_chunk,
    sharded_array,
    zarr_round_trip,
)
from tests.stores.common import ENVELOPE_KEYS

pytest.importorskip("zarr", minversion="3")
pytest.importorskip("xarray")
pytest.importorskip("duckdb")

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")  # zarr: consolidated metadata


def _objects(s3, under: str) -> dict[str, bytes]:
    return {k: s3.raw(k) for k in s3.keys() if k.startswith(under + "/")}


def test_xarray_and_zarr_through_an_s3_url(s3, count_requests) -> None:
    so = s3.storage_options()
    url = s3.url("d/x.zarr")
    raw = zarr_round_trip(url, so, lambda: _objects(s3, "d/x.zarr"))
    for name in raw:  # every chunk and metadata document is an envstore object
        assert ENVELOPE_KEYS <= set(s3.head(name)["Metadata"]), name

    # on the wire: a slice GETs its one chunk object (and the metadata), nothing else
    import xarray as xr

    lazy = xr.open_zarr(url, storage_options=so, chunks=None)
    rec = count_requests(fsspec.url_to_fs(url, **so)[0])  # the shared (cached) s3fs client
    with objects_read() as seen:
        lazy.t.isel(x=slice(48, 64), y=slice(0, 16)).values  # noqa: B018
    assert chunk_keys(seen) == {"3/0"}
    gets = [p for (op, _), p in zip(rec.calls, rec.paths, strict=True) if op == "GetObject"]
    assert {m.group(0) for p in gets if (m := re.search(r"t/c/\d+/\d+$", p))} == {"t/c/3/0"}


def test_a_slice_of_a_zarr_shard_on_s3_gets_a_few_chunks(s3, count_requests) -> None:
    so = s3.storage_options()
    url = s3.url("s.zarr")
    data, size = sharded_array(url, so)
    rec = count_requests(fsspec.url_to_fs(url, **so)[0])
    read_inner_chunk(url, so, data)
    shard_gets = [r for (op, r), p in zip(rec.calls, rec.paths, strict=True) if op == "GetObject"]
    assert shard_gets and all(r is not None for r in shard_gets), rec.calls  # ranged GETs
    assert 0 < rec.received < size // 10, rec.received


def test_zarr_s3_options_under_the_protocol_and_async_inner(s3) -> None:
    """Options a user may give the inner layer too (asynchronous) do not break envstore's
    synchronous use of s3fs."""
    import zarr

    so = s3.storage_options(s3={"asynchronous": True})
    g = zarr.open_group(s3.url("g.zarr"), storage_options=so, mode="w")
    g.create_array("a", shape=(10,), chunks=(5,), dtype="i4")[:] = list(range(10))
    back = zarr.open_group(s3.url("g.zarr"), storage_options=so, mode="r")
    assert list(back["a"][3:7]) == [3, 4, 5, 6]


def test_duckdb_reads_and_writes_s3(s3) -> None:
    fs = s3.efs()
    duckdb_round_trip(fs, s3.root, s3.raw)
    assert ENVELOPE_KEYS <= set(s3.head("t.parquet")["Metadata"])
