"""Issue 10 item 1 on OSS (the OSS-compatible test server): an object truncated between
locating and reading is an IntegrityError through every read path, never a short read."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from envstore.errors import IntegrityError
from envstore.format import CHUNK, PREFIX, WIRE_CHUNK
from envstore.objects import Objects
from tests.readops import outcomes
from tests.stores.conftest_oss import (  # noqa: F401  (fixtures)
    OssEnv,
    oss_fixture,
    oss_server_fixture,
)


@pytest.mark.parametrize(
    "offset",
    [PREFIX + WIRE_CHUNK, PREFIX + 3 * WIRE_CHUNK, PREFIX + WIRE_CHUNK + 999, PREFIX, 0],
    ids=["chunk-1", "chunk-3", "mid-chunk", "body-prefix", "no-body"],
)
def test_truncated_between_locate_and_read(
    oss: OssEnv, offset: int, monkeypatch, tmp_path: Path
) -> None:
    fs = oss.efs()
    path = oss.path("obj")
    with fs.open(path, "wb") as f:  # streamed: no size field
        f.write(os.urandom(3 * CHUNK + 100))
    raw, headers = oss.raw("obj"), oss.meta_headers("obj")

    def put(body: bytes) -> None:
        oss.client.put_object(oss.key_of("obj"), body, headers=headers)

    orig = Objects.locate

    def locate(self, p, head=None):
        loc = orig(self, p, head)
        put(raw[:offset])  # a concurrent writer truncates the object
        return loc

    monkeypatch.setattr(Objects, "locate", locate)
    results = outcomes(
        fs, path, oss.url("obj"), oss.storage_options(), tmp_path, before=lambda: put(raw)
    )
    for op, got in results.items():
        assert isinstance(got, IntegrityError), (op, got)
        assert path in str(got), (op, str(got))
