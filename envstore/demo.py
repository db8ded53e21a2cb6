"""``envstore demo``: the main job on the embedded default (local files + a local key).

Makes a temporary store and a fresh master key (the user's default key is never touched),
writes a DataFrame as Parquet and CSV through ``envstore::file://``, reads a column and the
CSV back, checks that the bytes on disk are ciphertext, shows what the envelope holds, and
says what it did in a few lines. pandas and pyarrow are imported here only.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = ["DemoError", "run"]


class DemoError(RuntimeError):
    """The demo could not run (missing dependency, unusable directory) or a check failed."""


def _check(ok: bool, what: str) -> None:
    if not ok:
        raise DemoError(f"demo check failed: {what}")


def _imports() -> tuple[Any, Any]:
    """numpy and pandas (with pyarrow, pandas' Parquet engine), or DemoError."""
    try:
        import numpy as np
        import pandas as pd
        import pyarrow  # noqa: F401  (pandas' Parquet engine)
    except ImportError as exc:
        raise DemoError(
            f"the demo needs pandas and pyarrow ({exc.name} is missing): "
            'pip install "envstore[demo]"'
        ) from None
    return np, pd


def _base(keep: str | Path | None) -> Path:
    if keep is None:
        return Path(tempfile.mkdtemp(prefix="envstore-demo-"))
    base = Path(keep).absolute()
    if base.exists() and any(base.iterdir()):
        raise DemoError(f"{base} is not empty: give --keep a new or empty directory")
    base.mkdir(parents=True, exist_ok=True)
    return base


def _frame(np: Any, pd: Any, rows: int) -> Any:
    rng = np.random.default_rng(7)
    return pd.DataFrame(
        {
            "id": np.arange(rows),
            "customer": [f"customer-{i % 113:03d}" for i in range(rows)],
            "amount": rng.normal(100, 15, rows).round(2),
            "country": rng.choice(["CN", "DE", "US", "BR"], rows),
            "ts": pd.date_range("2026-01-01", periods=rows, freq="min"),
        }
    )


def _round_trip(pd: Any, df: Any, pq_url: str, csv_url: str, so: dict[str, Any]) -> None:
    """Write the frame as Parquet and CSV, read a column and the CSV back, compare."""
    df.to_parquet(pq_url, storage_options=so)
    df.to_csv(csv_url, index=False, storage_options=so)
    amounts = pd.read_parquet(pq_url, columns=["amount"], storage_options=so)
    _check(list(amounts.columns) == ["amount"], "read_parquet(columns=...) returned others")
    _check(amounts["amount"].equals(df["amount"]), "the Parquet column read back differs")
    back = pd.read_csv(csv_url, storage_options=so, parse_dates=["ts"])
    try:
        pd.testing.assert_frame_equal(back, df, check_dtype=False)
    except AssertionError:
        raise DemoError("demo check failed: the CSV read back differs") from None


def _check_on_disk(store: Path, secret: bytes) -> tuple[bytes, bytes]:
    """The stored bytes of both objects, checked to be ciphertext behind the header."""
    from envstore.format import MAGIC

    raw_pq = (store / "sales.parquet").read_bytes()
    raw_csv = (store / "sales.csv").read_bytes()
    for name, raw in (("sales.parquet", raw_pq), ("sales.csv", raw_csv)):
        _check(raw.startswith(MAGIC), f"{name} does not start with the envstore header")
        _check(b"customer-042" not in raw, f"{name} holds a customer name in the clear")
        _check(secret not in raw, f"{name} holds the master key")
    _check(b"PAR1" not in raw_pq, "the Parquet magic PAR1 is on disk")
    _check(b"customer,amount" not in raw_csv, "the CSV header is on disk")
    return raw_pq, raw_csv


def _report(
    echo: Callable[[str], Any],
    base: Path,
    key: Path,
    keep: str | Path | None,
    shape: tuple[int, int],
    urls: tuple[str, str],
    sizes: tuple[int, int],
    envelope: dict[str, Any],
) -> None:
    from envstore.format import MAGIC

    (rows, cols), (pq_url, csv_url) = shape, urls
    recipients = ", ".join(f"{r['provider']} {r['key_id']}" for r in envelope["recipients"])
    echo(f"envstore demo in {base}{'' if keep else ' (temporary)'}")
    echo(f"  key       a new local master key {key} (mode 0600); yours is not used")
    echo(f"  wrote     {rows} rows x {cols} columns with df.to_parquet and df.to_csv")
    echo(f"            to {pq_url} and .../sales.csv")
    echo("  read      pd.read_parquet(columns=['amount']) and pd.read_csv: equal to the original")
    echo(
        f"  on disk   sales.parquet ({sizes[0]} bytes), sales.csv ({sizes[1]} bytes): "
        f"both begin with {MAGIC!r}"
    )
    echo(
        "            (the envstore header); no Parquet magic 'PAR1', no CSV header, "
        "no customer names"
    )
    echo("  envelope  as `envstore inspect` shows it (nothing secret):")
    echo(
        f"            format {envelope['format_version']}, {envelope['suite']}, "
        f"{envelope['placement']} placement, {envelope['plaintext_size']} plaintext bytes "
        f"in {envelope['stored_size']} stored"
    )
    echo(
        f"            context {json.dumps(envelope['context'])}; data key wrapped for {recipients}"
    )
    if keep:
        echo(f"  try       envstore cat --key-uri local://{key.as_posix()} {csv_url} | head -3")
    echo(
        "done: pandas wrote and read as usual; every byte that reached the disk is ciphertext."
        + ("" if keep else " Temporary files removed (--keep DIR keeps them).")
    )


def run(
    keep: str | Path | None = None, rows: int = 5000, echo: Callable[[str], Any] = print
) -> dict[str, Any]:
    """Run the demo; returns the inspected envelope of the Parquet object."""
    np, pd = _imports()

    from envstore.keys.local import keygen
    from envstore.transfer import inspect

    base = _base(keep)
    try:
        key = keygen(base / "master.key")
        so = {"key_uri": f"local://{key.as_posix()}", "context": {"dataset": "sales-demo"}}
        store = base / "store"
        df = _frame(np, pd, rows)
        pq_url = f"envstore::file://{store.as_posix()}/sales.parquet"
        csv_url = f"envstore::file://{store.as_posix()}/sales.csv"
        _round_trip(pd, df, pq_url, csv_url, so)
        secret = key.read_bytes().strip()
        raw_pq, raw_csv = _check_on_disk(store, secret)
        envelope = inspect(pq_url, **so)
        _check(secret.decode() not in json.dumps(envelope), "the envelope shows the master key")
        _report(
            echo,
            base,
            key,
            keep,
            (rows, len(df.columns)),
            (pq_url, csv_url),
            (len(raw_pq), len(raw_csv)),
            envelope,
        )
        return envelope
    finally:
        if not keep:
            shutil.rmtree(base, ignore_errors=True)
