"""The object layer (envstore/objects.py): its public API, one invalidation per change, and
key URIs checked when the filesystem is made."""

from __future__ import annotations

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
