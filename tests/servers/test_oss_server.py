"""The OSS emulator against the real ``oss2`` client (and raw HTTP where oss2 cannot be wrong)."""

from __future__ import annotations

import base64
import hashlib
import os
import time
from collections.abc import Iterator
from pathlib import Path

import oss2
import pytest
import requests
from oss2 import exceptions as oe
from oss2.models import PartInfo

from tests.servers.oss_server import OssServer, crc64

BUCKET = "test-bucket"
KB = 1024


@pytest.fixture(scope="module")
def server() -> Iterator[OssServer]:
    with OssServer(buckets=(BUCKET,)) as srv:
        yield srv


@pytest.fixture
def oss(server: OssServer) -> OssServer:
    server.reset()
    return server


@pytest.fixture
def bucket(oss: OssServer) -> oss2.Bucket:
    return oss2.Bucket(oss2.Auth(oss.access_key_id, oss.access_key_secret), oss.endpoint, BUCKET)


def _crc(data: bytes) -> int:
    c = oss2.utils.Crc64()
    c.update(data)
    return c.crc


# -- objects and metadata ---------------------------------------------------------------------
def test_put_get_head_round_trip_with_metadata(bucket: oss2.Bucket, oss: OssServer) -> None:
    data = os.urandom(3000)
    put = bucket.put_object(
        "dir/obj.bin", data, headers={"x-oss-meta-Envstore-Key": "abc", "x-oss-meta-n": "1"}
    )
    md5 = hashlib.md5(data).hexdigest().upper()
    assert put.etag == md5 and put.crc == _crc(data) == crc64(data)

    got = bucket.get_object("dir/obj.bin")
    assert got.read() == data
    assert got.headers["x-oss-meta-envstore-key"] == "abc"
    assert got.object_type == "Normal" and got.etag == md5
    assert got.server_crc == got.client_crc == _crc(data)
    assert got.headers["Content-MD5"] == base64.b64encode(bytes.fromhex(md5)).decode()

    head = bucket.head_object("dir/obj.bin")
    assert head.content_length == 3000 and head.etag == md5
    assert head.headers["x-oss-meta-n"] == "1"
    assert abs(head.last_modified - time.time()) < 5
    assert bucket.get_object_meta("dir/obj.bin").content_length == 3000
    assert oss.get_raw(BUCKET, "dir/obj.bin").metadata == {
        "x-oss-meta-envstore-key": "abc",
        "x-oss-meta-n": "1",
    }
    assert bucket.object_exists("dir/obj.bin") and not bucket.object_exists("nope")


@pytest.mark.parametrize("key", ["a b/ü ñ+%20?x#y&z=1.txt", "100%", "x//y/", "日本/語"])
def test_awkward_keys(bucket: oss2.Bucket, key: str) -> None:
    bucket.put_object(key, b"v")
    assert bucket.get_object(key).read() == b"v"
    assert [o.key for o in oss2.ObjectIterator(bucket)] == [key]
    assert [o.key for o in oss2.ObjectIteratorV2(bucket)] == [key]
    bucket.delete_object(key)
    assert not bucket.object_exists(key)


def test_missing_key_and_bucket(bucket: oss2.Bucket, oss: OssServer) -> None:
    with pytest.raises(oe.NoSuchKey):
        bucket.get_object("missing")
    with pytest.raises(oe.NoSuchKey) as head:  # HEAD: error read from the x-oss-err header
        bucket.head_object("missing")
    assert head.value.status == 404 and head.value.details["Key"] == "missing"
    other = oss2.Bucket(bucket.auth, oss.endpoint, "no-such-bucket")
    with pytest.raises(oe.NoSuchBucket):
        other.get_object("k")
    with pytest.raises(oe.NoSuchBucket):
        other.head_object("k")
    bucket.delete_object("missing")  # DELETE of a missing key succeeds, as on OSS


def test_user_metadata_limit(bucket: oss2.Bucket, oss: OssServer) -> None:
    name = "x-oss-meta-big"
    bucket.put_object("ok", b"", headers={name: "v" * (oss.user_meta_limit - len(name))})
    with pytest.raises(oe.InvalidArgument) as err:
        bucket.put_object("big", b"", headers={name: "v" * (oss.user_meta_limit - len(name) + 1)})
    assert err.value.details["EC"] == "0011-00000002"
    with pytest.raises(oe.InvalidArgument):
        bucket.put_object("many", b"", headers={f"x-oss-meta-k{i}": "v" * 1000 for i in range(9)})
    with pytest.raises(oe.InvalidArgument):
        bucket.init_multipart_upload("mp", headers={name: "v" * 9000})
    with pytest.raises(oe.InvalidArgument):  # underscores are not allowed in metadata names
        bucket.put_object("underscore", b"", headers={"x-oss-meta-my_key": "v"})
    assert oss.keys(BUCKET) == ["ok"]


