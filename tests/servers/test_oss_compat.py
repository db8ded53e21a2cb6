"""The OSS-compatible test server, checked with the real oss2 client only."""

from __future__ import annotations

import base64
import hashlib
import random
import uuid
from collections.abc import Iterator

import pytest

oss2 = pytest.importorskip("oss2")
pytest.importorskip("werkzeug")

from oss2.models import PartInfo  # noqa: E402

from tests.servers import oss_compat  # noqa: E402
from tests.servers.oss_compat import OssServer, crc64, crc64_combine, resolve_range  # noqa: E402

STANDARD = {"x-oss-range-behavior": "standard"}


@pytest.fixture(scope="module")
def server() -> Iterator[OssServer]:
    with OssServer() as s:
        yield s


@pytest.fixture
def bucket(server: OssServer) -> oss2.Bucket:
    server.clear_log()
    name = f"t-{uuid.uuid4().hex[:12]}"
    b = oss2.Bucket(
        oss2.Auth(server.access_key_id, server.access_key_secret), server.endpoint, name
    )
    b.create_bucket()
    yield b
    assert server.server_errors == []


def _client_crc(data: bytes) -> int:
    c = oss2.utils.Crc64(0)
    c.update(data)
    return int(c.crc)


# -- objects and metadata ------------------------------------------------------------------------


def _exists(bucket: oss2.Bucket, key: str) -> bool:
    """HEAD (envstore's call; oss2's object_exists sends GetObjectMeta, not emulated)."""
    try:
        bucket.head_object(key)
    except oss2.exceptions.NotFound:
        return False
    return True


def test_round_trip_with_metadata(bucket: oss2.Bucket, server: OssServer) -> None:
    data = random.Random(1).randbytes(70_000)
    key = "dir/ä b+c%d.bin"
    meta = {"x-oss-meta-Envstore-Salt": "c2FsdA==", "x-oss-meta-owner": "team a"}
    put = bucket.put_object(key, data, headers={**meta, "Content-Type": "application/x-test"})
    md5 = hashlib.md5(data).hexdigest().upper()
    assert put.etag == md5 and put.crc == _client_crc(data) == crc64(data)
    head = bucket.head_object(key)
    assert head.content_length == len(data) and head.etag == md5
    assert head.headers["x-oss-meta-envstore-salt"] == "c2FsdA=="  # names come back lowercase
    assert head.headers["x-oss-meta-owner"] == "team a"
    assert head.content_type == "application/x-test" and head.object_type == "Normal"
    assert head.server_crc == crc64(data) and head.last_modified > 0
    got = bucket.get_object(key)
    assert got.read() == data and got.client_crc == got.server_crc == crc64(data)
    assert got.headers["x-oss-meta-owner"] == "team a" and got.request_id
    # Content-MD5 is checked
    good = base64.b64encode(hashlib.md5(b"x").digest()).decode()
    bucket.put_object("md5", b"x", headers={"Content-MD5": good})
    with pytest.raises(oss2.exceptions.InvalidDigest):
        bucket.put_object("md5", b"y", headers={"Content-MD5": good})
    assert bucket.get_object("md5").read() == b"x"
    assert [e.op for e in server.calls(bucket=bucket.bucket_name)][:4] == [
        "CreateBucket",
        "PutObject",
        "HeadObject",
        "GetObject",
    ]


def test_get_object_to_file_checks_crc(bucket: oss2.Bucket, tmp_path, monkeypatch) -> None:
    bucket.put_object("a", b"payload" * 1000)
    bucket.get_object_to_file("a", str(tmp_path / "a"))  # compares client and server CRC
    assert (tmp_path / "a").read_bytes() == b"payload" * 1000
    # a server that lies about the CRC is caught by oss2 on PUT and GET: the header is live
    monkeypatch.setattr(oss_compat, "crc64", lambda data, crc=0: 12345)
    with pytest.raises(oss2.exceptions.InconsistentError):
        bucket.put_object("b", b"other bytes")
    with pytest.raises(oss2.exceptions.InconsistentError):
        bucket.get_object_to_file("b", str(tmp_path / "b"))


