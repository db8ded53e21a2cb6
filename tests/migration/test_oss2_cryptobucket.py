"""Migration of objects written by the real ``oss2.CryptoBucket`` on the project's OSS server."""

from __future__ import annotations

import base64
import hashlib
from pathlib import Path
from typing import Any

import pytest

import envstore
from envstore.errors import IntegrityError
from envstore.migration.objects import TEMP_SUFFIX
from tests.migration.helpers import payload, rsa_key

oss2 = pytest.importorskip("oss2")
pytest.importorskip("werkzeug")

from tests.stores.conftest_oss import OssEnv  # noqa: E402

LEGACY = "client-side-encryption-"


@pytest.fixture
def rsa(tmp_path: Path) -> tuple[str, bytes, bytes]:
    return rsa_key(tmp_path / "legacy")


def crypto_bucket(oss: OssEnv, provider: Any) -> Any:
    auth = oss2.Auth(oss.key, oss.secret)
    return oss2.CryptoBucket(auth, oss.endpoint, oss.bucket, crypto_provider=provider)


def rsa_bucket(oss: OssEnv, rsa: tuple[str, bytes, bytes]) -> Any:
    provider = oss2.RsaProvider(key_pair={"private_key": rsa[1], "public_key": rsa[2]})
    return crypto_bucket(oss, provider)


def put_checked(bucket: Any, key: str, data: bytes) -> None:
    """A CryptoBucket put that records the plaintext's length and MD5 in the envelope."""
    md5 = base64.b64encode(hashlib.md5(data).digest()).decode()
    bucket.put_object(key, data, headers={"Content-MD5": md5, "Content-Length": str(len(data))})


def migrate(oss: OssEnv, src: str, dst: str, legacy: str, **kw: Any) -> list[dict[str, Any]]:
    return envstore.migrate(
        f"oss://{oss.root}/{src}".rstrip("/"),
        oss.url(dst),
        legacy_key_uris=[legacy],
        **oss.storage_options(),
        **kw,
    )


def test_rsa_objects_in_place_then_rerun_skips(oss: OssEnv, rsa: tuple[str, bytes, bytes]) -> None:
    cb = rsa_bucket(oss, rsa)
    objects = {"d/empty": b"", "d/small": b"hello legacy", "d/big": payload(300_001)}
    for name, data in objects.items():
        cb.put_object(oss.key_of(name), data)
    assert oss.meta("d/small")[LEGACY + "wrap-alg"] == "RSA/NONE/PKCS1Padding"
    records = migrate(oss, "d", "d", rsa[0], recursive=True)
    assert [(r["path"], r["format"], r["result"]) for r in records] == [
        (oss.path(n), "oss2-ctr", "migrated, unauthenticated source") for n in sorted(objects)
    ]
    assert [r["size"] for r in records] == [len(objects[n]) for n in sorted(objects)]
    fs = oss.efs()
    for name, data in objects.items():
        assert fs.cat_file(oss.path(name)) == data
        meta = oss.meta(name)
        assert not any(k.startswith(LEGACY) for k in meta), meta
        assert "envstore-salt" in meta
    assert oss.keys() == sorted(objects)  # no temporary object left
    again = migrate(oss, "d", "d", rsa[0], recursive=True)
    assert {r["result"] for r in again} == {"skipped: already envstore"}


def test_multipart_upload_to_another_prefix(oss: OssEnv, rsa: tuple[str, bytes, bytes]) -> None:
    cb = rsa_bucket(oss, rsa)
    data = payload(250 * 1024 + 7, 3)
    part = 100 * 1024
    context = oss2.models.MultipartUploadCryptoContext(len(data), part)
    key = oss.key_of("src/multi")
    upload = cb.init_multipart_upload(key, upload_context=context)
    parts = []
    for number, start in enumerate(range(0, len(data), part), 1):
        res = cb.upload_part(
            key, upload.upload_id, number, data[start : start + part], upload_context=context
        )
        parts.append(oss2.models.PartInfo(number, res.etag))
    cb.complete_multipart_upload(key, upload.upload_id, parts)
    meta = oss.meta("src/multi")
    assert meta[LEGACY + "data-size"] == str(len(data))
    assert meta[LEGACY + "part-size"] == str(part)
    before = oss.raw("src/multi")
    from fsspec.callbacks import Callback

    progress = Callback()
    records = migrate(oss, "src/multi", "dst/multi", rsa[0], callback=progress)
    assert progress.size == progress.value == len(before)  # stored bytes read
    assert records[0]["result"] == "migrated, unauthenticated source"
    assert oss.efs().cat_file(oss.path("dst/multi")) == data
    assert oss.raw("src/multi") == before  # the source is left alone
    assert migrate(oss, "src/multi", "dst/multi", rsa[0])[0]["result"] == (
        "skipped: already migrated"
    )