def test_content_md5_and_forbid_overwrite(bucket: oss2.Bucket) -> None:
    good = base64.b64encode(hashlib.md5(b"abc").digest()).decode()
    bucket.put_object("k", b"abc", headers={"Content-MD5": good})
    with pytest.raises(oe.InvalidDigest):
        bucket.put_object("k", b"abd", headers={"Content-MD5": good})
    with pytest.raises(oe.ServerError) as err:
        bucket.put_object("k", b"new", headers={"x-oss-forbid-overwrite": "true"})
    assert (err.value.status, err.value.code) == (409, "FileAlreadyExists")
    assert bucket.get_object("k").read() == b"abc"


def test_conditional_get(bucket: oss2.Bucket) -> None:
    etag = bucket.put_object("k", b"abc").etag
    assert bucket.get_object("k", headers={"If-Match": f'"{etag}"'}).read() == b"abc"
    with pytest.raises(oe.PreconditionFailed):
        bucket.get_object("k", headers={"If-Match": '"0000"'})
    with pytest.raises(oe.NotModified):
        bucket.get_object("k", headers={"If-None-Match": f'"{etag}"'})


# -- authentication ---------------------------------------------------------------------------
def test_wrong_secret_unknown_key_and_anonymous(bucket: oss2.Bucket, oss: OssServer) -> None:
    bucket.put_object("k", b"v")
    wrong = oss2.Bucket(oss2.Auth(oss.access_key_id, "not-the-secret"), oss.endpoint, BUCKET)
    with pytest.raises(oe.SignatureDoesNotMatch) as err:
        wrong.get_object("k")
    assert err.value.status == 403 and "StringToSign" in err.value.details
    with pytest.raises(oe.SignatureDoesNotMatch):
        wrong.head_object("k")
    with pytest.raises(oe.SignatureDoesNotMatch):
        wrong.put_object("k", b"overwrite")
    unknown = oss2.Bucket(oss2.Auth("nobody", oss.access_key_secret), oss.endpoint, BUCKET)
    with pytest.raises(oe.ServerError) as err:
        unknown.get_object("k")
    assert (err.value.status, err.value.code) == (403, "InvalidAccessKeyId")
    with pytest.raises(oe.AccessDenied):
        oss2.Bucket(oss2.AnonymousAuth(), oss.endpoint, BUCKET).get_object("k")
    assert bucket.get_object("k").read() == b"v"


def test_signature_covers_headers_and_subresources(bucket: oss2.Bucket, oss: OssServer) -> None:
    url = bucket.sign_url("PUT", "k", 60, headers={"x-oss-meta-a": "1"})
    assert requests.put(url, data=b"v", headers={"x-oss-meta-a": "1"}).status_code == 200
    assert requests.put(url, data=b"v", headers={"x-oss-meta-a": "2"}).status_code == 403
    url = bucket.sign_url("GET", "k", 60)
    assert requests.get(url).content == b"v"
    assert requests.get(url + "&acl").status_code == 403  # an unsigned subresource
    assert requests.get(url.replace("/k?", "/j?")).status_code == 403
    expired = bucket.sign_url("GET", "k", -10)
    assert requests.get(expired).status_code == 403


def test_v4_signatures(oss: OssServer) -> None:
    auth = oss2.AuthV4(oss.access_key_id, oss.access_key_secret)
    v4 = oss2.Bucket(auth, oss.endpoint, BUCKET, region="cn-hangzhou")
    v4.put_object("a/b c", b"data", headers={"x-oss-meta-x": "y"})
    assert v4.get_object("a/b c", byte_range=(1, 2)).read() == b"at"
    assert v4.head_object("a/b c").headers["x-oss-meta-x"] == "y"
    assert [o.key for o in oss2.ObjectIteratorV2(v4, prefix="a/", max_keys=1)] == ["a/b c"]
    bad = oss2.Bucket(oss2.AuthV4(oss.access_key_id, "x"), oss.endpoint, BUCKET, region="r")
    with pytest.raises(oe.SignatureDoesNotMatch):
        bad.get_object("a/b c")


