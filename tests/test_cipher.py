"""C2SP chunked encryption: interop with pyca's Cobblestone256, random access, tampering."""

from __future__ import annotations

import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from envstore.cipher import Decryptor, Encryptor, decrypt, encrypt
from envstore.errors import IntegrityError
from envstore.format import (
    CHUNK,
    PREFIX,
    WIRE_CHUNK,
    body_size,
    chunk_span,
    context_bytes,
    final_chunk,
    plain_size,
    wire_span,
)

KEY = bytes(range(32))
CTX = context_bytes({"tenant": "a"})
SIZES = [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 3 * CHUNK, 100_000]


def _cobble():
    return pytest.importorskip("cryptography.cobblestone", reason="cryptography < 50")


@pytest.mark.parametrize("n", SIZES)
def test_pyca_decrypts_envstore_bodies(n: int) -> None:
    cs = _cobble()
    pt = os.urandom(n)
    body = encrypt(KEY, CTX, pt)
    assert len(body) == body_size(n)
    dec = cs.Cobblestone256Decryptor(KEY, CTX)
    assert dec.update(body) + dec.finalize() == pt


@pytest.mark.parametrize("n", SIZES)
def test_envstore_reads_random_ranges_of_pyca_bodies(n: int) -> None:
    cs = _cobble()
    pt = os.urandom(n)
    enc = cs.Cobblestone256Encryptor(KEY, CTX)
    body = enc.update(pt) + enc.finalize()
    assert bytes(decrypt(KEY, CTX, body)) == pt
    dec = Decryptor(KEY, CTX, body[:PREFIX])
    rng = __import__("random").Random(n)
    for _ in range(20):
        s = rng.randrange(0, n + 1)
        e = rng.randrange(s, n + 1)
        if s == e:
            continue
        first, last = chunk_span(s, e, n)
        ws, we = wire_span(first, last, n)
        plain = dec.decrypt_chunks(first, body[ws:we], final_chunk(n))
        assert plain[s - first * CHUNK : e - first * CHUNK] == pt[s:e]


@pytest.mark.parametrize("native", [False, True])
def test_streaming_encryptor_any_split_and_engine(native: bool) -> None:
    if native:
        _cobble()
    pt = os.urandom(5 * CHUNK + 77)
    for step in (1, 999, CHUNK, 3 * CHUNK + 1):
        enc = Encryptor(KEY, CTX, native=native)
        out = enc.prefix + b"".join(enc.update(pt[i : i + step]) for i in range(0, len(pt), step))
        assert decrypt(KEY, CTX, out + enc.finalize()) == pt
        enc = Encryptor(KEY, CTX, native=native)
        buf = bytearray(3 * WIRE_CHUNK)
        n = enc.encrypt_full_into(memoryview(pt)[: 3 * CHUNK], memoryview(buf))
        body = enc.prefix + bytes(buf[:n]) + enc.update(pt[3 * CHUNK :]) + enc.finalize()
        assert decrypt(KEY, CTX, body) == pt


def test_streaming_encryptor_matches_one_shot_for_any_split() -> None:
    pt = os.urandom(5 * CHUNK + 77)
    salt = os.urandom(24)
    whole = Encryptor(KEY, CTX, salt=salt)
    expect = whole.prefix + whole.update(pt) + whole.finalize()
    for step in (1, 999, CHUNK - 1, CHUNK, CHUNK + 5, 3 * CHUNK):
        enc = Encryptor(KEY, CTX, salt=salt)
        out = enc.prefix + b"".join(enc.update(pt[i : i + step]) for i in range(0, len(pt), step))
        assert out + enc.finalize() == expect


