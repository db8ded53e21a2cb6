"""Test data shared by the S3 and OSS suites (they mirror each other on purpose)."""

from __future__ import annotations

import random

import numpy as np
import pandas as pd

#: envelope fields every object written with one local key carries as user metadata
ENVELOPE_KEYS = {
    "envstore-version",
    "envstore-suite",
    "envstore-salt",
    "envstore-commitment",
    "envstore-key-1",
}


def payload(n: int, seed: int = 0) -> bytes:
    """``n`` reproducible pseudo-random bytes."""
    return random.Random(seed).randbytes(n)


def frame(n: int = 20_000) -> pd.DataFrame:
    """A DataFrame of 5 columns (ints, floats, strings) for Parquet/CSV round trips."""
    rng = np.random.default_rng(0)
    return pd.DataFrame(
        {
            "a": np.arange(n),
            "b": rng.normal(size=n),
            "c": [f"name-{i % 97}" for i in range(n)],
            "d": rng.integers(0, 10, size=n),
            "e": rng.normal(size=n),
        }
    )
