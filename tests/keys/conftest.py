"""KMS fixtures: emulators started once per session, a fresh master key for every test.

* ``alikms_server`` (session): :class:`tests.servers.alikms_gateway.AliKmsGateway`;
  ``alikms`` (per test): counters and faults reset, a new master key -> :class:`KmsEnv`.
* ``dkms_server`` (session, skipped without the KMS Instance SDK):
  :class:`tests.servers.dkms_server.DkmsServer` (HTTP and HTTPS); ``alikms_instance``
  (per test) -> :class:`KmsEnv` over HTTPS with the emulator's CA.
* ``awskms_server`` (session): a moto ``ThreadedMotoServer`` URL, dummy AWS credentials in the
  environment for the session; ``awskms`` (per test): moto reset, a new key -> :class:`KmsEnv`
  whose ``tap(provider)`` counts and fails requests at the wire (botocore ``before-send``).
* ``closed_port``: a 127.0.0.1 port nothing listens on (a KMS that is down).
"""

from __future__ import annotations

import json
import socket
import uuid
from collections import Counter, deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from envstore.keys import PROVIDERS
from envstore.keys.base import KeyProvider
from tests.servers.moto import DUMMY_AWS_ENV, reset


@dataclass
class KmsEnv:
    """One test's KMS: the emulator, a fresh master key, its URI and ``kms_options``."""

    scheme: str
    server: Any
    key_id: str
    uri: str
    options: dict[str, Any]
    counts: Callable[[], Counter[str]]

    @property
    def kms_options(self) -> dict[str, dict[str, Any]]:
        """What the filesystem / KeyRing take: ``{scheme: options}``."""
        return {self.scheme: dict(self.options)}

    def provider(self, uri: str | None = None, **extra: Any) -> KeyProvider:
        """A new (uncached) provider for ``uri`` (default: this key) with extra options."""
        import importlib

        module, cls, _ = PROVIDERS[self.scheme]
        klass = getattr(importlib.import_module(module), cls)
        return klass(uri or self.uri, {**self.options, **extra})

    def calls(self, action: str) -> int:
        return self.counts()[action]


@pytest.fixture
def closed_port() -> int:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = int(sock.getsockname()[1])
    sock.close()
    return port


# -- Alibaba Cloud KMS, shared gateway --------------------------------------------------------
@pytest.fixture(scope="session")
def alikms_server() -> Iterator[Any]:
    from tests.servers.alikms_gateway import AliKmsGateway

    server = AliKmsGateway().start()
    yield server
    server.stop()


@pytest.fixture
def alikms(alikms_server: Any) -> KmsEnv:
    alikms_server.reset()
    key_id = alikms_server.create_key(alias=f"alias/envstore-{uuid.uuid4().hex[:8]}")
    return KmsEnv(
        "alikms",
        alikms_server,
        key_id,
        f"alikms://{key_id}",
        alikms_server.options(retry_deadline=3.0),
        lambda: alikms_server.calls,
    )


# -- Alibaba Cloud KMS instance (dedicated gateway) --------------------------------------------
@pytest.fixture(scope="session")
def dkms_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    pytest.importorskip("openapi_util.protobuf.api_pb2", reason="needs alibabacloud-dkms-gcs")
    from tests.servers.dkms_server import DkmsServer

    server = DkmsServer(tmp_path_factory.mktemp("dkms")).start()
    yield server
    server.stop()


@pytest.fixture
def alikms_instance(dkms_server: Any) -> KmsEnv:
    dkms_server.reset()
    key_id = dkms_server.create_key()
    return KmsEnv(
        "alikms-instance",
        dkms_server,
        key_id,
        f"alikms-instance://{key_id}",
        dkms_server.options("https", retry_deadline=3.0),
        lambda: dkms_server.calls,
    )


# -- AWS KMS (moto) ----------------------------------------------------------------------------
@pytest.fixture(scope="session")
def awskms_server(moto_server: str) -> str:
    """The session's moto server (tests/conftest.py), which serves KMS beside S3."""
    pytest.importorskip("boto3")
    return moto_server


class _Raw:
    def __init__(self, body: bytes) -> None:
        self._body = body

    def stream(self, **kw: Any) -> Iterator[bytes]:
        yield self._body


@dataclass
class WireTap:
    """Requests one boto3 KMS client sends, per operation; can fail the next ones."""

    calls: Counter[str] = field(default_factory=Counter)
    faults: deque[tuple[str, int]] = field(default_factory=deque)

    def inject(self, code: str = "ThrottlingException", count: int = 1, status: int = 400) -> None:
        self.faults.extend([(code, status)] * count)

    def before_send(self, request: Any, **kw: Any) -> Any:
        from botocore.awsrequest import AWSResponse

        target = request.headers.get("X-Amz-Target", b"")
        target = target.decode() if isinstance(target, bytes) else str(target)
        self.calls[target.rsplit(".", 1)[-1]] += 1
        if not self.faults:
            return None
        code, status = self.faults.popleft()
        body = json.dumps({"__type": code, "message": "Rate exceeded"}).encode()
        headers = {
            "x-amzn-RequestId": str(uuid.uuid4()),
            "Content-Type": "application/x-amz-json-1.1",
            "Content-Length": str(len(body)),
        }
        return AWSResponse(request.url, status, headers, _Raw(body))


@dataclass
class AwsKmsEnv(KmsEnv):
    """KmsEnv for moto, plus an admin boto3 client and per-provider wire taps."""

    admin: Any = None
    taps: list[WireTap] = field(default_factory=list)

    def tap(self, provider: KeyProvider) -> WireTap:
        """Count (and fail on demand) the HTTP requests of ``provider``'s boto3 client."""
        wire = WireTap()
        provider.client.meta.events.register("before-send.kms", wire.before_send)  # type: ignore[attr-defined]
        self.taps.append(wire)
        return wire


@pytest.fixture
def awskms(awskms_server: str, monkeypatch: pytest.MonkeyPatch) -> AwsKmsEnv:
    import boto3

    for name in ("AWS_PROFILE", "AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE"):
        monkeypatch.delenv(name, raising=False)
    for name, value in DUMMY_AWS_ENV.items():
        monkeypatch.setenv(name, value)
    reset(awskms_server)
    admin = boto3.client("kms", endpoint_url=awskms_server, region_name="us-east-1")
    arn = admin.create_key(Description="envstore test")["KeyMetadata"]["Arn"]
    taps: list[WireTap] = []

    def counts() -> Counter[str]:
        total: Counter[str] = Counter()
        for wire in taps:
            total.update(wire.calls)
        return total

    return AwsKmsEnv(
        "awskms",
        awskms_server,
        arn,
        f"awskms://{arn}",
        {"endpoint_url": awskms_server, "region_name": "us-east-1", "retry_deadline": 3.0},
        counts,
        admin=admin,
        taps=taps,
    )
