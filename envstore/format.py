"""envstore format v1: envelope fields, their metadata and header encodings, size arithmetic.

No I/O here. ``FORMAT.md`` is the normative description; this module is its implementation.

The object body is C2SP chunked-encryption v1 (AES-256-GCM, HKDF-Expand SHA-512, 16 KiB
chunks): ``salt(24) || commitment(32) || chunk_0 || ... || chunk_n``, every chunk carrying a
16-byte tag and the last one holding fewer than 16384 plaintext bytes (possibly none).
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import struct
import urllib.parse
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from envstore.errors import ConfigError, FormatError, IntegrityError, NotEncryptedError

VERSION = 1
SUITE = "C2SP-CE-v1-AES256GCM-SHA512"

CHUNK = 16384  # plaintext bytes per full chunk
TAG = 16
WIRE_CHUNK = CHUNK + TAG  # 16400 bytes of ciphertext per full chunk
SALT = 24
COMMITMENT = 32
PREFIX = SALT + COMMITMENT  # 56
MIN_BODY = PREFIX + TAG  # 72: the empty plaintext
MAX_CHUNKS = 1 << 38

# In-object header: magic(9) || version(1) || length(4, big-endian) || canonical JSON fields.
# The magic starts with a non-ASCII byte so that no text file is mistaken for a header.
MAGIC = b"\x89envstore"
HEADER_FIXED = len(MAGIC) + 1 + 4  # 14
MAX_HEADER = 64 * 1024

# Metadata field names (lowercase ASCII with hyphens). S3 and OSS prefix them with
# x-amz-meta- / x-oss-meta-.
F_VERSION = "envstore-version"
F_SUITE = "envstore-suite"
F_SIZE = "envstore-size"
F_CONTEXT = "envstore-context"
F_SALT = "envstore-salt"
F_COMMITMENT = "envstore-commitment"
F_KEY_PREFIX = "envstore-key-"
FIELD_PREFIX = "envstore-"
MAX_RECIPIENTS = 16
MAX_FIELD = 4096  # characters per field value
MAX_CONTEXT_ITEMS = 64
#: canonical context JSON bytes: its base64url field must fit MAX_FIELD characters
MAX_CONTEXT_BYTES = 3072
#: bytes of one wrapped data key in a recipient field
MAX_BLOB = 4096
_KEY_FIELD = re.compile(r"envstore-key-([1-9][0-9]?)\Z")
_SIZE = re.compile(r"(0|[1-9][0-9]{0,18})\Z")


def canonical_context(context: Mapping[str, str]) -> bytes:
    """Canonical JSON of an encryption context (sorted keys, no spaces, UTF-8)."""
    if not context:
        return b"{}"  # what json.dumps gives, without its cost on every read
    return json.dumps(
        dict(context), sort_keys=True, separators=(",", ":"), ensure_ascii=False
    ).encode("utf-8")


@dataclass(frozen=True)
class WrappedKey:
    """One recipient of an object's data key: what a provider needs to unwrap it.

    ``provider`` is the provider family (``local``, ``alikms``, ``alikms-instance``,
    ``awskms``), ``key_id`` the wrapping key's identifier as the provider reports it,
    ``blob`` the wrapped data key and ``params`` what the KMS needs back (e.g. IV, algorithm).
    None of it is secret.
    """

    provider: str
    key_id: str
    blob: bytes
    params: Mapping[str, str] = field(default_factory=dict)

    def encode(self) -> str:
        """ASCII form stored in an ``envstore-key-N`` metadata field."""
        parts = [
            urllib.parse.quote(self.provider, safe=""),
            urllib.parse.quote(self.key_id, safe=""),
            base64.b64encode(self.blob).decode("ascii"),
        ]
        if self.params:
            parts.append(urllib.parse.urlencode(sorted(self.params.items())))
        return ";".join(parts)

    @classmethod
    def decode(cls, text: str) -> WrappedKey:
        parts = text.split(";")
        if len(parts) not in (3, 4) or not parts[0] or not parts[2]:
            raise FormatError("malformed recipient field")
        try:
            blob = base64.b64decode(parts[2], validate=True)
        except (binascii.Error, ValueError):
            raise FormatError("recipient blob is not base64") from None
        if len(blob) > MAX_BLOB:
            raise FormatError("recipient blob too long")
        params: dict[str, str] = {}
        if len(parts) == 4:
            try:
                pairs = urllib.parse.parse_qsl(
                    parts[3], keep_blank_values=True, strict_parsing=True
                )
            except ValueError:
                raise FormatError("malformed recipient parameters") from None
            params = dict(pairs)
            if len(params) != len(pairs):
                raise FormatError("duplicate recipient parameter")
        return cls(
            provider=urllib.parse.unquote(parts[0]),
            key_id=urllib.parse.unquote(parts[1]),
            blob=blob,
            params=params,
        )


def check_context(context: object) -> dict[str, str]:
    """An encryption context given as an option: a dict of str to str within the bounds
    readers accept (ConfigError otherwise); None is the empty context."""
    if context is None:
        return {}
    if (
        not isinstance(context, Mapping)
        or len(context) > MAX_CONTEXT_ITEMS
        or not all(isinstance(k, str) and isinstance(v, str) for k, v in context.items())
    ):
        raise ConfigError(
            f"context must be a dict of str to str (at most {MAX_CONTEXT_ITEMS} entries)"
        )
    try:
        encoded = canonical_context(context)
    except UnicodeError:
        raise ConfigError("context keys and values must be valid Unicode text") from None
    if len(encoded) > MAX_CONTEXT_BYTES:
        raise ConfigError(f"context is {len(encoded)} bytes as JSON; at most {MAX_CONTEXT_BYTES}")
    return dict(context)


def has_envelope(fields: Mapping[str, str] | None) -> bool:
    """Whether user metadata carries an envelope (any ``envstore-`` name, any case): such
    metadata is parsed as one, and fails as FormatError when incomplete."""
    return fields is not None and any(k.lower().startswith(FIELD_PREFIX) for k in fields)


def context_bytes(context: Mapping[str, str]) -> bytes:
    """The C2SP *context* input: format version tag + canonical encryption context."""
    return b"envstore/v1\x00" + canonical_context(context)


# -- size arithmetic -----------------------------------------------------------------------


def body_size(plain_size: int) -> int:
    """Ciphertext body length for ``plain_size`` plaintext bytes."""
    if plain_size < 0:
        raise ValueError("negative size")
    full, rest = divmod(plain_size, CHUNK)
    return PREFIX + full * WIRE_CHUNK + rest + TAG


def plain_size(body_len: int) -> int:
    """Plaintext length implied by a body of ``body_len`` bytes; IntegrityError if impossible.

    A valid body ends with a chunk of 16..16399 bytes; any other length means the object was
    truncated or extended.  The result is only *claimed* until the final chunk authenticates.
    """
    if body_len < MIN_BODY:
        raise IntegrityError(f"ciphertext body of {body_len} bytes is truncated")
    full, rest = divmod(body_len - PREFIX, WIRE_CHUNK)
    if rest < TAG:
        raise IntegrityError(f"ciphertext body of {body_len} bytes is truncated or extended")
    if full + 1 > MAX_CHUNKS:
        raise FormatError("object exceeds the C2SP chunk limit")
    return full * CHUNK + rest - TAG


def final_chunk(plain_len: int) -> int:
    """Index of the final (short, possibly empty) chunk."""
    return plain_len // CHUNK


def chunk_span(start: int, end: int, plain_len: int) -> tuple[int, int]:
    """Chunks ``[first, last]`` holding plaintext ``[start, end)``; a range reaching the end
    also covers the final chunk so that end-of-object is authenticated."""
    first = start // CHUNK
    last = plain_len // CHUNK if end >= plain_len else (end - 1) // CHUNK
    return first, max(first, last)


def chunk_offset(index: int) -> int:
    """Body offset of chunk ``index``."""
    return PREFIX + index * WIRE_CHUNK


def wire_span(first: int, last: int, plain_len: int) -> tuple[int, int]:
    """Body byte range ``[start, end)`` of chunks ``first..last``."""
    end = chunk_offset(last) + min(WIRE_CHUNK, plain_len - last * CHUNK + TAG)
    return chunk_offset(first), end


# -- base64 helpers (canonical only) -------------------------------------------------------


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def unb64(text: str, what: str, length: int | None = None) -> bytes:
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise FormatError(f"{what} is not base64") from None
    if length is not None and len(raw) != length:
        raise FormatError(f"{what} must be {length} bytes")
    return raw


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode("ascii")


# -- the envelope --------------------------------------------------------------------------


@dataclass(frozen=True)
class Envelope:
    """What an object carries beside its body. Nothing in it is secret."""

    recipients: tuple[WrappedKey, ...]
    salt: bytes
    commitment: bytes
    context: Mapping[str, str] = field(default_factory=dict)
    size: int | None = None  # plaintext size, when known before the first byte was written
    version: int = VERSION
    suite: str = SUITE

    def to_fields(self) -> dict[str, str]:
        fields = {F_VERSION: str(self.version), F_SUITE: self.suite}
        if self.size is not None:
            fields[F_SIZE] = str(self.size)
        if self.context:
            fields[F_CONTEXT] = _b64url(canonical_context(self.context))
        fields[F_SALT] = b64(self.salt)
        fields[F_COMMITMENT] = b64(self.commitment)
        for i, r in enumerate(self.recipients, 1):
            fields[f"{F_KEY_PREFIX}{i}"] = r.encode()
        return fields

    @classmethod
    def from_fields(cls, fields: Mapping[str, str]) -> Envelope:
        """Parse envelope fields strictly: bounded, canonical, known version and suite."""
        ours = _our_fields(fields)
        size = _parse_size(ours.get(F_SIZE))
        context = _parse_context(ours.get(F_CONTEXT))
        if F_SALT not in ours or F_COMMITMENT not in ours:
            raise FormatError("envelope lacks envstore-salt/envstore-commitment")
        salt = unb64(ours[F_SALT], "envstore-salt", SALT)
        commitment = unb64(ours[F_COMMITMENT], "envstore-commitment", COMMITMENT)
        env = cls(_parse_recipients(ours), salt, commitment, context, size)
        try:
            canonical = env.to_fields()
        except UnicodeError:  # e.g. a lone surrogate in the context: not UTF-8 encodable
            raise FormatError("envstore-context is not valid UTF-8 text") from None
        if canonical != ours:
            raise FormatError("envelope fields are not in canonical form")
        return env

    def with_recipients(self, recipients: Sequence[WrappedKey]) -> Envelope:
        return Envelope(
            tuple(recipients),
            self.salt,
            self.commitment,
            self.context,
            self.size,
            self.version,
            self.suite,
        )

    def check_prefix(self, prefix: bytes) -> None:
        """The body's salt and commitment must be the ones in the envelope."""
        if prefix[:SALT] != self.salt or prefix[SALT:PREFIX] != self.commitment:
            raise IntegrityError("body does not belong to this envelope (salt/commitment differ)")

    def check_size(self, plain_len: int) -> None:
        if self.size is not None and self.size != plain_len:
            raise IntegrityError(
                f"object holds {plain_len} plaintext bytes but its envelope says {self.size}"
            )


