"""An emulator of an Alibaba Cloud KMS instance's dedicated gateway (``dkms-gcs-0.2``), for tests.

The real KMS Instance SDK ``alibabacloud-dkms-gcs`` talks to it over plain HTTP or over HTTPS
with the emulator's own CA (server certificate for ``IP:127.0.0.1`` and ``DNS:localhost``):
``sdk.client.Client(openapi.models.Config(endpoint="127.0.0.1:PORT", protocol="https",
client_key_file=..., password=..., ca_file_path=...))``; :meth:`DkmsServer.options` gives
envstore's ``kms_options["alikms-instance"]``.

Wire protocol, as the SDK speaks it: ``POST /`` with a protobuf body; headers
``x-kms-apiname``, ``x-kms-apiversion: dkms-gcs-0.2``, ``x-kms-signaturemethod:
RSA_PKCS1_SHA_256``, ``x-kms-acccesskeyid`` (sic: the ClientKey id), ``content-sha256`` (upper
hex SHA-256 of the body), ``date``, ``authorization: Bearer <base64 RSA-SHA256 signature>`` over
``POST\\n<content-sha256>\\n<content-type>\\n<date>\\n<sorted x-kms-* headers>/``.  The emulator
checks the body hash, the clock skew and the signature against the public key of a ClientKey it
issued (:meth:`issue_client_key` writes the JSON ClientKey file the SDK reads: ``{"KeyId",
"PrivateKeyData": base64 PKCS#12}`` + a password).  Responses are protobuf messages; errors a
protobuf ``Error{StatusCode, ErrorCode, ErrorMessage, RequestId}`` with the HTTP status.

APIs: ``GenerateDataKey``, ``Encrypt``, ``Decrypt`` (AES_GCM, 12-byte IV, ``Aad`` bound) with
AES-256 master keys held in memory (``create_key``, aliases, ``rotate_key``).  Errors:
``Forbidden.KeyNotFound`` (404), ``InvalidCiphertext`` (400: wrong Aad/IV/blob),
``InvalidParameter``, ``InvalidApiName``, ``InvalidApiVersion``, ``InvalidSignature`` (401),
``InvalidAccessKeyId.NotFound`` (unknown ClientKey), ``RequestTimeTooSkewed``.

Test hooks: :meth:`inject` (next N requests fail, e.g. ``Rejected.Throttling`` 429 — the code
the SDK itself treats as retryable), :attr:`calls` per API, :attr:`errors` per code,
:meth:`reset`, :meth:`stop` (listening sockets and keep-alive connections closed).

The protobuf classes are the SDK's own (``openapi_util.protobuf.api_pb2``), imported only when a
request is handled, so this module imports fine where the SDK is not installed.
"""

from __future__ import annotations

import base64
import datetime
import email.utils
import hashlib
import ipaddress
import json
import secrets
import ssl
import threading
import uuid
from collections import Counter, deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from tests.servers.alikms_gateway import EmulatorHTTPServer, Fault, KmsError, QuietHandler

__all__ = ["ClientKey", "DkmsServer"]

API_VERSION = "dkms-gcs-0.2"
SIGNATURE_METHOD = "RSA_PKCS1_SHA_256"
_MAX_SKEW = datetime.timedelta(minutes=15)
_MAGIC = b"DKV1"

_DEFAULT_FAULTS: dict[str, tuple[int, str]] = {
    "Rejected.Throttling": (429, "Request was denied due to request throttling."),
    "ServiceUnavailable": (503, "The service is temporarily unavailable."),
    "InternalFailure": (500, "The request processing has failed due to some unknown error."),
    "Forbidden.KeyNotFound": (404, "The specified Key is not found."),
    "InvalidSignature": (401, "The request signature is invalid."),
}


def _pb() -> Any:
    from openapi_util.protobuf import api_pb2  # the SDK's generated messages

    return api_pb2


