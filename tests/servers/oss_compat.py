"""An Alibaba Cloud OSS-compatible HTTP server for tests (no OSS emulator exists).

werkzeug, threaded, in memory, on 127.0.0.1 with a port chosen by the OS.  It speaks the subset
of the OSS REST API that the real ``oss2`` client uses for objects, and answers the way OSS does
where envstore depends on it:

* **Addressing**: path style, as oss2 uses it for IP endpoints:
  ``http://127.0.0.1:PORT/bucket/<key quoted with safe=''>``; ``/`` is the service.
* **Authentication**: V1 signatures exactly as ``oss2.Auth`` computes them
  (``VERB\\nContent-MD5\\nContent-Type\\nDate\\n<sorted x-oss-* headers>/bucket/key[?signed
  subresources]``, HMAC-SHA1, base64); unknown AccessKey id → 403 ``InvalidAccessKeyId``,
  wrong secret → 403 ``SignatureDoesNotMatch`` (with the StringToSign, as OSS), clock skew over
  15 minutes → 403 ``RequestTimeTooSkewed``, no ``Authorization`` → 403 ``AccessDenied``.
  STS credentials (:meth:`OssServer.add_sts_credentials`) need their ``x-oss-security-token``.
  V2/V4 signatures are refused (403 ``AccessDenied``).
* **Objects**: PutObject, GetObject, HeadObject, DeleteObject, CopyObject
  (``x-oss-copy-source``; ``x-oss-metadata-directive`` COPY by default or REPLACE; a copy onto
  itself with REPLACE rewrites metadata only, at any size; other copies of sources over
  :attr:`OssServer.copy_limit` (1 GB) are refused: UploadPartCopy beyond); ``x-oss-meta-*``
  stored (names lowercased) and returned, at most :attr:`OssServer.metadata_limit` (8 KB: names
  with their ``x-oss-meta-`` prefix, plus values; OSS's own pages say both "cannot exceed 8 KB"
  and "8 KB or more" fails — the server allows exactly 8192) else 400 ``InvalidArgument`` (EC
  0011-00000002); Content-MD5 checked (400 ``InvalidDigest``);
  ETag (upper-case MD5, ``-N`` for multipart), Last-Modified, ``x-oss-object-type``,
  ``x-oss-request-id``, and a real CRC64-ECMA ``x-oss-hash-crc64ecma`` (the CRC oss2 computes)
  on PUT, UploadPart, Complete (combined from the parts), GET and HEAD; Content-Type and the
  standard headers OSS keeps (Cache-Control, Content-Disposition, Content-Encoding,
  Content-Language, Expires) stored and copied like metadata; ``x-oss-forbid-overwrite``;
  ``If-Match`` / ``If-None-Match`` on GET/HEAD; ``x-oss-copy-source-if-match`` on CopyObject
  (412 PreconditionFailed, checked atomically with the write).
* **Ranges** (GetObject): ``bytes=a-b`` (inclusive), ``bytes=a-``, ``bytes=-n``.  Without
  ``x-oss-range-behavior: standard`` a range that is out of bounds is ignored: 200 and the whole
  object (OSS's legacy behaviour).  With it: 206 clipped at the end when the start is inside the
  object, 416 ``InvalidRange`` when it starts at or past the end.  A malformed range is ignored
  in both modes; of several ranges only the first counts.
* **Errors**: XML bodies ``<Error><Code/><Message/><RequestId/><HostId/>...<EC/></Error>``
  without namespaces; for HEAD the same XML base64-encoded in the ``x-oss-err`` header (oss2
  reads it there): ``NoSuchKey``, ``NoSuchBucket``, ``AccessDenied``, ...
* **Multipart**: InitiateMultipartUpload (metadata and Content-Type taken here), UploadPart,
  UploadPartCopy (``x-oss-copy-source-range``), CompleteMultipartUpload (part order, ETags,
  every part but the last ≥ 100 KB else 400 ``EntityTooSmall``; ``x-oss-complete-all``),
  AbortMultipartUpload, ListMultipartUploads.
* **Listing**: ListObjectsV2 (continuation-token, start-after,
  fetch-owner), prefix, delimiter, max-keys, CommonPrefixes, ``encoding-type=url``; XML without
  namespaces with the elements ``oss2/xml_utils.py`` reads.  DeleteMultipleObjects
  (``POST ?delete``, Content-MD5 required), ListBuckets, CreateBucket, DeleteBucket
  (``BucketNotEmpty``), GetBucketInfo.
* Only what envstore, its tests and the migration tests (oss2 ``CryptoBucket``) send; other
  calls (ListObjects v1, ListParts, GetObjectMeta, GetBucketLocation, ...) answer 400
  ``NotImplemented``.

Test hooks: :attr:`OssServer.log` (one :class:`LoggedRequest` per request: API name, method,
path, query, selected headers, Range, status, body bytes sent), :meth:`OssServer.calls`,
:attr:`OssServer.get_bytes` (response body bytes of GetObject), :meth:`OssServer.fail_next`
(the next N matching requests fail with a given status and code), :meth:`OssServer.reset`.

Not supported: virtual-hosted addressing, V2/V4 signatures, presigned URLs, versioning, ACLs,
tagging, AppendObject, symlinks, server-side encryption, lifecycle and other bucket
configuration, POST-policy uploads, chunked CRC trailers.
"""

from __future__ import annotations

import base64
import binascii
import email.utils
import hashlib
import hmac
import re
import secrets
import socket
import threading
import time
import traceback
import urllib.parse
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import crcmod
from werkzeug.serving import ThreadedWSGIServer, WSGIRequestHandler
from werkzeug.wrappers import Request, Response

__all__ = ["LoggedRequest", "OssServer", "crc64", "crc64_combine"]

KB = 1024
MIN_PART_SIZE = 100 * KB
MAX_PARTS = 10_000
OWNER_ID = "1234567890123456"
OWNER_NAME = "envstore-test"
REGION = "oss-cn-test"
_SKEW = 15 * 60
_SEND_CHUNK = 1 << 20

# -- CRC64-ECMA (the CRC-64/XZ variant OSS and oss2 use) -----------------------------------------
_POLY = 0x142F0E1EBA9EA3693
_POLY_REFLECTED = 0xC96C5795D7870F42
_crc64_fn = crcmod.mkCrcFun(_POLY, initCrc=0, rev=True, xorOut=0xFFFFFFFFFFFFFFFF)


def crc64(data: bytes | memoryview, crc: int = 0) -> int:
    """CRC64-ECMA of ``data`` (continuing from ``crc``), as ``x-oss-hash-crc64ecma`` carries it."""
    return int(_crc64_fn(data, crc))


def _gf2_times(matrix: list[int], vector: int) -> int:
    out = 0
    i = 0
    while vector:
        if vector & 1:
            out ^= matrix[i]
        vector >>= 1
        i += 1
    return out


def _gf2_square(matrix: list[int]) -> list[int]:
    return [_gf2_times(matrix, matrix[n]) for n in range(64)]


def crc64_combine(crc1: int, crc2: int, len2: int) -> int:
    """CRC of ``A + B`` from ``crc(A)``, ``crc(B)`` and ``len(B)`` (zlib's crc32_combine method,
    written independently of oss2's helper so that the two check each other)."""
    if len2 <= 0:
        return crc1
    odd = [_POLY_REFLECTED] + [1 << n for n in range(63)]  # one zero bit
    even = _gf2_square(odd)  # two zero bits
    odd = _gf2_square(even)  # four zero bits
    while True:
        even = _gf2_square(odd)
        if len2 & 1:
            crc1 = _gf2_times(even, crc1)
        len2 >>= 1
        if not len2:
            break
        odd = _gf2_square(even)
        if len2 & 1:
            crc1 = _gf2_times(odd, crc1)
        len2 >>= 1
        if not len2:
            break
    return crc1 ^ crc2


