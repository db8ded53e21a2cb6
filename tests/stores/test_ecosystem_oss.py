"""zarr v3 / xarray and duckdb through envstore::oss:// URLs (the OSS-compatible test server,
or a real bucket with ENVSTORE_TEST_OSS_*): the same scenarios as on local files and S3."""

from __future__ import annotations

import pytest

from tests.ecosystem import duckdb_round_trip, zarr_round_trip
from tests.stores.common import ENVELOPE_KEYS
from tests.stores.conftest_oss import (  # noqa: F401  (fixtures)
    OssEnv,
    oss_fixture,
    oss_server_fixture,
)

pytest.importorskip("zarr", minversion="3")
pytest.importorskip("xarray")
pytest.importorskip("duckdb")

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")  # zarr: consolidated metadata


def test_xarray_and_zarr_through_an_oss_url(oss: OssEnv) -> None:
    def stored() -> dict[str, bytes]:
        return {k: oss.raw(k) for k in oss.keys() if k.startswith("d/x.zarr/")}

    raw = zarr_round_trip(oss.url("d/x.zarr"), oss.storage_options(), stored)
    for name in raw:
        assert ENVELOPE_KEYS <= set(oss.meta(name)), name


def test_duckdb_reads_and_writes_oss(oss: OssEnv) -> None:
    duckdb_round_trip(oss.efs(), oss.root, oss.raw)
    assert ENVELOPE_KEYS <= set(oss.meta("t.parquet"))
