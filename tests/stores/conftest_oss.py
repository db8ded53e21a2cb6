"""OSS fixtures for ``test_oss.py``: ``oss_server``, ``oss``, ``real_oss`` (imported there as
``*_fixture``; pytest reads only ``conftest.py`` by itself).

By default the OSS-compatible server of ``tests/servers/oss_compat.py`` (one per session; every
test gets a fresh bucket and a clean request log).  ``real_oss`` points at a real OSS bucket when
``ENVSTORE_TEST_OSS_ENDPOINT``, ``ENVSTORE_TEST_OSS_KEY``, ``ENVSTORE_TEST_OSS_SECRET`` and
``ENVSTORE_TEST_OSS_BUCKET`` are set (optionally ``ENVSTORE_TEST_OSS_TOKEN`` for STS); each such
test works under a unique prefix and removes its objects and pending uploads afterwards.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import fsspec
import pytest

oss2 = pytest.importorskip("oss2")
pytest.importorskip("werkzeug")

from envstore.fs import EnvstoreFileSystem  # noqa: E402
from envstore.stores.oss import META_PREFIX, OSSFileSystem  # noqa: E402
from tests.servers.oss_compat import LoggedRequest, OssServer  # noqa: E402

REAL_OSS_VARS = (
    "ENVSTORE_TEST_OSS_ENDPOINT",
    "ENVSTORE_TEST_OSS_KEY",
    "ENVSTORE_TEST_OSS_SECRET",
    "ENVSTORE_TEST_OSS_BUCKET",
)


@dataclass
class OssEnv:
    """One test's place on an OSS endpoint: ``root`` is ``bucket`` or ``bucket/prefix``."""

    endpoint: str
    key: str
    secret: str
    token: str | None
    bucket: str
    prefix: str  # "" on the test server (a fresh bucket), unique on a real bucket
    key_uri: str
    client: Any  # oss2.Bucket on ``bucket``
    server: OssServer | None  # None against a real OSS endpoint
    instances: list[EnvstoreFileSystem] = field(default_factory=list)

    @property
    def root(self) -> str:
        return f"{self.bucket}/{self.prefix}" if self.prefix else self.bucket

    def oss_options(self, **extra: Any) -> dict[str, Any]:
        """Options of the inner OSS filesystem (the ``"oss"`` entry of storage_options)."""
        out: dict[str, Any] = {"endpoint": self.endpoint, "key": self.key, "secret": self.secret}
        if self.token:
            out["token"] = self.token
        return {**out, **extra}

    def storage_options(self, key_uri: str | list[str] | None = None, **kw: Any) -> dict[str, Any]:
        return {
            "key_uri": key_uri or self.key_uri,
            "oss": self.oss_options(**kw.pop("oss", {})),
            **kw,
        }

    def url(self, name: str) -> str:
        return f"envstore::oss://{self.root}/{name}"

    def path(self, name: str) -> str:
        return f"{self.root}/{name}"

    def key_of(self, name: str) -> str:
        return f"{self.prefix}/{name}" if self.prefix else name

    def efs(self, key_uri: str | list[str] | None = None, **kw: Any) -> EnvstoreFileSystem:
        """A fresh (uncached) envstore filesystem over this endpoint."""
        fs = fsspec.filesystem(
            "envstore",
            target_protocol="oss",
            target_options=self.oss_options(**kw.pop("oss", {})),
            key_uri=key_uri or self.key_uri,
            skip_instance_cache=True,
            **kw,
        )
        self.instances.append(fs)
        return fs

    # -- the stored objects, seen with oss2 --------------------------------------------------------
    def raw(self, name: str) -> bytes:
        return self.client.get_object(self.key_of(name)).read()

    def head(self, name: str) -> Any:
        return self.client.head_object(self.key_of(name))

    def meta(self, name: str) -> dict[str, str]:
        """User metadata of an object: names without ``x-oss-meta-``."""
        return {
            k.lower()[len(META_PREFIX) :]: v
            for k, v in self.head(name).headers.items()
            if k.lower().startswith(META_PREFIX)
        }

    def meta_headers(self, name: str) -> dict[str, str]:
        return {META_PREFIX + k: v for k, v in self.meta(name).items()}

    def pending_uploads(self) -> list[Any]:
        prefix = f"{self.prefix}/" if self.prefix else ""
        return list(oss2.MultipartUploadIterator(self.client, prefix=prefix))

    def keys(self) -> list[str]:
        prefix = f"{self.prefix}/" if self.prefix else ""
        return sorted(
            o.key[len(prefix) :] for o in oss2.ObjectIteratorV2(self.client, prefix=prefix)
        )

    # -- the requests, seen by the test server ---------------------------------------------------
    def calls(self, op: str | None = None) -> list[LoggedRequest]:
        assert self.server is not None, "request counts need the test server"
        return self.server.calls(op, bucket=self.bucket)

    def ops(self) -> list[str]:
        return [c.op for c in self.calls()]

    def clear(self) -> None:
        assert self.server is not None
        self.server.clear_log()