# -- parsing envelope fields (Envelope.from_fields) -----------------------------------------


def _our_fields(fields: Mapping[str, str]) -> dict[str, str]:
    """The ``envstore-`` fields, lowercased; bounded ASCII, known version and suite."""
    ours = {k.lower(): v for k, v in fields.items() if k.lower().startswith(FIELD_PREFIX)}
    if len(ours) != sum(1 for k in fields if k.lower().startswith(FIELD_PREFIX)):
        # names match case-insensitively: two spellings of one name are two values for
        # one field, and which one wins must not depend on the store's dict order
        raise FormatError("duplicate envelope field names (names match case-insensitively)")
    if not ours:
        raise NotEncryptedError("object has no envstore envelope (not written by envstore)")
    if len(ours) > 6 + MAX_RECIPIENTS:
        raise FormatError("too many envelope fields")
    for k, v in ours.items():
        if not isinstance(v, str) or len(v) > MAX_FIELD or not v.isascii():
            raise FormatError(f"envelope field {k} is not a bounded ASCII string")
    version = ours.get(F_VERSION)
    if version != str(VERSION):
        raise FormatError(
            f"unsupported envstore format version {version!r} (this envstore reads {VERSION})"
        )
    if ours.get(F_SUITE) != SUITE:
        raise FormatError(f"unsupported envstore suite {ours.get(F_SUITE)!r}")
    return ours


