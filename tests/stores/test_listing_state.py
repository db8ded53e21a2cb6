"""``encrypted`` in listings vs ``info`` on S3 and OSS: a listing carries no metadata, so it
says None (unknown) instead of guessing from sizes, and costs the listing's requests only;
``info`` (a HEAD) is always exact."""

from __future__ import annotations

from typing import Any

import pytest

from envstore.format import body_size
from tests.stores.common import payload
from tests.stores.conftest_oss import (  # noqa: F401  (fixtures)
    OssEnv,
    oss_fixture,
    oss_server_fixture,
    real_oss_fixture,
)

PLAIN_SIZE = body_size(1000)  # a plain object whose size an envstore object could have


def _check(fs: Any, path: Any, ops: Any, clear: Any) -> None:
    clear()
    listed = {e["name"]: e for e in fs.ls(path(""), detail=True)}
    assert listed[path("enc")]["encrypted"] is None
    assert listed[path("plain.bin")]["encrypted"] is None  # not "encrypted": nobody knows
    assert listed[path("enc")]["size"] == 5000
    assert listed[path("plain.bin")]["stored_size"] == PLAIN_SIZE
    found = fs.find(path(""), detail=True)
    assert {found[path(n)]["encrypted"] for n in ("enc", "plain.bin")} == {None}
    assert set(ops()) == {"ListObjectsV2"}
    # one object: exact, always
    assert fs.info(path("plain.bin"))["encrypted"] is False
    assert fs.info(path("enc"))["encrypted"] is True
    # and what a HEAD showed, a later listing may say
    again = {e["name"]: e for e in fs.ls(path(""), detail=True, refresh=True)}
    assert again[path("enc")]["encrypted"] is True


def test_s3_listing_says_unknown_info_is_exact(s3, count_requests) -> None:
    s3.efs().pipe_file(s3.path("enc"), payload(5000))
    s3.client.put_object(Bucket=s3.bucket, Key=s3.key("plain.bin"), Body=b"p" * PLAIN_SIZE)
    fs = s3.efs()
    rec = count_requests(fs)

    def ops() -> list[str]:
        return [op for op, _ in rec.calls]

    _check(fs, lambda n: s3.path(n).rstrip("/"), ops, rec.clear)


def test_oss_listing_says_unknown_info_is_exact(oss: OssEnv) -> None:
    if oss.server is None:
        pytest.skip("request counts need the test server")
    oss.efs().pipe_file(oss.path("enc"), payload(5000))
    oss.client.put_object(oss.key_of("plain.bin"), b"p" * PLAIN_SIZE)
    _check(oss.efs(), lambda n: oss.path(n).rstrip("/"), oss.ops, oss.clear)