# -- signed sub-resources (the set oss2's V1 signer puts into the canonical resource) -------------
SIGNED_SUBRESOURCES = frozenset(
    """response-content-type response-content-language response-cache-control logging
    response-content-encoding acl uploadId uploads partNumber group link delete website location
    objectInfo objectMeta response-expires response-content-disposition cors lifecycle restore
    qos referer stat bucketInfo append position security-token live comp status vod startTime
    endTime x-oss-process symlink callback callback-var tagging encryption versions versioning
    versionId policy requestPayment x-oss-traffic-limit qosInfo asyncFetch x-oss-request-payer
    sequential inventory inventoryId continuation-token worm wormId wormExtend replication
    replicationLocation replicationProgress transferAcceleration cname metaQuery
    x-oss-ac-source-ip x-oss-ac-subnet-mask x-oss-ac-vpc-id x-oss-ac-forward-allow resourceGroup
    style styleName x-oss-async-process regionList x-oss-write-get-object-response
    bucketArchiveDirectRead httpsConfig redundancyTransition x-oss-target-redundancy-type
    x-oss-redundancy-transition-taskid accessPoint accessPointPolicy publicAccessBlock
    x-oss-access-point-name requesterQosInfo qosRequester resourcePoolInfo resourcePool
    resourcePoolBuckets""".split()
)

#: request headers kept in the log
_LOGGED_HEADERS = ("content-type", "content-length", "content-md5", "range")
_BUCKET_NAME = re.compile(r"[a-z0-9][a-z0-9-]{1,61}[a-z0-9]\Z")
_META_NAME = re.compile(r"x-oss-meta-[a-z0-9-]+\Z")
_RANGE = re.compile(r"\s*bytes\s*=\s*(\d*)\s*-\s*(\d*)\s*\Z")


def _now() -> float:
    return time.time()


def _http_date(t: float) -> str:
    return email.utils.formatdate(t, usegmt=True)


def _iso8601(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(t))


def _md5(data: bytes | memoryview) -> bytes:
    return hashlib.md5(data).digest()


def _etag_of(digest: bytes) -> str:
    return digest.hex().upper()


# -- state -------------------------------------------------------------------------------------
@dataclass
class StoredObject:
    """One object: bytes, user metadata (``x-oss-meta-*`` names, lowercase), checksums."""

    data: bytes
    meta: dict[str, str]
    content_type: str
    etag: str  # without quotes
    crc: int
    last_modified: float
    object_type: str = "Normal"
    #: standard headers stored with the object (Cache-Control, Content-Disposition, ...)
    standard: dict[str, str] = field(default_factory=dict)

    @property
    def size(self) -> int:
        return len(self.data)


@dataclass
class _Part:
    data: bytes
    etag: str
    crc: int
    last_modified: float


@dataclass
class Upload:
    key: str
    upload_id: str
    meta: dict[str, str]
    content_type: str
    initiated: float
    standard: dict[str, str] = field(default_factory=dict)
    parts: dict[int, _Part] = field(default_factory=dict)


@dataclass
class _Bucket:
    name: str
    created: float
    objects: dict[str, StoredObject] = field(default_factory=dict)
    uploads: dict[str, Upload] = field(default_factory=dict)


@dataclass
class LoggedRequest:
    """One request as the server saw it (``sent``: response body bytes, counted as sent)."""

    op: str
    method: str
    bucket: str
    key: str
    query: dict[str, str]
    headers: dict[str, str]
    range: str | None
    status: int = 0
    sent: int = 0


@dataclass
class _Fault:
    match: str | Callable[[LoggedRequest], bool]
    status: int
    code: str
    message: str
    remaining: int

    def matches(self, entry: LoggedRequest) -> bool:
        if callable(self.match):
            return bool(self.match(entry))
        return self.match in (entry.op, entry.method)


@dataclass
class _Credential:
    secret: str
    token: str | None = None


#: OSS error code -> (HTTP status, message).  EC codes are attached only where OSS documents them.
ERRORS: dict[str, tuple[int, str]] = {
    "AccessDenied": (403, "You have no right to access this resource."),
    "InvalidAccessKeyId": (
        403,
        "The OSS Access Key Id you provided does not exist in our records.",
    ),
    "InvalidSecurityToken": (403, "The security token you provided is not valid."),
    "SignatureDoesNotMatch": (
        403,
        "The request signature we calculated does not match the signature you provided. "
        "Check your key and signing method.",
    ),
    "RequestTimeTooSkewed": (
        403,
        "The difference between the request time and the current time is too large.",
    ),
    "NoSuchBucket": (404, "The specified bucket does not exist."),
    "NoSuchKey": (404, "The specified key does not exist."),
    "NoSuchUpload": (
        404,
        "The specified upload does not exist. The upload ID may be invalid, or the upload may "
        "have been aborted or completed.",
    ),
    "BucketNotEmpty": (409, "The bucket you tried to delete is not empty."),
    "FileAlreadyExists": (
        409,
        "The object you specified already exists and can not be overwritten.",
    ),
    "InvalidArgument": (400, "Invalid argument."),
    "InvalidBucketName": (400, "The specified bucket is not valid."),
    "InvalidObjectName": (400, "The specified object is not valid."),
    "InvalidDigest": (400, "The Content-MD5 you specified is not valid."),
    "MalformedXML": (
        400,
        "The XML you provided was not well-formed or did not validate against our published "
        "schema.",
    ),
    "InvalidPartOrder": (
        400,
        "The list of parts was not in ascending order. Parts list must be specified in order "
        "by part number.",
    ),
    "InvalidPart": (
        400,
        "One or more of the specified parts could not be found or the specified entity tag "
        "might not have matched the part's entity tag.",
    ),
    "EntityTooSmall": (400, "Your proposed upload is smaller than the minimum allowed size."),
    "InvalidRange": (416, "The requested range cannot be satisfied"),
    "PreconditionFailed": (412, "At least one of the pre-conditions you specified did not hold."),
    "NotModified": (304, "Not Modified"),
    "NotImplemented": (400, "This operation is not implemented by the test server."),
    "InternalError": (500, "We encountered an internal error. Please try again."),
}


class OssError(Exception):
    """An error answered in OSS's XML format (extra keyword fields become XML elements)."""

    def __init__(
        self,
        code: str,
        message: str | None = None,
        *,
        status: int | None = None,
        ec: str = "",
        headers: Mapping[str, str] | None = None,
        **extra: str,
    ) -> None:
        known_status, known_message = ERRORS.get(code, (500, code))
        self.status = status or known_status
        self.code = code
        self.message = message or known_message
        super().__init__(f"{self.status} {code}: {self.message}")
        self.ec = ec
        self.headers = dict(headers or {})
        self.extra = extra


# -- XML helpers -------------------------------------------------------------------------------
def _el(parent: ET.Element, tag: str, text: object = None) -> ET.Element:
    child = ET.SubElement(parent, tag)
    if text is not None:
        child.text = str(text)
    return child


def _xml(root: ET.Element) -> bytes:
    return ET.tostring(root, encoding="utf-8", xml_declaration=True)


def _parse_xml(body: bytes) -> ET.Element:
    try:
        return ET.fromstring(body)
    except ET.ParseError as exc:
        raise OssError("MalformedXML", f"The XML you provided was not well-formed: {exc}") from None