def _parse_size(text: str | None) -> int | None:
    if text is None:
        return None
    if not _SIZE.match(text):
        raise FormatError("envstore-size is not a decimal size")
    return int(text)


def _parse_context(text: str | None) -> dict[str, str]:
    if text is None:
        return {}
    try:
        raw = base64.urlsafe_b64decode(text.encode("ascii"))
        context = json.loads(raw.decode("utf-8"))
    except (binascii.Error, ValueError, UnicodeError, RecursionError):
        raise FormatError("envstore-context is not base64url JSON") from None
    if (
        not isinstance(context, dict)
        or not context
        or len(context) > MAX_CONTEXT_ITEMS
        or not all(isinstance(k, str) and isinstance(v, str) for k, v in context.items())
    ):
        raise FormatError("envstore-context must be a non-empty JSON object of strings")
    return context


def _parse_recipients(ours: Mapping[str, str]) -> tuple[WrappedKey, ...]:
    numbered: dict[int, WrappedKey] = {}
    for k, v in ours.items():
        if k.startswith(F_KEY_PREFIX):
            m = _KEY_FIELD.match(k)
            if not m:
                raise FormatError(f"bad recipient field name {k}")
            numbered[int(m.group(1))] = WrappedKey.decode(v)
        elif k not in (F_VERSION, F_SUITE, F_SIZE, F_CONTEXT, F_SALT, F_COMMITMENT):
            raise FormatError(f"unknown envelope field {k}")
    if not numbered or sorted(numbered) != list(range(1, len(numbered) + 1)):
        raise FormatError("recipients must be numbered envstore-key-1..N without gaps")
    if len(numbered) > MAX_RECIPIENTS:
        raise FormatError("too many recipients")
    return tuple(numbered[i] for i in sorted(numbered))