def test_missing_objects_and_buckets(bucket: oss2.Bucket, server: OssServer) -> None:
    with pytest.raises(oss2.exceptions.NoSuchKey) as info:
        bucket.get_object("missing")
    assert info.value.status == 404 and info.value.details["Key"] == "missing"
    with pytest.raises(oss2.exceptions.NoSuchKey) as info:  # HEAD: error in x-oss-err
        bucket.head_object("missing")
    assert info.value.body == b"" and "x-oss-err" in info.value.headers
    assert not _exists(bucket, "missing")
    other = oss2.Bucket(bucket.auth, server.endpoint, "no-such-bucket-here")
    with pytest.raises(oss2.exceptions.NoSuchBucket):
        other.put_object("k", b"1")
    with pytest.raises(oss2.exceptions.NoSuchBucket):
        other.head_object("k")
    bucket.delete_object("missing")  # deleting nothing is fine (204)


def test_user_metadata_limit(bucket: oss2.Bucket, server: OssServer) -> None:
    name = "x-oss-meta-big"
    fits = {name: "v" * (server.metadata_limit - len(name))}
    bucket.put_object("ok", b"1", headers=fits)
    assert len(bucket.head_object("ok").headers[name]) == server.metadata_limit - len(name)
    over = {name: "v" * (server.metadata_limit - len(name) + 1)}
    with pytest.raises(oss2.exceptions.InvalidArgument) as info:
        bucket.put_object("no", b"1", headers=over)
    assert info.value.status == 400 and info.value.ec == "0011-00000002"
    with pytest.raises(oss2.exceptions.InvalidArgument):
        bucket.init_multipart_upload("no", headers=over)
    with pytest.raises(oss2.exceptions.InvalidArgument):
        bucket.update_object_meta("ok", over)
    split = {f"x-oss-meta-k{i}": "v" * 1000 for i in range(9)}  # the total counts, not each
    with pytest.raises(oss2.exceptions.InvalidArgument):
        bucket.put_object("no", b"1", headers=split)
    assert not _exists(bucket, "no") and server.uploads(bucket.bucket_name) == []


# -- authentication ------------------------------------------------------------------------------


def test_signatures_are_verified(bucket: oss2.Bucket, server: OssServer) -> None:
    bucket.put_object("k", b"data")
    name = bucket.bucket_name
    wrong = oss2.Bucket(oss2.Auth(server.access_key_id, "not-the-secret"), server.endpoint, name)
    with pytest.raises(oss2.exceptions.SignatureDoesNotMatch) as info:
        wrong.get_object("k")
    assert info.value.status == 403 and "StringToSign" in info.value.details
    with pytest.raises(oss2.exceptions.SignatureDoesNotMatch):
        wrong.put_object("k", b"evil" * 50_000)  # body drained: the connection stays usable
    with pytest.raises(oss2.exceptions.SignatureDoesNotMatch):
        wrong.head_object("k")
    unknown = oss2.Bucket(oss2.Auth("nobody", server.access_key_secret), server.endpoint, name)
    with pytest.raises(oss2.exceptions.ServerError) as info:
        unknown.get_object("k")
    assert (info.value.status, info.value.code) == (403, "InvalidAccessKeyId")
    anonymous = oss2.Bucket(oss2.AnonymousAuth(), server.endpoint, name)
    with pytest.raises(oss2.exceptions.AccessDenied):
        anonymous.get_object("k")
    assert bucket.get_object("k").read() == b"data"
    # sub-resources (uploads, uploadId) are part of the string to sign: these pass only if the
    # server canonicalises them as oss2 does
    up = bucket.init_multipart_upload("mp").upload_id
    assert bucket.upload_part("mp", up, 1, b"x").etag
    bucket.abort_multipart_upload("mp", up)


def test_sts_tokens(bucket: oss2.Bucket, server: OssServer) -> None:
    bucket.put_object("k", b"data")
    ak, sk, token = server.add_sts_credentials()
    name = bucket.bucket_name
    sts = oss2.Bucket(oss2.StsAuth(ak, sk, token), server.endpoint, name)
    assert sts.get_object("k").read() == b"data"
    assert "x-oss-security-token" not in server.calls("GetObject")[-1].headers  # not logged
    forged = oss2.Bucket(oss2.StsAuth(ak, sk, token + "x"), server.endpoint, name)
    with pytest.raises(oss2.exceptions.ServerError) as info:
        forged.get_object("k")
    assert (info.value.status, info.value.code) == (403, "InvalidSecurityToken")
    without = oss2.Bucket(oss2.Auth(ak, sk), server.endpoint, name)
    with pytest.raises(oss2.exceptions.ServerError) as info:
        without.get_object("k")
    assert info.value.status == 403