def test_local_rsa_provider_oaep(oss: OssEnv, tmp_path: Path) -> None:
    keys = tmp_path / "oss-rsa"
    provider = oss2.LocalRsaProvider(dir=str(keys), key="k")
    (keys / "k.private_key.pem").chmod(0o600)
    data = payload(40_000, 5)
    crypto_bucket(oss, provider).put_object(oss.key_of("o"), data)
    assert oss.meta("o")[LEGACY + "wrap-alg"] == "RSA/NONE/OAEPWithSHA-1AndMGF1Padding"
    legacy = f"rsa://{keys / 'k.private_key.pem'}"
    assert migrate(oss, "o", "o", legacy)[0]["result"] == "migrated, unauthenticated source"
    assert oss.efs().cat_file(oss.path("o")) == data


def test_dry_run_changes_nothing(oss: OssEnv, rsa: tuple[str, bytes, bytes]) -> None:
    cb = rsa_bucket(oss, rsa)
    cb.put_object(oss.key_of("p/a"), b"aaa")
    oss.client.put_object(oss.key_of("p/plain"), b"not encrypted")
    raw = oss.raw("p/a")
    records = migrate(oss, "p", "p", rsa[0], recursive=True, dry_run=True)
    assert [(r["path"], r["result"]) for r in records] == [
        (oss.path("p/a"), "would migrate, unauthenticated source"),
        (oss.path("p/plain"), "skipped: not encrypted"),
    ]
    assert oss.raw("p/a") == raw and oss.keys() == ["p/a", "p/plain"]


# -- tampered legacy objects -----------------------------------------------------------------------
def _rewrite(oss: OssEnv, name: str, body: bytes) -> None:
    """An attacker with write access: new body, the legacy envelope kept."""
    oss.client.put_object(oss.key_of(name), body, headers=oss.meta_headers(name))


def test_tampered_ctr_objects(oss: OssEnv, rsa: tuple[str, bytes, bytes]) -> None:
    cb = rsa_bucket(oss, rsa)
    data = payload(5000, 9)
    for name in ("t/flipped", "t/truncated", "t/ok"):
        put_checked(cb, oss.key_of(name), data)
    raw = oss.raw("t/flipped")
    _rewrite(oss, "t/flipped", raw[:100] + bytes([raw[100] ^ 1]) + raw[101:])
    _rewrite(oss, "t/truncated", oss.raw("t/truncated")[:-1])
    tampered = {n: oss.raw(n) for n in ("t/flipped", "t/truncated")}
    with pytest.raises(IntegrityError, match="MD5"):
        migrate(oss, "t/flipped", "t/flipped", rsa[0])
    with pytest.raises(IntegrityError, match="truncated"):
        migrate(oss, "t/truncated", "t/truncated", rsa[0])
    records = {r["path"]: r for r in migrate(oss, "t", "t", rsa[0], recursive=True)}
    assert records[oss.path("t/ok")]["result"] == "migrated, unauthenticated source"
    for name, body in tampered.items():
        assert records[oss.path(name)]["result"] == "failed"
        assert "IntegrityError" in records[oss.path(name)]["error"]
        assert oss.raw(name) == body  # never migrated, never deleted
        assert LEGACY + "key" in oss.meta(name)
    assert oss.keys() == ["t/flipped", "t/ok", "t/truncated"]


