"""The object layer (envstore/objects.py): its public API, one invalidation per change, and
key URIs checked when the filesystem is made."""

from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import fsspec
import pytest

import envstore
from envstore import ConfigError, IntegrityError
from envstore.fs import EnvstoreFileSystem
from envstore.keys import get_provider
from envstore.keys.local import keygen
from envstore.objects import describe_envelope


def _forgets(fs: EnvstoreFileSystem) -> list[Any]:
    calls: list[Any] = []
    store = fs.store
    orig = store.forget

    def forget(path: str | None = None) -> None:
        calls.append(path)
        orig(path)

    store.forget = forget  # type: ignore[method-assign]
    return calls


def test_a_write_invalidates_once(efs) -> None:
    fs, root = efs
    calls = _forgets(fs)
    fs.pipe_file(f"{root}/o", b"x" * 1000)
    assert calls == [fs._strip_protocol(f"{root}/o")]
    with fs.open(f"{root}/p", "wb") as f:
        f.write(b"y")
    assert len(calls) == 2


def test_a_failed_write_changes_nothing_and_forgets_nothing(efs) -> None:
    fs, root = efs
    calls = _forgets(fs)
    with pytest.raises(RuntimeError), fs.open(f"{root}/o", "wb") as f:
        f.write(b"x")
        raise RuntimeError("boom")
    assert calls == [] and not fs.exists(f"{root}/o")


def test_public_api_reads_verifies_and_describes(efs) -> None:
    fs, root = efs
    data = bytes(range(256)) * 300
    fs.pipe_file(f"{root}/o", data)
    path = fs._strip_protocol(f"{root}/o")
    objects = fs.objects
    assert b"".join(objects.reader(path).stream(10_000)) == data
    assert objects.verify(path) == len(data)
    info = describe_envelope(objects.envelope(path))
    assert info["plaintext_size"] == len(data) and info["placement"] == "header"
    assert "blob" not in str(info)


def test_verify_fails_on_a_cut_object(efs) -> None:
    fs, root = efs
    fs.pipe_file(f"{root}/o", b"z" * 50_000)
    path = fs._strip_protocol(f"{root}/o")
    raw = fs.fs.cat_file(path)
    fs.fs.pipe_file(path, raw[:-1])
    fs.invalidate_cache()
    with pytest.raises(IntegrityError):
        fs.objects.verify(path)


def test_rewrap_reports_whether_it_changed(efs, other_key_uri: str) -> None:
    fs, root = efs
    fs.pipe_file(f"{root}/o", b"data")
    path = fs._strip_protocol(f"{root}/o")
    assert fs.objects.rewrap(path, [other_key_uri], replace=False) is True
    assert fs.objects.rewrap(path, [other_key_uri], replace=False) is False
    assert len(fs.objects.envelope(path).envelope.recipients) == 2


@pytest.mark.parametrize(
    "uri", ["local://relative/master.key", "env://", "env://A=B", "local:relative"]
)
def test_bad_key_uris_fail_when_the_filesystem_is_made(uri: str) -> None:
    with pytest.raises(ConfigError) as err:
        fsspec.filesystem(
            "envstore", target_protocol="memory", key_uri=uri, skip_instance_cache=True
        )
    assert uri.split("://")[-1] not in str(err.value) or uri.endswith("://")


def test_kms_providers_are_cached_once_per_process(tmp_path: Path) -> None:
    uri = "awskms://alias/cached-once"
    pytest.importorskip("boto3")
    opts = {"awskms": {"region_name": "us-east-1"}}
    fs = EnvstoreFileSystem(
        target_protocol="memory",
        key_uri=f"local://{keygen(tmp_path / 'k')}",
        kms_options=opts,
        skip_instance_cache=True,
    )
    assert fs.ring.provider(uri) is get_provider(uri, opts) is fs.ring.provider(uri)


def test_local_providers_are_kept_per_ring(tmp_path: Path) -> None:
    uri = f"local://{keygen(tmp_path / 'k')}"
    fs = envstore.EnvstoreFileSystem(target_protocol="memory", key_uri=uri)
    assert fs.ring.provider(uri) is fs.ring.provider(uri)


def test_a_small_header_object_costs_one_read(efs) -> None:
    """A header-placement object of at most 32 KiB is read whole when located: its first read
    needs no second request (the header and body come from one consistent read); later reads
    (the envelope cached) fetch only the body chunks; a larger object reads its header first."""
    fs, root = efs
    store = fs.store
    reads: list[tuple[int, int]] = []
    orig_exact, orig_fetching = store.read_exact, store.fetching

    def read_exact(p: str, s: int, e: int) -> Any:
        if not inside:
            reads.append((s, e))
        return orig_exact(p, s, e)

    @contextmanager
    def fetching(p: str, s: int, e: int) -> Any:
        reads.append((s, e))
        inside.append(1)  # memory: fetching reads through read_exact (one read, not two)
        try:
            with orig_fetching(p, s, e) as stored:
                inside.clear()
                yield stored
        finally:
            inside.clear()

    inside: list[int] = []

    store.read_exact, store.fetching = read_exact, fetching
    small, large = os.urandom(20_000), os.urandom(40_000)
    fs.pipe_file(f"{root}/small", small)
    fs.pipe_file(f"{root}/large", large)
    stored = fs.info(f"{root}/small")["stored_size"]
    fresh = [fs.invalidate_cache(), reads.clear()]
    assert fs.cat_file(f"{root}/small") == small and fresh
    assert reads == [(0, stored)]
    reads.clear()
    assert fs.cat_file(f"{root}/small") == small
    assert len(reads) == 1 and reads[0][0] > 0 and reads[0][1] == stored  # the body only
    reads.clear()
    assert fs.cat_file(f"{root}/large") == large
    assert len(reads) == 2 and reads[0] == (0, 4096), reads
