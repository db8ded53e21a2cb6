"""Peak memory and throughput of ``envstore.migrate`` on one large legacy object.

    python benchmarks/bench_migrate.py [--mib 512] [--kind oss2|s3ec|both]

* ``oss2``: an oss2 ``CryptoBucket`` (RSA) multipart object on the OSS-compatible test server
  (``tests/servers/oss_compat.py``, in its own process), migrated to another prefix;
* ``s3ec``: an S3EC V2 AES-GCM object (built from the specification, ``AES/GCM`` wrap) on a
  ``moto_server`` process, migrated to another prefix (GCM: staged in a temporary file).

The legacy object is written by one child process and migrated by another, so the migrating
process's peak RSS (``ru_maxrss``) shows what migration itself holds; the new object is read
back and its SHA-256 compared.  Throughput = plaintext bytes / wall time of ``migrate``
(which includes the read-back verification).
"""

from __future__ import annotations

import argparse
import hashlib
import multiprocessing
import os
import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

MiB = 1 << 20
ROOT = str(Path(__file__).resolve().parents[1])
PART = 64 * MiB


def _blocks(total: int):
    """Deterministic pseudo-random plaintext in PART-sized blocks, and its SHA-256 at the end."""
    digest = hashlib.sha256()
    seed = hashlib.sha256(b"bench").digest()
    for start in range(0, total, PART):
        n = min(PART, total - start)
        head = hashlib.sha256(seed + start.to_bytes(8, "big")).digest()
        block = (head * (n // 32 + 1))[:n]
        digest.update(block)
        yield block
    yield digest.hexdigest()


# -- oss2 CryptoBucket on the OSS test server ------------------------------------------------
def oss_server(conn: Any) -> None:
    sys.path.insert(0, ROOT)
    from tests.servers.oss_compat import OssServer

    server = OssServer().start()
    server.create_bucket("bench")
    conn.send((server.endpoint, server.access_key_id, server.access_key_secret))
    conn.recv()
    server.stop()


def oss_write(conn: Any, endpoint: str, ak: str, sk: str, pem: Path, total: int) -> None:
    import oss2

    pub = pem.with_suffix(".pub").read_bytes()
    provider = oss2.RsaProvider(key_pair={"private_key": pem.read_bytes(), "public_key": pub})
    cb = oss2.CryptoBucket(oss2.Auth(ak, sk), endpoint, "bench", crypto_provider=provider)
    context = oss2.models.MultipartUploadCryptoContext(total, PART)
    up = cb.init_multipart_upload("legacy/big", upload_context=context)
    parts, digest = [], None
    for number, block in enumerate(_blocks(total), 1):
        if isinstance(block, str):
            digest = block
            break
        res = cb.upload_part("legacy/big", up.upload_id, number, block, upload_context=context)
        parts.append(oss2.models.PartInfo(number, res.etag))
    cb.complete_multipart_upload("legacy/big", up.upload_id, parts)
    conn.send(digest)


def migrate_child(conn: Any, src: str, dst: str, legacy: str, options: dict[str, Any]) -> None:
    sys.path.insert(0, ROOT)
    import fsspec

    import envstore

    start = time.perf_counter()
    records = envstore.migrate(src, dst, legacy_key_uris=[legacy], **options)
    took = time.perf_counter() - start
    fs, path = fsspec.core.url_to_fs(dst, **{k: v for k, v in options.items()})
    digest = hashlib.sha256()
    with fs.open(path, "rb") as f:
        while data := f.read(16 * MiB):
            digest.update(data)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    conn.send((records[0]["result"], took, peak, digest.hexdigest()))


def run_child(target: Any, *args: Any) -> Any:
    parent, child = multiprocessing.Pipe()
    proc = multiprocessing.get_context("spawn").Process(target=target, args=(child, *args))
    proc.start()
    out = parent.recv()
    proc.join()
    return out


def bench_oss2(total: int, work: Path, key_uri: str) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = work / "legacy.pem"
    pem.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
    )
    pem.chmod(0o600)
    pem.with_suffix(".pub").write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    ctx = multiprocessing.get_context("spawn")
    parent, child = ctx.Pipe()
    server = ctx.Process(target=oss_server, args=(child,))
    server.start()
    endpoint, ak, sk = parent.recv()
    try:
        want = run_child(oss_write, endpoint, ak, sk, pem, total)
        options = {"key_uri": key_uri, "oss": {"endpoint": endpoint, "key": ak, "secret": sk}}
        result = run_child(
            migrate_child,
            "oss://bench/legacy/big",
            "envstore::oss://bench/new/big",
            f"rsa://{pem}",
            options,
        )
        report("oss2-ctr (multipart)", total, want, result)
    finally:
        parent.send("stop")
        server.join()


# -- S3EC V2 GCM on moto_server ----------------------------------------------------------------
def s3ec_write(conn: Any, endpoint: str, raw_key: bytes, total: int) -> None:
    import base64

    import boto3
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    data_key, iv, nonce = os.urandom(32), os.urandom(12), os.urandom(12)
    wrapped = nonce + AESGCM(raw_key).encrypt(nonce, data_key, b"AES/GCM/NoPadding")
    enc = Cipher(algorithms.AES(data_key), modes.GCM(iv)).encryptor()
    s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
    s3.create_bucket(Bucket="bench")
    meta = {
        "x-amz-key-v2": base64.b64encode(wrapped).decode(),
        "x-amz-iv": base64.b64encode(iv).decode(),
        "x-amz-cek-alg": "AES/GCM/NoPadding",
        "x-amz-wrap-alg": "AES/GCM",
        "x-amz-matdesc": "{}",
        "x-amz-tag-len": "128",
        "x-amz-unencrypted-content-length": str(total),
    }
    up = s3.create_multipart_upload(Bucket="bench", Key="legacy/big", Metadata=meta)
    parts, digest, pending = [], None, b""
    for block in _blocks(total):
        if isinstance(block, str):
            digest = block
            break
        pending = enc.update(block)
        n = len(parts) + 1
        if len(parts) * PART + len(pending) >= total:  # the last part carries the tag
            enc.finalize()
            pending += enc.tag
        res = s3.upload_part(
            Bucket="bench", Key="legacy/big", UploadId=up["UploadId"], PartNumber=n, Body=pending
        )
        parts.append({"PartNumber": n, "ETag": res["ETag"]})
    s3.complete_multipart_upload(
        Bucket="bench",
        Key="legacy/big",
        UploadId=up["UploadId"],
        MultipartUpload={"Parts": parts},
    )
    conn.send(digest)


def bench_s3ec(total: int, work: Path, key_uri: str) -> None:
    import base64

    from envstore.keys.local import keygen

    raw_path = keygen(work / "aes.key")
    raw = base64.b64decode(raw_path.read_bytes())
    sys.path.insert(0, ROOT)
    from tests.servers import moto  # the one moto helper of tests and benchmarks

    env = dict(os.environ, AWS_ACCESS_KEY_ID="x", AWS_SECRET_ACCESS_KEY="x")
    os.environ.update(AWS_ACCESS_KEY_ID="x", AWS_SECRET_ACCESS_KEY="x")
    with moto.process(env) as endpoint:
        want = run_child(s3ec_write, endpoint, raw, total)
        options = {"key_uri": key_uri, "s3": {"endpoint_url": endpoint, "key": "x", "secret": "x"}}
        result = run_child(
            migrate_child,
            "s3://bench/legacy/big",
            "envstore::s3://bench/new/big",
            f"local://{raw_path}",
            options,
        )
        report("s3ec-v2-gcm (staged)", total, want, result)


def report(name: str, total: int, want: str, result: tuple[str, float, int, str]) -> None:
    outcome, took, peak, got = result
    print(
        f"{name:22} {total // MiB:6} MiB  {outcome:34} {total / took / MiB:7.1f} MiB/s  "
        f"peak RSS {peak / MiB:7.1f} MiB  read back {'ok' if got == want else 'MISMATCH'}"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mib", type=int, default=512)
    ap.add_argument("--kind", choices=("oss2", "s3ec", "both"), default="both")
    args = ap.parse_args()
    sys.path.insert(0, ROOT)
    from envstore.keys.local import keygen

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        key_uri = f"local://{keygen(work / 'master.key')}"
        if args.kind in ("oss2", "both"):
            bench_oss2(args.mib * MiB, work, key_uri)
        if args.kind in ("s3ec", "both"):
            bench_s3ec(args.mib * MiB, work, key_uri)


if __name__ == "__main__":
    main()