def _reset_instance_caches() -> None:
    OSSFileSystem.clear_instance_cache()
    EnvstoreFileSystem.clear_instance_cache()


@pytest.fixture(scope="session", name="oss_server")
def oss_server_fixture() -> Iterator[OssServer]:
    with OssServer() as server:
        yield server


@pytest.fixture(name="oss")
def oss_fixture(
    oss_server: OssServer, key_uri: str, monkeypatch: pytest.MonkeyPatch
) -> Iterator[OssEnv]:
    """A fresh bucket on the test server, oss2 and envstore clients for it, and a key."""
    for name in (
        "OSS_ENDPOINT",
        "OSS_ACCESS_KEY_ID",
        "OSS_ACCESS_KEY_SECRET",
        "OSS_SESSION_TOKEN",
        "ALIBABA_CLOUD_OSS_ENDPOINT",
        "ALIBABA_CLOUD_ACCESS_KEY_ID",
        "ALIBABA_CLOUD_ACCESS_KEY_SECRET",
        "ALIBABA_CLOUD_SECURITY_TOKEN",
    ):
        monkeypatch.delenv(name, raising=False)
    oss_server.reset()
    _reset_instance_caches()
    bucket = f"t-{uuid.uuid4().hex[:12]}"
    auth = oss2.Auth(oss_server.access_key_id, oss_server.access_key_secret)
    client = oss2.Bucket(auth, oss_server.endpoint, bucket)
    client.create_bucket()
    oss_server.clear_log()
    env = OssEnv(
        endpoint=oss_server.endpoint,
        key=oss_server.access_key_id,
        secret=oss_server.access_key_secret,
        token=None,
        bucket=bucket,
        prefix="",
        key_uri=key_uri,
        client=client,
        server=oss_server,
    )
    yield env
    _reset_instance_caches()
    assert oss_server.server_errors == [], oss_server.server_errors[0]
    unflagged = [
        c
        for c in oss_server.calls("GetObject")
        if c.range and "x-oss-range-behavior" not in c.headers
    ]
    assert unflagged == [], "ranged GETs without x-oss-range-behavior: standard"


@pytest.fixture(name="real_oss")
def real_oss_fixture(key_uri: str) -> Iterator[OssEnv]:
    """A unique prefix in a real OSS bucket (skipped unless ENVSTORE_TEST_OSS_* are set)."""
    missing = [v for v in REAL_OSS_VARS if not os.environ.get(v)]
    if missing:
        pytest.skip(f"real-OSS tests need {', '.join(REAL_OSS_VARS)} (missing {missing[0]})")
    endpoint = os.environ["ENVSTORE_TEST_OSS_ENDPOINT"]
    key, secret = os.environ["ENVSTORE_TEST_OSS_KEY"], os.environ["ENVSTORE_TEST_OSS_SECRET"]
    token = os.environ.get("ENVSTORE_TEST_OSS_TOKEN") or None
    bucket = os.environ["ENVSTORE_TEST_OSS_BUCKET"]
    auth = oss2.StsAuth(key, secret, token) if token else oss2.Auth(key, secret)
    client = oss2.Bucket(auth, endpoint, bucket)
    _reset_instance_caches()
    env = OssEnv(
        endpoint=endpoint,
        key=key,
        secret=secret,
        token=token,
        bucket=bucket,
        prefix=f"envstore-test-{uuid.uuid4().hex[:12]}",
        key_uri=key_uri,
        client=client,
        server=None,
    )
    try:
        yield env
    finally:
        _reset_instance_caches()
        for up in env.pending_uploads():
            client.abort_multipart_upload(up.key, up.upload_id)
        keys = [o.key for o in oss2.ObjectIteratorV2(client, prefix=env.prefix + "/")]
        for i in range(0, len(keys), 1000):
            client.batch_delete_objects(keys[i : i + 1000])
