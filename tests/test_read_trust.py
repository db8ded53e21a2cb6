"""Issue 10, read side: short store answers, empty/final-chunk authentication, planted
recipients, the read context as a check, and errors that name the object — through every read
path (open, cat_file, cat_ranges, get_file, verify, CLI cat) over memory and local files.
S3 (moto) runs the same cases in tests/stores/test_s3_read_trust.py."""

from __future__ import annotations

import io
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import fsspec
import pytest

import envstore
from envstore.errors import IntegrityError, KeyAccessError
from envstore.format import CHUNK, PREFIX, TAG, WIRE_CHUNK, Envelope, encode_header
from envstore.fs import EnvstoreFileSystem
from envstore.keys.base import WrappedKey
from envstore.objects import Objects
from tests.readops import READS, answer_through_read, outcome, outcomes

SIZE = 3 * CHUNK + 100  # four chunks: three full, a short final one


def _url(fs: EnvstoreFileSystem, path: str) -> str:
    return fs.unstrip_protocol(path)


def _assert_all(results: dict[str, Any], kind: type[BaseException], path: str) -> None:
    for op, got in results.items():
        assert isinstance(got, kind), (op, got)
        assert path in str(got), (op, str(got))  # the error names the object


# -- 1. short store answers ------------------------------------------------------------------


@pytest.fixture
def four_chunks(efs) -> tuple[EnvstoreFileSystem, str, bytes]:
    fs, root = efs
    path = f"{root}/obj"
    data = os.urandom(SIZE)
    with fs.open(path, "wb") as f:  # streamed: no envstore-size field to catch a cut
        f.write(data)
    return fs, path, data


def _truncate_after_locate(monkeypatch, fs: EnvstoreFileSystem, cut: Callable[[Any], int]):
    """Every read locates the object, then finds it truncated (a concurrent writer, a proxy).
    Returns a function that puts the intact object back (run before each read path)."""
    orig = Objects.locate
    state: dict[str, bytes] = {}

    def locate(self, path, head=None):
        loc = orig(self, path, head)
        raw = state.setdefault(path, bytes(fs.fs.cat_file(path)))
        fs.fs.pipe_file(path, raw[: cut(loc)])
        return loc

    def restore() -> None:
        for path, raw in state.items():
            fs.fs.pipe_file(path, raw)

    monkeypatch.setattr(Objects, "locate", locate)
    return restore


@pytest.mark.parametrize(
    "where",
    [
        "chunk-1",  # cut right after chunk 0
        "chunk-2",
        "chunk-3",  # only the final chunk missing
        "mid-chunk",
        "body-prefix",  # salt and commitment only
        "no-body",
    ],
)
def test_truncated_after_locate_fails_every_read(
    four_chunks, where: str, monkeypatch, tmp_path: Path, key_uri: str
) -> None:
    fs, path, _data = four_chunks
    offsets = {
        "chunk-1": PREFIX + WIRE_CHUNK,
        "chunk-2": PREFIX + 2 * WIRE_CHUNK,
        "chunk-3": PREFIX + 3 * WIRE_CHUNK,
        "mid-chunk": PREFIX + WIRE_CHUNK + 1000,
        "body-prefix": PREFIX,
        "no-body": 0,
    }
    restore = _truncate_after_locate(monkeypatch, fs, lambda loc: loc.body_offset + offsets[where])
    results = outcomes(fs, path, _url(fs, path), {"key_uri": key_uri}, tmp_path, before=restore)
    _assert_all(results, IntegrityError, path)


def test_store_answering_short_at_chunk_boundaries(four_chunks, tmp_path: Path) -> None:
    """The store itself answers every range cut back to a chunk boundary."""
    fs, path, data = four_chunks
    orig = fs.store.read

    def short(p: str, start: int, end: int) -> Any:
        blob = orig(p, start, end)
        if end - start > PREFIX + WIRE_CHUNK:
            return blob[: PREFIX + WIRE_CHUNK]
        return blob

    fs.store.read = short  # type: ignore[method-assign]
    fs.store.read_many = lambda ps, ss, es: [  # type: ignore[method-assign]
        short(*a) for a in zip(ps, ss, es, strict=True)
    ]
    answer_through_read(fs.store)
    for op in ("open", "read_iter", "cat_file", "cat_ranges", "get_file"):
        got = outcome(op, fs, path, "", {}, tmp_path)
        assert isinstance(got, IntegrityError), (op, got)
        assert "answered" in str(got) and path in str(got)
    # a range inside the object that the store answers in full still reads
    assert fs.cat_file(path, 10, 20) == data[10:20]