# -- ranges --------------------------------------------------------------------------------------

SIZE = 1000


@pytest.mark.parametrize(
    ("spec", "standard", "want"),
    [
        ("bytes=0-499", False, (0, 500)),
        ("bytes=0-499", True, (0, 500)),
        ("bytes=500-999", False, (500, 1000)),
        ("bytes=500-", False, (500, 1000)),
        ("bytes=-300", False, (700, 1000)),
        ("bytes=0-", True, (0, 1000)),
        ("bytes=999-999", True, (999, 1000)),
        # the end past the object: legacy → whole object (200); standard → clipped (206)
        ("bytes=500-1000", False, None),
        ("bytes=500-1000", True, (500, 1000)),
        ("bytes=-2000", False, None),
        ("bytes=-2000", True, (0, 1000)),
        # the start at or past the end: legacy → whole object; standard → 416
        ("bytes=1000-2000", False, None),
        ("bytes=1000-2000", True, 416),
        ("bytes=1000-", False, None),
        ("bytes=1000-", True, 416),
        ("bytes=-0", True, 416),
        # malformed: ignored in both modes
        ("byte=0-499", False, None),
        ("bytes=500-100", True, None),
        ("bytes=-", True, None),
        # several ranges: the first one counts
        ("bytes=0-9,20-29", True, (0, 10)),
    ],
)
def test_range_behaviour(bucket: oss2.Bucket, spec: str, standard: bool, want: object) -> None:
    data = random.Random(2).randbytes(SIZE)
    bucket.put_object("r", data)
    headers = {"Range": spec, **(STANDARD if standard else {})}
    if want == 416:
        with pytest.raises(oss2.exceptions.ServerError) as info:
            bucket.get_object("r", headers=headers)
        assert (info.value.status, info.value.code) == (416, "InvalidRange")
        return
    got = bucket.get_object("r", headers=headers)
    body = got.read()
    if want is None:
        assert got.status == 200 and body == data and got.content_range is None
    else:
        start, end = want
        assert got.status == 206 and body == data[start:end]
        assert got.content_range == f"bytes {start}-{end - 1}/{SIZE}"
        assert got.content_length == end - start


def test_byte_range_argument_and_empty_object(bucket: oss2.Bucket, server: OssServer) -> None:
    data = bytes(range(256)) * 40
    bucket.put_object("r", data)
    assert bucket.get_object("r", byte_range=(10, 19), headers=STANDARD).read() == data[10:20]
    assert bucket.get_object("r", byte_range=(None, 5)).read() == data[-5:]
    bucket.put_object("empty", b"")
    assert bucket.get_object("empty").read() == b""
    assert bucket.get_object("empty", byte_range=(0, 10)).read() == b""  # legacy: whole (empty)
    with pytest.raises(oss2.exceptions.ServerError) as info:
        bucket.get_object("empty", byte_range=(0, None), headers=STANDARD)
    assert info.value.status == 416
    ranged = server.calls("GetObject")[0]
    assert ranged.range == "bytes=10-19" and ranged.headers["x-oss-range-behavior"] == "standard"
    assert ranged.sent == 10
    assert resolve_range("bytes=0-0", 0, standard=False) is None


# -- multipart -----------------------------------------------------------------------------------


def test_multipart_round_trip(bucket: oss2.Bucket, server: OssServer) -> None:
    rng = random.Random(3)
    chunks = [rng.randbytes(150_000), rng.randbytes(100 * 1024), rng.randbytes(7)]
    key = "mp/obj"
    up = bucket.init_multipart_upload(
        key, headers={"x-oss-meta-envstore-version": "1", "Content-Type": "application/x-a"}
    ).upload_id
    parts = []
    for number, chunk in enumerate(chunks, 1):
        res = bucket.upload_part(key, up, number, chunk)
        assert res.crc == crc64(chunk)
        parts.append(PartInfo(number, res.etag, size=len(chunk), part_crc=res.crc))
    done = bucket.complete_multipart_upload(key, up, parts)  # oss2 checks the combined CRC
    data = b"".join(chunks)
    assert done.crc == crc64(data) and done.etag.endswith("-3")
    head = bucket.head_object(key)
    assert head.headers["x-oss-meta-envstore-version"] == "1"  # metadata from initiate
    assert head.content_type == "application/x-a" and head.object_type == "Multipart"
    assert bucket.get_object(key).read() == data
    assert next(iter(oss2.ObjectIteratorV2(bucket))).etag == done.etag
    assert server.uploads(bucket.bucket_name) == []


