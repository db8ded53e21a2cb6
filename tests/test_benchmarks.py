"""Smoke test of ``benchmarks/perf.py --quick``: it runs to the end and prints every row of
issue 12's table with a verdict. No timing assertions (figures come from the command, not tests)."""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PERF = ROOT / "benchmarks" / "perf.py"

# row label -> how many table lines it prints (the range rows print cat_file and open+seek+read)
EXPECTED = {
    r"memory: open\(wb\) 4 MiB writes vs 16 KiB encrypt_into": 1,
    r"memory: open\(rb\)\.read\(4 MiB\) vs 16 KiB decrypt_into": 1,
    r"memory: cat_file vs 16 KiB decrypt_into": 1,
    r"local: 1 MiB pipe_file vs write\+fsync\+rename": 1,
    r"local: 1 MiB cat_file vs plain read": 1,
    r"s3: open\(rb\)\.read\(4 MiB\) .* vs s3fs": 1,
    r"s3: envstore\.upload .* vs s3fs\.put": 1,
    r"s3: extra RSS streaming": 1,
    r"s3: 1 MiB range from the middle": 2,
    r"s3: read_parquet 1 of 5 columns": 1,
    r"oss: open\(rb\)\.read\(4 MiB\) .* vs oss2": 1,
    r"oss: envstore\.upload .* vs oss2": 1,
    r"oss: extra RSS streaming": 1,
    r"oss: 1 MiB range from the middle": 2,
}


def run(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, str(PERF), *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=600,
    )


@pytest.mark.slow
def test_perf_quick_prints_every_row() -> None:
    res = run("--quick")
    assert res.returncode == 0, res.stderr[-3000:]
    rows = [line for line in res.stdout.splitlines() if line.endswith(("PASS", "MISS"))]
    for label, count in EXPECTED.items():
        hits = [r for r in rows if re.match(label, r)]
        assert len(hits) == count, f"{label!r}: {hits}\n{res.stdout}"
    assert len(rows) == sum(EXPECTED.values()), res.stdout
    for row in rows:  # every row carries a measured figure and its target
        cells = [c.strip() for c in row.split(" | ")]
        assert len(cells) == 6 and cells[3] and cells[4] and cells[3] != "-", row
    assert re.search(r"^machine: .*cryptography \d", res.stdout, re.M), res.stdout
    assert re.search(r"^start: .*load average", res.stdout, re.M), res.stdout
    met = sum(r.endswith("PASS") for r in rows)
    assert f"\n{met} of {len(rows)} rows meet their target" in res.stdout, res.stdout
    if importlib.util.find_spec("cryptography.cobblestone") is not None:  # cryptography >= 50
        assert re.search(r"^  cat_file's floor here: .* slower", res.stdout, re.M), res.stdout


def test_only_rejects_unknown_rows() -> None:
    res = run("--quick", "--only", "mem,nosuch.row")
    assert res.returncode != 0
    assert "nosuch.row" in res.stderr