def test_store_answering_long_is_rejected(four_chunks, tmp_path: Path) -> None:
    fs, path, _ = four_chunks
    orig = fs.store.read
    fs.store.read = lambda p, s, e: bytes(orig(p, s, e)) + b"\0" * 16  # type: ignore[method-assign]
    fs.store.read_many = lambda ps, ss, es: [  # type: ignore[method-assign]
        fs.store.read(*a) for a in zip(ps, ss, es, strict=True)
    ]
    answer_through_read(fs.store)
    for op in ("open", "cat_file", "cat_ranges", "get_file"):
        assert isinstance(outcome(op, fs, path, "", {}, tmp_path), IntegrityError), op


def test_intact_object_reads_through_every_path(four_chunks, tmp_path: Path, key_uri: str) -> None:
    fs, path, data = four_chunks
    results = outcomes(fs, path, _url(fs, path), {"key_uri": key_uri}, tmp_path)
    assert results == dict.fromkeys(READS, data)


# -- 2. empty objects and the final chunk -----------------------------------------------------


def _header_env(fs: EnvstoreFileSystem, path: str) -> tuple[Envelope, int, bytes]:
    loc = fs.envelope(path)
    raw = bytes(fs.fs.cat_file(path))
    return loc.envelope, loc.body_offset, raw


def _forge(fs: EnvstoreFileSystem, path: str, how: str, other_key_uri: str) -> None:
    """Make ``path`` an object that *claims* 0 plaintext bytes but is not a valid empty one."""
    if how == "cut-to-empty":  # a 40000-byte object cut to a 72-byte body
        with fs.open(path, "wb") as f:
            f.write(os.urandom(40_000))
        _env, off, raw = _header_env(fs, path)
        fs.fs.pipe_file(path, raw[: off + PREFIX + TAG])
    elif how == "flipped-tag":
        fs.pipe_file(path, b"")
        _env, off, raw = _header_env(fs, path)
        fs.fs.pipe_file(path, raw[:-1] + bytes([raw[-1] ^ 1]))
    elif how == "forged-no-recipient":  # nothing of ours: random salt, commitment and tag
        wrapped = WrappedKey("local", "fp:000000000000000000000000", os.urandom(60))
        env = Envelope((wrapped,), os.urandom(24), os.urandom(32), {}, None)
        fs.fs.pipe_file(path, encode_header(env) + env.salt + env.commitment + os.urandom(TAG))
    elif how == "forged-planted":  # a real recipient for our key, copied from another object
        fs.pipe_file(path + ".donor", b"x")
        donor = fs.envelope(path + ".donor").envelope
        env = Envelope(donor.recipients, os.urandom(24), os.urandom(32), {}, None)
        fs.fs.pipe_file(path, encode_header(env) + env.salt + env.commitment + os.urandom(TAG))
    else:
        raise ValueError(how)


EMPTY_READS: dict[str, Callable[[Any], Any]] = {
    "read": lambda f: f.read(),
    "read-n": lambda f: f.read(100),
    "readlines": lambda f: f.readlines(),
    "readline": lambda f: f.readline(),
    "iterate": lambda f: list(f),
    "readinto": lambda f: f.readinto(bytearray(10)),
    "text": lambda f: io.TextIOWrapper(f, encoding="utf-8").read(),
    "seek-end": lambda f: f.seek(0, 2),
}


@pytest.mark.parametrize(
    "how", ["cut-to-empty", "flipped-tag", "forged-no-recipient", "forged-planted"]
)
def test_claimed_empty_objects_never_read_as_empty(
    efs, how: str, other_key_uri: str, tmp_path: Path, key_uri: str
) -> None:
    fs, root = efs
    path = f"{root}/empty"
    _forge(fs, path, how, other_key_uri)
    assert fs.info(path)["size"] == 0  # the listing claims an empty object
    expect = KeyAccessError if how == "forged-no-recipient" else IntegrityError
    for name, read in EMPTY_READS.items():
        with fs.open(path, "rb") as f:
            with pytest.raises(expect) as err:
                read(f)
            assert path in str(err.value), name
    with pytest.raises(expect):
        fs.open(path, "r").read()
    with pytest.raises(expect):
        fs.read_text(path)
    results = outcomes(fs, path, _url(fs, path), {"key_uri": key_uri}, tmp_path)
    _assert_all(results, expect, path)