def test_crc64_combine_matches_concatenation() -> None:
    rng = random.Random(4)
    for n1, n2 in [(0, 5), (5, 0), (1, 1), (1000, 77), (100_000, 123_457)]:
        a, b = rng.randbytes(n1), rng.randbytes(n2)
        assert crc64_combine(crc64(a), crc64(b), n2) == crc64(a + b) == _client_crc(a + b)


def test_multipart_errors_and_abort(bucket: oss2.Bucket, server: OssServer) -> None:
    key = "mp/small"
    up = bucket.init_multipart_upload(key).upload_id
    p1 = bucket.upload_part(key, up, 1, b"a" * 1000)  # too small for a non-last part
    p2 = bucket.upload_part(key, up, 2, b"b" * 10)
    with pytest.raises(oss2.exceptions.ServerError) as info:
        bucket.complete_multipart_upload(key, up, [PartInfo(1, p1.etag), PartInfo(2, p2.etag)])
    assert (info.value.status, info.value.code) == (400, "EntityTooSmall")
    with pytest.raises(oss2.exceptions.ServerError) as info:
        bucket.complete_multipart_upload(key, up, [PartInfo(1, p2.etag)])
    assert info.value.code == "InvalidPart"
    with pytest.raises(oss2.exceptions.ServerError) as info:
        bucket.complete_multipart_upload(key, up, [PartInfo(3, p2.etag)])
    assert info.value.code == "InvalidPart"
    uploads = bucket.list_multipart_uploads(prefix="mp/").upload_list
    assert [(u.key, u.upload_id) for u in uploads] == [(key, up)]
    bucket.abort_multipart_upload(key, up)
    assert bucket.list_multipart_uploads().upload_list == []
    assert not _exists(bucket, key)
    with pytest.raises(oss2.exceptions.NoSuchUpload):
        bucket.upload_part(key, up, 3, b"c")
    with pytest.raises(oss2.exceptions.NoSuchUpload):
        bucket.abort_multipart_upload(key, up)
    with pytest.raises(oss2.exceptions.NoSuchUpload):  # an upload belongs to its key
        other = bucket.init_multipart_upload("mp/other").upload_id
        bucket.upload_part(key, other, 1, b"c")
    # a single part below the minimum is fine: it is the last one
    up = bucket.init_multipart_upload(key).upload_id
    p = bucket.upload_part(key, up, 1, b"tiny")
    bucket.complete_multipart_upload(key, up, [PartInfo(1, p.etag)])
    assert bucket.get_object(key).read() == b"tiny"
    ids = {u.upload_id for u in oss2.MultipartUploadIterator(bucket, max_uploads=1)}
    assert len(ids) == 1  # mp/other
    bucket.abort_multipart_upload("mp/other", ids.pop())


def test_upload_part_copy_with_ranges(bucket: oss2.Bucket, server: OssServer) -> None:
    data = random.Random(5).randbytes(350_000)
    bucket.put_object("src", data, headers={"x-oss-meta-a": "1"})
    up = bucket.init_multipart_upload("dst", headers={"x-oss-meta-b": "2"}).upload_id
    name = bucket.bucket_name
    cuts = [(0, 149_999), (150_000, 299_999), (300_000, 349_999)]
    parts = []
    for number, (first, last) in enumerate(cuts, 1):
        res = bucket.upload_part_copy(name, "src", (first, last), "dst", up, number)
        parts.append(PartInfo(number, res.etag))
    bucket.complete_multipart_upload("dst", up, parts)
    head = bucket.head_object("dst")
    assert head.server_crc == crc64(data) and head.headers.get("x-oss-meta-b") == "2"
    assert "x-oss-meta-a" not in head.headers
    assert bucket.get_object("dst").read() == data
    calls = server.calls("UploadPartCopy")
    assert [c.headers["x-oss-copy-source-range"] for c in calls] == [
        "bytes=0-149999",
        "bytes=150000-299999",
        "bytes=300000-349999",
    ]
    up = bucket.init_multipart_upload("dst2").upload_id
    with pytest.raises(oss2.exceptions.InvalidArgument):
        bucket.upload_part_copy(name, "src", (0, 350_000), "dst2", up, 1)  # past the end
    bucket.abort_multipart_upload("dst2", up)


