"""FORMAT.md test vectors (tests/vectors/*.json) through envstore's reading paths.

* header placement: the stored object is written to memory:// with the inner filesystem and
  read through ``fsspec.filesystem("envstore", target_protocol="memory", ...)``;
* metadata placement: memory:// has no user metadata, so these are read at the format/cipher
  level (the steps ``Objects._parse`` and ``ObjectReader`` take) and, as well,
  through the filesystem over a memory store that serves the vector's fields as metadata;
* regenerating the vectors gives byte-identical files; pyca's Cobblestone256 decrypts the
  valid bodies.
"""

from __future__ import annotations

import base64
import hashlib
import importlib.util
import json
import sys
from pathlib import Path
from typing import Any

import fsspec
import pytest

from envstore.cipher import Decryptor, commits_to
from envstore.errors import (
    ConfigError,
    FormatError,
    IntegrityError,
    KeyAccessError,
    NotEncryptedError,
)
from envstore.format import (
    CHUNK,
    FIELD_PREFIX,
    HEADER_FIXED,
    PREFIX,
    Envelope,
    chunk_span,
    context_bytes,
    decode_header,
    final_chunk,
    header_length,
    plain_size,
    wire_span,
)
from envstore.fs import EnvstoreFileSystem
from envstore.keys import get_provider
from envstore.keys.base import WrappedKey
from envstore.keys.ring import KeyRing
from envstore.stores import Head
from envstore.stores.local import MemoryStore

VECTORS = Path(__file__).resolve().parent / "vectors"
VALID = json.loads((VECTORS / "valid.json").read_text("utf-8"))
INVALID = json.loads((VECTORS / "invalid.json").read_text("utf-8"))
KEY_VAR = VALID["key_uri"].removeprefix("env://")
ERRORS: dict[str, type[Exception]] = {
    "IntegrityError": IntegrityError,
    "FormatError": FormatError,
    "NotEncryptedError": NotEncryptedError,
    "KeyAccessError": KeyAccessError,
}


def _b64(text: str) -> bytes:
    return base64.b64decode(text, validate=True)


