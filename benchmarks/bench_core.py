"""Core throughput and range-read figures, as ratios against baselines measured in this run.

    python benchmarks/bench_core.py [--mib 256] [--repeat 3]

* ceiling: hazmat AES-256-GCM ``encrypt_into``/``decrypt_into`` over 16 KiB chunks with warm
  buffers (the Python ceiling for this chunk size);
* envstore: ``fs.open(..., "wb")``/``fs.open(..., "rb").read()`` on ``envstore::memory://``;
* plain ``memory://`` writes/reads reported alongside;
* a 1 MiB range read from the middle of the object: bytes requested from the inner filesystem.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import fsspec
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

import envstore  # noqa: F401  (registers the protocol)
from envstore.format import CHUNK, WIRE_CHUNK
from envstore.keys.local import keygen

MiB = 1 << 20


def best(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def ceiling(data: memoryview, repeat: int) -> tuple[float, float]:
    aead = AESGCM(os.urandom(32))
    n = len(data) // CHUNK
    block = 256  # chunks per warm buffer, like envstore's 4 MiB write block
    out = bytearray(block * WIRE_CHUNK)
    back = bytearray(block * CHUNK)
    mv, bv = memoryview(out), memoryview(back)
    nonce = (0).to_bytes(12, "big")

    def enc() -> None:
        for i in range(n):
            j = i % block
            aead.encrypt_into(
                nonce,
                data[i * CHUNK : (i + 1) * CHUNK],
                None,
                mv[j * WIRE_CHUNK : (j + 1) * WIRE_CHUNK],
            )

    sealed = bytearray(block * WIRE_CHUNK)
    sv = memoryview(sealed)
    for j in range(block):
        aead.encrypt_into(
            nonce,
            data[j * CHUNK : (j + 1) * CHUNK],
            None,
            sv[j * WIRE_CHUNK : (j + 1) * WIRE_CHUNK],
        )

    def dec() -> None:
        for i in range(n):
            j = i % block
            aead.decrypt_into(
                nonce,
                sv[j * WIRE_CHUNK : (j + 1) * WIRE_CHUNK],
                None,
                bv[j * CHUNK : (j + 1) * CHUNK],
            )

    return best(enc, repeat), best(dec, repeat)


class NullSink:
    """Accepts and drops ciphertext: measures envstore's write path without a store's copy."""

    def write(self, data) -> None:
        pass

    def commit(self) -> None:
        pass

    def discard(self) -> None:
        pass


class Counting:
    """Counts bytes the envstore layer requests from the store (the inner filesystem)."""

    def __init__(self, store) -> None:
        self.bytes = 0
        self.calls = 0
        orig = store.read

        def read(path, start, end):
            data = orig(path, start, end)
            self.bytes += len(data)
            self.calls += 1
            return data

        store.read = read


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--mib", type=int, default=256)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--block-mib", type=int, default=4, help="size of each write()/read() call")
    args = ap.parse_args()
    size = args.mib * MiB
    block = args.block_mib * MiB
    data = memoryview(os.urandom(size))
    key = keygen(Path(tempfile.mkdtemp()) / "master.key")
    fs = fsspec.filesystem(
        "envstore", target_protocol="memory", key_uri=f"local://{key}", skip_instance_cache=True
    )
    plain = fsspec.filesystem("memory")

    def writer(f_open, path):
        def run() -> None:
            with f_open(path, "wb") as f:
                for i in range(0, size, block):
                    f.write(data[i : i + block])

        return run

    def reader(f_open, path):
        def run() -> None:
            n = 0
            with f_open(path, "rb") as f:
                while chunk := f.read(block):
                    n += len(chunk)
            assert n == size

        return run

    null_fs = fsspec.filesystem(
        "envstore", target_protocol="memory", key_uri=f"local://{key}", skip_instance_cache=True
    )
    null_fs.store.open_sink = lambda path, metadata, size_hint, exclusive=False: NullSink()

    cases = {
        "null_w": writer(null_fs.open, "/bench/null"),
        "ceiling": None,
        "env_w": writer(fs.open, "/bench/obj"),
        "env_r": reader(fs.open, "/bench/obj"),
        "plain_w": writer(plain.open, "/bench/plain"),
        "plain_r": reader(plain.open, "/bench/plain"),
    }
    results: dict[str, float] = {}
    ce = cd = float("inf")
    for _ in range(args.repeat):  # interleaved, best of each: fair on a noisy machine
        e, d = ceiling(data, 1)
        ce, cd = min(ce, e), min(cd, d)
        for name, fn in cases.items():
            if fn is not None:
                results[name] = min(results.get(name, float("inf")), best(fn, 1))
    ew, er, pw, pr = (results[k] for k in ("env_w", "env_r", "plain_w", "plain_r"))

    counter = Counting(fs.store)
    mid = size // 2 + 12345
    with fs.open("/bench/obj", "rb") as f:
        f.seek(mid)
        got = f.read(MiB)
    assert got == data[mid : mid + MiB]
    range_bytes, range_calls = counter.bytes, counter.calls
    counter.bytes = counter.calls = 0
    assert fs.cat_file("/bench/obj", mid, mid + MiB) == data[mid : mid + MiB]

    def rate(t: float) -> str:
        return f"{size / t / 1e9:6.2f} GB/s"

    print(
        f"object: {args.mib} MiB on memory://, {args.block_mib} MiB per write()/read(), "
        f"best of {args.repeat} interleaved runs"
    )
    print(f"{'':34}{'write':>12}{'read':>12}")
    print(f"{'AES-GCM 16 KiB ceiling (warm)':34}{rate(ce):>12}{rate(cd):>12}")
    print(f"{'envstore::memory:// fs.open':34}{rate(ew):>12}{rate(er):>12}")
    print(f"{'plain memory:// fs.open':34}{rate(pw):>12}{rate(pr):>12}")
    print(f"{'envstore write, null sink':34}{rate(results['null_w']):>12}")
    print(f"{'envstore / ceiling':34}{ce / ew:>11.2f}x{cd / er:>11.2f}x   (goal >= 0.70x)")
    print(f"{'envstore null sink / ceiling':34}{ce / results['null_w']:>11.2f}x")
    print(f"{'plain memory:// / ceiling':34}{ce / pw:>11.2f}x{cd / pr:>11.2f}x")
    print(f"{'envstore / plain memory://':34}{pw / ew:>11.2f}x{pr / er:>11.2f}x")
    limit = MiB + 2 * WIRE_CHUNK
    print(
        f"1 MiB range from the middle (open+seek+read): {range_bytes} bytes in {range_calls} "
        f"inner read(s); limit 1 MiB + 2 chunks = {limit}"
    )
    print(f"1 MiB range via cat_file: {counter.bytes} bytes in {counter.calls} inner read(s)")


if __name__ == "__main__":
    main()
