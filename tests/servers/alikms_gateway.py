"""An emulator of Alibaba Cloud KMS's shared-gateway OpenAPI (version 2016-01-20), for tests.

The real SDK ``alibabacloud-kms20160120`` talks to it with
``Config(endpoint="127.0.0.1:PORT", protocol="http", access_key_id=..., access_key_secret=...)``
(see :meth:`AliKmsGateway.options` for envstore's ``kms_options["alikms"]``).  Standard library
plus ``cryptography`` only; one ``ThreadingHTTPServer`` on 127.0.0.1, port chosen by the OS.

What it does like the real service:

* RPC style: action in ``x-acs-action`` (or ``Action``), parameters in the query string and the
  form body, JSON responses (``KeyId``, ``KeyVersionId``, ``Plaintext``, ``CiphertextBlob``,
  ``RequestId``), JSON errors ``{"Code", "Message", "RequestId", "HostId"}``;
* checks the ``ACS3-HMAC-SHA256`` signature the SDK computes (canonical request over the method,
  path, sorted query, signed headers and ``x-acs-content-sha256``), the payload hash and the
  clock skew, or the classic SDK's RPC signature (``HMAC-SHA1``, ``Signature`` in the query:
  ``aliyun-python-sdk-kms``, which oss2's ``AliKMSProvider`` uses): a wrong AccessKey secret
  gets ``SignatureDoesNotMatch``, an unknown AccessKey id ``InvalidAccessKeyId.NotFound``;
* actions ``GenerateDataKey``, ``Decrypt``, ``Encrypt`` (what envstore and oss2's
  ``AliKMSProvider`` send; keys and aliases are made through the Python API, ``create_key`` /
  ``create_alias``): master keys are real AES-256-GCM keys held in memory;
  ciphertext blobs name their key and key version; ``EncryptionContext`` is bound as AAD, so a
  different or missing context fails with ``InvalidCiphertext``; unknown keys and aliases fail
  with ``Forbidden.KeyNotFound`` / ``Forbidden.AliasNotFound``.  As in the real KMS, a blob from
  ``GenerateDataKey`` decrypts to the *base64 text* of the data key.

Test hooks: :meth:`inject` (the next N requests fail with a given code/status, e.g.
``Throttling``, 503 ``ServiceUnavailable``, ``Forbidden.KeyNotFound``), :attr:`calls` (requests
per action, faulted ones included), :attr:`errors` (error responses per code), :meth:`reset`,
and :meth:`stop` (closes the listening socket *and* open keep-alive connections, so a client
sees a KMS that is down).

Blob format (emulator-specific): ``b"AKE1" | len(key id) | key id | len(version) | version |
nonce(12) | AES-GCM(ciphertext+tag)`` with AAD = key id, version and the canonical context.
"""

from __future__ import annotations

import base64
import binascii
import datetime
import hashlib
import hmac
import json
import secrets
import socket
import ssl
import threading
import urllib.parse
import uuid
from collections import Counter, deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

__all__ = ["AliKmsGateway", "EmulatorHTTPServer", "Fault", "KmsError", "QuietHandler"]

API_VERSION = "2016-01-20"
_MAGIC = b"AKE1"
_MAX_SKEW = datetime.timedelta(minutes=15)


