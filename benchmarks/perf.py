"""Every row of issue 12's performance table, each a ratio measured in this run.

    python benchmarks/perf.py [--repeat N] [--quick] [--only ROWS]

Variants of a row run interleaved, ``--repeat`` rounds (default 5); a ratio is best-of-N over
best-of-N and the spread is the range of the per-round ratios.  Each comparator is the physical
limit of the same job (the AES-GCM calls envstore must make, a plain write or read, the plain
client).  moto and the project's OSS server (tests/servers/oss_compat.py) run in their own
processes and count requests and body bytes themselves; the RSS rows stream the object back in
a child process.  ``--only`` takes a comma list of groups (mem, local, s3, oss) or rows
(mem.write, mem.read, mem.cat, local.pipe, local.cat, s3.read, s3.upload, s3.rss, s3.range,
s3.parquet, oss.read, oss.upload, oss.rss, oss.range).  ``--quick``: small sizes, 1 round (a
smoke run, not a measurement).  Exit status 0 whatever the verdicts.
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from _harness import (
    MiB,
    Row,
    interleave,
    new_key_uri,
    print_rows,
    setup_env,
    slowdown_row,
    speed_row,
    start_moto,
    start_oss,
)

CHUNK, TAG, PREFIX = 16384, 16, 56  # FORMAT.md: plaintext per chunk, GCM tag, salt+commitment
WIRE = CHUNK + TAG
STEP = 4 * MiB  # bytes per write()/read() call of the streaming rows
ROWS = (
    "mem.write mem.read mem.cat local.pipe local.cat s3.read s3.upload s3.rss s3.range "
    "s3.parquet oss.read oss.upload oss.rss oss.range"
).split()


@dataclass(frozen=True)
class Sizes:
    mem_mib: int = 256  # object through envstore::memory://
    local_inner: int = 20  # 1 MiB local operations per timed sample
    stream_mib: int = 256  # S3/OSS streaming read
    files: int = 60  # upload: files of file_kib
    file_kib: int = 1024
    rss_mib: int = 2048
    parquet_rows: int = 2_000_000
    range_mib: int = 64


QUICK = Sizes(16, 3, 16, 8, 256, 64, 50_000, 4)


def aes_limits(data: memoryview) -> dict[str, Callable[[], None]]:
    """The 16 KiB AES-GCM calls a job over ``data`` needs, as the limit of that job: encrypt
    into a fresh output, decrypt into a reused 4 MiB buffer, decrypt into a fresh output."""
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    size = len(data)
    n = size // CHUNK
    aead, nonce = AESGCM(os.urandom(32)), bytes(12)
    sealed = memoryview(bytearray(n * WIRE))
    for i in range(n):
        aead.encrypt_into(
            nonce, data[i * CHUNK : (i + 1) * CHUNK], None, sealed[i * WIRE : (i + 1) * WIRE]
        )
    reused = memoryview(bytearray(STEP))

    def enc_fresh() -> None:
        out = memoryview(bytearray(n * WIRE))  # fresh: its pages fault in as it fills
        for i in range(n):
            aead.encrypt_into(
                nonce, data[i * CHUNK : (i + 1) * CHUNK], None, out[i * WIRE : (i + 1) * WIRE]
            )

    def dec_reused() -> None:
        per = STEP // CHUNK
        for i in range(n):
            j = i % per
            aead.decrypt_into(
                nonce, sealed[i * WIRE : (i + 1) * WIRE], None, reused[j * CHUNK : (j + 1) * CHUNK]
            )

    def dec_fresh() -> None:
        out = memoryview(bytearray(size))
        for i in range(n):
            aead.decrypt_into(
                nonce, sealed[i * WIRE : (i + 1) * WIRE], None, out[i * CHUNK : (i + 1) * CHUNK]
            )

    return {"enc_fresh": enc_fresh, "dec_reused": dec_reused, "dec_fresh": dec_fresh}


def memory_rows(sz: Sizes, key_uri: str, repeat: int, want: set[str]) -> list[Row]:
    """envstore::memory:// against the AES-GCM 16 KiB calls the same job needs."""
    import fsspec

    size = sz.mem_mib * MiB
    data = memoryview(os.urandom(size))
    fs = fsspec.filesystem(
        "envstore", target_protocol="memory", key_uri=key_uri, skip_instance_cache=True
    )
    base = f"/perf-{os.getpid()}"
    fs.pipe_file(f"{base}/obj", bytes(data))
    limit = aes_limits(data)

    def env_write() -> None:
        with fs.open(f"{base}/w", "wb") as f:
            for i in range(0, size, STEP):
                f.write(data[i : i + STEP])

    def env_read() -> None:
        with fs.open(f"{base}/obj", "rb") as f:
            while f.read(STEP):
                pass

    pairs = {
        "mem.write": ("env_write", env_write, "enc_fresh", limit["enc_fresh"]),
        "mem.read": ("env_read", env_read, "dec_reused", limit["dec_reused"]),
        "mem.cat": ("env_cat", lambda: fs.cat_file(f"{base}/obj"), "dec_fresh", limit["dec_fresh"]),
    }
    fns = {}
    for row, (en, ef, bn, bf) in pairs.items():
        if row in want:
            fns.update({en: ef, bn: bf})
    times = interleave(fns, repeat)
    if "mem.write" in want:
        assert fs.cat_file(f"{base}/w") == data
    names = {
        "mem.write": "memory: open(wb) 4 MiB writes vs 16 KiB encrypt_into, fresh output",
        "mem.read": "memory: open(rb).read(4 MiB) vs 16 KiB decrypt_into, reused buffer",
        "mem.cat": "memory: cat_file vs 16 KiB decrypt_into, fresh output",
    }
    return [
        speed_row(f"{names[r]} ({sz.mem_mib} MiB)", times, p[0], p[2], 0.85, size)
        for r, p in pairs.items()
        if r in want
    ]


