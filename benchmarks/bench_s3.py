"""envstore over S3 against plain s3fs, on a moto server started by this script.

    python benchmarks/bench_s3.py [--mib 256] [--rss-mib 1024] [--repeat 3]

The moto server runs in its own process (``moto_server``), so its CPU does not share the
client's GIL.  Figures (best of ``--repeat``, runs interleaved):

* put / get throughput of a ``--mib`` object: ``pipe_file``/``cat_file`` and streaming
  ``open("wb").write`` / ``open("rb").read`` in 4 MiB calls; envstore / plain s3fs ratio;
* a 1 MiB range from the middle of that object, from a fresh filesystem: requests and bytes;
* ``pd.read_parquet`` of 1 column out of 5: bytes fetched, envstore vs plain s3fs with
  ``default_cache_type="none"`` (and the s3fs default, readahead, for reference);
* peak extra RSS while streaming ``--rss-mib`` through ``open("wb")`` (in a child process,
  sampling RSS every 2 ms), envstore and plain s3fs.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

from _harness import BUCKET, RANGE_READS, MiB, best, print_table, read_range, setup_env, start_moto

CREDS = {"key": "bench", "secret": "bench"}


class Counter:
    """Requests and GetObject bytes seen by one s3fs client (botocore events)."""

    def __init__(self, s3fs_fs: Any) -> None:
        self.requests: list[str] = []
        self.received = 0
        events = s3fs_fs.s3.meta.events
        events.register("before-call.s3", self._call)
        events.register("after-call.s3.GetObject", self._got)

    def _call(self, model: Any, **kw: Any) -> None:
        self.requests.append(model.name)

    def _got(self, parsed: dict[str, Any], **kw: Any) -> None:
        self.received += int(parsed.get("ContentLength") or 0)

    def reset(self) -> None:
        self.requests.clear()
        self.received = 0


def filesystems(endpoint: str, key_uri: str) -> tuple[Any, Any]:
    """(plain s3fs, envstore over s3fs), fresh instances with default options."""
    import fsspec
    from s3fs import S3FileSystem

    plain = S3FileSystem(
        **CREDS, client_kwargs={"endpoint_url": endpoint}, skip_instance_cache=True
    )
    efs = fsspec.filesystem(
        "envstore",
        target_protocol="s3",
        target_options={"endpoint_url": endpoint, **CREDS},
        key_uri=key_uri,
        skip_instance_cache=True,
    )
    return plain, efs


# -- the measurements ------------------------------------------------------------------------


def throughput(endpoint: str, key_uri: str, mib: int, repeat: int) -> list[tuple[str, ...]]:
    plain, efs = filesystems(endpoint, key_uri)
    fss = {"plain": plain, "env": efs}
    data = os.urandom(mib * MiB)
    view = memoryview(data)
    step = 4 * MiB
    local = Path(tempfile.mkdtemp())
    (local / "src").write_bytes(data)

    def stream_write(fs: Any, path: str) -> None:
        with fs.open(path, "wb") as f:
            for i in range(0, len(view), step):
                f.write(view[i : i + step])

    def stream_read(fs: Any, path: str) -> None:
        with fs.open(path, "rb") as f:
            while f.read(step):
                pass

    ops: dict[str, Callable[[Any, str], Any]] = {
        "put: pipe_file": lambda fs, p: fs.pipe_file(p, data),
        "put: put_file (local file)": lambda fs, p: fs.put_file(str(local / "src"), p),
        "put: open(wb), 4 MiB writes": stream_write,
        "get: cat_file": lambda fs, p: fs.cat_file(p),
        "get: get_file (local file)": lambda fs, p: fs.get_file(p, str(local / "dst")),
        "get: open(rb), 4 MiB reads": stream_read,
    }
    for name, fs in fss.items():  # the objects the gets read
        fs.pipe_file(f"{BUCKET}/{name}", data)
    rows = []
    for op, fn in ops.items():
        suffix = "-put" if op.startswith("put") else ""
        t = best(
            {name: partial(fn, fs, f"{BUCKET}/{name}{suffix}") for name, fs in fss.items()}, repeat
        )
        if op.startswith("get: get_file"):
            assert (local / "dst").read_bytes() == data
        rows.append(
            (
                f"{op.replace(':', f' {mib} MiB,')}",
                f"{mib / t['plain']:.0f} MiB/s",
                f"{mib / t['env']:.0f} MiB/s",
                f"{t['plain'] / t['env']:.2f}x",
                ">= 0.9x",
            )
        )
    assert efs.cat_file(f"{BUCKET}/env-put") == data
    return rows


def middle_range(endpoint: str, key_uri: str, mib: int) -> list[tuple[str, ...]]:
    from envstore.format import PREFIX, WIRE_CHUNK

    _, efs = filesystems(endpoint, key_uri)
    if not efs.exists(f"{BUCKET}/env"):
        efs.pipe_file(f"{BUCKET}/env", os.urandom(mib * MiB))
    start = mib * MiB // 2 + 12_345
    rows = []
    for how in RANGE_READS:
        _, fresh = filesystems(endpoint, key_uri)
        c = Counter(fresh.fs)
        got = read_range(fresh, f"{BUCKET}/env", start, MiB, how)
        assert len(got) == MiB
        limit = MiB + 2 * WIRE_CHUNK + PREFIX
        rows.append(
            (
                f"1 MiB range mid-object ({how})",
                "-",
                f"{len(c.requests)} req ({'+'.join(c.requests)}), {c.received:,} B",
                f"{c.received / MiB:.3f} MiB",
                f"<= 2 req, <= {limit:,} B",
            )
        )
    return rows


def parquet_projection(endpoint: str, key_uri: str) -> list[tuple[str, ...]]:
    import fsspec
    import numpy as np
    import pandas as pd

    n = 2_000_000
    rng = np.random.default_rng(0)
    df = pd.DataFrame({c: rng.normal(size=n) for c in "abcde"})
    s3 = {"endpoint_url": endpoint, **CREDS}
    eso = {"key_uri": key_uri, "s3": s3}
    df.to_parquet(f"s3://{BUCKET}/t.parquet", storage_options=s3, row_group_size=n // 4)
    df.to_parquet(f"envstore::s3://{BUCKET}/et.parquet", storage_options=eso, row_group_size=n // 4)
    size = fsspec.filesystem("s3", **s3).size(f"{BUCKET}/t.parquet")
    results = {}
    for name, url, so in (
        ("plain none", f"s3://{BUCKET}/t.parquet", {**s3, "default_cache_type": "none"}),
        ("plain readahead", f"s3://{BUCKET}/t.parquet", {**s3, "default_cache_type": "readahead"}),
        ("envstore", f"envstore::s3://{BUCKET}/et.parquet", eso),
    ):
        fs, _ = fsspec.url_to_fs(url, **so)
        inner = fs.fs if hasattr(fs, "store") else fs
        fs.invalidate_cache()
        c = Counter(inner)
        got = pd.read_parquet(url, columns=["c"], storage_options=so)
        assert len(got) == n
        results[name] = (c.received, len(c.requests), c.requests.count("HeadObject"))
    ratio = results["envstore"][0] / results["plain none"][0]
    return [
        (
            f"read_parquet 1 of 5 columns ({size / MiB:.1f} MiB file)",
            f"{results['plain none'][0] / MiB:.2f} MiB, {results['plain none'][1]} req "
            f"(readahead: {results['plain readahead'][0] / MiB:.2f} MiB)",
            f"{results['envstore'][0] / MiB:.2f} MiB, {results['envstore'][1]} req, "
            f"{results['envstore'][2]} HEAD",
            f"{ratio:.3f}x",
            "<= 1.1x bytes",
        )
    ]


CHILD = r"""
import json, os, sys, threading, time
import psutil
sys.path.insert(0, {root!r})
os.environ.update(AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench")
import fsspec, envstore, s3fs
kind, endpoint, key_uri, mib = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
s3 = {{"endpoint_url": endpoint, "key": "bench", "secret": "bench"}}
if kind == "envstore":
    fs = fsspec.filesystem("envstore", target_protocol="s3", target_options=s3, key_uri=key_uri)
else:
    fs = fsspec.filesystem("s3", **s3)
block = os.urandom(4 << 20)
with fs.open("{bucket}/warm-" + kind, "wb") as f:   # warm up clients, ciphers, imports
    f.write(block)
proc = psutil.Process()
base = proc.memory_info().rss
peak = [base]
stop = threading.Event()
def sample():
    while not stop.is_set():
        peak[0] = max(peak[0], proc.memory_info().rss)
        time.sleep(0.002)
t = threading.Thread(target=sample, daemon=True); t.start()
t0 = time.perf_counter()
with fs.open("{bucket}/rss-" + kind, "wb") as f:
    for _ in range(mib // 4):
        f.write(block)
dt = time.perf_counter() - t0
stop.set(); t.join()
peak[0] = max(peak[0], proc.memory_info().rss)
print(json.dumps({{"extra": peak[0] - base, "seconds": dt}}))
"""


def peak_rss(endpoint: str, key_uri: str, mib: int) -> list[tuple[str, ...]]:
    root = str(Path(__file__).resolve().parents[1])
    code = CHILD.format(root=root, bucket=BUCKET)
    out = {}
    for kind in ("s3fs", "envstore"):
        res = subprocess.run(
            [sys.executable, "-c", code, kind, endpoint, key_uri, str(mib)],
            check=True,
            capture_output=True,
            text=True,
        )
        out[kind] = json.loads(res.stdout.strip().splitlines()[-1])
    e, p = out["envstore"], out["s3fs"]
    return [
        (
            f"peak extra RSS writing {mib} MiB (open wb)",
            f"{p['extra'] / MiB:.0f} MiB ({mib / p['seconds']:.0f} MiB/s)",
            f"{e['extra'] / MiB:.0f} MiB ({mib / e['seconds']:.0f} MiB/s)",
            "-",
            "<= 100 MiB",
        )
    ]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--mib", type=int, default=256)
    ap.add_argument("--rss-mib", type=int, default=1024)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    setup_env()
    import envstore  # noqa: F401
    from envstore.keys.local import keygen
    from envstore.stores.s3 import DEFAULT_PART_SIZE

    with start_moto() as server:
        endpoint = server.endpoint
        key_uri = "local://" + str(keygen(Path(tempfile.mkdtemp()) / "master.key"))
        print(
            f"moto server {endpoint} (own process); envstore part size "
            f"{DEFAULT_PART_SIZE // MiB} MiB; s3fs default block {50} MiB; cpus {os.cpu_count()}"
        )
        rows = [("measure", "plain s3fs", "envstore", "ratio", "goal")]
        rows += throughput(endpoint, key_uri, args.mib, args.repeat)
        rows += middle_range(endpoint, key_uri, args.mib)
        rows += parquet_projection(endpoint, key_uri)
        rows += peak_rss(endpoint, key_uri, args.rss_mib)
    print_table(rows)


if __name__ == "__main__":
    main()
