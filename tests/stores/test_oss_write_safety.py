"""Write safety on OSS (issue 10, write side), against the OSS-compatible test server:
``x-oss-forbid-overwrite`` for exclusive creates, ``x-oss-copy-source-if-match`` for rewrap,
no bucket creation, ``envstore clean`` and a lost Complete reported as outcome unknown."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import oss2
import pytest

import envstore
from envstore.errors import ConcurrentModificationError, OutcomeUnknownError
from tests.stores.conftest_oss import (  # noqa: F401  (fixtures)
    OssEnv,
    oss_fixture,
    oss_server_fixture,
)
from tests.stores.lost_answers import drop_complete_answers

KiB = 1 << 10
PART = 256 * KiB


def _commit_headers(oss: OssEnv) -> list[tuple[str, str | None]]:
    return [
        (c.op, c.headers.get("x-oss-forbid-overwrite"))
        for c in oss.calls()
        if c.op in ("PutObject", "CompleteMultipartUpload")
    ]


def test_exclusive_create_sends_forbid_overwrite(oss: OssEnv) -> None:
    fs = oss.efs()
    fs.store.part_size = PART
    oss.clear()
    fs.pipe_file(oss.path("small"), b"x", mode="create")
    fs.pipe_file(oss.path("big"), os.urandom(3 * PART), mode="create")
    fs.pipe_file(oss.path("plain"), b"z")
    assert _commit_headers(oss) == [
        ("PutObject", "true"),
        ("CompleteMultipartUpload", "true"),
        ("PutObject", None),
    ]


def test_rewrap_copy_is_conditional(oss: OssEnv, other_key_uri: str) -> None:
    fs = oss.efs()
    fs.pipe_file(oss.path("o"), b"data")
    etag = oss.head("o").etag
    oss.clear()
    envstore.rewrap(oss.url("o"), other_key_uri, **oss.storage_options())
    copies = oss.calls("CopyObject")
    assert [c.headers.get("x-oss-copy-source-if-match") for c in copies] == [f'"{etag}"']
    assert oss.efs(key_uri=other_key_uri).cat_file(oss.path("o")) == b"data"


def test_conditional_copy_refused_by_the_store(oss: OssEnv, monkeypatch) -> None:
    """The object changes between envstore's HEAD and its copy: the server refuses the copy
    (412) and envstore reports ConcurrentModificationError."""
    fs = oss.efs()
    fs.pipe_file(oss.path("o"), b"version 1")
    loc = fs.envelope(oss.path("o"))
    original = oss2.Bucket.head_object

    def head_then_race(self, key, *args, **kwargs):
        out = original(self, key, *args, **kwargs)
        oss.client.put_object(key, b"not even envstore")
        return out

    monkeypatch.setattr(oss2.Bucket, "head_object", head_then_race)
    with pytest.raises(ConcurrentModificationError):
        fs.store.set_metadata(oss.path("o"), dict(loc.envelope.to_fields()))
    monkeypatch.undo()
    assert oss.raw("o") == b"not even envstore"


def test_never_creates_a_bucket(oss: OssEnv, tmp_path: Path) -> None:
    src = tmp_path / "f.txt"
    src.write_bytes(b"hello")
    missing = f"no-such-{uuid.uuid4().hex[:8]}"
    opts = oss.storage_options()
    with pytest.raises(FileNotFoundError, match=missing):
        envstore.upload(src, f"envstore::oss://{missing}/d/f.txt", **opts)
    fs = oss.efs()
    with pytest.raises(FileNotFoundError, match=missing):
        fs.makedirs(f"{missing}/a", exist_ok=True)
    with pytest.raises(FileNotFoundError, match=missing):
        fs.mkdir(missing)
    service = oss2.Service(oss2.Auth(oss.key, oss.secret), oss.endpoint)
    assert missing not in [b.name for b in service.list_buckets().buckets]
    envstore.upload(src, oss.url("d/f.txt"), **opts)
    assert fs.cat_file(oss.path("d/f.txt")) == b"hello"


def test_lost_complete_is_outcome_unknown(oss: OssEnv) -> None:
    with drop_complete_answers(oss.endpoint) as proxy:
        fs = oss.efs(oss={"endpoint": proxy})
        fs.store.part_size = PART
        with pytest.raises(OutcomeUnknownError) as info:
            fs.pipe_file(oss.path("big"), os.urandom(3 * PART))
    assert info.value.path == oss.path("big")
    assert "CompleteMultipartUpload" in str(info.value)
    assert oss.pending_uploads() == []
