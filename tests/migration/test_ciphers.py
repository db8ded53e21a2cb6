"""The streaming legacy decoders on arbitrary chunk boundaries."""

from __future__ import annotations

import random

import pytest
from cryptography.hazmat.primitives import padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from envstore.errors import IntegrityError
from envstore.migration.ciphers import CbcDecoder, CtrDecoder, GcmDecoder, checks


def _split(data: bytes, rng: random.Random) -> list[bytes]:
    out, pos = [], 0
    while pos < len(data):
        n = rng.choice([1, 3, 15, 16, 17, 100, 4096])
        out.append(data[pos : pos + n])
        pos += n
    return out


def _run(decoder, pieces: list[bytes]) -> bytes:
    return b"".join(bytes(decoder.update(p)) for p in pieces) + bytes(decoder.finalize())


@pytest.mark.parametrize("n", [0, 1, 15, 16, 17, 5000])
def test_gcm_any_chunking(n: int) -> None:
    rng = random.Random(n)
    key, iv, data = rng.randbytes(32), rng.randbytes(12), rng.randbytes(n)
    body = AESGCM(key).encrypt(iv, data, b"aad")
    for _ in range(5):
        assert _run(GcmDecoder(key, iv, b"aad", n), _split(body, rng)) == data
    bad = body[:-1] + bytes([body[-1] ^ 1])
    with pytest.raises(IntegrityError):
        _run(GcmDecoder(key, iv, b"aad", n), _split(bad, rng))
    with pytest.raises(IntegrityError):
        _run(GcmDecoder(key, iv, b"aad", None), _split(body[: len(body) - 1], rng))


@pytest.mark.parametrize("n", [0, 1, 16, 5000])
def test_ctr_and_cbc_any_chunking(n: int) -> None:
    rng = random.Random(n)
    key, data = rng.randbytes(32), rng.randbytes(n)
    iv = (2**128 - 2).to_bytes(16, "big")  # the 128-bit counter wraps around, as in oss2
    enc = Cipher(algorithms.AES(key), modes.CTR(iv)).encryptor()
    body = enc.update(data) + enc.finalize()
    assert _run(CtrDecoder(key, iv, checks(n)), _split(body, rng)) == data
    with pytest.raises(IntegrityError):
        _run(CtrDecoder(key, iv, checks(n + 1)), _split(body, rng))
    cbc_iv = rng.randbytes(16)
    pad = padding.PKCS7(128).padder()
    enc = Cipher(algorithms.AES(key), modes.CBC(cbc_iv)).encryptor()
    body = enc.update(pad.update(data) + pad.finalize()) + enc.finalize()
    assert _run(CbcDecoder(key, cbc_iv, checks(n)), _split(body, rng)) == data
    with pytest.raises(IntegrityError):
        _run(CbcDecoder(key, cbc_iv, checks(None)), _split(body[:-16], rng))
