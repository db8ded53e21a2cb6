"""pandas, pyarrow and dask over envstore::file:// and envstore::memory:// (real libraries)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from envstore.format import MAGIC


def _frame(n: int = 20_000) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    return pd.DataFrame(
        {
            "a": np.arange(n),
            "b": rng.normal(size=n),
            "c": [f"name-{i % 97}" for i in range(n)],
            "d": rng.integers(0, 10, size=n),
            "e": pd.date_range("2026-01-01", periods=n, freq="min"),
        }
    )


def test_parquet_round_trip_column_subset_and_filters(tmp_path: Path, key_uri: str) -> None:
    df = _frame()
    url = f"envstore::file://{tmp_path}/t.parquet"
    so = {"key_uri": key_uri}
    df.to_parquet(url, storage_options=so, row_group_size=5000)
    raw = (tmp_path / "t.parquet").read_bytes()
    assert raw.startswith(MAGIC) and b"PAR1" not in raw and b"name-42" not in raw
    pd.testing.assert_frame_equal(pd.read_parquet(url, storage_options=so), df)
    sub = pd.read_parquet(url, columns=["b"], storage_options=so)
    pd.testing.assert_frame_equal(sub, df[["b"]])
    filt = pd.read_parquet(url, filters=[("d", "==", 3)], storage_options=so)
    pd.testing.assert_frame_equal(filt.reset_index(drop=True), df[df.d == 3].reset_index(drop=True))


def test_csv_round_trip_on_memory(memroot: str, key_uri: str) -> None:
    df = _frame(3000).drop(columns=["e"])
    url = f"envstore::memory://{memroot}/t.csv"
    so = {"key_uri": key_uri}
    df.to_csv(url, index=False, storage_options=so)
    pd.testing.assert_frame_equal(pd.read_csv(url, storage_options=so), df)
    back = pd.read_csv(url, usecols=["a", "c"], storage_options=so)
    pd.testing.assert_frame_equal(back, df[["a", "c"]])


def test_pyarrow_dataset_over_directory(tmp_path: Path, key_uri: str) -> None:
    import fsspec
    import pyarrow.dataset as ds

    fs = fsspec.filesystem(
        "envstore",
        target_protocol="file",
        key_uri=key_uri,
        target_options={"auto_mkdir": True},
        skip_instance_cache=True,
    )
    df = _frame(9000)
    for i in range(3):
        part = df.iloc[i * 3000 : (i + 1) * 3000]
        with fs.open(f"{tmp_path}/ds/part-{i}.parquet", "wb") as f:
            part.to_parquet(f)
    dataset = ds.dataset(f"{tmp_path}/ds", filesystem=fs, format="parquet")
    table = dataset.to_table(columns=["a", "c"], filter=ds.field("d") > 5)
    got = table.to_pandas().sort_values("a").reset_index(drop=True)
    want = df[df.d > 5][["a", "c"]].reset_index(drop=True)
    pd.testing.assert_frame_equal(got, want)


def test_dask_processes_scheduler(tmp_path: Path, key_uri: str) -> None:
    dd = pytest.importorskip("dask.dataframe")
    import dask

    df = _frame(12_000)
    so = {"key_uri": key_uri}
    url = f"envstore::file://{tmp_path}/dd"
    ddf = dd.from_pandas(df, npartitions=4)
    with dask.config.set(scheduler="processes", num_workers=2):
        ddf.to_parquet(url, storage_options=so, write_index=False)
        back = dd.read_parquet(url, storage_options=so, columns=["a", "b", "d"]).compute()
        csv = f"envstore::file://{tmp_path}/csv/*.csv"
        ddf[["a", "d"]].to_csv(csv, index=False, storage_options=so)
        back_csv = dd.read_csv(csv, storage_options=so, blocksize=100_000).compute()
    pd.testing.assert_frame_equal(back.sort_values("a").reset_index(drop=True), df[["a", "b", "d"]])
    pd.testing.assert_frame_equal(back_csv.sort_values("a").reset_index(drop=True), df[["a", "d"]])
    for path in (tmp_path / "dd").iterdir():
        assert path.read_bytes().startswith(MAGIC)
