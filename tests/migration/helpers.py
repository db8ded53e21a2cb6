"""Shared helpers of the migration tests: RSA key files and payloads."""

from __future__ import annotations

import os
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa


def rsa_key(directory: Path, name: str = "legacy") -> tuple[str, bytes, bytes]:
    """A fresh 2048-bit RSA key: (rsa:// URI of the 0600 private PEM, private PEM, public PEM)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )
    public = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{name}.pem"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(private)
    return f"rsa://{path}", private, public


def payload(n: int, seed: int = 1) -> bytes:
    """``n`` deterministic, incompressible-looking bytes."""
    import random

    return random.Random(seed).randbytes(n)