# -- in-object header ----------------------------------------------------------------------


def encode_header(envelope: Envelope) -> bytes:
    doc = json.dumps(envelope.to_fields(), sort_keys=True, separators=(",", ":")).encode("ascii")
    if len(doc) > MAX_HEADER:
        raise FormatError("envelope too large for an in-object header")
    return MAGIC + struct.pack(">BI", VERSION, len(doc)) + doc


def header_length(head: bytes) -> int | None:
    """Total header length from the first 14 bytes; None if the object has no envstore header.

    FormatError on an unknown version or an out-of-bounds length.
    """
    if len(head) < HEADER_FIXED or head[: len(MAGIC)] != MAGIC:
        return None
    version, length = struct.unpack(">BI", head[len(MAGIC) : HEADER_FIXED])
    if version != VERSION:
        raise FormatError(f"unsupported envstore header version {version}")
    if not 2 <= length <= MAX_HEADER:
        raise FormatError(f"envstore header length {length} out of bounds")
    return HEADER_FIXED + length


def decode_header(header: bytes) -> Envelope:
    """Parse a complete header (as delimited by :func:`header_length`)."""
    total = header_length(header)
    if total is None:
        raise NotEncryptedError("object has no envstore header")
    if len(header) != total:
        raise FormatError("envstore header is truncated")
    doc = header[HEADER_FIXED:]
    try:
        fields = json.loads(doc.decode("ascii"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise FormatError("envstore header is not ASCII JSON") from None
    if not isinstance(fields, dict) or not all(isinstance(v, str) for v in fields.values()):
        raise FormatError("envstore header must be a JSON object of strings")
    if not fields or not all(k.startswith(FIELD_PREFIX) for k in fields):
        raise FormatError("envstore header holds fields that are not envelope fields")
    envelope = Envelope.from_fields(fields)
    if encode_header(envelope) != header:
        raise FormatError("envstore header is not in canonical form")
    return envelope
