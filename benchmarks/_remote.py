"""The S3 (moto) and OSS (the project's test server) rows of ``perf.py``.

Every server runs in its own process and counts requests and response body bytes itself, so the
byte counts do not depend on envstore's internals.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path
from typing import Any

from _harness import BUCKET, RANGE_READS, MiB, Row, Server, interleave, read_range, speed_row
from _rss_child import STEP, drain, opener

CHUNK, WIRE_CHUNK, PREFIX = 16384, 16400, 56  # FORMAT.md: plaintext/ciphertext chunk, header prefix
RANGE_LIMIT = MiB + 2 * WIRE_CHUNK + PREFIX  # 1 MiB + 2 chunks + the header prefix
RSS_LIMIT = 100 * MiB
CHILD = str(Path(__file__).with_name("_rss_child.py"))


def inner_options(backend: str, server: Server) -> dict[str, str]:
    if backend == "s3":
        return {"endpoint_url": server.endpoint, "key": server.key, "secret": server.secret}
    return {"endpoint": server.endpoint, "key": server.key, "secret": server.secret}


def envstore_fs(backend: str, server: Server, key_uri: str) -> Any:
    """A fresh envstore filesystem over the server (default options)."""
    import fsspec

    return fsspec.filesystem(
        "envstore",
        target_protocol=backend,
        target_options=inner_options(backend, server),
        key_uri=key_uri,
        skip_instance_cache=True,
    )


def plain_write(backend: str, server: Server, name: str, blocks: int, block: bytes) -> None:
    """Store ``blocks`` × ``block`` as ``name`` with the plain client (streaming for S3)."""
    if backend == "s3":
        import fsspec

        with fsspec.filesystem("s3", **inner_options("s3", server)).open(
            f"{BUCKET}/{name}", "wb"
        ) as f:
            for _ in range(blocks):
                f.write(block)
        return
    import oss2

    bucket = oss2.Bucket(oss2.Auth(server.key, server.secret), server.endpoint, BUCKET)
    bucket.put_object(name, block * blocks)


def env_write(efs: Any, name: str, blocks: int, block: bytes) -> None:
    with efs.open(f"{BUCKET}/{name}", "wb") as f:
        for _ in range(blocks):
            f.write(block)


def stream_read(backend: str, server: Server, key_uri: str, mib: int, repeat: int) -> Row:
    """``open("rb").read(4 MiB)`` loop: envstore vs the plain client, same bytes."""
    block = os.urandom(STEP)
    blocks = max(1, mib * MiB // STEP)
    env_write(envstore_fs(backend, server, key_uri), "stream-envstore", blocks, block)
    plain_write(backend, server, "stream-plain", blocks, block)
    args = (server.endpoint, server.key, server.secret, key_uri)
    env_open, plain_open = opener(backend, "envstore", *args), opener(backend, "plain", *args)
    times = interleave(
        {
            "env": partial(drain, env_open, f"{BUCKET}/stream-envstore"),
            "plain": partial(drain, plain_open, f"{BUCKET}/stream-plain"),
        },
        repeat,
    )
    plain = "s3fs" if backend == "s3" else "oss2 get_object"
    name = f"{backend}: open(rb).read(4 MiB) {blocks * STEP // MiB} MiB vs {plain}"
    return speed_row(name, times, "env", "plain", 0.95, blocks * STEP)


def make_tree(files: int, kib: int) -> str:
    src = tempfile.mkdtemp(prefix="perf-upload-")
    for i in range(files):
        Path(src, f"f{i:03d}.bin").write_bytes(os.urandom(kib * 1024))
    return src


def upload(backend: str, server: Server, key_uri: str, files: int, kib: int, repeat: int) -> Row:
    """``envstore.upload(jobs=8)`` of a tree vs s3fs.put(batch_size=8) / 8 oss2 threads."""
    import envstore

    src = make_tree(files, kib)
    options = {"key_uri": key_uri, backend: inner_options(backend, server)}
    runs = iter(range(1 << 30))

    def env() -> None:
        url = f"envstore::{backend}://{BUCKET}/up-env/{next(runs)}"
        assert len(envstore.upload(src, url, recursive=True, jobs=8, **options)) == files

    if backend == "s3":
        import fsspec

        s3 = fsspec.filesystem("s3", **inner_options("s3", server))

        def plain() -> None:
            s3.put(src, f"{BUCKET}/up-plain/{next(runs)}/", recursive=True, batch_size=8)

        label = "s3fs.put(recursive, batch_size=8)"
    else:
        import oss2

        bucket = oss2.Bucket(oss2.Auth(server.key, server.secret), server.endpoint, BUCKET)
        paths = sorted(Path(src).iterdir())

        def plain() -> None:
            n = next(runs)
            with ThreadPoolExecutor(8) as ex:
                list(
                    ex.map(
                        lambda p: bucket.put_object_from_file(f"up-plain/{n}/{p.name}", str(p)),
                        paths,
                    )
                )

        label = "oss2 put_object_from_file, 8 threads"
    times = interleave({"env": env, "plain": plain}, repeat)
    name = f"{backend}: envstore.upload {files} x {kib} KiB (jobs=8) vs {label}"
    return speed_row(name, times, "env", "plain", 0.9, files * kib * 1024)


def rss_child(backend: str, server: Server, client: str, key_uri: str) -> dict[str, float]:
    res = subprocess.run(
        [sys.executable, CHILD, backend, client, server.endpoint, server.key, server.secret,
         key_uri, f"{BUCKET}/rss-{client}"],
        check=True, capture_output=True, text=True, timeout=1800,
    )  # fmt: skip
    return dict(json.loads(res.stdout.strip().splitlines()[-1]))


def rss(backend: str, server: Server, key_uri: str, mib: int) -> Row:
    """Peak extra RSS of a client process streaming a ``mib`` object back (4 MiB reads)."""
    block = os.urandom(STEP)
    blocks = max(1, mib * MiB // STEP)
    efs = envstore_fs(backend, server, key_uri)
    env_write(efs, "rss-envstore", blocks, block)
    env_write(efs, "warm-envstore", 1, block)
    out = {"envstore": rss_child(backend, server, "envstore", key_uri)}
    if backend == "s3":  # plain reference (oss2 would need the whole object in memory to put)
        plain_write(backend, server, "rss-plain", blocks, block)
        plain_write(backend, server, "warm-plain", 1, block)
        out["plain"] = rss_child(backend, server, "plain", key_uri)
    size = blocks * STEP
    for client, r in out.items():  # a short stream would make a small RSS meaningless
        if r["bytes"] != size:
            raise RuntimeError(f"{backend} {client}: streamed {r['bytes']} of {size} bytes")

    def fmt(r: dict[str, float]) -> str:
        return f"+{r['extra'] / MiB:.0f} MiB ({size / r['seconds'] / MiB:.0f} MiB/s)"

    extra = out["envstore"]["extra"]
    return Row(
        f"{backend}: extra RSS streaming {size // MiB} MiB back (client process)",
        fmt(out["envstore"]),
        fmt(out["plain"]) + " s3fs" if "plain" in out else "-",
        f"+{extra / MiB:.0f} MiB",
        f"<= {RSS_LIMIT // MiB} MiB",
        extra <= RSS_LIMIT,
    )


def middle_range(backend: str, server: Server, key_uri: str, mib: int) -> list[Row]:
    """1 MiB from the middle of an object, from a fresh filesystem: requests and body bytes
    the server sent."""
    efs = envstore_fs(backend, server, key_uri)
    size = max(4, mib) * MiB
    data = os.urandom(size)
    efs.pipe_file(f"{BUCKET}/range", data)
    start = size // 2 + 12_345
    rows = []
    for how in RANGE_READS:
        fresh = envstore_fs(backend, server, key_uri)
        server.clear()
        got = read_range(fresh, f"{BUCKET}/range", start, MiB, how)
        assert got == data[start : start + MiB]
        log = server.log()
        sent = sum(e[2] for e in log)
        # OSS answers an unsatisfiable range with the whole object unless asked for "standard"
        ranged = [e for e in log if e[1]]
        standard = backend == "s3" or all(e[3] == "standard" for e in ranged)
        rows.append(
            Row(
                f"{backend}: 1 MiB range from the middle of {size // MiB} MiB ({how})",
                f"{len(log)} req ({'+'.join(e[0] for e in log)}), {sent:,} B",
                "-",
                f"{sent / MiB:.3f} MiB" + ("" if standard else " (RANGE NOT STANDARD)"),
                f"<= 2 req, <= {RANGE_LIMIT:,} B",
                len(log) <= 2 and sent <= RANGE_LIMIT and standard,
            )
        )
    return rows


def parquet_projection(server: Server, key_uri: str, n: int) -> Row:
    """``pd.read_parquet`` of 1 column of 5: body bytes the server sent, envstore vs s3fs
    (``default_cache_type="none"``, the least s3fs fetches)."""
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(0)
    df = pd.DataFrame({c: rng.normal(size=n) for c in "abcde"})
    s3 = inner_options("s3", server)
    eso = {"key_uri": key_uri, "s3": s3}
    plain_url, env_url = f"s3://{BUCKET}/t.parquet", f"envstore::s3://{BUCKET}/et.parquet"
    df.to_parquet(plain_url, storage_options=s3, row_group_size=max(1, n // 4))
    df.to_parquet(env_url, storage_options=eso, row_group_size=max(1, n // 4))
    sent = {}
    for name, url, so in (
        ("plain", plain_url, {**s3, "default_cache_type": "none", "skip_instance_cache": True}),
        ("env", env_url, {**eso, "skip_instance_cache": True}),
    ):
        server.clear()
        assert len(pd.read_parquet(url, columns=["c"], storage_options=so)) == n
        log = server.log()
        sent[name] = (sum(e[2] for e in log), len(log))
    import fsspec

    size = fsspec.filesystem("s3", **s3).size(f"{BUCKET}/t.parquet")
    ratio = sent["env"][0] / sent["plain"][0]
    return Row(
        f"s3: read_parquet 1 of 5 columns ({size / MiB:.1f} MiB file): bytes fetched",
        f"{sent['env'][0] / MiB:.2f} MiB, {sent['env'][1]} req",
        f"{sent['plain'][0] / MiB:.2f} MiB, {sent['plain'][1]} req s3fs none",
        f"{ratio:.3f}x bytes",
        "<= 1.1x bytes",
        ratio <= 1.1,
    )