def local_rows(sz: Sizes, key_uri: str, repeat: int, want: set[str]) -> list[Row]:
    """1 MiB objects on local disk against a plain atomic write / a plain read."""
    import fsspec

    d = Path(tempfile.mkdtemp(prefix="perf-local-"))
    data = os.urandom(MiB)
    fs = fsspec.filesystem(
        "envstore", target_protocol="file", key_uri=key_uri, skip_instance_cache=True
    )
    env_path, plain_path = str(d / "env.bin"), str(d / "plain.bin")

    def atomic_write() -> None:
        tmp = plain_path + ".tmp"
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, plain_path)

    def plain_read() -> None:
        with open(plain_path, "rb") as f:
            assert len(f.read()) == MiB

    fs.pipe_file(env_path, data)
    atomic_write()
    rows = []
    if "local.pipe" in want:
        fns = {"env": lambda: fs.pipe_file(env_path, data), "plain": atomic_write}
        times = interleave(fns, repeat, sz.local_inner)
        rows.append(
            slowdown_row("local: 1 MiB pipe_file vs write+fsync+rename", times, "env", "plain", 2)
        )
    if "local.cat" in want:
        fns = {"env": lambda: fs.cat_file(env_path), "plain": plain_read}
        floor = decrypt_floor(d, data)
        if floor is not None:  # the same run, interleaved
            fns["floor"] = floor
        times = interleave(fns, repeat, sz.local_inner)
        rows.append(slowdown_row("local: 1 MiB cat_file vs plain read", times, "env", "plain", 4))
        if floor is not None:
            info = slowdown_row(
                "  cat_file's floor here: pread + native decryption alone, no key work",
                times, "floor", "plain", 4,
            )  # fmt: skip
            rows.append(Row(info.name, info.envstore, info.baseline, info.value, "-", None))
    assert fs.cat_file(env_path) == data
    return rows