# -- the server --------------------------------------------------------------------------------
class _QuietHandler(WSGIRequestHandler):
    def log(self, type: str, message: str, *args: Any) -> None:
        pass

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        pass


class _Server(ThreadedWSGIServer):
    """werkzeug's threaded server, remembering open connections so that stop() can cut them.
    (werkzeug answers every request with ``Connection: close``: one connection per request.)"""

    daemon_threads = True

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.connections: set[socket.socket] = set()
        self.conn_lock = threading.Lock()

    def get_request(self) -> tuple[socket.socket, Any]:
        conn, addr = super().get_request()
        with self.conn_lock:
            self.connections.add(conn)
        return conn, addr

    def shutdown_request(self, request: Any) -> None:
        with self.conn_lock:
            self.connections.discard(request)
        super().shutdown_request(request)

    def drop_connections(self) -> None:
        with self.conn_lock:
            conns, self.connections = list(self.connections), set()
        for conn in conns:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            conn.close()


class OssServer:
    """An in-memory OSS on 127.0.0.1 for the real oss2 client (see the module docstring).

    ``with OssServer() as server:`` starts it; :attr:`endpoint` is ``http://127.0.0.1:PORT``,
    :attr:`access_key_id` / :attr:`access_key_secret` the default credentials.
    """

    #: total user metadata per object (header names with their prefix, plus values)
    metadata_limit: int = 8 * KB
    #: largest source CopyObject accepts (OSS: 1 GB; UploadPartCopy beyond)
    copy_limit: int = 1 << 30
    #: smallest size of every part but the last at CompleteMultipartUpload
    min_part_size: int = MIN_PART_SIZE

    def __init__(
        self,
        access_key_id: str = "envstore-test-ak",
        access_key_secret: str = "envstore-test-secret",
        check_skew: bool = True,
    ) -> None:
        self.access_key_id = access_key_id
        self.access_key_secret = access_key_secret
        self.check_skew = check_skew
        self._credentials: dict[str, _Credential] = {access_key_id: _Credential(access_key_secret)}
        self._buckets: dict[str, _Bucket] = {}
        self._faults: list[_Fault] = []
        self.log: list[LoggedRequest] = []
        #: tracebacks of unexpected exceptions in the server (answered as 500 InternalError)
        self.server_errors: list[str] = []
        self.lock = threading.RLock()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self.port = 0

    # -- lifecycle -------------------------------------------------------------------------------
    def start(self) -> OssServer:
        if self._server is None:
            self._server = _Server("127.0.0.1", 0, self.wsgi, handler=_QuietHandler)
            self.port = int(self._server.server_address[1])
            self._thread = threading.Thread(
                target=self._server.serve_forever,
                kwargs={"poll_interval": 0.05},
                name="oss-compat",
                daemon=True,
            )
            self._thread.start()
        return self

    def stop(self) -> None:
        """Stop listening and cut open keep-alive connections."""
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()
        server.server_close()
        server.drop_connections()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> OssServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    # -- test hooks ------------------------------------------------------------------------------
    def reset(self) -> None:
        """Forget all buckets, uploads, the request log and pending faults."""
        with self.lock:
            self._buckets.clear()
            self._faults.clear()
            self.log.clear()
            self.server_errors.clear()

    def clear_log(self) -> None:
        with self.lock:
            self.log.clear()

    def calls(self, op: str | None = None, bucket: str | None = None) -> list[LoggedRequest]:
        """Logged requests, optionally of one API (``"GetObject"``) and one bucket."""
        with self.lock:
            return [
                e
                for e in self.log
                if (op is None or e.op == op) and (bucket is None or e.bucket == bucket)
            ]

    def ops(self, bucket: str | None = None) -> list[str]:
        return [e.op for e in self.calls(bucket=bucket)]

    @property
    def get_bytes(self) -> int:
        """Response body bytes sent for GetObject requests (since the last reset/clear_log)."""
        return sum(e.sent for e in self.calls("GetObject"))

    def fail_next(
        self,
        match: str | Callable[[LoggedRequest], bool],
        status: int = 500,
        code: str = "InternalError",
        count: int = 1,
        message: str = "injected failure (oss_compat.fail_next)",
    ) -> None:
        """The next ``count`` requests matching ``match`` (an API name such as ``"UploadPart"``,
        an HTTP method such as ``"PUT"``, or a predicate on :class:`LoggedRequest`) fail with
        ``status`` and ``code`` after authentication, before any change to the state."""
        with self.lock:
            self._faults.append(_Fault(match, status, code, message, count))

    def add_credentials(self, access_key_id: str, secret: str) -> None:
        with self.lock:
            self._credentials[access_key_id] = _Credential(secret)

    def add_sts_credentials(self) -> tuple[str, str, str]:
        """New temporary credentials ``(access_key_id, secret, security_token)``: requests
        signed with them need the matching ``x-oss-security-token``."""
        ak = "STS." + secrets.token_hex(8)
        sk = secrets.token_urlsafe(24)
        token = secrets.token_urlsafe(48)
        with self.lock:
            self._credentials[ak] = _Credential(sk, token)
        return ak, sk, token

    def create_bucket(self, name: str) -> None:
        with self.lock:
            if name not in self._buckets:
                self._buckets[name] = _Bucket(name, _now())

    def uploads(self, bucket: str) -> list[Upload]:
        """Pending multipart uploads of a bucket (state, not a request)."""
        with self.lock:
            return list(self._bucket(bucket).uploads.values())

    def stored(self, bucket: str, key: str) -> StoredObject:
        """An object as stored (state, not a request)."""
        with self.lock:
            obj = self._bucket(bucket).objects.get(key)
        if obj is None:
            raise KeyError(f"{bucket}/{key}")
        return obj

    # -- WSGI ------------------------------------------------------------------------------------
    def wsgi(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        request = Request(environ)
        rid = secrets.token_hex(12).upper()
        method = request.method.upper()
        entry = LoggedRequest("", method, "", "", {}, {}, environ.get("HTTP_RANGE"))
        body = b""
        try:
            body = self._read_body(environ)
            bucket, key = self._split_path(environ)
            entry.bucket, entry.key = bucket, key
            args = {k: v for k, v in request.args.items(multi=False)}
            entry.query = args
            headers = _oss_headers(environ)
            entry.headers = {k: v for k, v in headers.items() if k != "x-oss-security-token"}
            for h in _LOGGED_HEADERS:
                if environ.get(_environ_key(h)):
                    entry.headers[h] = environ[_environ_key(h)]
            entry.op = _operation(method, bucket, key, args, headers)
            with self.lock:
                self.log.append(entry)
            self._authenticate(environ, method, bucket, key, request, headers)
            self._inject(entry)
            response = self._dispatch(entry.op, environ, bucket, key, args, headers, body, entry)
        except Exception as exc:
            if not isinstance(exc, OssError):  # a bug here: answer 500, keep the traceback
                with self.lock:
                    self.server_errors.append(traceback.format_exc())
                exc = OssError("InternalError", f"{type(exc).__name__}: {exc}")
            if not entry.op:
                entry.op = "Unknown"
                with self.lock:
                    self.log.append(entry)
            response = self._error(exc, method, entry, environ, rid)
        response.headers["x-oss-request-id"] = rid
        response.headers["Server"] = "AliyunOSS"
        entry.status = response.status_code
        return response(environ, start_response)

    @staticmethod
    def _read_body(environ: dict[str, Any]) -> bytes:
        stream = environ["wsgi.input"]
        if environ.get("wsgi.input_terminated"):
            return stream.read()
        length = environ.get("CONTENT_LENGTH") or ""
        n = int(length) if length.isdigit() else 0
        if n <= 0:
            return b""
        parts: list[bytes] = []
        while n > 0:  # the whole body, also when the answer is an error
            chunk = stream.read(n)
            if not chunk:
                break
            parts.append(chunk)
            n -= len(chunk)
        return parts[0] if len(parts) == 1 else b"".join(parts)

    @staticmethod
    def _split_path(environ: dict[str, Any]) -> tuple[str, str]:
        raw = environ.get("RAW_URI") or environ.get("REQUEST_URI") or ""
        if raw:
            raw = raw.encode("latin-1").decode("utf-8", "surrogateescape")
            if "://" in raw.split("?", 1)[0]:
                raw = "/" + raw.split("://", 1)[1].split("/", 1)[-1]
            path = raw.split("?", 1)[0]
        else:
            path = urllib.parse.quote(environ.get("PATH_INFO", "/"))
        path = path.lstrip("/")
        if not path:
            return "", ""
        bucket, _, key = path.partition("/")
        try:
            key = urllib.parse.unquote(key, errors="strict")
        except UnicodeDecodeError:
            raise OssError("InvalidObjectName", "The object name is not valid UTF-8.") from None
        return urllib.parse.unquote(bucket), key

    # -- authentication --------------------------------------------------------------------------
    def _authenticate(
        self,
        environ: dict[str, Any],
        method: str,
        bucket: str,
        key: str,
        request: Request,
        headers: Mapping[str, str],
    ) -> None:
        auth = environ.get("HTTP_AUTHORIZATION", "")
        if not auth:
            raise OssError("AccessDenied", "AccessDenied: anonymous access is not allowed here.")
        if not auth.startswith("OSS "):
            raise OssError(
                "AccessDenied", "This test server verifies V1 signatures (oss2.Auth) only."
            )
        ak, sep, signature = auth[4:].rpartition(":")
        with self.lock:
            cred = self._credentials.get(ak) if sep else None
        if cred is None:
            raise OssError("InvalidAccessKeyId", OSSAccessKeyId=ak)
        token = headers.get("x-oss-security-token")
        if cred.token is not None and token != cred.token:
            raise OssError("InvalidSecurityToken")
        if cred.token is None and token is not None:
            raise OssError(
                "InvalidAccessKeyId",
                "The OSS Access Key Id you provided is not an STS "
                "credential; do not send a security token with it.",
                OSSAccessKeyId=ak,
            )
        date = headers.get("x-oss-date") or environ.get("HTTP_DATE", "")
        if self.check_skew:
            try:
                sent = email.utils.parsedate_to_datetime(date).timestamp()
            except (TypeError, ValueError, IndexError):
                raise OssError("AccessDenied", "Missing or invalid Date header.") from None
            if abs(sent - _now()) > _SKEW:
                raise OssError("RequestTimeTooSkewed")
        canon = "".join(f"{k}:{v}\n" for k, v in sorted(headers.items()))
        sub = sorted((k, v) for k, v in request.args.items(multi=True) if k in SIGNED_SUBRESOURCES)
        subresource = "&".join(f"{k}={v}" if v else k for k, v in sub)
        resource = f"/{bucket}/{key}" if bucket else "/"
        if subresource:
            resource += "?" + subresource
        to_sign = "\n".join(
            [
                method,
                environ.get("HTTP_CONTENT_MD5", ""),
                environ.get("CONTENT_TYPE", ""),
                date,
                canon + resource,
            ]
        )
        # oss2 signs the UTF-8 bytes of its strings (WSGI header strings are their latin-1 view)
        raw = to_sign.encode("utf-8", "surrogateescape")
        expected = base64.b64encode(
            hmac.new(cred.secret.encode("utf-8"), raw, hashlib.sha1).digest()
        ).decode("ascii")
        if not hmac.compare_digest(expected, signature):
            raise OssError(
                "SignatureDoesNotMatch",
                StringToSign=to_sign,
                OSSAccessKeyId=ak,
                SignatureProvided=signature,
            )

    def _inject(self, entry: LoggedRequest) -> None:
        with self.lock:
            for fault in self._faults:
                if fault.remaining > 0 and fault.matches(entry):
                    fault.remaining -= 1
                    if fault.remaining == 0:
                        self._faults.remove(fault)
                    raise OssError(fault.code, fault.message, status=fault.status)

    # -- responses -------------------------------------------------------------------------------
    def _error(
        self,
        err: OssError,
        method: str,
        entry: LoggedRequest,
        environ: dict[str, Any],
        rid: str,
    ) -> Response:
        root = ET.Element("Error")
        _el(root, "Code", err.code)
        _el(root, "Message", err.message)
        _el(root, "RequestId", rid)
        _el(root, "HostId", environ.get("HTTP_HOST", "127.0.0.1"))
        for k, v in err.extra.items():
            _el(root, k, v)
        if err.ec:
            _el(root, "EC", err.ec)
        body = _xml(root)
        headers = {"Content-Type": "application/xml", **err.headers}
        if err.ec:
            headers["x-oss-ec"] = err.ec
        if method == "HEAD":
            headers["x-oss-err"] = base64.b64encode(body).decode("ascii")
            response = Response(b"", status=err.status, headers=headers)
            response.headers["Content-Length"] = "0"
            return response
        return Response(body, status=err.status, headers=headers)

    def _bucket(self, name: str) -> _Bucket:
        b = self._buckets.get(name)
        if b is None:
            raise OssError("NoSuchBucket", BucketName=name)
        return b

    def _dispatch(
        self,
        op: str,
        environ: dict[str, Any],
        bucket: str,
        key: str,
        args: dict[str, str],
        headers: dict[str, str],
        body: bytes,
        entry: LoggedRequest,
    ) -> Response:
        if op == "Unknown":
            raise OssError("NotImplemented")
        if bucket and not _BUCKET_NAME.match(bucket):
            raise OssError("InvalidBucketName", BucketName=bucket)
        if key:
            _check_key(key)
        handler: Callable[..., Response] = getattr(self, "_op_" + op)
        return handler(
            environ=environ,
            bucket=bucket,
            key=key,
            args=args,
            headers=headers,
            body=body,
            entry=entry,
        )

    # -- service and buckets ---------------------------------------------------------------------
    def _op_ListBuckets(self, args: dict[str, str], **_: Any) -> Response:
        prefix, marker = args.get("prefix", ""), args.get("marker", "")
        max_keys = _max_keys(args.get("max-keys"), 100)
        with self.lock:
            names = sorted(n for n in self._buckets if n.startswith(prefix) and n > marker)
            created = {n: self._buckets[n].created for n in names}
        page, truncated = names[:max_keys], len(names) > max_keys
        root = ET.Element("ListAllMyBucketsResult")
        _el(root, "Prefix", prefix)
        _el(root, "Marker", marker)
        _el(root, "MaxKeys", max_keys)
        _el(root, "IsTruncated", str(truncated).lower())
        if truncated:
            _el(root, "NextMarker", page[-1])
        _owner(root)
        buckets = _el(root, "Buckets")
        for name in page:
            b = _el(buckets, "Bucket")
            _el(b, "CreationDate", _iso8601(created[name]))
            _el(b, "ExtranetEndpoint", "127.0.0.1")
            _el(b, "IntranetEndpoint", "127.0.0.1")
            _el(b, "Location", REGION)
            _el(b, "Name", name)
            _el(b, "Region", REGION.removeprefix("oss-"))
            _el(b, "StorageClass", "Standard")
        return _xml_response(root)

    def _op_CreateBucket(self, bucket: str, **_: Any) -> Response:
        self.create_bucket(bucket)
        return Response(b"", status=200)

    def _op_DeleteBucket(self, bucket: str, **_: Any) -> Response:
        with self.lock:
            b = self._bucket(bucket)
            if b.objects or b.uploads:
                raise OssError("BucketNotEmpty", BucketName=bucket)
            del self._buckets[bucket]
        return Response(b"", status=204)

    def _op_GetBucketInfo(self, bucket: str, **_: Any) -> Response:
        with self.lock:
            created = self._bucket(bucket).created
        root = ET.Element("BucketInfo")
        b = _el(root, "Bucket")
        _el(b, "AccessMonitor", "Disabled")
        _el(b, "CreationDate", _iso8601(created))
        _el(b, "ExtranetEndpoint", "127.0.0.1")
        _el(b, "IntranetEndpoint", "127.0.0.1")
        _el(b, "Location", REGION)
        _el(b, "StorageClass", "Standard")
        _el(b, "TransferAcceleration", "Disabled")
        _el(b, "CrossRegionReplication", "Disabled")
        _el(b, "Name", bucket)
        _el(b, "DataRedundancyType", "LRS")
        owner = _el(b, "Owner")
        _el(owner, "DisplayName", OWNER_NAME)
        _el(owner, "ID", OWNER_ID)
        acl = _el(b, "AccessControlList")
        _el(acl, "Grant", "private")
        _el(b, "Comment", "")
        return _xml_response(root)

    # -- listing ---------------------------------------------------------------------------------
    def _listing(
        self, bucket: str, prefix: str, delimiter: str, after: str, max_keys: int
    ) -> tuple[list[StoredObject | str], list[str], bool]:
        """(entries: objects (with .key set aside) or common prefixes, their names, truncated)"""
        with self.lock:
            objects = self._bucket(bucket).objects
            keys = sorted(k for k in objects if k.startswith(prefix) and k > after)
            snapshot = {k: objects[k] for k in keys}
        names: list[str] = []
        entries: list[StoredObject | str] = []
        truncated = False
        for k in keys:
            name: str = k
            item: StoredObject | str = snapshot[k]
            if delimiter:
                i = k.find(delimiter, len(prefix))
                if i >= 0:
                    cp = k[: i + len(delimiter)]
                    if (names and names[-1] == cp) or cp <= after:
                        continue  # rolled up already (on this page or an earlier one)
                    name, item = cp, cp
            if len(entries) == max_keys:
                truncated = True
                break
            names.append(name)
            entries.append(item)
        return entries, names, truncated

    def _op_ListObjectsV2(self, bucket: str, args: dict[str, str], **_: Any) -> Response:
        prefix, delimiter = args.get("prefix", ""), args.get("delimiter", "")
        token, start_after = args.get("continuation-token", ""), args.get("start-after", "")
        max_keys = _max_keys(args.get("max-keys"), 100)
        url = args.get("encoding-type") == "url"
        after = start_after
        if token:
            try:
                after = bytes.fromhex(token).decode("utf-8")
            except ValueError:
                raise OssError(
                    "InvalidArgument",
                    "The continuation token provided is incorrect.",
                    ArgumentName="continuation-token",
                    ArgumentValue=token,
                ) from None
            after = max(after, start_after)
        entries, names, truncated = self._listing(bucket, prefix, delimiter, after, max_keys)
        enc = _encoder(url)
        root = ET.Element("ListBucketResult")
        _el(root, "Name", bucket)
        _el(root, "Prefix", enc(prefix))
        if token:
            _el(root, "ContinuationToken", token)
        if start_after:
            _el(root, "StartAfter", enc(start_after))
        _el(root, "MaxKeys", max_keys)
        _el(root, "Delimiter", enc(delimiter))
        if url:
            _el(root, "EncodingType", "url")
        _el(root, "IsTruncated", str(truncated).lower())
        if truncated:  # opaque to clients, URL-safe: hex of the last name returned
            _el(root, "NextContinuationToken", names[-1].encode("utf-8").hex())
        _el(root, "KeyCount", len(entries))
        _contents(root, entries, names, enc, owner=args.get("fetch-owner") == "true")
        return _xml_response(root)

    def _op_DeleteMultipleObjects(
        self, environ: dict[str, Any], bucket: str, args: dict[str, str], body: bytes, **_: Any
    ) -> Response:
        _check_md5(environ, body, required=True)
        root = _parse_xml(body)
        if root.tag != "Delete":
            raise OssError("MalformedXML", "The root element must be Delete.")
        quiet = (root.findtext("Quiet") or "false").strip().lower() == "true"
        keys = [o.findtext("Key") or "" for o in root.findall("Object")]
        if not keys or len(keys) > 1000:
            raise OssError("MalformedXML", "Delete needs between 1 and 1000 objects.")
        with self.lock:
            objects = self._bucket(bucket).objects
            for k in keys:
                objects.pop(k, None)
        enc = _encoder(args.get("encoding-type") == "url")
        out = ET.Element("DeleteResult")
        if args.get("encoding-type") == "url":
            _el(out, "EncodingType", "url")
        if not quiet:
            for k in keys:
                _el(_el(out, "Deleted"), "Key", enc(k))
        return _xml_response(out)

    # -- objects ---------------------------------------------------------------------------------
    def _put(
        self,
        bucket: str,
        key: str,
        obj: StoredObject,
        headers: Mapping[str, str],
        source: tuple[str, str, StoredObject] | None = None,
    ) -> None:
        """Store ``obj`` (under the lock), honouring x-oss-forbid-overwrite, and for a copy
        with x-oss-copy-source-if-match, that the source is still the version checked."""
        with self.lock:
            b = self._bucket(bucket)
            if source is not None and "x-oss-copy-source-if-match" in headers:
                sb, sk, src = source
                if self._bucket(sb).objects.get(sk) is not src:
                    raise OssError("PreconditionFailed", Condition="x-oss-copy-source-if-match")
            if headers.get("x-oss-forbid-overwrite", "").lower() == "true" and key in b.objects:
                raise OssError("FileAlreadyExists")
            b.objects[key] = obj

    def _meta(self, headers: Mapping[str, str]) -> dict[str, str]:
        meta = {k: v for k, v in headers.items() if k.startswith("x-oss-meta-")}
        for name in meta:
            if not _META_NAME.match(name):
                raise OssError(
                    "InvalidArgument",
                    f"The user metadata name {name!r} is not valid.",
                    ec="0011-00000004",
                )
        used = sum(len(_wire_bytes(k)) + len(_wire_bytes(v)) for k, v in meta.items())
        if used > self.metadata_limit:
            raise OssError(
                "InvalidArgument",
                f"Your metadata headers exceed the maximum allowed "
                f"metadata size ({used} > {self.metadata_limit} bytes).",
                ec="0011-00000002",
            )
        return meta

    def _op_PutObject(
        self,
        environ: dict[str, Any],
        bucket: str,
        key: str,
        headers: dict[str, str],
        body: bytes,
        **_: Any,
    ) -> Response:
        with self.lock:
            self._bucket(bucket)
        digest = _check_md5(environ, body)
        meta = self._meta(headers)
        obj = StoredObject(
            data=body,
            meta=meta,
            content_type=environ.get("CONTENT_TYPE") or "application/octet-stream",
            etag=_etag_of(digest),
            crc=crc64(body),
            last_modified=_now(),
            standard=_standard_headers(environ),
        )
        self._put(bucket, key, obj, headers)
        return _empty(
            200,
            {
                "ETag": f'"{obj.etag}"',
                "x-oss-hash-crc64ecma": str(obj.crc),
                "Content-MD5": base64.b64encode(digest).decode("ascii"),
            },
        )

    def _lookup(self, bucket: str, key: str) -> StoredObject:
        with self.lock:
            obj = self._bucket(bucket).objects.get(key)
        if obj is None:
            raise OssError("NoSuchKey", Key=key)
        return obj

    @staticmethod
    def _object_headers(obj: StoredObject) -> dict[str, str]:
        return {
            "Content-Type": obj.content_type,
            "ETag": f'"{obj.etag}"',
            "Last-Modified": _http_date(obj.last_modified),
            "x-oss-object-type": obj.object_type,
            "x-oss-storage-class": "Standard",
            "x-oss-hash-crc64ecma": str(obj.crc),
            "Accept-Ranges": "bytes",
            **obj.standard,
            **obj.meta,
        }

    @staticmethod
    def _preconditions(environ: dict[str, Any], obj: StoredObject) -> None:
        match = environ.get("HTTP_IF_MATCH")
        if match is not None and match.strip('" ').upper() != obj.etag:
            raise OssError("PreconditionFailed", Condition="If-Match")
        none_match = environ.get("HTTP_IF_NONE_MATCH")
        if none_match is not None and none_match.strip('" ').upper() == obj.etag:
            raise OssError("NotModified", "Not modified.")

    def _op_HeadObject(self, environ: dict[str, Any], bucket: str, key: str, **_: Any) -> Response:
        obj = self._lookup(bucket, key)
        self._preconditions(environ, obj)
        response = Response(b"", status=200, headers=self._object_headers(obj))
        response.headers["Content-Length"] = str(obj.size)
        return response

    def _op_GetObject(
        self,
        environ: dict[str, Any],
        bucket: str,
        key: str,
        headers: dict[str, str],
        entry: LoggedRequest,
        **_: Any,
    ) -> Response:
        obj = self._lookup(bucket, key)
        self._preconditions(environ, obj)
        standard = headers.get("x-oss-range-behavior", "").lower() == "standard"
        span = resolve_range(environ.get("HTTP_RANGE"), obj.size, standard)
        out = self._object_headers(obj)
        if span is None:
            start, end, status = 0, obj.size, 200
        else:
            start, end = span
            status = 206
            out["Content-Range"] = f"bytes {start}-{end - 1}/{obj.size}"
        out["Content-Length"] = str(end - start)
        response = Response(
            _stream(obj.data, start, end, entry),
            status=status,
            headers=out,
            direct_passthrough=True,
        )
        return response

    def _op_DeleteObject(self, bucket: str, key: str, **_: Any) -> Response:
        with self.lock:
            self._bucket(bucket).objects.pop(key, None)
        return _empty(204)

    def _copy_source(self, headers: Mapping[str, str]) -> tuple[str, str, StoredObject]:
        source = headers.get("x-oss-copy-source", "")
        path = source.split("?", 1)[0]
        bucket, _, key = urllib.parse.unquote(path).lstrip("/").partition("/")
        if not bucket or not key:
            raise OssError(
                "InvalidArgument",
                "Copy Source must mention the source bucket and key: /sourcebucket/sourcekey.",
            )
        return bucket, key, self._lookup(bucket, key)

    def _op_CopyObject(
        self, environ: dict[str, Any], bucket: str, key: str, headers: dict[str, str], **_: Any
    ) -> Response:
        with self.lock:
            self._bucket(bucket)
        src_bucket, src_key, src = self._copy_source(headers)
        if_match = headers.get("x-oss-copy-source-if-match")
        if if_match is not None and if_match.strip('" ').upper() != src.etag:
            raise OssError("PreconditionFailed", Condition="x-oss-copy-source-if-match")
        in_place = (src_bucket, src_key) == (bucket, key)
        directive = headers.get("x-oss-metadata-directive", "COPY").upper()
        if src.size > self.copy_limit and not (in_place and directive == "REPLACE"):
            raise OssError(
                "InvalidArgument",
                f"The source object of CopyObject is larger than "
                f"{self.copy_limit} bytes; use UploadPartCopy.",
            )
        if directive == "COPY":
            meta, content_type, standard = dict(src.meta), src.content_type, dict(src.standard)
        elif directive == "REPLACE":
            meta = self._meta(headers)
            content_type = environ.get("CONTENT_TYPE") or "application/octet-stream"
            standard = _standard_headers(environ)
        else:
            raise OssError(
                "InvalidArgument",
                "x-oss-metadata-directive must be COPY or REPLACE.",
                ArgumentName="x-oss-metadata-directive",
                ArgumentValue=directive,
            )
        obj = StoredObject(
            data=src.data,
            meta=meta,
            content_type=content_type,
            etag=src.etag,
            crc=src.crc,
            last_modified=_now(),
            object_type=src.object_type,
            standard=standard,
        )
        self._put(bucket, key, obj, headers, source=(src_bucket, src_key, src))
        root = ET.Element("CopyObjectResult")
        _el(root, "ETag", f'"{obj.etag}"')
        _el(root, "LastModified", _iso8601(obj.last_modified))
        return _xml_response(root, {"ETag": f'"{obj.etag}"', "x-oss-hash-crc64ecma": str(obj.crc)})

    # -- multipart -------------------------------------------------------------------------------
    def _upload(self, bucket: str, key: str, upload_id: str) -> Upload:
        with self.lock:
            up = self._bucket(bucket).uploads.get(upload_id)
        if up is None or up.key != key:
            raise OssError("NoSuchUpload", UploadId=upload_id)
        return up

    def _op_InitiateMultipartUpload(
        self,
        environ: dict[str, Any],
        bucket: str,
        key: str,
        headers: dict[str, str],
        args: dict[str, str],
        **_: Any,
    ) -> Response:
        meta = self._meta(headers)
        upload_id = secrets.token_hex(16).upper()
        with self.lock:
            b = self._bucket(bucket)
            if headers.get("x-oss-forbid-overwrite", "").lower() == "true" and key in b.objects:
                raise OssError("FileAlreadyExists")
            b.uploads[upload_id] = Upload(
                key,
                upload_id,
                meta,
                environ.get("CONTENT_TYPE") or "application/octet-stream",
                _now(),
                _standard_headers(environ),
            )
        enc = _encoder(args.get("encoding-type") == "url")
        root = ET.Element("InitiateMultipartUploadResult")
        _el(root, "Bucket", bucket)
        _el(root, "Key", enc(key))
        _el(root, "UploadId", upload_id)
        return _xml_response(root)

    @staticmethod
    def _part_number(args: Mapping[str, str]) -> int:
        raw = args.get("partNumber", "")
        if not raw.isdigit() or not 1 <= int(raw) <= MAX_PARTS:
            raise OssError(
                "InvalidArgument",
                f"Part number must be an integer between 1 and {MAX_PARTS}.",
                ArgumentName="partNumber",
                ArgumentValue=raw,
            )
        return int(raw)

    def _store_part(self, bucket: str, key: str, upload_id: str, number: int, part: _Part) -> None:
        with self.lock:
            up = self._upload(bucket, key, upload_id)
            up.parts[number] = part

    def _op_UploadPart(
        self,
        environ: dict[str, Any],
        bucket: str,
        key: str,
        args: dict[str, str],
        body: bytes,
        **_: Any,
    ) -> Response:
        number = self._part_number(args)
        self._upload(bucket, key, args["uploadId"])
        digest = _check_md5(environ, body)
        part = _Part(body, _etag_of(digest), crc64(body), _now())
        self._store_part(bucket, key, args["uploadId"], number, part)
        return _empty(
            200,
            {
                "ETag": f'"{part.etag}"',
                "x-oss-hash-crc64ecma": str(part.crc),
                "Content-MD5": base64.b64encode(digest).decode("ascii"),
            },
        )

    def _op_UploadPartCopy(
        self, bucket: str, key: str, args: dict[str, str], headers: dict[str, str], **_: Any
    ) -> Response:
        number = self._part_number(args)
        self._upload(bucket, key, args["uploadId"])
        _sb, _sk, src = self._copy_source(headers)
        spec = headers.get("x-oss-copy-source-range")
        start, end = 0, src.size
        if spec is not None:
            m = _RANGE.match(spec)
            if (
                not m
                or not m.group(1)
                or not m.group(2)
                or not int(m.group(1)) <= int(m.group(2)) < src.size
            ):
                raise OssError(
                    "InvalidArgument",
                    f"The x-oss-copy-source-range {spec!r} is not a "
                    f"range inside the {src.size}-byte source.",
                    ArgumentName="x-oss-copy-source-range",
                    ArgumentValue=spec,
                )
            start, end = int(m.group(1)), int(m.group(2)) + 1
        data = src.data[start:end] if (start, end) != (0, src.size) else src.data
        part = _Part(data, _etag_of(_md5(data)), crc64(data), _now())
        self._store_part(bucket, key, args["uploadId"], number, part)
        root = ET.Element("CopyPartResult")
        _el(root, "LastModified", _iso8601(part.last_modified))
        _el(root, "ETag", f'"{part.etag}"')
        return _xml_response(
            root, {"ETag": f'"{part.etag}"', "x-oss-hash-crc64ecma": str(part.crc)}
        )

    def _op_CompleteMultipartUpload(
        self,
        bucket: str,
        key: str,
        args: dict[str, str],
        headers: dict[str, str],
        body: bytes,
        **_: Any,
    ) -> Response:
        upload_id = args["uploadId"]
        up = self._upload(bucket, key, upload_id)
        if headers.get("x-oss-complete-all", "").lower() == "yes":
            if body:
                raise OssError(
                    "InvalidArgument", "With x-oss-complete-all: yes the body must be empty."
                )
            listed = [(n, up.parts[n].etag) for n in sorted(up.parts)]
        else:
            root = _parse_xml(body)
            if root.tag != "CompleteMultipartUpload":
                raise OssError("MalformedXML", "The root element must be CompleteMultipartUpload.")
            listed = []
            for node in root.findall("Part"):
                raw = (node.findtext("PartNumber") or "").strip()
                if not raw.isdigit():
                    raise OssError("MalformedXML", "PartNumber must be a number.")
                listed.append((int(raw), (node.findtext("ETag") or "").strip().strip('"')))
        if not listed:
            raise OssError("MalformedXML", "The XML you provided has no parts.")
        numbers = [n for n, _ in listed]
        if numbers != sorted(set(numbers)):
            raise OssError("InvalidPartOrder")
        parts: list[_Part] = []
        for number, etag in listed:
            part = up.parts.get(number)
            if part is None or part.etag != etag.upper():
                raise OssError("InvalidPart", PartNumber=str(number), ETag=etag)
            parts.append(part)
        for number, part in zip(numbers[:-1], parts[:-1], strict=True):
            if len(part.data) < self.min_part_size:
                raise OssError(
                    "EntityTooSmall",
                    PartNumber=str(number),
                    MinSizeAllowed=str(self.min_part_size),
                    ProposedSize=str(len(part.data)),
                )
        crc = parts[0].crc
        for part in parts[1:]:
            crc = crc64_combine(crc, part.crc, len(part.data))
        etag = _etag_of(_md5(b"".join(bytes.fromhex(p.etag) for p in parts))) + f"-{len(parts)}"
        obj = StoredObject(
            data=b"".join(p.data for p in parts) if len(parts) > 1 else parts[0].data,
            meta=up.meta,
            content_type=up.content_type,
            standard=dict(up.standard),
            etag=etag,
            crc=crc,
            last_modified=_now(),
            object_type="Multipart",
        )
        with self.lock:
            b = self._bucket(bucket)
            if b.uploads.get(upload_id) is not up:
                raise OssError("NoSuchUpload", UploadId=upload_id)
            self._put(bucket, key, obj, headers)
            del b.uploads[upload_id]
        enc = _encoder(args.get("encoding-type") == "url")
        root = ET.Element("CompleteMultipartUploadResult")
        if args.get("encoding-type") == "url":
            _el(root, "EncodingType", "url")
        _el(root, "Location", f"{self.endpoint}/{bucket}/{urllib.parse.quote(key, safe='')}")
        _el(root, "Bucket", bucket)
        _el(root, "Key", enc(key))
        _el(root, "ETag", f'"{etag}"')
        return _xml_response(root, {"ETag": f'"{etag}"', "x-oss-hash-crc64ecma": str(crc)})

    def _op_AbortMultipartUpload(
        self, bucket: str, key: str, args: dict[str, str], **_: Any
    ) -> Response:
        upload_id = args["uploadId"]
        with self.lock:
            self._upload(bucket, key, upload_id)
            del self._bucket(bucket).uploads[upload_id]
        return _empty(204)

    def _op_ListMultipartUploads(self, bucket: str, args: dict[str, str], **_: Any) -> Response:
        prefix, delimiter = args.get("prefix", ""), args.get("delimiter", "")
        key_marker, id_marker = args.get("key-marker", ""), args.get("upload-id-marker", "")
        max_uploads = _max_keys(args.get("max-uploads"), 1000)
        with self.lock:
            ups = sorted(
                (u for u in self._bucket(bucket).uploads.values() if u.key.startswith(prefix)),
                key=lambda u: (u.key, u.upload_id),
            )
        selected: list[Upload | str] = []
        truncated = False
        for u in ups:
            if id_marker and (u.key, u.upload_id) <= (key_marker, id_marker):
                continue
            if not id_marker and key_marker and u.key <= key_marker:
                continue
            item: Upload | str = u
            if delimiter:
                i = u.key.find(delimiter, len(prefix))
                if i >= 0:
                    cp = u.key[: i + len(delimiter)]
                    if selected and selected[-1] == cp:
                        continue
                    item = cp
            if len(selected) == max_uploads:
                truncated = True
                break
            selected.append(item)
        enc = _encoder(args.get("encoding-type") == "url")
        root = ET.Element("ListMultipartUploadsResult")
        _el(root, "Bucket", bucket)
        _el(root, "KeyMarker", enc(key_marker))
        _el(root, "UploadIdMarker", id_marker)
        last = selected[-1] if selected else None
        next_key = last if isinstance(last, str) else (last.key if last else "")
        _el(root, "NextKeyMarker", enc(next_key if truncated else ""))
        next_id = last.upload_id if isinstance(last, Upload) and truncated else ""
        _el(root, "NextUploadIdMarker", next_id)
        _el(root, "Delimiter", enc(delimiter))
        _el(root, "Prefix", enc(prefix))
        _el(root, "MaxUploads", max_uploads)
        if args.get("encoding-type") == "url":
            _el(root, "EncodingType", "url")
        _el(root, "IsTruncated", str(truncated).lower())
        for item in selected:
            if isinstance(item, str):
                _el(_el(root, "CommonPrefixes"), "Prefix", enc(item))
                continue
            node = _el(root, "Upload")
            _el(node, "Key", enc(item.key))
            _el(node, "UploadId", item.upload_id)
            _el(node, "StorageClass", "Standard")
            _el(node, "Initiated", _iso8601(item.initiated))
        return _xml_response(root)


# -- request helpers ---------------------------------------------------------------------------
def _environ_key(header: str) -> str:
    name = header.upper().replace("-", "_")
    return name if name in ("CONTENT_TYPE", "CONTENT_LENGTH") else "HTTP_" + name


_STANDARD_HEADERS = (
    "Cache-Control",
    "Content-Disposition",
    "Content-Encoding",
    "Content-Language",
    "Expires",
)


def _standard_headers(environ: Mapping[str, Any]) -> dict[str, str]:
    """The standard HTTP headers OSS stores with an object and returns on GET/HEAD."""
    return {h: environ[_environ_key(h)] for h in _STANDARD_HEADERS if _environ_key(h) in environ}


def _oss_headers(environ: Mapping[str, Any]) -> dict[str, str]:
    """The request's ``x-oss-*`` headers, lowercase names, as signed by the client."""
    return {
        k[5:].lower().replace("_", "-"): str(v)
        for k, v in environ.items()
        if k.startswith("HTTP_X_OSS_")
    }


def _wire_bytes(text: str) -> bytes:
    """Text as it travelled: WSGI strings are latin-1 views of the raw header bytes; the parts
    oss2 signs as UTF-8 text (object keys) are plain str here."""
    try:
        return text.encode("latin-1")
    except UnicodeEncodeError:
        return text.encode("utf-8", "surrogateescape")


def _operation(
    method: str, bucket: str, key: str, args: Mapping[str, str], headers: Mapping[str, str]
) -> str:
    if not bucket:
        return "ListBuckets" if method == "GET" else "Unknown"
    if not key:
        table = {
            "PUT": "CreateBucket" if not args else "Unknown",
            "DELETE": "DeleteBucket" if not args else "Unknown",
            "POST": "DeleteMultipleObjects" if "delete" in args else "Unknown",
        }
        if method == "GET":
            if "bucketInfo" in args:
                return "GetBucketInfo"
            if "uploads" in args:
                return "ListMultipartUploads"
            if args.get("list-type") == "2":
                return "ListObjectsV2"
            return "Unknown"  # ListObjects v1 and the rest: envstore never sends them
        return table.get(method, "Unknown")
    copy = "x-oss-copy-source" in headers
    if method == "PUT":
        if "uploadId" in args and "partNumber" in args:
            return "UploadPartCopy" if copy else "UploadPart"
        if set(args) & SIGNED_SUBRESOURCES:
            return "Unknown"
        return "CopyObject" if copy else "PutObject"
    if method == "GET":
        if "uploadId" in args:
            return "Unknown"  # ListParts: envstore never sends it
        return "Unknown" if set(args) & (SIGNED_SUBRESOURCES - _RESPONSE_OVERRIDES) else "GetObject"
    if method == "HEAD":
        if "objectMeta" in args:
            return "Unknown"  # GetObjectMeta (oss2's object_exists): envstore never sends it
        return "HeadObject"
    if method == "DELETE":
        return "AbortMultipartUpload" if "uploadId" in args else "DeleteObject"
    if method == "POST":
        if "uploads" in args:
            return "InitiateMultipartUpload"
        if "uploadId" in args:
            return "CompleteMultipartUpload"
    return "Unknown"


_RESPONSE_OVERRIDES = frozenset(s for s in SIGNED_SUBRESOURCES if s.startswith("response-"))


def _check_key(key: str) -> None:
    if len(key.encode("utf-8", "surrogateescape")) > 1023 or key[0] in "/\\":
        raise OssError(
            "InvalidObjectName",
            "The object name is not valid: 1 to 1023 bytes, not starting with / or \\.",
        )


def _check_md5(environ: Mapping[str, Any], body: bytes, required: bool = False) -> bytes:
    digest = _md5(body)
    given = environ.get("HTTP_CONTENT_MD5")
    if given is None:
        if required:
            raise OssError("InvalidDigest", "Content-MD5 is required for this request.")
        return digest
    try:
        ok = base64.b64decode(given, validate=True) == digest
    except (binascii.Error, ValueError):
        ok = False
    if not ok:
        raise OssError("InvalidDigest", **{"Content-MD5": given})
    return digest


def _max_keys(raw: str | None, default: int) -> int:
    if raw is None or raw == "":
        return default
    if not raw.isdigit() or not 1 <= int(raw) <= 1000:
        raise OssError(
            "InvalidArgument",
            "max-keys must be an integer between 1 and 1000.",
            ArgumentName="max-keys",
            ArgumentValue=raw,
        )
    return int(raw)


def resolve_range(spec: str | None, size: int, standard: bool) -> tuple[int, int] | None:
    """OSS's answer to a ``Range`` header: ``(start, end)`` (end exclusive) for a 206, ``None``
    for 200 with the whole object; raises 416 ``InvalidRange`` in standard mode past the end."""
    if not spec:
        return None
    first = spec.split(",", 1)[0]  # OSS serves the first of several ranges
    m = _RANGE.match(first)
    if not m or (not m.group(1) and not m.group(2)):
        return None  # malformed: ignored
    lo, hi = m.group(1), m.group(2)
    if lo and hi and int(lo) > int(hi):
        return None  # syntactically invalid (HTTP): ignored
    if not lo:  # suffix: the last n bytes
        n = int(hi)
        if n == 0 or size == 0:
            if standard:
                raise _invalid_range(size)
            return None
        if n > size and not standard:
            return None
        return max(0, size - n), size
    start = int(lo)
    if start >= size:
        if standard:
            raise _invalid_range(size)
        return None
    if not hi:
        return start, size
    last = int(hi)
    if last >= size:
        if not standard:
            return None
        last = size - 1
    return start, last + 1


def _invalid_range(size: int) -> OssError:
    return OssError("InvalidRange", headers={"Content-Range": f"bytes */{size}"})


# -- response helpers --------------------------------------------------------------------------
def _stream(data: bytes, start: int, end: int, entry: LoggedRequest) -> Iterator[bytes]:
    view = memoryview(data)
    pos = start
    while pos < end:
        chunk = bytes(view[pos : min(end, pos + _SEND_CHUNK)])
        entry.sent += len(chunk)
        pos += len(chunk)
        yield chunk


def _empty(status: int, headers: Mapping[str, str] | None = None) -> Response:
    response = Response(b"", status=status, headers=dict(headers or {}))
    if status != 204:
        response.headers["Content-Length"] = "0"
    return response


def _xml_response(root: ET.Element, headers: Mapping[str, str] | None = None) -> Response:
    return Response(
        _xml(root), status=200, headers={"Content-Type": "application/xml", **(headers or {})}
    )


def _encoder(url: bool) -> Callable[[str], str]:
    if url:
        return lambda s: urllib.parse.quote(s, safe="/")
    return lambda s: s


def _owner(parent: ET.Element) -> None:
    owner = _el(parent, "Owner")
    _el(owner, "ID", OWNER_ID)
    _el(owner, "DisplayName", OWNER_NAME)


def _contents(
    root: ET.Element,
    entries: list[StoredObject | str],
    names: list[str],
    enc: Callable[[str], str],
    owner: bool,
) -> None:
    for name, item in zip(names, entries, strict=True):
        if isinstance(item, str):
            continue
        node = _el(root, "Contents")
        _el(node, "Key", enc(name))
        _el(node, "LastModified", _iso8601(item.last_modified))
        _el(node, "ETag", f'"{item.etag}"')
        _el(node, "Type", item.object_type)
        _el(node, "Size", item.size)
        _el(node, "StorageClass", "Standard")
        if owner:
            _owner(node)
    for name, item in zip(names, entries, strict=True):
        if isinstance(item, str):
            _el(_el(root, "CommonPrefixes"), "Prefix", enc(name))