def _parse(message_class: Any, body: bytes) -> Any:
    message = message_class()
    try:
        message.ParseFromString(body)
    except Exception:  # google.protobuf.message.DecodeError
        raise KmsError(400, "InvalidParameter", "The request body is not valid.") from None
    return message


@dataclass(frozen=True)
class ClientKey:
    """A ClientKey issued by the emulator: the file the SDK reads and its password."""

    key_id: str
    path: Path
    password: str
    content: str
    public_key: rsa.RSAPublicKey = field(repr=False)


@dataclass
class _MasterKey:
    key_id: str
    versions: list[tuple[str, bytes]] = field(default_factory=list)

    @property
    def primary(self) -> tuple[str, bytes]:
        return self.versions[-1]


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)


class DkmsServer(EmulatorHTTPServer):
    """The emulator: ``start()`` it (HTTP and HTTPS listeners), ``stop()`` it."""

    def __init__(self, workdir: str | Path, instance_id: str = "kst-emu00000000000000") -> None:
        super().__init__()
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.instance_id = instance_id
        self.http_port = 0
        self.https_port = 0
        self.lock = threading.Lock()
        self.keys: dict[str, _MasterKey] = {}
        self.aliases: dict[str, str] = {}
        self.client_keys: dict[str, ClientKey] = {}
        #: requests per API name (faulted and failed ones included)
        self.calls: Counter[str] = Counter()
        #: error responses per error code
        self.errors: Counter[str] = Counter()
        self._faults: deque[Fault] = deque()
        self.ca_file = self.workdir / "ca.pem"
        self._ssl_context: ssl.SSLContext | None = None
        self._default_client_key: ClientKey | None = None

    # -- lifecycle --------------------------------------------------------------------------
    def start(self) -> DkmsServer:
        if self.running:
            return self
        if self._ssl_context is None:
            self._ssl_context = self._make_tls()
        if self._default_client_key is None:
            self._default_client_key = self.issue_client_key()
        self.http_port = self._serve(_DkmsHandler)
        self.https_port = self._serve(_DkmsHandler, self._ssl_context)
        return self

    def endpoint(self, protocol: str = "https") -> str:
        return f"127.0.0.1:{self.https_port if protocol == 'https' else self.http_port}"

    @property
    def client_key(self) -> ClientKey:
        """The ClientKey issued at start (what :meth:`options` uses)."""
        assert self._default_client_key is not None, "start() the emulator first"
        return self._default_client_key

    def options(self, protocol: str = "https", **extra: Any) -> dict[str, Any]:
        """``kms_options["alikms-instance"]`` for envstore against this emulator."""
        ck = self.client_key
        opts: dict[str, Any] = {
            "endpoint": self.endpoint(protocol),
            "protocol": protocol,
            "client_key_file": str(ck.path),
            "client_key_password": ck.password,
            "retry_deadline": 5.0,
        }
        if protocol == "https":
            opts["ca_file"] = str(self.ca_file)
        opts.update(extra)
        return opts

    def reset(self, keys: bool = False) -> None:
        """Clear counters and pending faults (and all keys/aliases with ``keys=True``)."""
        with self.lock:
            self.calls.clear()
            self.errors.clear()
            self._faults.clear()
            if keys:
                self.keys.clear()
                self.aliases.clear()

    # -- credentials and keys -----------------------------------------------------------------
    def issue_client_key(self, password: str | None = None) -> ClientKey:
        """A new RSA ClientKey: writes ``clientKey_<id>.json`` (PKCS#12 inside) to workdir."""
        password = password or "emu-" + secrets.token_hex(8)
        key_id = "KAAP." + str(uuid.uuid4())
        private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, key_id)])
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(private.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(_now() - datetime.timedelta(days=1))
            .not_valid_after(_now() + datetime.timedelta(days=365))
            .sign(private, hashes.SHA256())
        )
        p12 = pkcs12.serialize_key_and_certificates(
            b"client-key",
            private,
            cert,
            None,
            serialization.BestAvailableEncryption(password.encode()),
        )
        content = json.dumps(
            {"KeyId": key_id, "PrivateKeyData": base64.b64encode(p12).decode("ascii")}
        )
        path = self.workdir / f"clientKey_{key_id}.json"
        path.write_text(content)
        path.chmod(0o600)
        ck = ClientKey(key_id, path, password, content, private.public_key())
        with self.lock:
            self.client_keys[key_id] = ck
        return ck

    def revoke_client_key(self, key_id: str) -> None:
        with self.lock:
            self.client_keys.pop(key_id, None)

    def create_key(self, alias: str | None = None) -> str:
        key_id = "key-emu" + secrets.token_hex(10)
        key = _MasterKey(key_id)
        key.versions.append((str(uuid.uuid4()), AESGCM.generate_key(256)))
        with self.lock:
            self.keys[key_id] = key
            if alias:
                self.aliases[alias] = key_id
        return key_id

    def rotate_key(self, key_id: str) -> str:
        version = str(uuid.uuid4())
        with self.lock:
            self.keys[key_id].versions.append((version, AESGCM.generate_key(256)))
        return version

    # -- faults -----------------------------------------------------------------------------
    def inject(
        self,
        code: str = "Rejected.Throttling",
        count: int = 1,
        *,
        status: int | None = None,
        message: str | None = None,
        actions: Sequence[str] | None = None,
    ) -> None:
        """The next ``count`` authenticated requests (of ``actions``, if given) fail: ``code``."""
        default_status, default_message = _DEFAULT_FAULTS.get(code, (400, code))
        with self.lock:
            self._faults.append(
                Fault(
                    code,
                    status or default_status,
                    message or default_message,
                    count,
                    frozenset(actions) if actions else None,
                )
            )

    def _take_fault(self, action: str) -> Fault | None:
        with self.lock:
            for fault in self._faults:
                if fault.count > 0 and (fault.actions is None or action in fault.actions):
                    fault.count -= 1
                    if fault.count == 0:
                        self._faults.remove(fault)
                    return fault
        return None

    # -- TLS --------------------------------------------------------------------------------
    def _make_tls(self) -> ssl.SSLContext:
        ca_key = ec.generate_private_key(ec.SECP256R1())
        ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "envstore test KMS CA")])
        ca_ski = x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key())
        ca_cert = (
            x509.CertificateBuilder()
            .subject_name(ca_name)
            .issuer_name(ca_name)
            .public_key(ca_key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(_now() - datetime.timedelta(days=1))
            .not_valid_after(_now() + datetime.timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(ca_ski, critical=False)
            .sign(ca_key, hashes.SHA256())
        )
        key = ec.generate_private_key(ec.SECP256R1())
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
            .issuer_name(ca_name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(_now() - datetime.timedelta(days=1))
            .not_valid_after(_now() + datetime.timedelta(days=30))
            .add_extension(
                x509.SubjectAlternativeName(
                    [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
                ),
                critical=False,
            )
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski),
                critical=False,
            )
            .sign(ca_key, hashes.SHA256())
        )
        pem = serialization.Encoding.PEM
        self.ca_file.write_bytes(ca_cert.public_bytes(pem))
        cert_file = self.workdir / "server.pem"
        key_file = self.workdir / "server.key"
        cert_file.write_bytes(cert.public_bytes(pem) + ca_cert.public_bytes(pem))
        key_file.write_bytes(
            key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
        )
        key_file.chmod(0o600)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(str(cert_file), str(key_file))
        return ctx

    # -- request handling ---------------------------------------------------------------------
    def handle(self, headers: Mapping[str, str], body: bytes) -> tuple[int, bytes]:
        """One ``POST /`` -> (status, protobuf body). Headers are lowercase-keyed."""
        pb = _pb()
        request_id = str(uuid.uuid4())
        action = headers.get("x-kms-apiname", "")
        with self.lock:
            self.calls[action] += 1
        try:
            self._authenticate(headers, body)
            fault = self._take_fault(action)
            if fault is not None:
                raise KmsError(fault.status, fault.code, fault.message)
            op = _APIS.get(action)
            if op is None:
                raise KmsError(400, "InvalidApiName", f'The ApiName "{action}" is invalid.')
            message = op(self, pb, body)
            message.RequestId = request_id
            return 200, message.SerializeToString()
        except KmsError as exc:
            with self.lock:
                self.errors[exc.code] += 1
            error = pb.Error(
                StatusCode=exc.status,
                ErrorCode=exc.code,
                ErrorMessage=exc.message,
                RequestId=request_id,
            )
            return exc.status, error.SerializeToString()

    def _authenticate(self, headers: Mapping[str, str], body: bytes) -> None:
        if headers.get("x-kms-apiversion") != API_VERSION:
            raise KmsError(
                400,
                "InvalidApiVersion",
                f'The ApiVersion "{headers.get("x-kms-apiversion", "")}" is invalid.',
            )
        if headers.get("x-kms-signaturemethod") != SIGNATURE_METHOD:
            raise KmsError(400, "InvalidParam", "The Param x-kms-signaturemethod is invalid.")
        ak = headers.get("x-kms-acccesskeyid")
        if not ak:
            raise KmsError(
                400,
                "MissingParameter",
                "Parameter x-kms-acccesskeyid does not exist in http header or body.",
            )
        with self.lock:
            client_key = self.client_keys.get(ak)
        if client_key is None:
            raise KmsError(404, "InvalidAccessKeyId.NotFound", "The ClientKey is not found.")
        content_sha = headers.get("content-sha256", "")
        if content_sha != hashlib.sha256(body).hexdigest().upper():
            raise KmsError(400, "InvalidParam", "The Param content-sha256 is invalid.")
        date = headers.get("date", "")
        try:
            when = email.utils.parsedate_to_datetime(date)
        except (TypeError, ValueError):
            raise KmsError(400, "InvalidParam", "The Param Date is invalid.") from None
        if when.tzinfo is None:
            when = when.replace(tzinfo=datetime.timezone.utc)
        if abs(_now() - when) > _MAX_SKEW:
            raise KmsError(
                400,
                "RequestTimeTooSkewed",
                "Request time exceeds server time more than 15 minutes.",
            )
        to_sign = (
            f"POST\n{content_sha}\n{headers.get('content-type', '')}\n{date}\n"
            + "".join(
                f"{name}:{headers[name].strip()}\n"
                for name in sorted(headers)
                if name.startswith("x-kms-")
            )
            + "/"
        )
        auth = headers.get("authorization", "")
        if not auth.startswith("Bearer "):
            raise KmsError(401, "InvalidSignature", "The request signature is missing.")
        try:
            signature = base64.b64decode(auth[len("Bearer ") :], validate=True)
            client_key.public_key.verify(
                signature, to_sign.encode("utf-8"), padding.PKCS1v15(), hashes.SHA256()
            )
        except (InvalidSignature, ValueError):
            raise KmsError(401, "InvalidSignature", "The request signature is invalid.") from None

    # -- APIs -------------------------------------------------------------------------------
    def _resolve(self, key_id: str) -> _MasterKey:
        if not key_id:
            raise KmsError(400, "InvalidParameter", "KeyId is required.")
        with self.lock:
            ident = self.aliases.get(key_id, key_id)
            key = self.keys.get(ident)
        if key is None:
            raise KmsError(404, "Forbidden.KeyNotFound", "The specified Key is not found.")
        return key

    @staticmethod
    def _check_algorithm(algorithm: str) -> str:
        algorithm = algorithm or "AES_GCM"
        if algorithm != "AES_GCM":
            raise KmsError(400, "InvalidParameter", f"Algorithm {algorithm} is not supported.")
        return algorithm

    @staticmethod
    def _check_aad(aad: bytes) -> None:
        if len(aad) > 8192:
            raise KmsError(400, "InvalidParameter", "Aad is longer than 8192 bytes.")

    def _seal(self, key: _MasterKey, plaintext: bytes, aad: bytes) -> tuple[bytes, bytes]:
        version, material = key.primary
        iv = secrets.token_bytes(12)
        ver = version.encode()
        blob = _MAGIC + bytes([len(ver)]) + ver + AESGCM(material).encrypt(iv, plaintext, aad)
        return blob, iv

    def _generate_data_key(self, pb: Any, body: bytes) -> Any:
        req = _parse(pb.GenerateDataKeyRequest, body)
        key = self._resolve(req.KeyId)
        algorithm = self._check_algorithm(req.Algorithm)
        self._check_aad(req.Aad)
        n = req.NumberOfBytes or 32
        if not 1 <= n <= 1024:
            raise KmsError(400, "InvalidParameter", "NumberOfBytes must be 1..1024.")
        plaintext = secrets.token_bytes(n)
        blob, iv = self._seal(key, plaintext, req.Aad)
        return pb.GenerateDataKeyResponse(
            KeyId=key.key_id, Iv=iv, Plaintext=plaintext, CiphertextBlob=blob, Algorithm=algorithm
        )

    def _encrypt(self, pb: Any, body: bytes) -> Any:
        req = _parse(pb.EncryptRequest, body)
        key = self._resolve(req.KeyId)
        algorithm = self._check_algorithm(req.Algorithm)
        self._check_aad(req.Aad)
        if not req.Plaintext:
            raise KmsError(400, "InvalidParameter", "Plaintext is required.")
        if len(req.Plaintext) > 6144:
            raise KmsError(400, "InvalidParameter", "Plaintext is longer than 6 KB.")
        blob, iv = self._seal(key, req.Plaintext, req.Aad)
        return pb.EncryptResponse(KeyId=key.key_id, CiphertextBlob=blob, Iv=iv, Algorithm=algorithm)

    def _decrypt(self, pb: Any, body: bytes) -> Any:
        req = _parse(pb.DecryptRequest, body)
        key = self._resolve(req.KeyId)
        algorithm = self._check_algorithm(req.Algorithm)
        self._check_aad(req.Aad)
        invalid = KmsError(
            400, "InvalidCiphertext", "The CiphertextBlob, Iv or Aad is invalid for this key."
        )
        if len(req.Iv) != 12:
            raise KmsError(400, "InvalidParameter", "Iv must be 12 bytes for AES_GCM.")
        raw = req.CiphertextBlob
        if not raw.startswith(_MAGIC) or len(raw) < len(_MAGIC) + 1:
            raise invalid
        n = raw[len(_MAGIC)]
        version = raw[len(_MAGIC) + 1 : len(_MAGIC) + 1 + n].decode("ascii", "replace")
        ct = raw[len(_MAGIC) + 1 + n :]
        material = dict(key.versions).get(version)
        if material is None or len(ct) < 16:
            raise invalid
        try:
            plaintext = AESGCM(material).decrypt(req.Iv, ct, req.Aad)
        except InvalidTag:
            raise invalid from None
        return pb.DecryptResponse(KeyId=key.key_id, Plaintext=plaintext, Algorithm=algorithm)


_APIS: dict[str, Any] = {
    "GenerateDataKey": DkmsServer._generate_data_key,
    "Encrypt": DkmsServer._encrypt,
    "Decrypt": DkmsServer._decrypt,
}


class _DkmsHandler(QuietHandler):
    def do_POST(self) -> None:
        body = self.read_body()
        headers = {k.lower(): v for k, v in self.headers.items()}
        emulator: DkmsServer = self.server.emulator
        status, payload = emulator.handle(headers, body)
        self.send_bytes(status, payload, {"Content-Type": "application/x-protobuf"})