def test_intact_empty_object_reads_everywhere(efs, tmp_path: Path, key_uri: str) -> None:
    fs, root = efs
    path = f"{root}/e"
    fs.pipe_file(path, b"")
    for name, read in EMPTY_READS.items():
        with fs.open(path, "rb") as f:
            # fsspec's readlines gives [b""] for no data (io would give []): kept as fsspec's
            assert read(f) in (b"", [], [b""], 0, ""), name
    assert fs.open(path, "r").read() == ""
    assert outcomes(fs, path, _url(fs, path), {"key_uri": key_uri}, tmp_path) == dict.fromkeys(
        READS, b""
    )


def test_reaching_eof_by_seeking_authenticates_the_final_chunk(four_chunks) -> None:
    """Seek to the claimed size, then read: end of data only after the final chunk checks."""
    fs, path, data = four_chunks
    loc = fs.envelope(path)
    raw = bytes(fs.fs.cat_file(path))
    fs.fs.pipe_file(path, raw[:-1] + bytes([raw[-1] ^ 1]))  # final chunk's tag altered
    with fs.open(path, "rb") as f:
        assert f.read(10) == data[:10]  # chunk 0 is intact
        f.seek(loc.plain_len)
        with pytest.raises(IntegrityError):
            f.read()


def test_pandas_and_dask_read_csv_of_a_claimed_empty_object(efs, key_uri: str) -> None:
    pd = pytest.importorskip("pandas")
    dd = pytest.importorskip("dask.dataframe")
    fs, root = efs
    path = f"{root}/t.csv"
    _forge(fs, path, "cut-to-empty", "")
    url = _url(fs, path)
    so = {"key_uri": key_uri}
    with pytest.raises(IntegrityError, match=r"t\.csv"):
        pd.read_csv(url, storage_options=so)
    with pytest.raises(IntegrityError, match=r"t\.csv"):
        dd.read_csv(url, storage_options=so, blocksize=None).compute(scheduler="sync")


# -- 3. planted recipients --------------------------------------------------------------------


@pytest.fixture
def planted(efs) -> tuple[EnvstoreFileSystem, str, bytes, WrappedKey, WrappedKey]:
    """An object, its own recipient, and a recipient for the same key and context copied from
    another object (it unwraps fine, to the other object's data key)."""
    fs, root = efs
    data = os.urandom(CHUNK + 7)
    fs.pipe_file(f"{root}/victim", data)
    fs.pipe_file(f"{root}/donor", b"other object")
    (own,) = fs.envelope(f"{root}/victim").envelope.recipients
    (foreign,) = fs.envelope(f"{root}/donor").envelope.recipients
    assert own.key_id == foreign.key_id and own.blob != foreign.blob
    return fs, f"{root}/victim", data, own, foreign


def test_planted_recipient_before_the_intact_one(planted, tmp_path: Path, key_uri: str) -> None:
    fs, path, data, own, foreign = planted
    fs.set_recipients(path, [foreign, own])
    results = outcomes(fs, path, _url(fs, path), {"key_uri": key_uri}, tmp_path)
    assert results == dict.fromkeys(READS, data)


def test_only_a_planted_recipient_is_an_integrity_error(
    planted, tmp_path: Path, key_uri: str
) -> None:
    fs, path, _data, _own, foreign = planted
    fs.set_recipients(path, [foreign, foreign])
    results = outcomes(fs, path, _url(fs, path), {"key_uri": key_uri}, tmp_path)
    _assert_all(results, IntegrityError, path)
    assert "commitment" in str(results["cat_file"])


def test_planted_recipient_with_the_read_cache(planted, key_uri: str) -> None:
    """A cached data key is also checked: an envelope copied whole from another object (same
    cache token) does not open this body, and the intact object still opens."""
    fs0, path, data, own, foreign = planted
    fs = fsspec.filesystem(
        "envstore", fs=fs0.fs, key_uri=key_uri, key_cache=True, skip_instance_cache=True
    )
    donor = path.rsplit("/", 1)[0] + "/donor"
    assert fs.cat_file(donor) == b"other object"  # caches the donor's key for its envelope
    fs.set_recipients(path, [foreign])
    with pytest.raises(IntegrityError):
        fs.cat_file(path)
    fs.set_recipients(path, [foreign, own])
    assert fs.cat_file(path) == data