def test_sts_tokens(oss: OssServer) -> None:
    ak, secret, token = oss.issue_sts_credentials()
    sts = oss2.Bucket(oss2.StsAuth(ak, secret, token), oss.endpoint, BUCKET)
    sts.put_object("k", b"v")
    assert sts.get_object("k").read() == b"v"
    forged = oss2.Bucket(oss2.StsAuth(ak, secret, token + "x"), oss.endpoint, BUCKET)
    with pytest.raises(oe.ServerError) as err:
        forged.get_object("k")
    assert err.value.code == "InvalidAccessKeyId"
    ak2, secret2, token2 = oss.issue_sts_credentials(ttl=-1)
    expired = oss2.Bucket(oss2.StsAuth(ak2, secret2, token2), oss.endpoint, BUCKET)
    with pytest.raises(oe.ServerError) as err:
        expired.get_object("k")
    assert err.value.code == "SecurityTokenExpired"


# -- ranges and CRC64 -------------------------------------------------------------------------
def test_ranges_default_behaviour(bucket: oss2.Bucket) -> None:
    data = bytes(range(100))
    bucket.put_object("r", data)

    def get(start: int | None, end: int | None) -> tuple[int, bytes, str | None]:
        result = bucket.get_object("r", byte_range=(start, end))
        return result.status, result.read(), result.headers.get("Content-Range")

    assert get(10, 19) == (206, data[10:20], "bytes 10-19/100")
    assert get(90, None) == (206, data[90:], "bytes 90-99/100")
    assert get(None, 5) == (206, data[95:], "bytes 95-99/100")
    assert get(0, 99) == (206, data, "bytes 0-99/100")
    # invalid or unsatisfiable without x-oss-range-behavior: the whole object, 200
    assert get(50, 100) == (200, data, None)
    assert get(100, 200) == (200, data, None)
    assert get(None, 101) == (200, data, None)


def test_ranges_standard_behaviour(bucket: oss2.Bucket) -> None:
    data = bytes(range(100))
    bucket.put_object("r", data)
    bucket.put_object("empty", b"")
    std = {"x-oss-range-behavior": "standard"}
    clipped = bucket.get_object("r", byte_range=(50, 1000), headers=std)
    assert (clipped.status, clipped.read()) == (206, data[50:])
    assert clipped.headers["Content-Range"] == "bytes 50-99/100"
    suffix = bucket.get_object("r", byte_range=(None, 500), headers=std)
    assert (suffix.status, suffix.read()) == (206, data)
    for key, span in (("r", (100, 200)), ("r", (100, None)), ("empty", (0, 10))):
        with pytest.raises(oe.ServerError) as err:
            bucket.get_object(key, byte_range=span, headers=std)
        assert (err.value.status, err.value.code) == (416, "InvalidRange")


def test_ranges_with_raw_headers(bucket: oss2.Bucket) -> None:
    """Malformed Range headers oss2 would never build, sent through presigned URLs."""
    data = bytes(range(100))
    bucket.put_object("r", data)
    plain = bucket.sign_url("GET", "r", 60)
    std_headers = {"x-oss-range-behavior": "standard"}
    std = bucket.sign_url("GET", "r", 60, headers=std_headers)
    for url, extra in ((plain, {}), (std, std_headers)):
        for bad in ("byte=0-4", "bytes=9-3", "bytes=a-b", "bytes=-"):
            resp = requests.get(url, headers={"Range": bad, **extra})
            assert (resp.status_code, resp.content) == (200, data), bad
    resp = requests.get(plain, headers={"Range": "bytes=0-4,10-14"})  # first range only
    assert (resp.status_code, resp.content) == (206, data[:5])
    resp = requests.get(std, headers={"Range": "bytes=200-", **std_headers})
    assert resp.status_code == 416 and b"<Code>InvalidRange</Code>" in resp.content


def test_crc64_checked_by_oss2(bucket: oss2.Bucket, oss: OssServer, tmp_path: Path) -> None:
    assert bucket.enable_crc
    data = os.urandom(200 * KB)
    assert bucket.put_object("c", data).crc == _crc(data)
    bucket.get_object_to_file("c", str(tmp_path / "c"))  # oss2 compares CRCs here
    assert (tmp_path / "c").read_bytes() == data
    # As on OSS, a ranged response carries the whole object's CRC, which oss2 does not check.
    ranged = bucket.get_object("c", byte_range=(10, 20))
    assert ranged.read() == data[10:21] and ranged.server_crc == _crc(data) != ranged.client_crc
    bucket.get_object_to_file("c", str(tmp_path / "r"), byte_range=(10, 20))
    oss.crc_on_ranges = False
    try:
        assert bucket.get_object("c", byte_range=(10, 20)).server_crc is None
    finally:
        oss.crc_on_ranges = True
    oss.get_raw(BUCKET, "c").crc ^= 1  # a server-side corruption oss2 must notice
    with pytest.raises(oe.InconsistentError):
        bucket.get_object_to_file("c", str(tmp_path / "c2"))


