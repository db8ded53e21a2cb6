#!/usr/bin/env python3
"""Generate the envstore format v1 test vectors (see FORMAT.md, "Test vectors").

    python tests/vectors/generate.py           # (re)write valid.json and invalid.json
    python tests/vectors/generate.py --check   # exit status 1 if they differ from a fresh run

Every key, salt and nonce is derived from a fixed label (``det``), so the output is stable
byte for byte: ``tests/test_vectors.py`` regenerates the files and compares them, so the
format cannot drift silently.  Bodies come from ``envstore.cipher.Encryptor`` with a fixed salt
and envelopes from ``envstore.format``; the parts FORMAT.md defines on top of them (canonical
context, C2SP context string, local key id and key wrapping) are written out here from the
spec and checked against the library.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import struct
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from envstore.cipher import Encryptor
from envstore.format import (
    CHUNK,
    F_COMMITMENT,
    F_CONTEXT,
    F_SALT,
    MAGIC,
    PREFIX,
    WIRE_CHUNK,
    Envelope,
    context_bytes,
    encode_header,
)
from envstore.keys.base import WrappedKey, canonical_context
from envstore.keys.local import fingerprint

HERE = Path(__file__).resolve().parent
FILES = ("valid.json", "invalid.json")
KEY_VAR = "ENVSTORE_VECTOR_KEY"
SIZES = (0, 1, 16383, 16384, 16385, 40000)
CONTEXT = {"tenant": "acme", "dataset": "vectors"}
PLAINTEXT_RULE = "byte i of the plaintext is i mod 256 (bytes(range(256)) repeated, truncated)"


def det(label: str, n: int) -> bytes:
    """Fixed pseudo-random bytes for ``label`` (at most 32)."""
    return hashlib.sha256(b"envstore format v1 test vectors/" + label.encode()).digest()[:n]


MASTER = det("master key", 32)
OTHER_MASTER = det("other master key", 32)


def plaintext(n: int) -> bytes:
    return (bytes(range(256)) * (n // 256 + 1))[:n]


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _flip(pos: int) -> Callable[[bytes], bytes]:
    def flip(body: bytes) -> bytes:
        b = bytearray(body)
        b[pos] ^= 0x01
        return bytes(b)

    return flip


def _ctx_field(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode("ascii")


# -- FORMAT.md, written out independently and checked against the library -----------------


def canonical(context: Mapping[str, str]) -> bytes:
    """FORMAT.md "Canonical context"."""
    doc = json.dumps(dict(context), sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return doc.encode("utf-8")


def c2sp_context(context: Mapping[str, str]) -> bytes:
    """FORMAT.md "Body": the C2SP context input."""
    return b"envstore/v1\x00" + canonical(context)


def local_key_id(master: bytes) -> str:
    """FORMAT.md "Local keys": the key id is a fingerprint of the master key."""
    return "fp:" + hmac.new(master, b"envstore key fingerprint v1", hashlib.sha256).hexdigest()[:24]


def wrap_local(master: bytes, data_key: bytes, context: Mapping[str, str], nonce: bytes):
    """FORMAT.md "Local keys": blob = nonce(12) || AES-256-GCM(master, nonce, data key, aad)."""
    kid = local_key_id(master)
    aad = b"envstore-local-wrap/v1\x00" + kid.encode("ascii") + b"\x00" + canonical(context)
    return WrappedKey("local", kid, nonce + AESGCM(master).encrypt(nonce, data_key, aad))


HEADER_MAGIC = b"\x89envstore"  # FORMAT.md "Header placement": 89 65 6e 76 73 74 6f 72 65


def header(doc: bytes, version: int = 1, length: int | None = None) -> bytes:
    """FORMAT.md "Header placement": magic || version || u32 length || JSON."""
    size = len(doc) if length is None else length
    return HEADER_MAGIC + struct.pack(">BI", version, size) + doc


def header_json(fields: Mapping[str, str]) -> bytes:
    return json.dumps(dict(fields), sort_keys=True, separators=(",", ":")).encode("ascii")


def _self_check() -> None:
    for ctx in ({}, CONTEXT, {"b": "é", "a": '✓ "q"'}):
        assert canonical(ctx) == canonical_context(ctx), ctx
        assert c2sp_context(ctx) == context_bytes(ctx), ctx
    for master in (MASTER, OTHER_MASTER):
        assert local_key_id(master) == fingerprint(master)
    assert HEADER_MAGIC == MAGIC


# -- sealed objects ------------------------------------------------------------------------


@dataclass(frozen=True)
class Sealed:
    """One encrypted object: its data key, body and envelope."""

    name: str
    size: int
    context: dict[str, str]
    data_key: bytes
    body: bytes
    envelope: Envelope

    @property
    def fields(self) -> dict[str, str]:
        return self.envelope.to_fields()

    @property
    def header(self) -> bytes:
        hdr = encode_header(self.envelope)
        assert hdr == header(header_json(self.fields))
        return hdr


def my_recipient(name: str, context: Mapping[str, str] = CONTEXT) -> WrappedKey:
    """The recipient ``seal(name, ..., context)`` wraps for MASTER."""
    data_key = det(f"{name}/data key", 32)
    return wrap_local(MASTER, data_key, context, det(f"{name}/wrap nonce", 12))


def seal(
    name: str,
    size: int,
    context: Mapping[str, str] = CONTEXT,
    with_size: bool = True,
    others: tuple[WrappedKey, ...] = (),
) -> Sealed:
    """Encrypt ``plaintext(size)`` under a fixed data key and salt, wrapped for MASTER
    (after the recipients ``others``)."""
    context = dict(context)
    data_key = det(f"{name}/data key", 32)
    salt = det(f"{name}/salt", 24)
    enc = Encryptor(data_key, c2sp_context(context), salt=salt)
    body = enc.prefix + enc.update(plaintext(size)) + enc.finalize()
    mine = my_recipient(name, context)
    envelope = Envelope(
        (*others, mine), salt, body[24:PREFIX], context, size if with_size else None
    )
    return Sealed(name, size, context, data_key, body, envelope)


# -- valid vectors -------------------------------------------------------------------------


def _plaintext_doc(n: int) -> dict[str, object]:
    doc: dict[str, object] = {
        "size": n,
        "rule": PLAINTEXT_RULE,
        "sha256": hashlib.sha256(plaintext(n)).hexdigest(),
    }
    if n <= 64:
        doc["hex"] = plaintext(n).hex()
    return doc


def _recipient_doc(r: WrappedKey) -> dict[str, object]:
    return {
        "provider": r.provider,
        "key_id": r.key_id,
        "blob_hex": r.blob.hex(),
        "params": dict(r.params),
        "encoded": r.encode(),
    }


def valid_vectors() -> list[dict[str, object]]:
    cases: list[tuple[Sealed, str]] = [
        (seal(f"valid/size-{n}", n), f"{n}-byte plaintext") for n in SIZES
    ]
    kms = WrappedKey(
        "alikms-instance",
        "key-vector/1 ü",
        det("valid/kms blob", 32),
        {"Iv": b64(det("valid/kms iv", 12)), "Algorithm": "AES_GCM", "note": "a b&c=d"},
    )
    cases.append(
        (
            seal("valid/two-recipients", 100, context={}, with_size=False, others=(kms,)),
            "empty context (no envstore-context field), no envstore-size field, two "
            "recipients: an opaque KMS recipient with parameters (no reader here can open it; "
            "readers skip it) and the local key",
        )
    )
    cases.append(
        (
            seal("valid/unicode-context", 20, context={"owner": "Zoë", "path": "a/€/✓.bin"}),
            "non-ASCII encryption context: UTF-8 in the canonical context, not \\u escapes",
        )
    )
    # the upper bounds: 6 + 16 = 22 envelope fields, a 3072-byte canonical context whose
    # envstore-context field has exactly 4096 characters
    pad = 3072 - len(canonical({**CONTEXT, "pad": ""}))
    big_context = {**CONTEXT, "pad": "p" * pad}
    assert len(canonical(big_context)) == 3072 and len(_ctx_field(canonical(big_context))) == 4096
    foreign = tuple(
        WrappedKey(
            "awskms",
            f"arn:aws:kms:eu-central-1:111122223333:key/vector-{i:02d}",
            det(f"valid/maximal kms blob {i}", 32),
        )
        if i % 2
        else wrap_local(
            OTHER_MASTER,
            det("valid/maximal-envelope/data key", 32),
            big_context,
            det(f"valid/maximal other nonce {i}", 12),
        )
        for i in range(1, 16)
    )
    cases.append(
        (
            seal("valid/maximal-envelope", 300, context=big_context, others=foreign),
            "the largest envelope readers accept: all six fields and 16 recipients (22 fields), "
            "a canonical context of 3072 bytes (an envstore-context field of 4096 characters); "
            "the reader's key is the last recipient, after 15 it skips (KMS keys it is not "
            "configured with, another local key)",
        )
    )
    mine = my_recipient("valid/altered-recipients-skipped")
    altered = (replace(mine, blob=mine.blob[:59]), replace(mine, blob=_flip(-1)(mine.blob)))
    cases.append(
        (
            seal("valid/altered-recipients-skipped", 50, others=altered),
            "three recipients for the reader's key: the first two were altered (a 59-byte blob; "
            "a blob that fails AES-GCM), the third is intact. Readers go on past altered "
            "recipients and open the object with the third",
        )
    )
    planted = wrap_local(
        MASTER,
        det("valid/planted/other data key", 32),
        CONTEXT,
        det("valid/planted/wrap nonce", 12),
    )
    cases.append(
        (
            seal("valid/planted-recipient-skipped", 70, others=(planted,)),
            "two recipients for the reader's key: the first was copied from another object "
            "under the same key and context, so it unwraps without error, but to a data key "
            "that does not match the commitment; readers check every candidate against the "
            "commitment, skip it and open the object with the second",
        )
    )
    out = []
    for s, what in cases:
        env = s.envelope
        out.append(
            {
                "name": s.name.split("/", 1)[1],
                "description": what,
                "plaintext": _plaintext_doc(s.size),
                "context": s.context,
                "c2sp_context_hex": c2sp_context(s.context).hex(),
                "data_key_hex": s.data_key.hex(),
                "salt_hex": env.salt.hex(),
                "commitment_hex": env.commitment.hex(),
                "recipients": [_recipient_doc(r) for r in env.recipients],
                "metadata": {"fields": s.fields, "body_b64": b64(s.body)},
                "header": {
                    "header_length": len(s.header),
                    "object_b64": b64(s.header + s.body),
                },
            }
        )
    return out


# -- invalid vectors -----------------------------------------------------------------------

Mutation = Callable[[dict[str, str], bytes], tuple[dict[str, str], bytes]]


def _fields(**changes: str | None) -> Mutation:
    """Set (or, with None, delete) envelope fields; ``key_N`` names envstore-key-N."""

    def mutate(fields: dict[str, str], body: bytes) -> tuple[dict[str, str], bytes]:
        fields = dict(fields)
        for name, value in changes.items():
            name = "envstore-" + name.replace("_", "-")
            if value is None:
                fields.pop(name, None)
            else:
                fields[name] = value
        return fields, body

    return mutate


def _body(fn: Callable[[bytes], bytes]) -> Mutation:
    return lambda fields, body: (fields, fn(body))


def _recipients(*rs: WrappedKey, start: int = 1, skip: int | None = None) -> Mutation:
    """Replace the recipients by ``rs`` numbered from ``start`` (leaving out number ``skip``)."""

    def mutate(fields: dict[str, str], body: bytes) -> tuple[dict[str, str], bytes]:
        fields = {k: v for k, v in fields.items() if not k.startswith("envstore-key-")}
        n = start
        for r in rs:
            if n == skip:
                n += 1
            fields[f"envstore-key-{n}"] = r.encode()
            n += 1
        return fields, body

    return mutate


def invalid_vectors() -> list[dict[str, object]]:
    small = seal("invalid/small", 100, with_size=False)
    empty = seal("invalid/empty", 0, with_size=False)
    one = seal("invalid/one-full-chunk", CHUNK, with_size=False)
    onep = seal("invalid/one-chunk-and-100", CHUNK + 100, with_size=False)
    two = seal("invalid/two-chunks-and-100", 2 * CHUNK + 100, with_size=False)
    sized = seal("invalid/sized", 100)
    mine = small.envelope.recipients[0]

    other_key = wrap_local(OTHER_MASTER, small.data_key, CONTEXT, det("invalid/other nonce", 12))
    evil = {**CONTEXT, "tenant": "evil"}
    rewrapped = wrap_local(MASTER, small.data_key, evil, det("invalid/rewrap nonce", 12))
    commitment = small.fields[F_COMMITMENT]
    noncanon = commitment[:-2] + chr(ord(commitment[-2]) + 1) + "="  # non-zero padding bits
    assert base64.b64decode(noncanon) == base64.b64decode(commitment)
    new_commitment = det("invalid/other commitment", 32)
    chunks = [two.body[PREFIX + i * WIRE_CHUNK : PREFIX + (i + 1) * WIRE_CHUNK] for i in (0, 1)]
    many = [
        wrap_local(MASTER, small.data_key, CONTEXT, det(f"invalid/many {i}", 12)) for i in range(17)
    ]
    long_blob = replace(mine, blob=det("invalid/long", 32) * 97)
    kms_only = WrappedKey("awskms", "alias/vectors", det("invalid/kms blob", 32))
    too_long = canonical({**CONTEXT, "pad": "p" * (3073 - len(canonical({**CONTEXT, "pad": ""})))})
    assert len(too_long) == 3073

    planted = wrap_local(
        MASTER, det("invalid/planted data key", 32), CONTEXT, det("invalid/planted nonce", 12)
    )
    forged_salt, forged_commitment = det("invalid/forged salt", 24), det("invalid/forged c", 32)

    def forged_empty(f: dict[str, str], b: bytes) -> tuple[dict[str, str], bytes]:
        env = Envelope((other_key,), forged_salt, forged_commitment, CONTEXT, None)
        return env.to_fields(), forged_salt + forged_commitment + det("invalid/forged tag", 16)

    IE, FE, NE, KE = "IntegrityError", "FormatError", "NotEncryptedError", "KeyAccessError"
    # (name, error, base object, mutation, placements, what it shows)
    both = ("header", "metadata")
    hdr = ("header",)
    cases: list[tuple[str, str, Sealed, Mutation, tuple[str, ...], str]] = [
        # -- the body (C2SP) --------------------------------------------------------------
        (
            "wrong-commitment",
            IE,
            small,
            lambda f, b: (
                {**f, F_COMMITMENT: b64(new_commitment)},
                b[:24] + new_commitment + b[PREFIX:],
            ),
            both,
            "commitment replaced in the envelope and the body alike: the derived commitment "
            "does not match (checked before any chunk)",
        ),
        (
            "envelope-salt-differs",
            IE,
            small,
            _fields(salt=b64(det("invalid/other salt", 24))),
            both,
            "envstore-salt differs from the body's first 24 bytes",
        ),
        (
            "envelope-commitment-differs",
            IE,
            small,
            _fields(commitment=b64(new_commitment)),
            both,
            "envstore-commitment differs from body bytes 24..56",
        ),
        (
            "tag-byte-flipped",
            IE,
            small,
            _body(_flip(-1)),
            both,
            "last byte of the (final) chunk's tag flipped",
        ),
        (
            "ciphertext-byte-flipped",
            IE,
            small,
            _body(_flip(PREFIX)),
            both,
            "first ciphertext byte of chunk 0 flipped",
        ),
        (
            "chunks-swapped",
            IE,
            two,
            _body(lambda b: b[:PREFIX] + chunks[1] + chunks[0] + b[PREFIX + 2 * WIRE_CHUNK :]),
            hdr,
            "chunks 0 and 1 (both full) swapped",
        ),
        (
            "truncated-at-chunk-boundary",
            IE,
            onep,
            _body(lambda b: b[: PREFIX + WIRE_CHUNK]),
            hdr,
            "the final (100-byte) chunk dropped: body of 56 + 1*16400 bytes ends in a full chunk",
        ),
        (
            "final-chunk-missing-empty",
            IE,
            empty,
            _body(lambda b: b[:PREFIX]),
            both,
            "empty plaintext without its empty final chunk: body of exactly 56 + 0*16400 bytes",
        ),
        (
            "final-chunk-missing-after-full-chunk",
            IE,
            one,
            _body(lambda b: b[: PREFIX + WIRE_CHUNK]),
            hdr,
            "16384-byte plaintext without its empty final chunk: body of exactly 56 + 1*16400",
        ),
        (
            "truncated-mid-chunk",
            IE,
            onep,
            _body(lambda b: b[: PREFIX + 8000]),
            hdr,
            "body cut inside chunk 0: the length is plausible (a 7984-byte final chunk) but "
            "that chunk fails authentication",
        ),
        (
            "extended-junk-chunk",
            IE,
            empty,
            _body(lambda b: b + det("invalid/junk", 32) + det("invalid/junk2", 5)),
            both,
            "a 37-byte junk chunk appended after the empty final chunk: the claimed final "
            "chunk (16 + 37 bytes) fails authentication",
        ),
        (
            "extended-one-byte",
            IE,
            small,
            _body(lambda b: b + b"\x00"),
            both,
            "one byte appended",
        ),
        (
            "body-shorter-than-prefix",
            IE,
            small,
            _body(lambda b: b[:40]),
            both,
            "body of 40 bytes (less than salt and commitment)",
        ),
        # -- envelope vs body -----------------------------------------------------------------
        (
            "size-mismatch",
            IE,
            sized,
            _fields(size="101"),
            both,
            "envstore-size says 101, the body holds 100 plaintext bytes",
        ),
        (
            "wrong-context",
            IE,
            small,
            _fields(context=_ctx_field(canonical(evil))),
            both,
            "envstore-context altered (tenant=evil), wrapped key unchanged: the local key's "
            "AAD no longer matches",
        ),
        (
            "wrong-context-rewrapped",
            IE,
            small,
            lambda f, b: _recipients(rewrapped)({**f, F_CONTEXT: _ctx_field(canonical(evil))}, b),
            both,
            "envstore-context altered and the data key rewrapped under it: the C2SP commitment "
            "(which binds the context) does not match",
        ),
        (
            "wrapped-key-tampered",
            IE,
            small,
            _recipients(replace(mine, blob=_flip(-1)(mine.blob))),
            both,
            "the local recipient names the reader's key but its blob fails AES-GCM",
        ),
        (
            "local-blob-wrong-length",
            IE,
            small,
            _recipients(replace(mine, blob=mine.blob[:59])),
            both,
            "the local recipient names the reader's key but its blob is 59 bytes, not 60",
        ),
        (
            "wrapped-key-tampered-among-others",
            IE,
            small,
            _recipients(kms_only, replace(mine, blob=_flip(-1)(mine.blob)), other_key),
            both,
            "recipients: a KMS key the reader is not configured with, the reader's local key "
            "with a blob that fails AES-GCM, another local key: no recipient opens and one was "
            "altered, so Integrity (not KeyAccess)",
        ),
        (
            "planted-recipient-only",
            IE,
            small,
            _recipients(planted),
            both,
            "the only recipient was copied from another object under the reader's key and the "
            "same context: it unwraps, to a data key that fails the commitment check",
        ),
        (
            "cut-to-empty-body",
            IE,
            small,
            _body(lambda b: b[: PREFIX + 16]),
            both,
            "a 100-byte object's body cut to 72 bytes, so it claims 0 plaintext bytes: the "
            "final chunk (here 16 bytes of the old chunk 0) fails authentication, which a "
            "reader must check before reporting an empty object",
        ),
        (
            "empty-final-chunk-tag-flipped",
            IE,
            empty,
            _body(_flip(-1)),
            both,
            "a 0-byte object whose empty final chunk's tag was altered: readers authenticate "
            "it before returning an empty read",
        ),
        (
            "forged-empty-no-usable-recipient",
            KE,
            small,
            forged_empty,
            both,
            "an object forged from nothing: random salt, commitment and 16-byte final chunk "
            "(claims 0 bytes), one recipient for a key the reader does not hold; a reader "
            "must fail (no key), not return an empty object",
        ),
        (
            "duplicate-field-name-case",
            FE,
            small,
            lambda f, b: ({**f, "Envstore-Salt": f[F_SALT]}, b),
            ("metadata",),
            "envstore-salt and Envstore-Salt: metadata names match case-insensitively, so "
            "this is one field given twice",
        ),
        # -- keys -----------------------------------------------------------------------------
        (
            "other-master-key",
            KE,
            small,
            _recipients(other_key),
            both,
            "the only recipient is wrapped by another local master key",
        ),
        (
            "kms-recipient-only",
            KE,
            small,
            _recipients(kms_only),
            both,
            "the only recipient is a KMS key the reader is not configured with",
        ),
        # -- envelope fields ------------------------------------------------------------------
        (
            "unknown-format-version",
            FE,
            small,
            _fields(version="2"),
            both,
            "envstore-version 2",
        ),
        (
            "unknown-suite",
            FE,
            small,
            _fields(suite="C2SP-CE-v1-AES128GCM-SHA256"),
            both,
            "an unknown envstore-suite",
        ),
        (
            "unknown-field",
            FE,
            small,
            _fields(comment="hello"),
            both,
            "an unknown envstore-comment field",
        ),
        (
            "missing-version",
            FE,
            small,
            _fields(version=None),
            both,
            "no envstore-version field (in metadata placement: envstore-* entries without "
            "envstore-version are still an envelope, and a broken one)",
        ),
        (
            "missing-salt",
            FE,
            small,
            _fields(salt=None),
            both,
            "no envstore-salt field",
        ),
        (
            "recipient-numbering-gap",
            FE,
            small,
            _recipients(mine, other_key, skip=2),
            both,
            "recipients envstore-key-1 and envstore-key-3 (no 2)",
        ),
        (
            "recipient-numbering-from-2",
            FE,
            small,
            _recipients(mine, start=2),
            both,
            "a single recipient numbered envstore-key-2",
        ),
        (
            "recipient-number-leading-zero",
            FE,
            small,
            lambda f, b: (
                {("envstore-key-01" if k == "envstore-key-1" else k): v for k, v in f.items()},
                b,
            ),
            both,
            "recipient field named envstore-key-01",
        ),
        (
            "too-many-recipients",
            FE,
            small,
            _recipients(*many[:17]),
            both,
            "17 recipients (at most 16)",
        ),
        (
            "too-many-fields",
            FE,
            sized,
            _recipients(*many[:17]),
            both,
            "23 envelope fields (all six fields and 17 recipients; at most 22)",
        ),
        (
            "non-canonical-base64",
            FE,
            small,
            _fields(commitment=noncanon),
            both,
            "envstore-commitment with non-zero padding bits (decodes to the same bytes)",
        ),
        (
            "recipient-params-unsorted",
            FE,
            small,
            _fields(key_1=mine.encode() + ";b=1&a=2"),
            both,
            "recipient parameters written b=1&a=2, not sorted (sorted they would be accepted: "
            "the local key ignores parameters)",
        ),
        (
            "recipient-provider-over-quoted",
            FE,
            small,
            _fields(key_1=mine.encode().replace("local", "%6Cocal", 1)),
            both,
            "provider written %6Cocal (percent-encoding an unreserved character)",
        ),
        (
            "field-value-too-long",
            FE,
            small,
            _recipients(long_blob),
            both,
            f"a recipient field of {len(long_blob.encode())} characters (at most 4096)",
        ),
        (
            "non-ascii-field-value",
            FE,
            small,
            _fields(size="１００"),
            both,
            "envstore-size in full-width digits",
        ),
        (
            "size-leading-zero",
            FE,
            sized,
            _fields(size="0100"),
            both,
            "envstore-size 0100",
        ),
        (
            "context-non-canonical",
            FE,
            small,
            _fields(context=_ctx_field(b'{"dataset": "vectors", "tenant": "acme"}')),
            both,
            "envstore-context JSON with spaces",
        ),
        (
            "context-escaped-unicode",
            FE,
            small,
            _fields(context=_ctx_field(b'{"dataset":"vectors","tenant":"\\u0061cme"}')),
            both,
            "envstore-context JSON with a \\u escape where the canonical form has the character",
        ),
        (
            "context-empty-object",
            FE,
            small,
            _fields(context=_ctx_field(b"{}")),
            both,
            "envstore-context {} (an empty context is written as no field)",
        ),
        (
            "context-not-strings",
            FE,
            small,
            _fields(context=_ctx_field(b'{"a":1}')),
            both,
            "envstore-context with a number value",
        ),
        (
            "context-too-many-entries",
            FE,
            small,
            _fields(context=_ctx_field(canonical({f"k{i:02d}": "v" for i in range(65)}))),
            both,
            "envstore-context with 65 entries (at most 64)",
        ),
        (
            "context-too-long",
            FE,
            small,
            _fields(context=_ctx_field(too_long)),
            both,
            "a canonical context of 3073 bytes: an envstore-context field of 4100 characters "
            "(at most 4096)",
        ),
        (
            "context-not-utf8",
            FE,
            small,
            _fields(context=_ctx_field(b'{"dataset":"vectors","tenant":"\xffcme"}')),
            both,
            "envstore-context JSON with a byte 0xff (not UTF-8)",
        ),
        (
            "context-lone-surrogate",
            FE,
            small,
            _fields(context=_ctx_field(b'{"a":"\\ud800"}')),
            both,
            "envstore-context with a lone surrogate escape (not encodable as UTF-8)",
        ),
        (
            "context-deeply-nested",
            FE,
            small,
            _fields(context=_ctx_field(b"[" * 1500 + b"]" * 1500)),
            both,
            "envstore-context of 1500 nested JSON arrays (within the 4096-character bound)",
        ),
        (
            "metadata-without-envelope",
            NE,
            small,
            lambda f, b: ({"owner": "someone"}, b),
            ("metadata",),
            "user metadata without envstore-* entries, body without the header magic",
        ),
    ]

    out: list[dict[str, object]] = []
    for name, error, base, mutate, placements, what in cases:
        fields, body = mutate(base.fields, base.body)
        for placement in placements:
            doc: dict[str, object] = {
                "name": f"{name}/{placement}",
                "error": error,
                "description": what,
                "placement": placement,
            }
            if placement == "metadata":
                doc["fields"] = fields
                doc["body_b64"] = b64(body)
            else:
                doc["object_b64"] = b64(header(header_json(fields)) + body)
            out.append(doc)

    # -- the in-object header itself ----------------------------------------------------------
    h_fields = small.fields
    doc = header_json(h_fields)
    body = small.body
    spaced = json.dumps(h_fields, sort_keys=True, separators=(", ", ": ")).encode("ascii")
    unsorted = json.dumps(dict(sorted(h_fields.items(), reverse=True)), separators=(",", ":"))
    dup = doc[:-1] + b',"envstore-version":"1"}'
    version = b'"envstore-version":"1"'
    escaped = doc.replace(version, b'"envstore-version":"\\u0031"')
    non_ascii = doc.replace(version, '"envstore-version":"1é"'.encode())
    assert version in doc and b"u0031" in escaped
    header_cases: list[tuple[str, str, bytes, str]] = [
        ("bad-magic", NE, b"\x89ENVSTORE" + header(doc)[9:] + body, "magic 0x89 ENVSTORE"),
        (
            "ascii-magic",
            NE,
            b"envstore" + header(doc)[9:] + body,
            "a header whose magic lacks the leading 0x89 byte (envstore, then version 1, "
            "length and JSON)",
        ),
        ("plain-object", NE, b"PAR1" + plaintext(60), "an object that is not envstore's"),
        ("empty-object", NE, b"", "a zero-byte object"),
        (
            "fixed-part-short",
            NE,
            header(doc)[:13],
            "13 bytes: the magic, the version and 3 of the 4 length bytes",
        ),
        (
            "text-starting-with-envstore",
            NE,
            b"envstore is a library\n",
            "a text object whose first bytes are envstore",
        ),
        ("header-version-0", FE, header(doc, version=0) + body, "header version byte 0"),
        ("header-version-2", FE, header(doc, version=2) + body, "header version byte 2"),
        (
            "header-length-over-bound",
            FE,
            header(doc, length=65537) + body,
            "declared JSON length 65537 (at most 65536)",
        ),
        ("header-length-under-bound", FE, header(b"{}", length=1), "declared JSON length 1"),
        (
            "header-truncated",
            FE,
            header(doc)[:200],
            "object ends inside the header's JSON",
        ),
        ("header-extra-space", FE, header(spaced) + body, "JSON with spaces after , and :"),
        ("header-unsorted", FE, header(unsorted.encode("ascii")) + body, "JSON keys unsorted"),
        ("header-trailing-space", FE, header(doc + b" ") + body, "JSON followed by a space"),
        ("header-duplicate-key", FE, header(dup) + body, "envstore-version twice"),
        ("header-escaped-value", FE, header(escaped) + body, 'envstore-version "\\u0031"'),
        (
            "header-foreign-field",
            FE,
            header(header_json({**h_fields, "x-owner": "someone"})) + body,
            "a field that does not start with envstore-",
        ),
        ("header-not-object", FE, header(b'["envstore-version"]') + body, "JSON array"),
        ("header-not-json", FE, header(b"envstore-version=1") + body, "not JSON"),
        (
            "header-non-ascii",
            FE,
            header(non_ascii) + body,
            "a raw non-ASCII byte in the JSON",
        ),
        (
            "header-deeply-nested",
            FE,
            header(b"[" * 3000 + b"]" * 3000) + body,
            "JSON of 3000 nested arrays (within the 65536-byte bound)",
        ),
    ]
    for name, error, obj, what in header_cases:
        out.append(
            {
                "name": f"{name}/header",
                "error": error,
                "description": what,
                "placement": "header",
                "object_b64": b64(obj),
            }
        )
    return out


# -- files ---------------------------------------------------------------------------------


def _dump(doc: object) -> str:
    return json.dumps(doc, indent=1, ensure_ascii=False) + "\n"


def build() -> dict[str, str]:
    """File name -> exact file text."""
    _self_check()
    common = {
        "format": "envstore format v1 (FORMAT.md)",
        "generator": "tests/vectors/generate.py",
        "key_uri": f"env://{KEY_VAR}",
        "master_key_b64": b64(MASTER),
        "master_key_id": local_key_id(MASTER),
    }
    valid = {
        **common,
        "about": (
            "Each vector is one object in both placements: metadata (fields + body) and "
            "header (the whole stored object: header || body). Readers configured with "
            "master_key_b64 MUST return the plaintext."
        ),
        "vectors": valid_vectors(),
    }
    invalid = {
        **common,
        "other_master_key_id": local_key_id(OTHER_MASTER),
        "about": (
            "Readers configured with master_key_b64 MUST reject each object with the error "
            "named (envstore's exception class) and release no plaintext."
        ),
        "vectors": invalid_vectors(),
    }
    return {"valid.json": _dump(valid), "invalid.json": _dump(invalid)}


def main(argv: list[str]) -> int:
    files = build()
    if argv[1:] == ["--check"]:
        stale = [n for n, text in files.items() if (HERE / n).read_text("utf-8") != text]
        for n in stale:
            print(f"{n} differs from a fresh generation", file=sys.stderr)
        return 1 if stale else 0
    if argv[1:]:
        print(__doc__, file=sys.stderr)
        return 2
    for name, text in files.items():
        (HERE / name).write_text(text, "utf-8")
        print(f"wrote {HERE / name} ({len(text.encode())} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
