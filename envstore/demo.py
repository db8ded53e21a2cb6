"""``envstore demo``: the main job on the embedded default (local files + a local key).

Makes a temporary store and a fresh master key (the user's default key is never touched),
writes a DataFrame as Parquet and CSV through ``envstore::file://``, reads a column back,
shows that the bytes on disk are ciphertext and what the envelope holds, and says so.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path


def run(keep: str | None = None, rows: int = 5000, echo=print) -> dict:
    try:
        import numpy as np
        import pandas as pd
    except ImportError:
        raise RuntimeError(
            'the demo needs pandas and pyarrow: pip install "envstore[demo]"'
        ) from None

    from envstore.format import MAGIC
    from envstore.keys.local import keygen
    from envstore.transfer import inspect

    base = Path(keep) if keep else Path(tempfile.mkdtemp(prefix="envstore-demo-"))
    base.mkdir(parents=True, exist_ok=True)
    try:
        key = keygen(base / "master.key")
        so = {"key_uri": f"local://{key}"}
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
        pq_url = f"envstore::file://{store}/sales.parquet"
        csv_url = f"envstore::file://{store}/sales.csv"
        df.to_parquet(pq_url, storage_options=so)
        df.to_csv(csv_url, index=False, storage_options=so)
        amounts = pd.read_parquet(pq_url, columns=["amount"], storage_options=so)
        back_csv = pd.read_csv(csv_url, storage_options=so, parse_dates=["ts"])
        assert amounts["amount"].equals(df["amount"]), "Parquet column differs"
        pd.testing.assert_frame_equal(back_csv, df, check_dtype=False)

        raw_pq = (store / "sales.parquet").read_bytes()
        raw_csv = (store / "sales.csv").read_bytes()
        ciphertext = (
            raw_pq.startswith(MAGIC)
            and b"PAR1" not in raw_pq
            and b"customer-042" not in raw_pq + raw_csv
            and b"amount" not in raw_csv
        )
        if not ciphertext:
            raise RuntimeError("plaintext found on disk")
        envelope = inspect(pq_url, **so)

        echo(f"envstore demo in {base}")
        echo(f"  key      {key} (new local master key, mode 0600)")
        echo(
            f"  wrote    {rows} rows x {len(df.columns)} columns as Parquet and CSV via envstore::file://"
        )
        echo("  read     column 'amount' back with pd.read_parquet(columns=[...]): equal")
        echo("  read     the CSV back with pd.read_csv: equal")
        echo(
            f"  on disk  sales.parquet {len(raw_pq)} bytes, begins {raw_pq[:9]!r}: no 'PAR1', "
            "no customer names; sales.csv: no header, no values"
        )
        recipients = ", ".join(f"{r['provider']}:{r['key_id']}" for r in envelope["recipients"])
        echo(
            f"  envelope {envelope['suite']}, {envelope['placement']} placement, "
            f"plaintext {envelope['plaintext_size']} bytes, wrapped for {recipients} (no secrets)"
        )
        echo("  inspect  " + json.dumps({k: envelope[k] for k in ("format_version", "placement")}))
        echo(
            "done: every byte that reached the disk is ciphertext; pandas worked unchanged."
            + ("" if keep else " (temporary files removed; --keep DIR keeps them)")
        )
        return envelope
    finally:
        if not keep:
            shutil.rmtree(base, ignore_errors=True)