# -- multipart --------------------------------------------------------------------------------
def _upload_parts(bucket: oss2.Bucket, key: str, upload_id: str, parts: list[bytes]) -> list:
    infos = []
    for number, chunk in enumerate(parts, 1):
        result = bucket.upload_part(key, upload_id, number, chunk)
        assert result.crc == _crc(chunk)
        infos.append(PartInfo(number, result.etag, size=len(chunk), part_crc=result.crc))
    return infos


def test_multipart_round_trip(bucket: oss2.Bucket, oss: OssServer) -> None:
    parts = [os.urandom(100 * KB), os.urandom(100 * KB), b"tail"]
    upload_id = bucket.init_multipart_upload(
        "mp.bin", headers={"x-oss-meta-k": "v", "Content-Type": "application/x-test"}
    ).upload_id
    assert [u.upload_id for u in bucket.list_multipart_uploads().upload_list] == [upload_id]
    infos = _upload_parts(bucket, "mp.bin", upload_id, parts)
    listed = bucket.list_parts("mp.bin", upload_id, max_parts=2)
    assert [p.part_number for p in listed.parts] == [1, 2] and listed.is_truncated
    assert bucket.complete_multipart_upload("mp.bin", upload_id, infos).crc == _crc(b"".join(parts))
    head = bucket.head_object("mp.bin")
    md5s = b"".join(hashlib.md5(p).digest() for p in parts)
    assert head.etag == hashlib.md5(md5s).hexdigest().upper() + "-3"
    assert head.object_type == "Multipart" and head.content_type == "application/x-test"
    assert head.headers["x-oss-meta-k"] == "v" and head.server_crc == _crc(b"".join(parts))
    assert bucket.get_object("mp.bin").read() == b"".join(parts)
    assert bucket.list_multipart_uploads().upload_list == [] and oss.uploads(BUCKET) == []


def test_multipart_validation(bucket: oss2.Bucket) -> None:
    upload_id = bucket.init_multipart_upload("mp").upload_id
    infos = _upload_parts(bucket, "mp", upload_id, [b"small", b"last"])
    with pytest.raises(oe.ServerError) as err:
        bucket.complete_multipart_upload("mp", upload_id, infos)
    assert (err.value.status, err.value.code) == (400, "EntityTooSmall")
    with pytest.raises(oe.ServerError) as err:
        bucket.complete_multipart_upload("mp", upload_id, [PartInfo(1, "0" * 32)])
    assert err.value.code == "InvalidPart"
    with pytest.raises(oe.NoSuchUpload):
        bucket.upload_part("other-key", upload_id, 1, b"x")
    bucket.complete_multipart_upload("mp", upload_id, infos[1:])  # a single (last) part is fine
    assert bucket.get_object("mp").read() == b"last"
    with pytest.raises(oe.NoSuchUpload):
        bucket.complete_multipart_upload("mp", upload_id, infos[1:])


def test_multipart_abort_leaves_nothing(bucket: oss2.Bucket) -> None:
    ids = [bucket.init_multipart_upload(f"dir/k{i}").upload_id for i in range(3)]
    bucket.upload_part("dir/k0", ids[0], 1, b"x" * 10)
    page = bucket.list_multipart_uploads(max_uploads=2)
    assert page.is_truncated and [u.key for u in page.upload_list] == ["dir/k0", "dir/k1"]
    rest = bucket.list_multipart_uploads(
        key_marker=page.next_key_marker, upload_id_marker=page.next_upload_id_marker
    )
    assert [u.upload_id for u in rest.upload_list] == ids[2:]
    assert bucket.list_multipart_uploads(delimiter="/").prefix_list == ["dir/"]
    for i, upload_id in enumerate(ids):
        bucket.abort_multipart_upload(f"dir/k{i}", upload_id)
    assert list(oss2.MultipartUploadIterator(bucket)) == []
    with pytest.raises(oe.NoSuchUpload):
        bucket.abort_multipart_upload("dir/k0", ids[0])
    assert not bucket.object_exists("dir/k0")


