"""zarr v3 / xarray through envstore::s3:// URLs, what only S3 shows: the requests on the wire
(the round trips on every store are in test_contract.py)."""

from __future__ import annotations

import re

import fsspec
import pytest

from tests.ecosystem import chunk_keys, dataset, objects_read, read_inner_chunk, sharded_array

pytest.importorskip("zarr", minversion="3")
pytest.importorskip("xarray")
pytest.importorskip("duckdb")

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")  # zarr: consolidated metadata


def test_a_zarr_slice_on_s3_gets_only_its_chunk_object(s3, count_requests) -> None:
    """(The zarr/xarray round trip itself is in the contract suite, test_contract.py.)"""
    import xarray as xr

    so = s3.storage_options()
    url = s3.url("d/x.zarr")
    dataset().to_zarr(url, storage_options=so, mode="w")
    # on the wire: a slice GETs its one chunk object (and the metadata), nothing else

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