@settings(max_examples=60, deadline=None)
@given(
    n=st.one_of(st.sampled_from(SIZES), st.integers(0, 4 * CHUNK + 3)),
    data=st.data(),
)
def test_any_range_equals_plaintext_slice(n: int, data: st.DataObject) -> None:
    pt = bytes(i % 251 for i in range(n))
    body = encrypt(KEY, CTX, pt)
    s = data.draw(st.integers(0, n))
    e = data.draw(st.integers(s, n))
    if s == e:
        return
    first, last = chunk_span(s, e, n)
    ws, we = wire_span(first, last, n)
    plain = Decryptor(KEY, CTX, body[:PREFIX]).decrypt_chunks(first, body[ws:we], final_chunk(n))
    assert plain[s - first * CHUNK : e - first * CHUNK] == pt[s:e]


def test_commitment_checked_before_any_chunk() -> None:
    body = bytearray(encrypt(KEY, CTX, b"x" * 100))
    body[30] ^= 1
    with pytest.raises(IntegrityError, match="commitment"):
        Decryptor(KEY, CTX, bytes(body[:PREFIX]))
    with pytest.raises(IntegrityError, match="commitment"):
        Decryptor(bytes(32), CTX, encrypt(KEY, CTX, b"")[:PREFIX])
    with pytest.raises(IntegrityError, match="commitment"):
        Decryptor(KEY, context_bytes({"tenant": "b"}), encrypt(KEY, CTX, b"")[:PREFIX])


@pytest.mark.parametrize("n", [1, CHUNK + 10, 2 * CHUNK])
def test_every_flipped_bit_is_detected(n: int) -> None:
    pt = os.urandom(n)
    body = encrypt(KEY, CTX, pt)
    positions = list(range(0, len(body), max(1, len(body) // 300))) + [len(body) - 1]
    for pos in positions:
        for bit in (0, 7):
            bad = bytearray(body)
            bad[pos] ^= 1 << bit
            with pytest.raises(IntegrityError):
                decrypt(KEY, CTX, bytes(bad))


def test_truncation_and_extension_at_chunk_boundaries() -> None:
    pt = os.urandom(3 * CHUNK + 100)
    body = encrypt(KEY, CTX, pt)
    for cut in (PREFIX, PREFIX + WIRE_CHUNK, PREFIX + 2 * WIRE_CHUNK, PREFIX + 3 * WIRE_CHUNK):
        with pytest.raises(IntegrityError):
            decrypt(KEY, CTX, body[:cut])
    with pytest.raises(IntegrityError):  # drop the final chunk: now a full chunk is last
        decrypt(KEY, CTX, body[: PREFIX + 3 * WIRE_CHUNK])
    with pytest.raises(IntegrityError):  # a full-chunk-multiple plaintext loses its empty final
        full = encrypt(KEY, CTX, pt[: 2 * CHUNK])
        decrypt(KEY, CTX, full[:-16])
    with pytest.raises(IntegrityError):  # appended junk becomes a bogus final chunk
        decrypt(KEY, CTX, body + os.urandom(40))


def test_reordered_chunks_fail() -> None:
    pt = os.urandom(3 * CHUNK + 5)
    body = encrypt(KEY, CTX, pt)
    c = [body[PREFIX + i * WIRE_CHUNK : PREFIX + (i + 1) * WIRE_CHUNK] for i in range(3)]
    swapped = body[:PREFIX] + c[1] + c[0] + c[2] + body[PREFIX + 3 * WIRE_CHUNK :]
    with pytest.raises(IntegrityError):
        decrypt(KEY, CTX, swapped)


def test_size_arithmetic_round_trips() -> None:
    for n in [*SIZES, 10**9 + 7]:
        assert plain_size(body_size(n)) == n
    for bad in (0, 55, 71, PREFIX + WIRE_CHUNK, PREFIX + WIRE_CHUNK + 15):
        with pytest.raises(IntegrityError):
            plain_size(bad)


def test_key_material_not_in_repr_or_pickle() -> None:
    import pickle

    enc = Encryptor(KEY, CTX)
    dec = Decryptor(KEY, CTX, enc.prefix)
    assert KEY.hex() not in repr(enc) + repr(dec)
    for obj in (enc, dec):
        with pytest.raises(TypeError):
            pickle.dumps(obj)