def test_upload_part_copy(bucket: oss2.Bucket) -> None:
    source = os.urandom(250 * KB)
    bucket.put_object("src", source, headers={"x-oss-meta-s": "1"})
    upload_id = bucket.init_multipart_upload("dst", headers={"x-oss-meta-d": "2"}).upload_id
    spans = [(0, 120 * KB - 1), (120 * KB, len(source) - 1)]
    infos = []
    for number, span in enumerate(spans, 1):
        result = bucket.upload_part_copy(BUCKET, "src", span, "dst", upload_id, number)
        infos.append(PartInfo(number, result.etag))
    bucket.complete_multipart_upload("dst", upload_id, infos)
    head = bucket.head_object("dst")
    assert bucket.get_object("dst").read() == source and head.server_crc == _crc(source)
    assert head.headers["x-oss-meta-d"] == "2" and "x-oss-meta-s" not in head.headers


def test_resumable_upload_and_download(bucket: oss2.Bucket, tmp_path: Path) -> None:
    data = os.urandom(450 * KB)
    (tmp_path / "src").write_bytes(data)
    oss2.resumable_upload(
        bucket, "big", str(tmp_path / "src"), multipart_threshold=200 * KB,
        part_size=100 * KB, num_threads=3, headers={"x-oss-meta-r": "1"},
        store=oss2.ResumableStore(root=str(tmp_path)),
    )
    head = bucket.head_object("big")
    assert head.object_type == "Multipart" and head.headers["x-oss-meta-r"] == "1"
    oss2.resumable_download(
        bucket, "big", str(tmp_path / "dst"), multiget_threshold=100 * KB, part_size=100 * KB,
        num_threads=3, store=oss2.ResumableDownloadStore(root=str(tmp_path)),
    )
    assert (tmp_path / "dst").read_bytes() == data


# -- copy -------------------------------------------------------------------------------------
def test_copy_object_copy_and_replace(bucket: oss2.Bucket, oss: OssServer) -> None:
    bucket.put_object("a", b"payload", headers={"x-oss-meta-k": "1", "Content-Type": "text/x"})
    bucket.copy_object(BUCKET, "a", "b")
    head = bucket.head_object("b")
    assert head.headers["x-oss-meta-k"] == "1" and head.content_type == "text/x"
    # in place with REPLACE: new metadata, same bytes
    etag = bucket.head_object("a").etag
    bucket.copy_object(
        BUCKET, "a", "a", headers={"x-oss-metadata-directive": "REPLACE", "x-oss-meta-new": "2"}
    )
    head = bucket.head_object("a")
    assert head.headers["x-oss-meta-new"] == "2" and "x-oss-meta-k" not in head.headers
    assert head.etag == etag and bucket.get_object("a").read() == b"payload"
    bucket.update_object_meta("b", {"x-oss-meta-u": "3"})
    assert oss.get_raw(BUCKET, "b").metadata == {"x-oss-meta-u": "3"}
    with pytest.raises(oe.NoSuchKey):
        bucket.copy_object(BUCKET, "missing", "c")
    with pytest.raises(oe.InvalidArgument):
        bucket.copy_object(BUCKET, "a", "c", headers={"x-oss-meta-" + "x" * 9000: "v",
                                                      "x-oss-metadata-directive": "REPLACE"})
    oss.create_bucket("other-bucket")
    bucket.copy_object(BUCKET, "a", "x/y")
    oss2.Bucket(bucket.auth, oss.endpoint, "other-bucket").copy_object(BUCKET, "x/y", "z")
    assert oss.get_raw("other-bucket", "z").data == b"payload"
    oss.max_copy_size = 3
    try:
        with pytest.raises(oe.ServerError) as err:
            bucket.copy_object(BUCKET, "a", "d")
        assert err.value.code == "EntityTooLarge"
    finally:
        oss.max_copy_size = 1024**3


# -- listing and batch delete -----------------------------------------------------------------
KEYS = ["a.txt", "dir/1", "dir/2", "dir/sub/3", "dir2/x", "e f/g", "z"]