def test_wrong_rsa_key_fails_without_touching(
    oss: OssEnv, rsa: tuple[str, bytes, bytes], tmp_path: Path
) -> None:
    rsa_bucket(oss, rsa).put_object(oss.key_of("w"), b"secret")
    other = rsa_key(tmp_path / "other", "other")[0]
    with pytest.raises(envstore.KeyAccessError):
        migrate(oss, "w", "w", other)
    assert LEGACY + "key" in oss.meta("w")


# -- interrupted in-place migration ---------------------------------------------------------------
def test_interrupted_in_place_migration_resumes(
    oss: OssEnv, rsa: tuple[str, bytes, bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    cb = rsa_bucket(oss, rsa)
    objects = {f"r/{i}": payload(1000 + i, i) for i in range(4)}
    for name, data in objects.items():
        cb.put_object(oss.key_of(name), data)
    from envstore.fs import EnvstoreFileSystem

    real_mv = EnvstoreFileSystem.mv
    calls = {"n": 0}

    def killed_mv(self: Any, path1: Any, path2: Any, *a: Any, **kw: Any) -> None:
        calls["n"] += 1
        if calls["n"] == 2:  # killed after the new object was written, before the swap
            raise KeyboardInterrupt
        if calls["n"] == 3:  # killed between the server-side copy and the cleanup
            self.store.copy(self._strip_protocol(path1), self._strip_protocol(path2))
            raise KeyboardInterrupt
        real_mv(self, path1, path2, *a, **kw)

    monkeypatch.setattr(EnvstoreFileSystem, "mv", killed_mv)
    with pytest.raises(KeyboardInterrupt):
        migrate(oss, "r", "r", rsa[0], recursive=True, jobs=1)
    assert oss.keys() == sorted([*objects, f"r/1{TEMP_SUFFIX}"])
    assert LEGACY + "key" in oss.meta("r/1")  # not replaced yet
    with pytest.raises(KeyboardInterrupt):
        migrate(oss, "r", "r", rsa[0], recursive=True, jobs=1)
    assert "envstore-salt" in oss.meta("r/1")  # replaced, temporary copy left behind
    assert oss.keys() == sorted([*objects, f"r/1{TEMP_SUFFIX}"])
    monkeypatch.setattr(EnvstoreFileSystem, "mv", real_mv)
    records = migrate(oss, "r", "r", rsa[0], recursive=True)
    assert [r["result"] for r in records] == [
        "skipped: already envstore",
        "skipped: already envstore",
        "migrated, unauthenticated source",
        "migrated, unauthenticated source",
    ]
    assert oss.keys() == sorted(objects)
    fs = oss.efs()
    for name, data in objects.items():
        assert fs.cat_file(oss.path(name)) == data


# -- the command line --------------------------------------------------------------------------
def test_cli_reports_each_object_and_exits_1_on_failure(
    oss: OssEnv, rsa: tuple[str, bytes, bytes]
) -> None:
    from click.testing import CliRunner

    from envstore.cli import main

    cb = rsa_bucket(oss, rsa)
    put_checked(cb, oss.key_of("c/bad"), b"x" * 100)
    put_checked(cb, oss.key_of("c/good"), b"y" * 100)
    raw = oss.raw("c/bad")
    _rewrite(oss, "c/bad", raw[:-1] + bytes([raw[-1] ^ 1]))
    args = [
        "migrate",
        "-r",
        f"oss://{oss.root}/c",
        oss.url("c"),
        "--legacy-key-uri",
        rsa[0],
        "--key-uri",
        oss.key_uri,
        "-o",
        f"oss.endpoint={oss.endpoint}",
        "-o",
        f"oss.key={oss.key}",
        "-o",
        f"oss.secret={oss.secret}",
    ]
    dry = CliRunner().invoke(main, [*args, "--dry-run"])
    assert dry.exit_code == 0, dry.output
    assert sorted(dry.output.splitlines()) == [  # each line as its object is done
        f"would migrate, unauthenticated source  {oss.path('c/bad')} [oss2-ctr]",
        f"would migrate, unauthenticated source  {oss.path('c/good')} [oss2-ctr]",
    ]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 1
    lines = result.output.splitlines()
    done = sorted(lines[:2])
    assert done[0].startswith(f"failed  {oss.path('c/bad')}: IntegrityError: ")
    assert done[1] == f"migrated, unauthenticated source  {oss.path('c/good')} [oss2-ctr]"
    assert "1 of 2 object(s) failed to migrate" in lines[-1]
    assert oss.efs().cat_file(oss.path("c/good")) == b"y" * 100
    assert oss.raw("c/bad")[:-1] == raw[:-1]


# -- AliKMSProvider through the project's Alibaba KMS emulator -----------------------------------
def kms_bucket(oss: OssEnv, alikms: Any) -> Any:
    """oss2's AliKMSProvider (aliyun-python-sdk-kms, RPC signature) on the KMS emulator: only
    the transport is redirected (http to 127.0.0.1); the SDK signs and sends as usual."""
    opts = alikms.options
    provider = oss2.AliKMSProvider(
        opts["access_key_id"], opts["access_key_secret"], "cn-hangzhou", alikms.key_id
    )
    real = provider.kms_client

    class Local:
        def do_action_with_exception(self, request: Any) -> Any:
            request.set_protocol_type("http")
            request.set_endpoint(opts["endpoint"])
            return real.do_action_with_exception(request)

    provider.kms_client = Local()
    return crypto_bucket(oss, provider)


def test_alikms_provider_objects(oss: OssEnv, alikms: Any) -> None:
    cb = kms_bucket(oss, alikms)
    data = payload(123_457, 12)
    put_checked(cb, oss.key_of("k/one"), data)
    assert oss.meta("k/one")[LEGACY + "wrap-alg"] == "KMS/ALICLOUD"
    assert cb.get_object(oss.key_of("k/one")).read() == data  # oss2 itself reads it back
    decrypts = alikms.calls("Decrypt")
    records = envstore.migrate(
        f"oss://{oss.root}/k",
        oss.url("k"),
        recursive=True,
        legacy_key_uris=[alikms.uri],
        **oss.storage_options(kms_options=alikms.kms_options),
    )
    assert [r["result"] for r in records] == ["migrated, unauthenticated source"]
    assert alikms.calls("Decrypt") == decrypts + 2  # the data key and the IV
    assert oss.efs().cat_file(oss.path("k/one")) == data


def test_pre_2_9_metadata_names(oss: OssEnv, tmp_path: Path) -> None:
    """Objects of oss2 before 2.9 (``x-oss-meta-oss-crypto-*``, OAEP, CEK named AES/GCM though
    the content is CTR): the same object with its envelope renamed, and oss2 still reads it."""
    keys = tmp_path / "oss-rsa"
    provider = oss2.LocalRsaProvider(dir=str(keys), key="k")
    (keys / "k.private_key.pem").chmod(0o600)
    data = payload(2000, 13)
    cb = crypto_bucket(oss, provider)
    cb.put_object(oss.key_of("old"), data)
    meta = oss.meta("old")
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import padding

    private = serialization.load_pem_private_key((keys / "k.private_key.pem").read_bytes(), None)
    oaep = padding.OAEP(padding.MGF1(hashes.SHA1()), hashes.SHA1(), None)
    iv = private.decrypt(base64.b64decode(meta[LEGACY + "start"]), oaep)  # type: ignore[union-attr]
    counter = str(int.from_bytes(iv, "big")).encode()  # pre-2.9: the counter as decimal text
    start = base64.b64encode(private.public_key().encrypt(counter, oaep)).decode()  # type: ignore[union-attr]
    renamed = {
        "x-oss-meta-oss-crypto-key": meta[LEGACY + "key"],
        "x-oss-meta-oss-crypto-start": start,
        "x-oss-meta-oss-cek-alg": "AES/GCM/NoPadding",
        "x-oss-meta-oss-wrap-alg": "rsa",
        "x-oss-meta-oss-crypto-unencrypted-content-length": str(len(data)),
    }
    oss.client.put_object(oss.key_of("old"), oss.raw("old"), headers=renamed)
    assert cb.get_object(oss.key_of("old")).read() == data  # oss2 reads the old names
    legacy = f"rsa://{keys / 'k.private_key.pem'}"
    assert migrate(oss, "old", "old", legacy)[0]["result"] == "migrated, unauthenticated source"
    assert oss.efs().cat_file(oss.path("old")) == data