# -- small HTTP server base shared with the KMS-instance emulator -----------------------------
class _TrackingServer(ThreadingHTTPServer):
    """A threading server that can drop its keep-alive connections, optionally over TLS."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(
        self,
        address: tuple[str, int],
        handler: type[BaseHTTPRequestHandler],
        emulator: Any,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.emulator = emulator
        self.ssl_context = ssl_context
        self._open: set[socket.socket] = set()
        self._open_lock = threading.Lock()
        super().__init__(address, handler)

    def finish_request(self, request: Any, client_address: Any) -> None:
        conn = request
        if self.ssl_context is not None:
            try:
                conn = self.ssl_context.wrap_socket(request, server_side=True)
            except (ssl.SSLError, OSError):
                return
        with self._open_lock:
            self._open.add(conn)
        try:
            super().finish_request(conn, client_address)
        except OSError:
            pass
        finally:
            with self._open_lock:
                self._open.discard(conn)
            if conn is not request:
                conn.close()

    def drop_connections(self) -> None:
        with self._open_lock:
            conns = list(self._open)
        for conn in conns:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


class QuietHandler(BaseHTTPRequestHandler):
    """HTTP/1.1 keep-alive handler that does not log to stderr."""

    protocol_version = "HTTP/1.1"
    timeout = 30
    server: _TrackingServer

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def read_body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def send_bytes(self, status: int, body: bytes, headers: Mapping[str, str]) -> None:
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class EmulatorHTTPServer:
    """Start/stop plumbing: one or more listening servers sharing one emulator state."""

    def __init__(self) -> None:
        self._servers: list[_TrackingServer] = []
        self._threads: list[threading.Thread] = []

    def _serve(
        self, handler: type[BaseHTTPRequestHandler], ssl_context: ssl.SSLContext | None = None
    ) -> int:
        server = _TrackingServer(("127.0.0.1", 0), handler, self, ssl_context)
        thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        thread.start()
        self._servers.append(server)
        self._threads.append(thread)
        return int(server.server_address[1])

    @property
    def running(self) -> bool:
        return bool(self._servers)

    def stop(self) -> None:
        """Stop listening and cut open connections: clients now see a KMS that is down."""
        servers, self._servers = self._servers, []
        for server in servers:
            server.shutdown()
            server.server_close()
            server.drop_connections()
        for thread in self._threads:
            thread.join(timeout=5)
        self._threads = []

    def __enter__(self) -> EmulatorHTTPServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


# -- the KMS itself -----------------------------------------------------------------------------
class KmsError(Exception):
    """An API error the emulator answers with."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(code)
        self.status = status
        self.code = code
        self.message = message


@dataclass
class Fault:
    """``count`` next requests (optionally only of ``actions``) fail with ``code``/``status``."""

    code: str
    status: int
    message: str
    count: int
    actions: frozenset[str] | None = None
    retry_after: int | None = None


@dataclass
class _MasterKey:
    key_id: str
    arn: str
    versions: list[tuple[str, bytes]] = field(default_factory=list)
    description: str = ""
    enabled: bool = True
    created: str = ""

    @property
    def primary(self) -> tuple[str, bytes]:
        return self.versions[-1]


_DEFAULT_FAULTS: dict[str, tuple[int, str]] = {
    "Throttling": (400, "Request was denied due to request throttling."),
    "Throttling.User": (400, "Request was denied due to user flow control."),
    "ServiceUnavailable": (503, "The request has failed due to a temporary failure of the server."),
    "InternalFailure": (500, "The request processing has failed due to some unknown error."),
    "Forbidden.KeyNotFound": (404, "The specified Key is not found."),
    "Rejected.Disabled": (400, "The specified key is disabled."),
}


def _canonical_context(context: Mapping[str, str]) -> bytes:
    return json.dumps(dict(context), sort_keys=True, separators=(",", ":")).encode("utf-8")


