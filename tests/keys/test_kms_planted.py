"""Planted recipients with KMS keys: a recipient copied from another object written under the
same KMS key and context is decrypted by the KMS without complaint, to the other object's data
key; the reader must check it against the commitment and go on (issue 10 item 3)."""

from __future__ import annotations

import os
from typing import Any

import fsspec
import pytest

import envstore
from envstore.errors import IntegrityError
from envstore.keys.local import keygen

CTX = {"tenant": "t1"}


_SDK = {
    "awskms": "boto3",
    "alikms": "alibabacloud_kms20160120",
    "alikms-instance": "openapi_util.protobuf.api_pb2",
}


@pytest.fixture(params=sorted(_SDK))
def kms(request: pytest.FixtureRequest) -> Any:
    pytest.importorskip(_SDK[request.param])
    return request.getfixturevalue(request.param.replace("-", "_"))


def test_planted_kms_recipient(kms: Any, memroot: str, tmp_path) -> None:
    opts = {"key_uri": kms.uri, "kms_options": kms.kms_options, "context": CTX}
    fs = fsspec.filesystem("envstore", target_protocol="memory", skip_instance_cache=True, **opts)
    data = os.urandom(20_000)
    fs.pipe_file(f"{memroot}/victim", data)
    fs.pipe_file(f"{memroot}/donor", b"another object")
    (own,) = fs.envelope(f"{memroot}/victim").envelope.recipients
    (foreign,) = fs.envelope(f"{memroot}/donor").envelope.recipients
    assert own.key_id == foreign.key_id and own.blob != foreign.blob

    fs.set_recipients(f"{memroot}/victim", [foreign, own])
    assert fs.cat_file(f"{memroot}/victim") == data
    with fs.open(f"{memroot}/victim", "rb") as f:
        assert f.read() == data

    fs.set_recipients(f"{memroot}/victim", [foreign])
    with pytest.raises(IntegrityError, match="commitment"):
        fs.cat_file(f"{memroot}/victim")
    url = f"envstore::memory://{memroot}/victim"
    new_uri = f"local://{keygen(tmp_path / 'new.key')}"
    before = bytes(fs.fs.cat_file(f"{memroot}/victim"))
    with pytest.raises(IntegrityError):
        envstore.rewrap(url, new_uri, **opts)
    assert bytes(fs.fs.cat_file(f"{memroot}/victim")) == before

    fs.set_recipients(f"{memroot}/victim", [foreign, own])
    envstore.rewrap(url, new_uri, **opts)
    reader = fsspec.filesystem(
        "envstore", target_protocol="memory", key_uri=new_uri, skip_instance_cache=True
    )
    assert reader.cat_file(f"{memroot}/victim") == data