# -- copies --------------------------------------------------------------------------------------


def test_copy_source_if_match(bucket: oss2.Bucket, server: OssServer) -> None:
    """x-oss-copy-source-if-match: 412 PreconditionFailed unless the source has that ETag."""
    name = bucket.bucket_name
    etag = bucket.put_object("a", b"v1").etag
    with pytest.raises(oss2.exceptions.PreconditionFailed):
        bucket.copy_object(name, "a", "b", headers={"x-oss-copy-source-if-match": '"0BAD"'})
    assert not _exists(bucket, "b")
    bucket.copy_object(name, "a", "b", headers={"x-oss-copy-source-if-match": f'"{etag}"'})
    bucket.update_object_meta("a", {"x-oss-meta-k": "1", "x-oss-copy-source-if-match": etag})
    assert bucket.head_object("a").headers["x-oss-meta-k"] == "1"
    bucket.put_object("a", b"v2")
    with pytest.raises(oss2.exceptions.PreconditionFailed):
        bucket.update_object_meta("a", {"x-oss-meta-k": "2", "x-oss-copy-source-if-match": etag})
    assert bucket.get_object("a").read() == b"v2"


def test_copy_object_metadata_directive(bucket: oss2.Bucket, server: OssServer) -> None:
    name = bucket.bucket_name
    bucket.put_object("a", b"content", headers={"x-oss-meta-m": "1", "Content-Type": "text/x"})
    bucket.copy_object(name, "a", "b")  # COPY by default
    head = bucket.head_object("b")
    assert head.headers["x-oss-meta-m"] == "1" and head.content_type == "text/x"
    bucket.copy_object(name, "a", "c", headers={"x-oss-metadata-directive": "REPLACE"})
    assert "x-oss-meta-m" not in bucket.head_object("c").headers
    bucket.update_object_meta("a", {"x-oss-meta-n": "2", "Content-Type": "text/y"})
    head = bucket.head_object("a")
    assert head.headers["x-oss-meta-n"] == "2" and "x-oss-meta-m" not in head.headers
    assert head.content_type == "text/y" and bucket.get_object("a").read() == b"content"
    assert server.calls("CopyObject")[-1].headers["x-oss-metadata-directive"] == "REPLACE"
    with pytest.raises(oss2.exceptions.NoSuchKey):
        bucket.copy_object(name, "missing", "d")
    with pytest.raises(oss2.exceptions.InvalidArgument):
        bucket.copy_object(name, "a", "d", headers={"x-oss-metadata-directive": "MERGE"})
    # standard headers are kept like metadata: copied by COPY, replaced by REPLACE
    bucket.put_object("s", b"x", headers={"Cache-Control": "no-cache", "Content-Language": "en"})
    bucket.copy_object(name, "s", "s2")
    assert bucket.head_object("s2").headers["Cache-Control"] == "no-cache"
    bucket.update_object_meta("s2", {"Content-Disposition": "attachment"})
    head = bucket.head_object("s2")
    assert (
        "Cache-Control" not in head.headers and head.headers["Content-Disposition"] == "attachment"
    )
    old = server.copy_limit
    server.copy_limit = 3  # CopyObject refuses large sources (OSS: above 1 GB)
    try:
        with pytest.raises(oss2.exceptions.InvalidArgument):
            bucket.copy_object(name, "a", "d")
        bucket.update_object_meta("a", {"x-oss-meta-n": "3"})  # in place: metadata only
    finally:
        server.copy_limit = old
    assert not _exists(bucket, "d") and bucket.head_object("a").headers["x-oss-meta-n"] == "3"


# -- listing -------------------------------------------------------------------------------------