def decrypt_floor(d: Path, data: bytes) -> Callable[[], None] | None:
    """The least a 1 MiB ``cat_file`` must do: read the stored body (one ``pread`` into a
    reused buffer) and decrypt it with pyca's native decryptor into a fresh bytes object, with
    no key unwrapping, no envelope and no filesystem layer. None before cryptography 50."""
    try:
        from cryptography.cobblestone import Cobblestone256Decryptor, Cobblestone256Encryptor
    except ImportError:
        return None
    import io

    key, ctx = os.urandom(32), b"floor"
    enc = Cobblestone256Encryptor(key, ctx)
    body = enc.update(data) + enc.finalize()
    path = d / "floor.bin"
    path.write_bytes(body)
    buf = memoryview(bytearray(len(body)))

    def floor() -> None:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.preadv(fd, [buf], 0)
        finally:
            os.close(fd)
        dec = Cobblestone256Decryptor(key, ctx)
        dec.update(buf[:PREFIX])
        out = io.BytesIO(bytes(len(data)))
        view = out.getbuffer()
        n = dec.update_into(buf[PREFIX:], view)
        tail = dec.finalize()
        view[n : n + len(tail)] = tail
        view.release()
        assert len(out.getvalue()) == len(data)

    return floor


def remote_rows(backend: str, sz: Sizes, key_uri: str, repeat: int, want: set[str]) -> list[Row]:
    import _remote

    server = start_moto() if backend == "s3" else start_oss()
    rows = []
    with server:
        if f"{backend}.read" in want:
            rows.append(_remote.stream_read(backend, server, key_uri, sz.stream_mib, repeat))
        if f"{backend}.upload" in want:
            rows.append(_remote.upload(backend, server, key_uri, sz.files, sz.file_kib, repeat))
        if f"{backend}.range" in want:
            rows += _remote.middle_range(backend, server, key_uri, sz.range_mib)
        if f"{backend}.parquet" in want:
            rows.append(_remote.parquet_projection(server, key_uri, sz.parquet_rows))
        if f"{backend}.rss" in want:
            rows.append(_remote.rss(backend, server, key_uri, sz.rss_mib))
    return rows


def machine() -> str:
    model = "?"
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
        model = next(
            line.split(":", 1)[1].strip()
            for line in out.splitlines()
            if line.startswith("Model name")
        )
    except (OSError, StopIteration):
        pass
    import cryptography

    return (
        f"{model}, {os.cpu_count()} cpus, Python {platform.python_version()}, "
        f"cryptography {cryptography.__version__}"
    )


def load() -> str:
    return "load average " + " ".join(f"{x:.2f}" for x in os.getloadavg())


def selected(only: str | None) -> set[str]:
    if not only:
        return set(ROWS)
    tokens = {t.strip() for t in only.split(",") if t.strip()}
    unknown = {t for t in tokens if t not in ROWS and not any(r.startswith(t + ".") for r in ROWS)}
    if unknown:
        raise SystemExit(f"--only: unknown rows {sorted(unknown)}; rows: {' '.join(ROWS)}")
    return {r for r in ROWS if r in tokens or r.split(".")[0] in tokens}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeat", type=int, default=None, help="rounds (default 5; 1 with --quick)")
    ap.add_argument("--quick", action="store_true", help="small sizes, 1 round: a smoke run")
    ap.add_argument("--only", help="comma list of groups or rows (see the module docstring)")
    args = ap.parse_args(argv)
    setup_env()
    want = selected(args.only)
    sz = QUICK if args.quick else Sizes()
    repeat = args.repeat or (1 if args.quick else 5)
    key_uri = new_key_uri()
    print(f"machine: {machine()}")
    print(f"start: {time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime())}, {load()}")
    print(
        f"mode: {'quick' if args.quick else 'full'}, best of {repeat} interleaved rounds",
        flush=True,
    )
    t0 = time.perf_counter()
    rows: list[Row] = []
    if want & {"mem.write", "mem.read", "mem.cat"}:
        rows += memory_rows(sz, key_uri, repeat, want)
    if want & {"local.pipe", "local.cat"}:
        rows += local_rows(sz, key_uri, repeat, want)
    for backend in ("s3", "oss"):
        if any(r.startswith(backend + ".") for r in want):
            rows += remote_rows(backend, sz, key_uri, repeat, want)
    print_rows(rows)
    print(f"end: {load()}, {time.perf_counter() - t0:.0f} s")
    targeted = [r for r in rows if r.ok is not None]  # the others are informational
    met = sum(bool(r.ok) for r in targeted)
    print(f"{met} of {len(targeted)} rows meet their target")


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    main()