def test_rewrap_never_wraps_a_planted_key(planted, tmp_path: Path, key_uri: str) -> None:
    from envstore.keys.local import keygen

    fs, path, data, own, foreign = planted
    new_uri = f"local://{keygen(tmp_path / 'new.key')}"
    url = _url(fs, path)
    fs.set_recipients(path, [foreign])
    before = bytes(fs.fs.cat_file(path))
    with pytest.raises(IntegrityError, match="commitment"):
        envstore.rewrap(url, new_uri, key_uri=key_uri)
    assert bytes(fs.fs.cat_file(path)) == before  # untouched
    fs.set_recipients(path, [foreign, own])
    envstore.rewrap(url, new_uri, key_uri=key_uri)
    reader = fsspec.filesystem("envstore", fs=fs.fs, key_uri=new_uri, skip_instance_cache=True)
    assert reader.cat_file(path) == data  # the object survives the rotation


# -- 5. the read context is a check -----------------------------------------------------------


@pytest.fixture
def with_context(efs, key_uri: str) -> tuple[EnvstoreFileSystem, str, bytes]:
    fs, root = efs
    writer = fsspec.filesystem(
        "envstore",
        fs=fs.fs,
        key_uri=key_uri,
        context={"tenant": "acme-secret-tenant", "dataset": "sales"},
        skip_instance_cache=True,
    )
    data = os.urandom(CHUNK + 5)
    writer.pipe_file(f"{root}/ctx", data)
    return fs, f"{root}/ctx", data


@pytest.mark.parametrize(
    "context",
    [
        None,
        {},
        {"tenant": "acme-secret-tenant"},
        {"dataset": "sales", "tenant": "acme-secret-tenant"},
    ],
)
def test_read_context_contained_reads(with_context, context, tmp_path: Path, key_uri: str) -> None:
    fs0, path, data = with_context
    options = {"key_uri": key_uri, "context": context}
    fs = fsspec.filesystem("envstore", fs=fs0.fs, skip_instance_cache=True, **options)
    assert outcomes(fs, path, _url(fs, path), options, tmp_path) == dict.fromkeys(READS, data)


@pytest.mark.parametrize(
    ("context", "differing"),
    [
        ({"tenant": "someone-else"}, "tenant"),
        ({"tenant": "acme-secret-tenant", "region": "eu"}, "region"),
        ({"dataset": "Sales"}, "dataset"),
    ],
)
def test_read_context_mismatch_is_an_integrity_error(
    with_context, context, differing: str, tmp_path: Path, key_uri: str
) -> None:
    fs0, path, _data = with_context
    options = {"key_uri": key_uri, "context": context}
    fs = fsspec.filesystem("envstore", fs=fs0.fs, skip_instance_cache=True, **options)
    results = outcomes(fs, path, _url(fs, path), options, tmp_path)
    _assert_all(results, IntegrityError, path)
    for op, exc in results.items():
        text = str(exc)
        assert repr(differing) in text, (op, text)
        for value in ("acme-secret-tenant", "someone-else", "sales", "Sales", "eu"):
            assert value not in text.replace(path, ""), (op, text)  # never the values


def test_rewrap_checks_the_read_context(with_context, tmp_path: Path, key_uri: str) -> None:
    from envstore.keys.local import keygen

    fs, path, _data = with_context
    new_uri = f"local://{keygen(tmp_path / 'new.key')}"
    before = bytes(fs.fs.cat_file(path))
    with pytest.raises(IntegrityError, match="'tenant'"):
        envstore.rewrap(_url(fs, path), new_uri, key_uri=key_uri, context={"tenant": "x"})
    assert bytes(fs.fs.cat_file(path)) == before


# -- 13. errors from pandas and dask name the object ------------------------------------------


def _flip(fs: EnvstoreFileSystem, path: str, offset: int) -> None:
    raw = bytearray(fs.fs.cat_file(path))
    raw[offset] ^= 0x40
    fs.fs.pipe_file(path, bytes(raw))