@pytest.mark.parametrize("iterator", [oss2.ObjectIterator, oss2.ObjectIteratorV2])
def test_listing(bucket: oss2.Bucket, oss: OssServer, iterator: type) -> None:
    for key in KEYS:
        bucket.put_object(key, key.encode())
    assert [o.key for o in iterator(bucket, max_keys=2)] == KEYS
    top = list(iterator(bucket, delimiter="/", max_keys=2))
    assert [(o.key, o.is_prefix()) for o in top] == [
        ("a.txt", False), ("dir/", True), ("dir2/", True), ("e f/", True), ("z", False),
    ]
    assert [o.key for o in iterator(bucket, prefix="dir/", delimiter="/", max_keys=1)] == [
        "dir/1", "dir/2", "dir/sub/",
    ]
    info = next(iter(iterator(bucket, prefix="dir/sub/")))
    assert (info.size, info.etag, info.type) == (9, hashlib.md5(b"dir/sub/3").hexdigest().upper(),
                                                 "Normal")
    assert abs(info.last_modified - time.time()) < 5
    assert list(iterator(bucket, prefix="nothing")) == []
    # pagination is by request: 7 keys in pages of 2 → 4 list requests
    before = oss.request_count("GET")
    list(iterator(bucket, max_keys=2))
    assert oss.request_count("GET") - before == 4


def test_list_v1_marker_and_v2_start_after(bucket: oss2.Bucket) -> None:
    for key in KEYS:
        bucket.put_object(key, b"")
    assert [o.key for o in oss2.ObjectIterator(bucket, marker="dir/2")] == KEYS[3:]
    v2 = bucket.list_objects_v2(start_after="dir2/x", fetch_owner=True)
    assert [o.key for o in v2.object_list] == ["e f/g", "z"]
    assert v2.object_list[0].owner is not None
    assert bucket.list_objects_v2().object_list[0].owner is None
    page = bucket.list_objects_v2(max_keys=3)
    assert page.is_truncated and page.next_continuation_token
    nxt = bucket.list_objects_v2(continuation_token=page.next_continuation_token, max_keys=10)
    assert [o.key for o in nxt.object_list] == KEYS[3:]
    with pytest.raises(oe.InvalidArgument):
        bucket.list_objects(max_keys=1001)


def test_batch_delete(bucket: oss2.Bucket, oss: OssServer) -> None:
    for key in ("a", "b c", "d/ü"):
        bucket.put_object(key, b"v")
    result = bucket.batch_delete_objects(["a", "b c", "d/ü", "never-existed"])
    assert sorted(result.deleted_keys) == ["a", "b c", "d/ü", "never-existed"]
    assert oss.keys(BUCKET) == []


# -- buckets and hooks ------------------------------------------------------------------------
def test_buckets(bucket: oss2.Bucket, oss: OssServer) -> None:
    info = bucket.get_bucket_info()
    assert info.name == BUCKET and info.location == "oss-cn-hangzhou"
    assert bucket.get_bucket_location().location == "oss-cn-hangzhou"
    new = oss2.Bucket(bucket.auth, oss.endpoint, "made-by-test")
    new.create_bucket()
    service = oss2.Service(bucket.auth, oss.endpoint)
    assert [b.name for b in oss2.BucketIterator(service)] == ["made-by-test", BUCKET]
    new.put_object("k", b"v")
    with pytest.raises(oe.BucketNotEmpty):
        new.delete_bucket()
    new.delete_object("k")
    new.delete_bucket()
    with pytest.raises(oe.NoSuchBucket):
        new.get_bucket_info()


def test_request_log_bytes_and_faults(bucket: oss2.Bucket, oss: OssServer) -> None:
    bucket.put_object("k", b"0123456789")
    oss.requests.clear()
    oss.bytes_sent = 0
    bucket.get_object("k", byte_range=(2, 5)).read()
    bucket.head_object("k")
    assert oss.bytes_sent == 4
    get, head = oss.requests
    assert (get.method, get.path, get.range) == ("GET", f"/{BUCKET}/k", "bytes=2-5")
    assert head.method == "HEAD" and oss.request_count("HEAD", f"/{BUCKET}/k") == 1
    oss.inject_error(503, "ServiceUnavailable", count=1, method="GET")
    with pytest.raises(oe.ServerError) as err:
        bucket.get_object("k")
    assert err.value.status == 503
    assert bucket.get_object("k").read() == b"0123456789"
    oss.put_raw(BUCKET, "planted", b"raw", {"x-oss-meta-p": "1"})
    assert bucket.head_object("planted").headers["x-oss-meta-p"] == "1"
    oss.reset()
    assert oss.keys(BUCKET) == [] and oss.requests == [] and oss.bytes_sent == 0