def _plaintext(vec: dict[str, Any]) -> bytes:
    doc = vec["plaintext"]
    n = doc["size"]
    pt = (bytes(range(256)) * (n // 256 + 1))[:n]
    assert hashlib.sha256(pt).hexdigest() == doc["sha256"]
    if "hex" in doc:
        assert pt.hex() == doc["hex"]
    return pt


def _ranges(n: int) -> list[tuple[int, int]]:
    """A few plaintext ranges: edges, the middle, around the chunk boundaries."""
    wanted = [(0, 1), (0, 10), (n // 2, n // 2 + 7), (16380, 16390), (16384, 16385)]
    wanted += [(16383, 32769), (max(0, n - 3), n), (n, n + 5), (1, n - 1)]
    return [(s, min(e, n)) for s, e in wanted if s <= n and s <= e]


def _params(vectors: list[dict[str, Any]], placement: str | None = None) -> list[Any]:
    return [
        pytest.param(v, id=v["name"])
        for v in vectors
        if placement is None or v["placement"] == placement
    ]


def _raises_exactly(vec: dict[str, Any], read: Any) -> None:
    cls = ERRORS[vec["error"]]
    with pytest.raises(cls) as info:
        read()
    assert type(info.value) is cls, f"{vec['name']}: {type(info.value).__name__}: {info.value}"


@pytest.fixture
def vector_fs(monkeypatch: pytest.MonkeyPatch) -> EnvstoreFileSystem:
    monkeypatch.setenv(KEY_VAR, VALID["master_key_b64"])
    return fsspec.filesystem(
        "envstore",
        target_protocol="memory",
        key_uri=VALID["key_uri"],
        skip_instance_cache=True,
    )


def _put(memroot: str, vec: dict[str, Any], data: bytes) -> str:
    path = f"{memroot}/{vec['name'].replace('/', '-')}"
    fsspec.filesystem("memory").pipe_file(path, data)
    return path


class _MetadataMemoryStore(MemoryStore):
    """memory:// whose objects carry user metadata (as S3/OSS HEAD returns it)."""

    def __init__(self, fs: Any, fields: dict[str, dict[str, str]]) -> None:
        super().__init__(fs)
        self.fields = fields

    def head(self, path: str) -> Head:
        head = super().head(path)
        return Head(head.size, self.fields.get(self.fs._strip_protocol(path), {}), head.token)


def _metadata_fs(fs: EnvstoreFileSystem, path: str, fields: dict[str, str]) -> EnvstoreFileSystem:
    fs.store = _MetadataMemoryStore(fs.fs, {fs.fs._strip_protocol(path): fields})
    return fs


def _read_metadata_placement(fields: dict[str, str], body: bytes) -> bytes:
    """The reading rules for a metadata-placed object, step by step (FORMAT.md "Reading")."""
    if not any(k.lower().startswith(FIELD_PREFIX) for k in fields):  # no envelope in metadata
        if header_length(body[:HEADER_FIXED]) is None:
            raise NotEncryptedError("no envelope")
        raise AssertionError("metadata vectors have no header")
    envelope = Envelope.from_fields(fields)
    n = plain_size(len(body))
    envelope.check_size(n)
    envelope.check_prefix(body[:PREFIX])
    ring = KeyRing([VALID["key_uri"]])
    key = ring.open_envelope(envelope)  # each candidate checked against the commitment
    dec = Decryptor(key, context_bytes(envelope.context), envelope.salt + envelope.commitment)
    return bytes(dec.decrypt_chunks(0, memoryview(body)[PREFIX:], final_chunk(n)))


# -- valid vectors -------------------------------------------------------------------------


@pytest.mark.parametrize("vec", _params(VALID["vectors"]))
def test_valid_header_placement(vec: dict[str, Any], memroot: str, vector_fs) -> None:
    pt = _plaintext(vec)
    n = len(pt)
    path = _put(memroot, vec, _b64(vec["header"]["object_b64"]))
    assert vector_fs.envelope(path).placement == "header"
    assert vector_fs.info(path)["size"] == n
    assert vector_fs.cat_file(path) == pt
    with vector_fs.open(path, "rb") as f:
        assert f.read() == pt
        f.seek(-min(n, 3), 2)
        assert f.read() == pt[n - min(n, 3) :]
    for s, e in _ranges(n):
        assert vector_fs.cat_file(path, start=s, end=e) == pt[s:e], (s, e)
    assert vector_fs.cat_file(path, start=-5) == pt[-5:]
    assert vector_fs.cat_file(path, start=1, end=-1) == pt[1:-1]
    ranges = _ranges(n)
    got = vector_fs.cat_ranges([path] * len(ranges), [s for s, _ in ranges], [e for _, e in ranges])
    assert got == [pt[s:e] for s, e in ranges]


@pytest.mark.parametrize("vec", _params(VALID["vectors"]))
def test_valid_metadata_placement(vec: dict[str, Any], memroot: str, vector_fs) -> None:
    pt = _plaintext(vec)
    n = len(pt)
    fields = vec["metadata"]["fields"]
    body = _b64(vec["metadata"]["body_b64"])
    assert _read_metadata_placement(fields, body) == pt
    # random access at the cipher level: only the chunks of the range, final one at the end
    key = bytes.fromhex(vec["data_key_hex"])
    dec = Decryptor(key, bytes.fromhex(vec["c2sp_context_hex"]), body[:PREFIX])
    for s, e in _ranges(n):
        if s == e:
            continue
        first, last = chunk_span(s, e, n)
        ws, we = wire_span(first, last, n)
        plain = dec.decrypt_chunks(first, body[ws:we], final_chunk(n))
        assert bytes(plain[s - first * CHUNK : e - first * CHUNK]) == pt[s:e]
    # and through the filesystem, over a store that has user metadata
    path = _put(memroot, vec, body)
    fs = _metadata_fs(vector_fs, path, fields)
    assert fs.envelope(path).placement == "metadata"
    assert fs.info(path)["size"] == n
    assert fs.cat_file(path) == pt
    for s, e in _ranges(n):
        assert fs.cat_file(path, start=s, end=e) == pt[s:e], (s, e)
    assert fs.cat_file(path, start=-5) == pt[-5:]


@pytest.mark.parametrize("vec", _params(VALID["vectors"]))
def test_valid_vector_parts_agree(vec: dict[str, Any], monkeypatch) -> None:
    """The documented parts (key, context, salt, recipients, header) match the objects."""
    monkeypatch.setenv(KEY_VAR, VALID["master_key_b64"])
    fields = vec["metadata"]["fields"]
    body = _b64(vec["metadata"]["body_b64"])
    obj = _b64(vec["header"]["object_b64"])
    hlen = vec["header"]["header_length"]
    env = Envelope.from_fields(fields)
    assert decode_header(obj[:hlen]) == env
    assert obj[hlen:] == body
    assert env.context == vec["context"]
    assert context_bytes(env.context).hex() == vec["c2sp_context_hex"]
    assert body[:24].hex() == vec["salt_hex"] == env.salt.hex()
    assert body[24:PREFIX].hex() == vec["commitment_hex"] == env.commitment.hex()
    assert [r.encode() for r in env.recipients] == [r["encoded"] for r in vec["recipients"]]
    numbers = [
        int(k.removeprefix("envstore-key-")) for k in fields if k.startswith("envstore-key-")
    ]
    assert sorted(numbers) == list(range(1, len(env.recipients) + 1))
    provider = get_provider(VALID["key_uri"])
    assert provider.key_id == VALID["master_key_id"]
    opened = []
    for r in env.recipients:
        if provider.matches(r):
            try:
                key = provider.unwrap(r, env.context)
            except IntegrityError:  # an altered recipient (altered-recipients-skipped)
                continue
            # a planted recipient unwraps, to a key the commitment rejects (FORMAT.md)
            if commits_to(key, env.salt, context_bytes(env.context), env.commitment):
                opened.append(bytes(key).hex())
    assert opened == [vec["data_key_hex"]]


@pytest.mark.parametrize("vec", _params(VALID["vectors"]))
def test_pyca_cobblestone_decrypts_valid_bodies(vec: dict[str, Any]) -> None:
    cs = pytest.importorskip("cryptography.cobblestone", reason="cryptography < 50")
    dec = cs.Cobblestone256Decryptor(
        bytes.fromhex(vec["data_key_hex"]), bytes.fromhex(vec["c2sp_context_hex"])
    )
    body = _b64(vec["metadata"]["body_b64"])
    assert dec.update(body) + dec.finalize() == _plaintext(vec)


# -- invalid vectors -----------------------------------------------------------------------


@pytest.mark.parametrize("vec", _params(INVALID["vectors"], "header"))
def test_invalid_header_placement(vec: dict[str, Any], memroot: str, vector_fs) -> None:
    path = _put(memroot, vec, _b64(vec["object_b64"]))
    _raises_exactly(vec, lambda: vector_fs.cat_file(path))
    _raises_exactly(vec, lambda: vector_fs.open(path, "rb").read())


@pytest.mark.parametrize("vec", _params(INVALID["vectors"], "metadata"))
def test_invalid_metadata_placement(vec: dict[str, Any], memroot: str, vector_fs) -> None:
    body = _b64(vec["body_b64"])
    _raises_exactly(vec, lambda: _read_metadata_placement(vec["fields"], body))
    path = _put(memroot, vec, body)
    fs = _metadata_fs(vector_fs, path, vec["fields"])
    _raises_exactly(vec, lambda: fs.cat_file(path))
    _raises_exactly(vec, lambda: fs.open(path, "rb").read())


def test_every_error_class_and_both_placements_are_covered() -> None:
    seen = {(v["error"], v["placement"]) for v in INVALID["vectors"]}
    for error in ERRORS:
        assert (error, "header") in seen
        assert (error, "metadata") in seen
    names = [v["name"] for v in VALID["vectors"] + INVALID["vectors"]]
    assert len(names) == len(set(names))
    assert INVALID["master_key_b64"] == VALID["master_key_b64"]


# -- writers write only what readers accept (FORMAT.md "Envelope", writer rules) -----------


def _writer_fs(monkeypatch: pytest.MonkeyPatch, **options: Any) -> EnvstoreFileSystem:
    monkeypatch.setenv(KEY_VAR, VALID["master_key_b64"])
    options.setdefault("key_uri", VALID["key_uri"])
    return fsspec.filesystem(
        "envstore", target_protocol="memory", skip_instance_cache=True, **options
    )


def _context_of(n: int) -> dict[str, str]:
    """A context whose canonical JSON is ``n`` bytes."""
    return {"pad": "p" * (n - len('{"pad":""}'))}


@pytest.mark.parametrize(
    "options",
    [
        pytest.param({"key_uri": [VALID["key_uri"]] * 17}, id="17-key-uris"),
        pytest.param({"context": _context_of(3073)}, id="context-3073-bytes"),
        pytest.param({"context": {"a": "\ud800"}}, id="context-lone-surrogate"),
        pytest.param({"context": {f"k{i}": "v" for i in range(65)}}, id="context-65-entries"),
    ],
)
def test_writer_refuses_options_readers_would_reject(
    options: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(ConfigError):
        _writer_fs(monkeypatch, **options)


def test_writer_accepts_the_upper_bounds(memroot: str, monkeypatch: pytest.MonkeyPatch) -> None:
    fs = _writer_fs(monkeypatch, key_uri=[VALID["key_uri"]] * 16, context=_context_of(3072))
    fs.pipe_file(f"{memroot}/max", b"data")
    env = fs.envelope(f"{memroot}/max").envelope
    assert len(env.recipients) == 16 and len(env.to_fields()) == 22
    assert fs.cat_file(f"{memroot}/max") == b"data"


def test_writer_refuses_unreadable_envelopes_before_writing(
    memroot: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    fs = _writer_fs(monkeypatch)
    mem = fsspec.filesystem("memory")
    path = f"{memroot}/obj"
    fs.pipe_file(path, b"data")
    stored = mem.cat_file(path)
    huge = WrappedKey("awskms", "k", bytes(5000))  # blob over 4096 bytes, field over 4096 chars
    kms = WrappedKey("awskms", "k", bytes(32))
    mine = list(fs.envelope(path).envelope.recipients)
    # rewrap: the object is left as it was
    for recipients in ([*mine, huge], [*mine, *[kms] * 16]):
        with pytest.raises(ConfigError, match="would not be readable"):
            fs.set_recipients(path, recipients)
        assert mem.cat_file(path) == stored
    # a new object: nothing is written
    new_data_key = fs.ring.new_data_key

    def with_huge(context: Any, size: int | None = None) -> Any:
        key, recipients = new_data_key(context, size)
        return key, [*recipients, huge]

    monkeypatch.setattr(fs.ring, "new_data_key", with_huge)
    with pytest.raises(ConfigError, match="would not be readable"):
        fs.pipe_file(f"{memroot}/new", b"data")
    with pytest.raises(ConfigError, match="would not be readable"):
        with fs.open(f"{memroot}/new2", "wb") as f:
            f.write(b"data")
    assert mem.ls(memroot, detail=False) == [path]


def test_writer_refuses_a_header_over_the_bound(
    memroot: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A 4096-character context field and 15 recipient fields of 4096 characters: every
    field is within bounds, but the header JSON would exceed 65536 bytes (Format error,
    nothing written)."""
    fs = _writer_fs(monkeypatch, context=_context_of(3072))
    big = WrappedKey("awskms", "k" * 4, bytes(3063))
    assert len(big.encode()) == 4096
    new_data_key = fs.ring.new_data_key

    def with_big(context: Any, size: int | None = None) -> Any:
        key, recipients = new_data_key(context, size)
        return key, [*recipients, *[big] * 15]

    monkeypatch.setattr(fs.ring, "new_data_key", with_big)
    with pytest.raises(FormatError, match="too large for an in-object header"):
        fs.pipe_file(f"{memroot}/new", b"data")
    assert not fsspec.filesystem("memory").exists(f"{memroot}/new")


# -- the vectors are what the generator makes ----------------------------------------------


def test_vectors_regenerate_byte_identical() -> None:
    spec = importlib.util.spec_from_file_location(
        "envstore_vectors_generate", VECTORS / "generate.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    try:
        spec.loader.exec_module(module)
        files = module.build()
    finally:
        del sys.modules[spec.name]
    assert sorted(files) == sorted(p.name for p in VECTORS.glob("*.json"))
    for name, text in files.items():
        assert (VECTORS / name).read_text("utf-8") == text, (
            f"tests/vectors/{name} differs from a fresh generation: the format changed "
            "(run python tests/vectors/generate.py only if the change is intended, and "
            "update FORMAT.md)"
        )