@pytest.fixture
def dataset(tmp_path: Path, key_uri: str, other_key_uri: str):
    """Six Parquet and six CSV parts; part 3 of each tampered in the middle, part 4 written
    under a key the reader lacks, part 5 not encrypted (three separate datasets)."""
    pd = pytest.importorskip("pandas")
    so = {"key_uri": key_uri}
    fs = fsspec.filesystem("envstore", target_protocol="file", key_uri=key_uri)
    other = fsspec.filesystem("envstore", target_protocol="file", key_uri=other_key_uri)
    roots = {}
    for case in ("tampered", "foreign", "plain"):
        for kind in ("parquet", "csv"):
            root = tmp_path / case / kind
            root.mkdir(parents=True)
            for i in range(6):
                df = pd.DataFrame({"i": range(i * 5000, (i + 1) * 5000), "s": [f"r{i}"] * 5000})
                path = f"{root}/part.{i}.{kind}"
                writer = other if (case == "foreign" and i == 4) else fs
                if case == "plain" and i == 5:
                    getattr(df, f"to_{kind}")(path, index=False)
                    continue
                with writer.open(path, "wb") as f:
                    getattr(df, f"to_{kind}")(f, index=False)
            if case == "tampered":
                victim = f"{root}/part.3.{kind}"
                loc = fs.envelope(victim)
                _flip(fs, victim, (loc.body_offset + loc.stored_size) // 2)
            roots[case, kind] = str(root)
    return roots, so


CASES = {
    "tampered": (IntegrityError, "part.3"),
    "foreign": (KeyAccessError, "part.4"),
    "plain": (envstore.NotEncryptedError, "part.5"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_pandas_errors_name_the_bad_part(dataset, case: str) -> None:
    pd = pytest.importorskip("pandas")
    roots, so = dataset
    kind, part = CASES[case]
    with pytest.raises(kind) as err:
        pd.read_parquet(f"envstore::file://{roots[case, 'parquet']}", storage_options=so)
    assert f"{roots[case, 'parquet']}/{part}.parquet" in str(err.value)
    with pytest.raises(kind) as err:
        pd.read_csv(f"envstore::file://{roots[case, 'csv']}/{part}.csv", storage_options=so)
    assert f"{roots[case, 'csv']}/{part}.csv" in str(err.value)


@pytest.mark.parametrize("case", sorted(CASES))
def test_dask_errors_name_the_bad_part(dataset, case: str) -> None:
    dd = pytest.importorskip("dask.dataframe")
    roots, so = dataset
    kind, part = CASES[case]
    csv = dd.read_csv(f"envstore::file://{roots[case, 'csv']}/*.csv", storage_options=so)
    with pytest.raises(kind) as err:
        csv.compute(scheduler="sync")
    assert f"{roots[case, 'csv']}/{part}.csv" in str(err.value)
    with pytest.raises(kind) as err:
        dd.read_parquet(f"envstore::file://{roots[case, 'parquet']}", storage_options=so).compute(
            scheduler="sync"
        )
    assert f"{roots[case, 'parquet']}/{part}.parquet" in str(err.value)


# -- duplicate field names, every placement ---------------------------------------------------


def test_case_insensitive_duplicate_names_are_rejected(efs) -> None:
    """Metadata placement (as a store adapter hands the fields over) and header placement."""
    import json
    import struct

    from envstore.errors import FormatError
    from envstore.format import MAGIC, decode_header
    from envstore.stores.base import Head

    fs, root = efs
    fs.pipe_file(f"{root}/o", b"data")
    env = fs.envelope(f"{root}/o").envelope
    fields = env.to_fields()
    for name in ("envstore-salt", "envstore-key-1", "envstore-version"):
        for twin in (name.upper(), name.title(), "Envstore-" + name[len("envstore-") :]):
            with pytest.raises(FormatError, match="duplicate"):
                Envelope.from_fields({**fields, twin: fields[name]})
            with pytest.raises(FormatError):  # header placement: JSON names are exact
                doc = json.dumps({**fields, twin: fields[name]}, sort_keys=True)
                blob = doc.replace(", ", ",").replace(": ", ":").encode()
                decode_header(MAGIC + struct.pack(">BI", 1, len(blob)) + blob)
    raw = json.dumps(fields, sort_keys=True, separators=(",", ":"))
    dup = raw[:-1] + ',"envstore-salt":' + json.dumps(fields["envstore-salt"]) + "}"
    with pytest.raises(FormatError):  # the same name twice in the header JSON
        decode_header(MAGIC + struct.pack(">BI", 1, len(dup)) + dup.encode())

    # through the filesystem: a store adapter that reports both spellings
    body = bytes(fs.fs.cat_file(f"{root}/o"))[fs.envelope(f"{root}/o").body_offset :]
    fs.fs.pipe_file(f"{root}/m", body)
    twin_fields = {**fields, "Envstore-Salt": fields["envstore-salt"]}
    orig = fs.store.head
    fs.store.head = lambda p: (  # type: ignore[method-assign]
        Head(len(body), twin_fields, ("t",)) if p.endswith("/m") else orig(p)
    )
    with pytest.raises(FormatError, match="duplicate") as err:
        fs.cat_file(f"{root}/m")
    assert f"{root}/m" in str(err.value)
    fs.store.head = lambda p: Head(len(body), fields, ("u",))  # type: ignore[method-assign]
    assert fs.cat_file(f"{root}/m") == b"data"  # the same fields once each: fine
