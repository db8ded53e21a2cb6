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


def run(
    keep: str | Path | None = None, rows: int = 5000, echo: Callable[[str], Any] = print
) -> dict[str, Any]:
    """Run the demo; returns the inspected envelope of the Parquet object."""
    try:
        import numpy as np
        import pandas as pd
        import pyarrow  # noqa: F401  (pandas' Parquet engine)
    except ImportError as exc:
        raise DemoError(
            f"the demo needs pandas and pyarrow ({exc.name} is missing): "
            'pip install "envstore[demo]"'
        ) from None

    from envstore.format import MAGIC
    from envstore.keys.local import keygen
    from envstore.transfer import inspect

    if keep is not None:
        base = Path(keep).absolute()
        if base.exists() and any(base.iterdir()):
            raise DemoError(f"{base} is not empty: give --keep a new or empty directory")
        base.mkdir(parents=True, exist_ok=True)
    else:
        base = Path(tempfile.mkdtemp(prefix="envstore-demo-"))
    try:
        key = keygen(base / "master.key")
        so = {"key_uri": f"local://{key.as_posix()}", "context": {"dataset": "sales-demo"}}
        store = base / "store"
        rng = np.random.default_rng(7)
        df = pd.DataFrame(
            {
                "id": np.arange(rows),
                "customer": [f"customer-{i % 113:03d}" for i in range(rows)],
                "amount": rng.normal(100, 15, rows).round(2),
                "country": rng.choice(["CN", "DE", "US", "BR"], rows),
                "ts": pd.date_range("2026-01-01", periods=rows, freq="min"),
            }
        )
        pq_url = f"envstore::file://{store.as_posix()}/sales.parquet"
        csv_url = f"envstore::file://{store.as_posix()}/sales.csv"
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

        raw_pq = (store / "sales.parquet").read_bytes()
        raw_csv = (store / "sales.csv").read_bytes()
        secret = key.read_bytes().strip()
        for name, raw in (("sales.parquet", raw_pq), ("sales.csv", raw_csv)):
            _check(raw.startswith(MAGIC), f"{name} does not start with the envstore header")
            _check(b"customer-042" not in raw, f"{name} holds a customer name in the clear")
            _check(secret not in raw, f"{name} holds the master key")
        _check(b"PAR1" not in raw_pq, "the Parquet magic PAR1 is on disk")
        _check(b"customer,amount" not in raw_csv, "the CSV header is on disk")
        envelope = inspect(pq_url, **so)
        _check(secret.decode() not in json.dumps(envelope), "the envelope shows the master key")

        recipients = ", ".join(f"{r['provider']} {r['key_id']}" for r in envelope["recipients"])
        echo(f"envstore demo in {base}{'' if keep else ' (temporary)'}")
        echo(f"  key       a new local master key {key} (mode 0600); yours is not used")
        echo(
            f"  wrote     {rows} rows x {len(df.columns)} columns with df.to_parquet and df.to_csv"
        )
        echo(f"            to {pq_url} and .../sales.csv")
        echo(
            "  read      pd.read_parquet(columns=['amount']) and pd.read_csv: equal to the original"
        )
        echo(
            f"  on disk   sales.parquet ({len(raw_pq)} bytes), sales.csv ({len(raw_csv)} bytes): "
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
            f"            context {json.dumps(envelope['context'])}; "
            f"data key wrapped for {recipients}"
        )
        if keep:
            echo(f"  try       envstore cat --key-uri local://{key.as_posix()} {csv_url} | head -3")
        echo(
            "done: pandas wrote and read as usual; every byte that reached the disk is ciphertext."
            + ("" if keep else " Temporary files removed (--keep DIR keeps them).")
        )
        return envelope
    finally:
        if not keep:
            shutil.rmtree(base, ignore_errors=True)