def test_listing_v2_with_pagination_and_v1_refused(bucket: oss2.Bucket, server: OssServer) -> None:
    keys = ["a", "b/1", "b/2", "b/c/3", "c d+e", "d/ü/1", "e%2F", "f"]
    for k in keys:
        bucket.put_object(k, k.encode())
    flat = [o.key for o in oss2.ObjectIteratorV2(bucket, max_keys=3)]
    assert flat == sorted(keys)
    assert len(server.calls("ListObjectsV2")) == 3
    # calls envstore never sends are not emulated: they answer NotImplemented
    for call in (
        lambda: bucket.list_objects(),
        lambda: bucket.get_object_meta("a"),
        lambda: bucket.get_bucket_location(),
    ):
        with pytest.raises(oss2.exceptions.OssError) as info:
            call()
        assert info.value.code == "NotImplemented" or info.value.status == 400
    tree = [
        (o.key, o.is_prefix()) for o in oss2.ObjectIteratorV2(bucket, delimiter="/", max_keys=2)
    ]
    want = [("a", False), ("b/", True), ("c d+e", False), ("d/", True), ("e%2F", False)]
    assert tree == [*want, ("f", False)]
    sub = [o.key for o in oss2.ObjectIteratorV2(bucket, prefix="b/", delimiter="/", max_keys=1)]
    assert sub == ["b/1", "b/2", "b/c/"]
    entry = next(iter(oss2.ObjectIteratorV2(bucket, prefix="c")))
    assert entry.size == 5 and entry.etag == hashlib.md5(b"c d+e").hexdigest().upper()
    assert entry.type == "Normal" and entry.last_modified > 0
    page = bucket.list_objects_v2(max_keys=2, start_after="b/2")
    assert [o.key for o in page.object_list] == ["b/c/3", "c d+e"] and page.is_truncated
    assert bucket.list_objects_v2(prefix="zzz").object_list == []
    assert all(c.query.get("encoding-type") == "url" for c in server.calls("ListObjectsV2"))


def test_batch_delete_and_buckets(bucket: oss2.Bucket, server: OssServer) -> None:
    for k in ("x/1", "x/2", "x/3 +"):
        bucket.put_object(k, b"1")
    result = bucket.batch_delete_objects(["x/1", "x/3 +", "x/missing"])
    assert sorted(result.deleted_keys) == ["x/1", "x/3 +", "x/missing"]
    assert [o.key for o in oss2.ObjectIteratorV2(bucket)] == ["x/2"]
    with pytest.raises(oss2.exceptions.BucketNotEmpty):
        bucket.delete_bucket()
    bucket.delete_object("x/2")
    names = [b.name for b in oss2.BucketIterator(oss2.Service(bucket.auth, server.endpoint))]
    assert bucket.bucket_name in names
    assert bucket.get_bucket_info().name == bucket.bucket_name
    bucket.delete_bucket()
    with pytest.raises(oss2.exceptions.NoSuchBucket):
        bucket.get_bucket_info()
    bucket.create_bucket()  # for the fixture's clean exit


# -- hooks ---------------------------------------------------------------------------------------


def test_fault_injection_and_request_log(bucket: oss2.Bucket, server: OssServer) -> None:
    bucket.put_object("k", b"0123456789")
    server.fail_next("GetObject", status=503, code="ServiceUnavailable", count=2)
    for _ in range(2):
        with pytest.raises(oss2.exceptions.ServerError) as info:
            bucket.get_object("k")
        assert (info.value.status, info.value.code) == (503, "ServiceUnavailable")
    assert bucket.get_object("k").read() == b"0123456789"  # only the next two
    server.fail_next("PUT", status=500)  # an HTTP method matches any API using it
    with pytest.raises(oss2.exceptions.ServerError):
        bucket.put_object("k", b"new")
    assert bucket.get_object("k").read() == b"0123456789"  # nothing changed
    server.fail_next(
        lambda e: e.op == "HeadObject" and e.key == "k", status=403, code="AccessDenied"
    )
    with pytest.raises(oss2.exceptions.AccessDenied):
        bucket.head_object("k")
    gets = server.calls("GetObject")
    assert [g.status for g in gets] == [503, 503, 200, 200]
    assert [g.sent for g in gets] == [0, 0, 10, 10] and server.get_bytes == 20
    server.clear_log()
    assert server.calls() == [] and server.get_bytes == 0