class AliKmsGateway(EmulatorHTTPServer):
    """The emulator. ``start()`` it, point the SDK at :attr:`endpoint`, ``stop()`` it."""

    def __init__(
        self,
        access_keys: Mapping[str, str] | None = None,
        region_id: str = "cn-hangzhou",
        account_id: str = "1234567890123456",
    ) -> None:
        super().__init__()
        #: AccessKey id -> secret accepted by the signature check
        self.access_keys: dict[str, str] = dict(
            access_keys or {"LTAIemulatorTestKey": "emulator-test-secret"}
        )
        self.region_id = region_id
        self.account_id = account_id
        self.port = 0
        self.lock = threading.Lock()
        self.keys: dict[str, _MasterKey] = {}
        self.aliases: dict[str, str] = {}
        #: requests per action (faulted and failed ones included)
        self.calls: Counter[str] = Counter()
        #: error responses per error code
        self.errors: Counter[str] = Counter()
        self._faults: deque[Fault] = deque()

    # -- lifecycle --------------------------------------------------------------------------
    def start(self) -> AliKmsGateway:
        if not self.running:
            self.port = self._serve(_GatewayHandler)
        return self

    @property
    def endpoint(self) -> str:
        """``127.0.0.1:PORT`` (what ``Config(endpoint=...)`` takes; protocol ``http``)."""
        return f"127.0.0.1:{self.port}"

    @property
    def access_key_id(self) -> str:
        return next(iter(self.access_keys))

    @property
    def access_key_secret(self) -> str:
        return self.access_keys[self.access_key_id]

    def options(self, **extra: Any) -> dict[str, Any]:
        """``kms_options["alikms"]`` for envstore's AliKmsProvider against this emulator."""
        opts: dict[str, Any] = {
            "endpoint": self.endpoint,
            "protocol": "http",
            "access_key_id": self.access_key_id,
            "access_key_secret": self.access_key_secret,
            "retry_deadline": 5.0,
        }
        opts.update(extra)
        return opts

    def reset(self, keys: bool = False) -> None:
        """Clear counters and pending faults (and all keys and aliases with ``keys=True``)."""
        with self.lock:
            self.calls.clear()
            self.errors.clear()
            self._faults.clear()
            if keys:
                self.keys.clear()
                self.aliases.clear()

    # -- keys -------------------------------------------------------------------------------
    def create_key(self, alias: str | None = None, description: str = "") -> str:
        """A new enabled AES-256 master key; returns its key id."""
        key_id = "key-emu" + secrets.token_hex(10)
        arn = f"acs:kms:{self.region_id}:{self.account_id}:key/{key_id}"
        created = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        key = _MasterKey(key_id, arn, description=description, created=created)
        key.versions.append((str(uuid.uuid4()), AESGCM.generate_key(256)))
        with self.lock:
            self.keys[key_id] = key
        if alias:
            self.create_alias(alias, key_id)
        return key_id

    def create_alias(self, alias: str, key_id: str) -> None:
        if not alias.startswith("alias/"):
            raise ValueError("aliases look like alias/NAME")
        with self.lock:
            if key_id not in self.keys:
                raise KeyError(key_id)
            self.aliases[alias] = key_id

    def rotate_key(self, key_id: str) -> str:
        """A new primary version of ``key_id`` (old blobs still decrypt); returns its id."""
        version = str(uuid.uuid4())
        with self.lock:
            self.keys[key_id].versions.append((version, AESGCM.generate_key(256)))
        return version

    def disable_key(self, key_id: str) -> None:
        with self.lock:
            self.keys[key_id].enabled = False

    # -- faults -----------------------------------------------------------------------------
    def inject(
        self,
        code: str = "Throttling",
        count: int = 1,
        *,
        status: int | None = None,
        message: str | None = None,
        actions: Sequence[str] | None = None,
        retry_after: int | None = None,
    ) -> None:
        """The next ``count`` requests (of ``actions`` if given) fail with ``code``.

        Known codes get the real status and message (``Throttling`` 400,
        ``ServiceUnavailable`` 503, ``InternalFailure`` 500, ``Forbidden.KeyNotFound`` 404...).
        ``retry_after`` (ms) adds the ``x-acs-retry-after`` header the SDK reads.
        """
        default_status, default_message = _DEFAULT_FAULTS.get(code, (400, code))
        with self.lock:
            self._faults.append(
                Fault(
                    code,
                    status or default_status,
                    message or default_message,
                    count,
                    frozenset(actions) if actions else None,
                    retry_after,
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

    # -- request handling ---------------------------------------------------------------------
    def handle(
        self, method: str, path: str, headers: Mapping[str, str], body: bytes
    ) -> tuple[int, dict[str, Any], dict[str, str]]:
        """One request -> (status, JSON body, extra headers). Headers are lowercase-keyed."""
        request_id = str(uuid.uuid4()).upper()
        parsed = urllib.parse.urlsplit(path)
        query = dict(urllib.parse.parse_qsl(parsed.query, keep_blank_values=True))
        action = headers.get("x-acs-action") or query.get("Action") or ""
        with self.lock:
            self.calls[action] += 1
        extra: dict[str, str] = {"x-acs-request-id": request_id}
        try:
            if "Signature" in query:  # the classic SDK (aliyun-python-sdk-kms, used by oss2)
                self._check_rpc_signature(method, query, headers, body)
            else:
                self._check_signature(method, parsed.path or "/", query, headers, body)
            version = headers.get("x-acs-version") or query.get("Version")
            if version != API_VERSION:
                raise KmsError(400, "InvalidVersion", "Specified parameter Version is not valid.")
            fault = self._take_fault(action)
            if fault is not None:
                if fault.retry_after:
                    extra["x-acs-retry-after"] = str(fault.retry_after)
                raise KmsError(fault.status, fault.code, fault.message)
            params = dict(query)
            ctype = headers.get("content-type", "")
            if body and ctype.startswith("application/x-www-form-urlencoded"):
                params.update(urllib.parse.parse_qsl(body.decode("utf-8"), keep_blank_values=True))
            elif body and ctype.startswith("application/json"):
                params.update(json.loads(body))
            op = _ACTIONS.get(action)
            if op is None:
                raise KmsError(404, "InvalidAction.NotFound", "Specified api is not found.")
            result = op(self, params)
        except (ValueError, TypeError, KeyError, AttributeError):  # malformed input
            exc = KmsError(400, "InvalidParameter", "The specified parameter is not valid.")
            return self._error(exc, request_id, extra)
        except KmsError as exc:
            return self._error(exc, request_id, extra)
        result["RequestId"] = request_id
        return 200, result, extra

    def _error(
        self, exc: KmsError, request_id: str, extra: dict[str, str]
    ) -> tuple[int, dict[str, Any], dict[str, str]]:
        with self.lock:
            self.errors[exc.code] += 1
        error = {
            "RequestId": request_id,
            "HostId": self.endpoint,
            "Code": exc.code,
            "Message": exc.message,
            "Recommend": "",
        }
        return exc.status, error, extra

    def _check_rpc_signature(
        self, method: str, query: Mapping[str, str], headers: Mapping[str, str], body: bytes
    ) -> None:
        """RPC signature version 1.0 (HMAC-SHA1 over the sorted query and form parameters)."""
        if query.get("SignatureMethod") != "HMAC-SHA1":
            raise KmsError(400, "IncompleteSignature", "SignatureMethod must be HMAC-SHA1.")
        secret = self.access_keys.get(query.get("AccessKeyId", ""))
        if secret is None:
            raise KmsError(404, "InvalidAccessKeyId.NotFound", "Specified access key is not found.")
        params = {k: v for k, v in query.items() if k != "Signature"}
        if body and headers.get("content-type", "").startswith("application/x-www-form"):
            params.update(urllib.parse.parse_qsl(body.decode("utf-8"), keep_blank_values=True))

        def enc(text: str) -> str:
            return urllib.parse.quote(text, safe="~")

        canonical = "&".join(f"{enc(k)}={enc(params[k])}" for k in sorted(params))
        to_sign = f"{method}&{enc('/')}&{enc(canonical)}"
        digest = hmac.new((secret + "&").encode(), to_sign.encode(), hashlib.sha1).digest()
        if not hmac.compare_digest(base64.b64encode(digest).decode(), query["Signature"]):
            raise KmsError(
                400, "SignatureDoesNotMatch", "Specified signature does not match our calculation."
            )

    def _check_signature(
        self,
        method: str,
        path: str,
        query: Mapping[str, str],
        headers: Mapping[str, str],
        body: bytes,
    ) -> None:
        auth = headers.get("authorization", "")
        algorithm, _, rest = auth.partition(" ")
        if algorithm != "ACS3-HMAC-SHA256":
            raise KmsError(400, "IncompleteSignature", "The request signature is missing.")
        fields = dict(part.strip().split("=", 1) for part in rest.split(",") if "=" in part.strip())
        ak = fields.get("Credential", "")
        signed = fields.get("SignedHeaders", "")
        signature = fields.get("Signature", "")
        secret = self.access_keys.get(ak)
        if secret is None:
            raise KmsError(404, "InvalidAccessKeyId.NotFound", "Specified access key is not found.")
        payload = hashlib.sha256(body).hexdigest()
        if headers.get("x-acs-content-sha256") != payload:
            raise KmsError(400, "IncompleteSignature", "x-acs-content-sha256 does not match body")
        names = signed.split(";") if signed else []
        for required in ("host", "x-acs-action", "x-acs-content-sha256", "x-acs-date"):
            if required not in names:
                raise KmsError(400, "IncompleteSignature", f"{required} must be signed")
        date = headers.get("x-acs-date", "")
        try:
            when = datetime.datetime.strptime(date, "%Y-%m-%dT%H:%M:%SZ").replace(
                tzinfo=datetime.timezone.utc
            )
        except ValueError:
            raise KmsError(400, "InvalidTimeStamp.Format", "x-acs-date is malformed") from None
        if abs(datetime.datetime.now(datetime.timezone.utc) - when) > _MAX_SKEW:
            raise KmsError(400, "InvalidTimeStamp.Expired", "x-acs-date is too far off")
        canonical_query = "&".join(
            f"{k}={urllib.parse.quote(query[k], safe='~')}" for k in sorted(query)
        )
        canonical_headers = "".join(f"{name}:{headers.get(name, '').strip()}\n" for name in names)
        canonical = "\n".join([method, path, canonical_query, canonical_headers, signed, payload])
        to_sign = "ACS3-HMAC-SHA256\n" + hashlib.sha256(canonical.encode("utf-8")).hexdigest()
        expected = hmac.new(secret.encode(), to_sign.encode(), hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected, signature):
            raise KmsError(
                400,
                "SignatureDoesNotMatch",
                "Specified signature does not match our calculation.",
            )

    # -- actions ----------------------------------------------------------------------------
    def _resolve(self, key_id: str | None) -> _MasterKey:
        if not key_id:
            raise KmsError(400, "MissingKeyId", "KeyId is mandatory for this action.")
        with self.lock:
            ident = key_id
            if ident.startswith("acs:kms:") and ":alias/" in ident:
                ident = "alias/" + ident.split(":alias/", 1)[1]
            if ident.startswith("alias/"):
                if ident not in self.aliases:
                    raise KmsError(
                        404, "Forbidden.AliasNotFound", "The specified Alias is not found."
                    )
                ident = self.aliases[ident]
            if ident.startswith("acs:kms:") and ":key/" in ident:
                ident = ident.split(":key/", 1)[1]
            key = self.keys.get(ident)
        if key is None:
            raise KmsError(404, "Forbidden.KeyNotFound", "The specified Key is not found.")
        if not key.enabled:
            raise KmsError(400, "Rejected.Disabled", "The specified key is disabled.")
        return key

    @staticmethod
    def _context(params: Mapping[str, Any]) -> bytes:
        raw = params.get("EncryptionContext")
        if raw in (None, ""):
            return _canonical_context({})
        try:
            ctx = json.loads(raw) if isinstance(raw, str) else raw
        except ValueError:
            raise KmsError(400, "InvalidParameter", "EncryptionContext is not JSON.") from None
        if not isinstance(ctx, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in ctx.items()
        ):
            raise KmsError(
                400, "InvalidParameter", "EncryptionContext must map strings to strings."
            )
        return _canonical_context(ctx)

    @staticmethod
    def _aad(key_id: str, version: str, context: bytes) -> bytes:
        return (
            b"alikms-emulator\x00"
            + key_id.encode()
            + b"\x00"
            + version.encode()
            + b"\x00"
            + context
        )

    def _seal(self, key: _MasterKey, plaintext: bytes, context: bytes) -> str:
        version, material = key.primary
        nonce = secrets.token_bytes(12)
        ct = AESGCM(material).encrypt(nonce, plaintext, self._aad(key.key_id, version, context))
        kid, ver = key.key_id.encode(), version.encode()
        raw = _MAGIC + bytes([len(kid)]) + kid + bytes([len(ver)]) + ver + nonce + ct
        return base64.b64encode(raw).decode("ascii")

    def _open(self, blob: str, context: bytes) -> tuple[_MasterKey, str, bytes]:
        invalid = KmsError(
            400,
            "InvalidCiphertext",
            "The specified ciphertext blob is invalid or the EncryptionContext does not match.",
        )
        try:
            raw = base64.b64decode(blob, validate=True)
        except (binascii.Error, ValueError):
            raise invalid from None
        if not raw.startswith(_MAGIC) or len(raw) < len(_MAGIC) + 2:
            raise invalid
        pos = len(_MAGIC)
        n = raw[pos]
        kid = raw[pos + 1 : pos + 1 + n].decode("ascii", "replace")
        pos += 1 + n
        m = raw[pos] if pos < len(raw) else 0
        version = raw[pos + 1 : pos + 1 + m].decode("ascii", "replace")
        pos += 1 + m
        nonce, ct = raw[pos : pos + 12], raw[pos + 12 :]
        key = self._resolve(kid)
        material = dict(key.versions).get(version)
        if material is None or len(nonce) != 12 or len(ct) < 16:
            raise invalid
        try:
            plain = AESGCM(material).decrypt(nonce, ct, self._aad(key.key_id, version, context))
        except InvalidTag:
            raise invalid from None
        return key, version, plain

    def _generate_data_key(self, params: Mapping[str, Any]) -> dict[str, Any]:
        key = self._resolve(params.get("KeyId"))
        spec = params.get("KeySpec")
        n_raw = params.get("NumberOfBytes")
        if n_raw not in (None, ""):
            try:
                n = int(n_raw)
            except ValueError:
                raise KmsError(400, "InvalidParameter", "NumberOfBytes is invalid.") from None
            if not 1 <= n <= 1024:
                raise KmsError(400, "InvalidParameter", "NumberOfBytes must be 1..1024.")
        else:
            n = 16 if spec == "AES_128" else 32
        data_key = secrets.token_bytes(n)
        plaintext = base64.b64encode(data_key).decode("ascii")
        blob = self._seal(key, plaintext.encode("ascii"), self._context(params))
        return {
            "KeyId": key.key_id,
            "KeyVersionId": key.primary[0],
            "Plaintext": plaintext,
            "CiphertextBlob": blob,
        }

    def _encrypt(self, params: Mapping[str, Any]) -> dict[str, Any]:
        key = self._resolve(params.get("KeyId"))
        plaintext = params.get("Plaintext")
        if not plaintext:
            raise KmsError(400, "MissingPlaintext", "Plaintext is mandatory for this action.")
        if len(plaintext.encode("utf-8")) > 6144:
            raise KmsError(400, "InvalidParameter", "Plaintext is longer than 6 KB.")
        blob = self._seal(key, plaintext.encode("utf-8"), self._context(params))
        return {"KeyId": key.key_id, "KeyVersionId": key.primary[0], "CiphertextBlob": blob}

    def _decrypt(self, params: Mapping[str, Any]) -> dict[str, Any]:
        blob = params.get("CiphertextBlob")
        if not blob:
            raise KmsError(400, "MissingCiphertextBlob", "CiphertextBlob is mandatory.")
        key, version, plain = self._open(blob, self._context(params))
        return {"KeyId": key.key_id, "KeyVersionId": version, "Plaintext": plain.decode("utf-8")}


_ACTIONS: dict[str, Any] = {
    "GenerateDataKey": AliKmsGateway._generate_data_key,
    "Encrypt": AliKmsGateway._encrypt,
    "Decrypt": AliKmsGateway._decrypt,
}


class _GatewayHandler(QuietHandler):
    _methods: ClassVar[tuple[str, ...]] = ("GET", "POST")

    def _dispatch(self) -> None:
        body = self.read_body()
        headers = {k.lower(): v for k, v in self.headers.items()}
        emulator: AliKmsGateway = self.server.emulator
        status, payload, extra = emulator.handle(self.command, self.path, headers, body)
        out = json.dumps(payload).encode("utf-8")
        self.send_bytes(status, out, {"Content-Type": "application/json;charset=utf-8", **extra})

    def do_POST(self) -> None:
        self._dispatch()

    def do_GET(self) -> None:
        self._dispatch()
