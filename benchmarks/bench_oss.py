"""envstore over OSS against plain oss2, on the OSS-compatible test server started by this script.

    python benchmarks/bench_oss.py [--mib 256] [--repeat 5]

The server (``tests/servers/oss_compat.py``: V1 signatures, MD5 and CRC64 of every upload,
CRC64 on every download) runs in its own process, so its CPU does not share the client's GIL;
the script asks it for its request log over a pipe.  Plain oss2 runs with its defaults (CRC64
computed on uploads and downloads, compared on uploads); envstore sends Content-MD5 instead,
which the server verifies, and reads bodies in one piece (see ``envstore/stores/oss.py``).
Figures (best of ``--repeat``, runs interleaved):

* put / get throughput of a ``--mib`` object: plain oss2 ``bucket.put_object`` /
  ``bucket.get_object().read()`` against envstore ``pipe_file`` and ``open("wb")`` in 4 MiB
  writes, ``cat_file`` and ``open("rb")`` in 4 MiB reads; ratio = plain time / envstore time;
  for reference also plain oss2 with ``enable_crc=False`` against envstore ``pipe_file`` /
  ``cat_file``;
* a 1 MiB range from the middle of that object, from a fresh filesystem: requests and response
  body bytes counted at the server (and every ranged GET's ``x-oss-range-behavior``).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from functools import partial
from pathlib import Path
from typing import Any

from _harness import (
    BUCKET,
    RANGE_READS,
    ROOT,
    MiB,
    Server,
    best,
    print_table,
    read_range,
    start_oss,
)


def clients(server: Server, key_uri: str) -> tuple[Any, Any]:
    """(plain oss2 Bucket, envstore filesystem over OSS), fresh, default options."""
    import fsspec
    import oss2

    plain = oss2.Bucket(oss2.Auth(server.key, server.secret), server.endpoint, BUCKET)
    efs = fsspec.filesystem(
        "envstore",
        target_protocol="oss",
        target_options={"endpoint": server.endpoint, "key": server.key, "secret": server.secret},
        key_uri=key_uri,
        skip_instance_cache=True,
    )
    return plain, efs


def throughput(server: Server, key_uri: str, mib: int, repeat: int) -> list[tuple[str, ...]]:
    import oss2

    plain, efs = clients(server, key_uri)
    nocrc = oss2.Bucket(plain.auth, server.endpoint, BUCKET, enable_crc=False)
    data = os.urandom(mib * MiB)
    view = memoryview(data)
    step = 4 * MiB

    def stream_write(path: str) -> None:
        with efs.open(path, "wb") as f:
            for i in range(0, len(view), step):
                f.write(view[i : i + step])

    def stream_read(path: str) -> None:
        with efs.open(path, "rb") as f:
            while f.read(step):
                pass

    def plain_get(bucket: Any = plain) -> None:
        assert len(bucket.get_object("plain").read()) == len(data)

    plain.put_object("plain", data)
    efs.pipe_file(f"{BUCKET}/env", data)
    runs = {
        "put": {
            "pipe_file": partial(efs.pipe_file, f"{BUCKET}/env-put", data),
            "open(wb), 4 MiB writes": partial(stream_write, f"{BUCKET}/env-put"),
        },
        "get": {
            "cat_file": partial(efs.cat_file, f"{BUCKET}/env"),
            "open(rb), 4 MiB reads": partial(stream_read, f"{BUCKET}/env"),
        },
    }
    baseline = {
        "put": partial(plain.put_object, "plain-put", data),
        "get": plain_get,
    }
    reference = {
        "put": partial(nocrc.put_object, "plain-put", data),
        "get": partial(plain_get, nocrc),
    }
    rows = []
    for kind, variants in runs.items():
        t = best({"plain": baseline[kind], "ref": reference[kind], **variants}, repeat)
        for name in variants:
            rows.append(
                (
                    f"{kind} {mib} MiB: {name}",
                    f"{mib / t['plain']:.0f} MiB/s",
                    f"{mib / t[name]:.0f} MiB/s",
                    f"{t['plain'] / t[name]:.2f}x",
                    ">= 0.9x",
                )
            )
        first = next(iter(variants))
        rows.append(
            (
                f"{kind} {mib} MiB: {first} vs oss2 enable_crc=False",
                f"{mib / t['ref']:.0f} MiB/s",
                f"{mib / t[first]:.0f} MiB/s",
                f"{t['ref'] / t[first]:.2f}x",
                "(reference)",
            )
        )
    assert efs.cat_file(f"{BUCKET}/env-put") == data
    return rows


def middle_range(server: Server, key_uri: str, mib: int) -> list[tuple[str, ...]]:
    from envstore.format import PREFIX, WIRE_CHUNK

    plain, _ = clients(server, key_uri)
    start = mib * MiB // 2 + 12_345
    limit = MiB + 2 * WIRE_CHUNK + PREFIX
    rows = []
    server.clear()
    got = plain.get_object(
        "plain", byte_range=(start, start + MiB - 1), headers={"x-oss-range-behavior": "standard"}
    ).read()
    assert len(got) == MiB
    ref = server.log()
    for how in RANGE_READS:
        _, fresh = clients(server, key_uri)
        server.clear()
        got = read_range(fresh, f"{BUCKET}/env", start, MiB, how)
        assert len(got) == MiB
        log = server.log()
        sent = sum(e[2] for e in log if e[0] == "GetObject")
        ranged = [e for e in log if e[0] == "GetObject" and e[1]]
        flagged = all(e[3] == "standard" for e in ranged)
        rows.append(
            (
                f"1 MiB range mid-object ({how})",
                f"{len(ref)} req, {ref[0][2]:,} B",
                f"{len(log)} req ({'+'.join(e[0] for e in log)}), {sent:,} B",
                f"{sent / MiB:.3f} MiB" + ("" if flagged else " (RANGE NOT STANDARD)"),
                f"<= 2 req, <= {limit:,} B",
            )
        )
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--mib", type=int, default=256)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    sys.path.insert(0, ROOT)
    import oss2

    import envstore  # noqa: F401
    from envstore.keys.local import keygen
    from envstore.stores.oss import DEFAULT_PART_SIZE

    server = start_oss()
    try:
        key_uri = "local://" + str(keygen(Path(tempfile.mkdtemp()) / "master.key"))
        print(
            f"OSS test server {server.endpoint} (own process); oss2 {oss2.__version__} with "
            f"CRC64 checks; envstore part size {DEFAULT_PART_SIZE // MiB} MiB; "
            f"cpus {os.cpu_count()}"
        )
        rows = [("measure", "plain oss2", "envstore", "ratio", "goal")]
        rows += throughput(server, key_uri, args.mib, args.repeat)
        rows += middle_range(server, key_uri, args.mib)
    finally:
        server.stop()
    print_table(rows)


if __name__ == "__main__":
    main()
