"""An Alibaba Cloud OSS emulator for tests: the real ``oss2`` client talks to it over HTTP.

No OSS emulator exists on PyPI, npm or Debian, so this is a small, strict one.  One threaded
werkzeug server on 127.0.0.1 (port chosen by the OS), storage in memory.  With an IP endpoint
``oss2`` uses path-style URLs, ``http://127.0.0.1:PORT/<bucket>/<key quoted with safe=''>``::

    with OssServer(buckets=("test-bucket",)) as server:
        auth = oss2.Auth(server.access_key_id, server.access_key_secret)
        bucket = oss2.Bucket(auth, server.endpoint, "test-bucket")

What it does like the real service (behaviour taken from oss2's ``auth.py``, ``api.py``,
``models.py``, ``xml_utils.py`` and the OSS documentation):

* Signatures: V1 (``Authorization: OSS AK:base64(HMAC-SHA1)``, same string-to-sign and signed
  sub-resource list as ``oss2.auth.ProviderAuth``), V1 presigned URLs (``OSSAccessKeyId``,
  ``Expires``, ``Signature``) and V4 headers (``OSS4-HMAC-SHA256``, any region).  Unknown
  AccessKey -> 403 ``InvalidAccessKeyId``; wrong secret -> 403 ``SignatureDoesNotMatch`` (with
  ``StringToSign`` in the error); clock skew over 15 minutes -> 403 ``RequestTimeTooSkewed``;
  no credentials -> 403 ``AccessDenied``.  STS: :meth:`OssServer.issue_sts_credentials` returns
  ``(ak, secret, token)``; requests must then carry ``x-oss-security-token`` (or
  ``security-token`` in a presigned URL); an expired token -> 403 ``SecurityTokenExpired``.
* Objects: PUT/GET/HEAD/DELETE, ``x-oss-meta-*`` user metadata (names of letters, digits and
  ``-`` only, lower-cased; at most 8 KB of names and values in all, else 400
  ``InvalidArgument`` with EC ``0011-00000002``), ``Content-MD5`` checked when sent
  (``InvalidDigest``), ``x-oss-forbid-overwrite`` (409 ``FileAlreadyExists``), ETag = quoted
  upper-case MD5 hex (multipart: MD5 of the concatenated binary part MD5s + ``-N``), real
  ``x-oss-hash-crc64ecma`` (CRC-64/XZ, as ``oss2.utils.Crc64``), ``x-oss-object-type``,
  ``Last-Modified``, ``If-Match`` / ``If-None-Match`` on GET and HEAD.
* Ranges as OSS: ``bytes=a-b`` inclusive, ``bytes=a-``, ``bytes=-n``.  Without
  ``x-oss-range-behavior: standard`` an invalid or unsatisfiable range is ignored (200 and the
  whole object); with it, 206 clipped to the end of the object, or 416 ``InvalidRange`` when
  the start is past the end.  206 responses carry ``Content-Range`` and, as real OSS does,
  the CRC64 of the *whole object* (aliyun-oss-java-sdk issue #256; oss2 compares CRCs only on
  whole-object reads, so ranged reads must not check it); set
  :attr:`OssServer.crc_on_ranges` to ``False`` to drop it from 206 responses.
* Errors: XML ``<Error><Code/><Message/><RequestId/><HostId/>...</Error>``; HEAD errors have no
  body and carry the XML base64-encoded in ``x-oss-err``, which oss2 decodes.
* Multipart: initiate (metadata and Content-Type taken there), upload part, upload part copy
  (``x-oss-copy-source`` + ``x-oss-copy-source-range``), complete (ETags and ascending order
  checked, ``InvalidPart`` / ``InvalidPartOrder``; parts but the last at least
  :attr:`OssServer.min_part_size`, 100 KB, else ``EntityTooSmall``; ``x-oss-complete-all``),
  abort, ListMultipartUploads, ListParts.
* CopyObject with ``x-oss-metadata-directive`` ``COPY`` (default) or ``REPLACE``; in place
  with ``REPLACE`` rewrites the metadata only; sources over :attr:`OssServer.max_copy_size`
  (1 GB, as OSS) are refused with ``EntityTooLarge`` (use UploadPartCopy).
* ListObjects v1 and v2 (prefix, delimiter, marker / continuation-token / start-after,
  max-keys, fetch-owner, ``encoding-type=url``), DeleteMultipleObjects, buckets: create,
  delete (``BucketNotEmpty``), HEAD, ``?bucketInfo``, ``?location``, ListBuckets (``GET /``).

Test hooks: :attr:`OssServer.requests` (every request, faulted ones included, as
:class:`LoggedRequest`), :attr:`OssServer.bytes_sent` (object bytes sent by GETs),
:meth:`OssServer.request_count`, :meth:`OssServer.inject_error`, :meth:`OssServer.get_raw` /
:meth:`OssServer.put_raw` (read or plant stored bytes and metadata directly), :meth:`reset`.

Not supported: versioning, ACLs, tagging, append/symlink/restore objects, lifecycle, CORS,
server-side encryption, callbacks, image processing, V2 signatures, virtual-hosted-style
URLs (an IP endpoint is always path style in oss2) and keep-alive connections (the werkzeug
server closes each connection).
"""

from __future__ import annotations

import base64
import binascii
import email.utils
import hashlib
import hmac
import itertools
import re
import secrets
import threading
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, NamedTuple
from urllib.parse import parse_qsl, quote, unquote

import crcmod
from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server
from werkzeug.wrappers import Response

__all__ = ["LoggedRequest", "OssError", "OssServer", "crc64"]

#: CRC-64/XZ ("ECMA" in OSS headers), the parameters of ``oss2.utils.Crc64``.
crc64 = crcmod.mkCrcFun(0x142F0E1EBA9EA3693, initCrc=0, rev=True, xorOut=0xFFFFFFFFFFFFFFFF)

USER_META_LIMIT = 8 * 1024
MIN_PART_SIZE = 100 * 1024
MAX_COPY_SIZE = 1024**3
MAX_SKEW_SECONDS = 15 * 60
_RAW_HEADERS = "ossemu.raw_headers"
_META_PREFIX = "x-oss-meta-"
_META_NAME = re.compile(r"x-oss-meta-[a-z0-9-]+")
_BUCKET_NAME = re.compile(r"[a-z0-9][a-z0-9-]{1,61}[a-z0-9]")
_STANDARD_HEADERS = (
    "cache-control",
    "content-disposition",
    "content-encoding",
    "content-language",
    "expires",
)
_RESPONSE_OVERRIDES = {
    "response-content-type": "Content-Type",
    "response-content-language": "Content-Language",
    "response-expires": "Expires",
    "response-cache-control": "Cache-Control",
    "response-content-disposition": "Content-Disposition",
    "response-content-encoding": "Content-Encoding",
}
_GET_PARAMS = frozenset(["objectMeta", *_RESPONSE_OVERRIDES])
_LOGGED_HEADERS = ("content-type", "content-length", "content-md5", "if-match", "if-none-match")
# oss2.auth.ProviderAuth._subresource_key_set: the query parameters covered by a V1 signature.
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


class OssError(Exception):
    """An OSS error response: HTTP status, ``Code``, ``Message`` and extra XML elements."""

    def __init__(self, status: int, code: str, message: str, **extra: str) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status, self.code, self.message, self.extra = status, code, message, extra


class LoggedRequest(NamedTuple):
    """One request as received: decoded path ``/bucket/key``, query, a subset of the headers
    (``x-oss-*``, content type/length/MD5, conditions; names lower-case) and the Range header."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    range: str | None


@dataclass
class StoredObject:
    data: bytes
    etag: str  # upper-case hex, without quotes
    object_type: str = "Normal"
    content_type: str = "application/octet-stream"
    metadata: dict[str, str] = field(default_factory=dict)  # "x-oss-meta-name" -> value
    headers: dict[str, str] = field(default_factory=dict)  # Cache-Control, ...
    last_modified: float = field(default_factory=time.time)
    crc: int = 0

    def __post_init__(self) -> None:
        self.crc = crc64(self.data)


@dataclass
class _Part:
    data: bytes
    etag: str
    crc: int
    last_modified: float


@dataclass
class _Upload:
    key: str
    upload_id: str
    content_type: str
    metadata: dict[str, str]
    headers: dict[str, str]
    initiated: float = field(default_factory=time.time)
    parts: dict[int, _Part] = field(default_factory=dict)


@dataclass
class _Bucket:
    name: str
    created: float = field(default_factory=time.time)
    objects: dict[str, StoredObject] = field(default_factory=dict)
    uploads: dict[str, _Upload] = field(default_factory=dict)


@dataclass
class _Call:
    method: str
    bucket: str
    key: str
    query: dict[str, str]
    headers: dict[str, str]  # lower-case names, raw (latin-1) values, duplicates joined by ","
    body: bytes
    request_id: str


@dataclass
class _Fault:
    status: int
    code: str
    count: int
    method: str | None


class _QuietHandler(WSGIRequestHandler):
    """No access log; keeps the raw header list (werkzeug drops names containing ``_``)."""

    def make_environ(self) -> dict[str, Any]:
        environ = super().make_environ()
        environ[_RAW_HEADERS] = list(self.headers.items())
        return environ

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        pass


def _md5_hex(data: bytes) -> str:
    return hashlib.md5(data).hexdigest().upper()


def _http_date(ts: float) -> str:
    return email.utils.formatdate(ts, usegmt=True)


def _iso(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(ts))


def _sub(parent: ET.Element, tag: str, text: object = None) -> ET.Element:
    node = ET.SubElement(parent, tag)
    if text is not None:
        node.text = str(text)
    return node


def _tree(tag: str, *fields: tuple[str, object]) -> ET.Element:
    root = ET.Element(tag)
    for name, value in fields:
        _sub(root, name, value)
    return root


def _xml_bytes(root: ET.Element) -> bytes:
    return ET.tostring(root, encoding="utf-8", xml_declaration=True)


def _v4_encode(text: str, keep_slash: bool) -> str:
    return quote(text, safe="-_.~/" if keep_slash else "-_.~")


def _parse_range(spec: str | None, size: int, standard: bool) -> tuple[int, int] | None:
    """The inclusive byte range to send, or ``None`` for the whole object (200)."""
    if not spec:
        return None
    match = re.fullmatch(r"\s*bytes=(\d*)-(\d*)\s*(,.*)?", spec)
    if match is None or match[1] == match[2] == "":
        return None
    if match[3] and standard:
        raise OssError(416, "InvalidRange", "The requested range cannot be satisfied")
    if match[1] == "":  # suffix: the last n bytes
        length = int(match[2])
        if length > 0 and size > 0 and (length <= size or standard):
            return max(size - length, 0), size - 1
        if standard:
            raise OssError(416, "InvalidRange", "The requested range cannot be satisfied")
        return None
    start = int(match[1])
    end = int(match[2]) if match[2] else size - 1
    if end < start and match[2]:
        return None
    if start >= size:
        if standard:
            raise OssError(416, "InvalidRange", "The requested range cannot be satisfied")
        return None
    if end >= size:
        if not standard:
            return None
        end = size - 1
    return start, end


def _list_page(
    names: Iterable[str], prefix: str, delimiter: str, after: str, max_keys: int
) -> tuple[list[str], list[str], bool, str]:
    """Keys and common prefixes after ``after``, at most ``max_keys`` entries in all.

    Returns ``(keys, prefixes, truncated, last entry)``.
    """
    keys: list[str] = []
    prefixes: list[str] = []
    last = ""
    for name in sorted(names):
        if not name.startswith(prefix) or name <= after:
            continue
        entry, is_prefix = name, False
        if delimiter:
            cut = name.find(delimiter, len(prefix))
            if cut >= 0:
                entry, is_prefix = name[: cut + len(delimiter)], True
                if entry <= after or (prefixes and prefixes[-1] == entry):
                    continue
        if len(keys) + len(prefixes) == max_keys:
            return keys, prefixes, True, last
        (prefixes if is_prefix else keys).append(entry)
        last = entry
    return keys, prefixes, False, last


class OssServer:
    """An in-memory OSS endpoint on 127.0.0.1.

    :param buckets: buckets that exist after :meth:`start` and after every :meth:`reset`.
    :param access_key_id: / :param access_key_secret: the permanent credentials it accepts.
    :param region: reported by ``?location`` / ``?bucketInfo``; V4 accepts any region.
    """

    def __init__(
        self,
        buckets: Iterable[str] = ("test-bucket",),
        access_key_id: str = "oss-test-ak",
        access_key_secret: str = "oss-test-secret",
        *,
        region: str = "cn-hangzhou",
        port: int = 0,
    ) -> None:
        self.initial_buckets = tuple(buckets)
        self.access_key_id = access_key_id
        self.access_key_secret = access_key_secret
        self.region = region
        self.port = port
        #: STS credentials: token -> (access key id, secret, expiry as a UNIX time).
        self.sts_tokens: dict[str, tuple[str, str, float]] = {}
        self.requests: list[LoggedRequest] = []
        #: Object body bytes sent by GET (200 and 206) responses.
        self.bytes_sent = 0
        self._lock = threading.RLock()
        self._buckets: dict[str, _Bucket] = {}
        self._faults: list[_Fault] = []
        self._upload_seq = itertools.count(1)
        self._server: BaseWSGIServer | None = None
        self._thread: threading.Thread | None = None
        self.reset()

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self) -> OssServer:
        if self._server is not None:
            return self
        self._server = make_server(
            "127.0.0.1", self.port, self._wsgi, threaded=True, request_handler=_QuietHandler
        )
        self.port = self._server.port
        self._thread = threading.Thread(
            target=self._server.serve_forever, name=f"oss-server-{self.port}", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        server, thread, self._server, self._thread = self._server, self._thread, None, None
        if server is not None:
            server.shutdown()
            server.server_close()
        if thread is not None:
            thread.join(timeout=5)

    def __enter__(self) -> OssServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def endpoint(self) -> str:
        if self._server is None:
            raise RuntimeError("OssServer is not started")
        return f"http://127.0.0.1:{self.port}"

    # -- test hooks --------------------------------------------------------------------------
    def reset(self) -> None:
        """Forget all objects, uploads, extra buckets, STS tokens, faults and the request log;
        restore the tunable limits below to their OSS defaults."""
        with self._lock:
            #: Parts but the last must be at least this large (OSS: 100 KB).
            self.min_part_size = MIN_PART_SIZE
            #: CopyObject refuses larger sources (OSS: 1 GB); UploadPartCopy has no such limit.
            self.max_copy_size = MAX_COPY_SIZE
            self.user_meta_limit = USER_META_LIMIT
            self.check_clock_skew = True
            #: Send the whole object's CRC64 on 206 responses too (real OSS does).
            self.crc_on_ranges = True
            self._buckets = {name: _Bucket(name) for name in self.initial_buckets}
            self.sts_tokens.clear()
            self._faults.clear()
            self.requests.clear()
            self.bytes_sent = 0

    def create_bucket(self, name: str) -> None:
        with self._lock:
            self._buckets.setdefault(name, _Bucket(name))

    def issue_sts_credentials(self, ttl: float = 3600.0) -> tuple[str, str, str]:
        """New temporary ``(access_key_id, access_key_secret, security_token)``."""
        ak = "STS." + secrets.token_hex(8)
        secret, token = secrets.token_urlsafe(24), secrets.token_urlsafe(48)
        with self._lock:
            self.sts_tokens[token] = (ak, secret, time.time() + ttl)
        return ak, secret, token

    def inject_error(
        self, status: int = 503, code: str = "ServiceUnavailable", count: int = 1,
        method: str | None = None,
    ) -> None:
        """The next ``count`` requests (of ``method``, if given) fail with this error."""
        with self._lock:
            self._faults.append(_Fault(status, code, count, method))

    def request_count(self, method: str | None = None, path: str | None = None) -> int:
        with self._lock:
            return sum(
                1
                for r in self.requests
                if (method is None or r.method == method) and (path is None or r.path == path)
            )

    def keys(self, bucket: str) -> list[str]:
        with self._lock:
            return sorted(self._bucket(bucket).objects)

    def get_raw(self, bucket: str, key: str) -> StoredObject:
        """The stored object itself (bytes, ETag, CRC, metadata), for white-box assertions."""
        with self._lock:
            obj = self._bucket(bucket).objects.get(key)
            if obj is None:
                raise KeyError(f"{bucket}/{key}")
            return obj

    def put_raw(
        self, bucket: str, key: str, data: bytes, metadata: Mapping[str, str] | None = None,
        content_type: str = "application/octet-stream",
    ) -> StoredObject:
        """Store (or overwrite, e.g. to tamper with) an object without going through HTTP.

        ``metadata`` keys are given with or without the ``x-oss-meta-`` prefix.
        """
        meta = {
            (k.lower() if k.lower().startswith(_META_PREFIX) else _META_PREFIX + k.lower()): v
            for k, v in (metadata or {}).items()
        }
        obj = StoredObject(data, _md5_hex(data), content_type=content_type, metadata=meta)
        with self._lock:
            self._bucket(bucket).objects[key] = obj
        return obj

    def uploads(self, bucket: str) -> list[str]:
        """Upload ids of multipart uploads in progress."""
        with self._lock:
            return sorted(self._bucket(bucket).uploads)

    # -- WSGI --------------------------------------------------------------------------------
    def _wsgi(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        if environ.get("wsgi.input_terminated"):  # chunked: werkzeug de-chunks it
            body = environ["wsgi.input"].read()
        else:
            length = int(environ.get("CONTENT_LENGTH") or 0)
            body = environ["wsgi.input"].read(length) if length > 0 else b""
        request_id = secrets.token_hex(12).upper()
        method = environ["REQUEST_METHOD"]
        try:
            call = self._parse(environ, body, request_id)
            with self._lock:
                self.requests.append(
                    LoggedRequest(
                        method,
                        f"/{call.bucket}/{call.key}" if call.bucket else "/",
                        dict(call.query),
                        {
                            k: v
                            for k, v in call.headers.items()
                            if k.startswith("x-oss-") or k in _LOGGED_HEADERS
                        },
                        call.headers.get("range"),
                    )
                )
                self._fault(method)
            self._authenticate(call)
            with self._lock:
                response = self._dispatch(call)
        except OssError as err:
            response = self._error(err, method, request_id)
        except Exception as exc:  # an emulator bug: make it visible through oss2
            response = self._error(OssError(500, "InternalError", repr(exc)), method, request_id)
        response.headers["x-oss-request-id"] = request_id
        return response(environ, start_response)

    def _fault(self, method: str) -> None:
        for fault in self._faults:
            if fault.method is None or fault.method == method:
                fault.count -= 1
                if fault.count <= 0:
                    self._faults.remove(fault)
                raise OssError(fault.status, fault.code, "Injected fault")

    def _parse(self, environ: dict[str, Any], body: bytes, request_id: str) -> _Call:
        headers: dict[str, str] = {}
        for name, value in environ.get(_RAW_HEADERS, []):
            name = name.lower()
            headers[name] = f"{headers[name]},{value}" if name in headers else value
        raw = environ.get("RAW_URI") or environ.get("PATH_INFO", "/")
        raw_path, _, raw_query = raw.partition("?")
        try:
            path = unquote(raw_path, encoding="utf-8", errors="strict")
        except UnicodeDecodeError as exc:
            raise OssError(400, "InvalidObjectName", "The object name is not UTF-8") from exc
        bucket, _, key = path[1:].partition("/")
        query = dict(parse_qsl(raw_query, keep_blank_values=True))
        return _Call(environ["REQUEST_METHOD"], bucket, key, query, headers, body, request_id)

    def _error(self, err: OssError, method: str, request_id: str) -> Response:
        root = _tree(
            "Error",
            ("Code", err.code),
            ("Message", err.message),
            ("RequestId", request_id),
            ("HostId", f"127.0.0.1:{self.port}"),
            *err.extra.items(),
        )
        body = _xml_bytes(root)
        headers = {"x-oss-ec": err.extra["EC"]} if "EC" in err.extra else {}
        if method == "HEAD":
            headers["x-oss-err"] = base64.b64encode(body).decode()
            return Response(b"", err.status, headers, content_type="application/xml")
        return Response(body, err.status, headers, content_type="application/xml")

    # -- authentication ------------------------------------------------------------------------
    def _secret_for(self, ak: str, token: str | None) -> str:
        if token is not None:
            entry = self.sts_tokens.get(token)
            if entry is None or entry[0] != ak:
                raise OssError(
                    403, "InvalidAccessKeyId", "The security token you provided is invalid.",
                    OSSAccessKeyId=ak,
                )
            if entry[2] < time.time():
                raise OssError(403, "SecurityTokenExpired", "The security token has expired.")
            return entry[1]
        if ak == self.access_key_id:
            return self.access_key_secret
        raise OssError(
            403, "InvalidAccessKeyId", "The OSS Access Key Id you provided does not exist in our "
            "records.", OSSAccessKeyId=ak,
        )

    def _check_skew(self, when: datetime | None) -> None:
        if not self.check_clock_skew:
            return
        if when is None or abs(when.timestamp() - time.time()) > MAX_SKEW_SECONDS:
            raise OssError(
                403, "RequestTimeTooSkewed", "The difference between the request time and the "
                "current time is too large.",
            )

    def _authenticate(self, call: _Call) -> None:
        auth = call.headers.get("authorization", "")
        if auth.startswith("OSS4-HMAC-SHA256 "):
            return self._check_v4(call, auth)
        if auth.startswith("OSS "):
            ak, _, signature = auth[4:].partition(":")
            date = call.headers.get("x-oss-date") or call.headers.get("date", "")
            try:
                when = email.utils.parsedate_to_datetime(date) if date else None
            except (TypeError, ValueError):
                when = None
            self._check_skew(when)
            secret = self._secret_for(ak, call.headers.get("x-oss-security-token"))
            return self._check_v1(call, ak, secret, signature, date, call.headers)
        if "Signature" in call.query and "OSSAccessKeyId" in call.query:
            expires = call.query.get("Expires", "")
            if not expires.isdigit() or int(expires) < time.time():
                raise OssError(403, "AccessDenied", "Request has expired.")
            ak = call.query["OSSAccessKeyId"]
            secret = self._secret_for(ak, call.query.get("security-token"))
            return self._check_v1(call, ak, secret, call.query["Signature"], expires, call.headers)
        raise OssError(403, "AccessDenied", "AccessDenied: anonymous access is not allowed.")

    def _check_v1(
        self, call: _Call, ak: str, secret: str, signature: str, date: str,
        headers: Mapping[str, str],
    ) -> None:
        oss_headers = sorted((k, v) for k, v in headers.items() if k.startswith("x-oss-"))
        subresources = sorted((k, v) for k, v in call.query.items() if k in SIGNED_SUBRESOURCES)
        resource = f"/{call.bucket}/{call.key}" if call.bucket else "/"
        if subresources:
            resource += "?" + "&".join(f"{k}={v}" if v else k for k, v in subresources)
        to_sign = b"\n".join(
            [
                call.method.encode(),
                headers.get("content-md5", "").encode("latin-1"),
                headers.get("content-type", "").encode("latin-1"),
                date.encode("latin-1"),
                b"".join(f"{k}:{v}\n".encode("latin-1") for k, v in oss_headers)
                + resource.encode("utf-8"),
            ]
        )
        expected = base64.b64encode(hmac.new(secret.encode(), to_sign, hashlib.sha1).digest())
        if not hmac.compare_digest(expected.decode(), signature):
            raise OssError(
                403, "SignatureDoesNotMatch", "The request signature we calculated does not match "
                "the signature you provided. Check your key and signing method.",
                OSSAccessKeyId=ak, SignatureProvided=signature,
                StringToSign=to_sign.decode("utf-8", "replace"),
            )

    def _check_v4(self, call: _Call, auth: str) -> None:
        fields = dict(
            part.strip().partition("=")[::2] for part in auth[len("OSS4-HMAC-SHA256 ") :].split(",")
        )
        credential = fields.get("Credential", "").split("/")
        if len(credential) != 5 or credential[4] != "aliyun_v4_request":
            raise OssError(400, "InvalidArgument", "Malformed OSS4-HMAC-SHA256 Credential.")
        ak, day, region, product, _ = credential
        stamp = call.headers.get("x-oss-date", "")
        try:
            when = datetime.strptime(stamp, "%Y%m%dT%H%M%SZ").replace(tzinfo=timezone.utc)
        except ValueError:
            when = None
        self._check_skew(when)
        secret = self._secret_for(ak, call.headers.get("x-oss-security-token"))
        extra = {h for h in fields.get("AdditionalHeaders", "").split(";") if h}
        signed = sorted(
            (k, v)
            for k, v in call.headers.items()
            if k.startswith("x-oss-") or k in ("content-type", "content-md5") or k in extra
        )
        query = sorted((_v4_encode(k, False), _v4_encode(v, False)) for k, v in call.query.items())
        uri = _v4_encode(f"/{call.bucket}/{call.key}" if call.bucket else "/", True)
        canonical = b"\n".join(
            [
                call.method.encode(),
                uri.encode(),
                "&".join(f"{k}={v}" if v else k for k, v in query).encode(),
                b"".join(f"{k}:{v}\n".encode("latin-1") for k, v in signed),
                ";".join(sorted(extra)).encode(),
                call.headers.get("x-oss-content-sha256", "UNSIGNED-PAYLOAD").encode("latin-1"),
            ]
        )
        scope = f"{day}/{region}/{product}/aliyun_v4_request"
        to_sign = f"OSS4-HMAC-SHA256\n{stamp}\n{scope}\n{hashlib.sha256(canonical).hexdigest()}"
        key = ("aliyun_v4" + secret).encode()
        for part in (day, region, product, "aliyun_v4_request"):
            key = hmac.new(key, part.encode(), hashlib.sha256).digest()
        expected = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected, fields.get("Signature", "")):
            raise OssError(
                403, "SignatureDoesNotMatch", "The request signature we calculated does not match "
                "the signature you provided.", OSSAccessKeyId=ak, StringToSign=to_sign,
                CanonicalRequest=canonical.decode("utf-8", "replace"),
            )

    # -- routing -------------------------------------------------------------------------------
    def _bucket(self, name: str) -> _Bucket:
        bucket = self._buckets.get(name)
        if bucket is None:
            raise OssError(
                404, "NoSuchBucket", "The specified bucket does not exist.", BucketName=name
            )
        return bucket

    def _dispatch(self, call: _Call) -> Response:
        method, q = call.method, call.query
        if not call.bucket:
            if method == "GET":
                return self._list_buckets(call)
            raise OssError(405, "MethodNotAllowed", "The specified method is not allowed.")
        if not call.key:
            if method == "PUT" and not q:
                return self._create_bucket(call)
            bucket = self._bucket(call.bucket)
            if method == "GET" and "uploads" in q:
                return self._list_uploads(call, bucket)
            if method == "GET" and "bucketInfo" in q:
                return self._bucket_info(bucket)
            if method == "GET" and "location" in q:
                return self._xml(ET.Element("LocationConstraint"), text=f"oss-{self.region}")
            if method == "GET" and not (set(q) & SIGNED_SUBRESOURCES) - {"continuation-token"}:
                return self._list_objects(call, bucket)
            if method == "POST" and "delete" in q:
                return self._delete_objects(call, bucket)
            if method == "DELETE" and not q:
                if bucket.objects:
                    raise OssError(409, "BucketNotEmpty", "The bucket you tried to delete is not "
                                   "empty.", BucketName=bucket.name)
                del self._buckets[bucket.name]
                return Response(b"", 204)
            if method == "HEAD" and not q:
                return Response(b"", 200)
        else:
            bucket = self._bucket(call.bucket)
            if len(call.key.encode()) > 1023 or call.key.startswith(("/", "\\")):
                raise OssError(400, "InvalidObjectName", "The specified object is not valid.")
            upload = "uploadId" in q
            if method == "PUT" and upload and "partNumber" in q:
                return self._upload_part(call, bucket)
            if method == "PUT" and not set(q) & SIGNED_SUBRESOURCES:
                if "x-oss-copy-source" in call.headers:
                    return self._copy_object(call, bucket)
                return self._put_object(call, bucket)
            if method in ("GET", "HEAD") and not (set(q) & SIGNED_SUBRESOURCES) - _GET_PARAMS:
                return self._get_object(call, bucket)
            if method == "GET" and upload:
                return self._list_parts(call, bucket)
            if method == "DELETE" and upload:
                self._get_upload(call, bucket)
                del bucket.uploads[q["uploadId"]]
                return Response(b"", 204)
            if method == "DELETE" and not q:
                bucket.objects.pop(call.key, None)
                return Response(b"", 204)
            if method == "POST" and "uploads" in q:
                return self._initiate(call, bucket)
            if method == "POST" and upload:
                return self._complete(call, bucket)
        raise OssError(501, "NotImplemented", f"{method} with {sorted(q)} is not emulated.")

    def _xml(self, root: ET.Element, text: str | None = None, **headers: str) -> Response:
        if text is not None:
            root.text = text
        return Response(_xml_bytes(root), 200, headers, content_type="application/xml")

    # -- buckets -------------------------------------------------------------------------------
    def _create_bucket(self, call: _Call) -> Response:
        if not _BUCKET_NAME.fullmatch(call.bucket):
            raise OssError(400, "InvalidBucketName", "The specified bucket is not valid.",
                           BucketName=call.bucket)
        if call.bucket in self._buckets:
            raise OssError(409, "BucketAlreadyExists", "The requested bucket name is not "
                           "available.", BucketName=call.bucket)
        self._buckets[call.bucket] = _Bucket(call.bucket)
        return Response(b"", 200, {"Location": f"/{call.bucket}"})

    def _owner(self, parent: ET.Element) -> None:
        owner = _sub(parent, "Owner")
        _sub(owner, "ID", "1234567890")
        _sub(owner, "DisplayName", "1234567890")

    def _list_buckets(self, call: _Call) -> Response:
        root = ET.Element("ListAllMyBucketsResult")
        self._owner(root)
        node = _sub(root, "Buckets")
        prefix = call.query.get("prefix", "")
        for name in sorted(n for n in self._buckets if n.startswith(prefix)):
            b = _sub(node, "Bucket")
            for tag, value in self._bucket_fields(self._buckets[name]):
                _sub(b, tag, value)
        return self._xml(root)

    def _bucket_fields(self, bucket: _Bucket) -> list[tuple[str, object]]:
        return [
            ("Name", bucket.name),
            ("CreationDate", _iso(bucket.created)),
            ("Location", f"oss-{self.region}"),
            ("ExtranetEndpoint", f"127.0.0.1:{self.port}"),
            ("IntranetEndpoint", f"127.0.0.1:{self.port}"),
            ("StorageClass", "Standard"),
            ("Region", self.region),
        ]

    def _bucket_info(self, bucket: _Bucket) -> Response:
        root = ET.Element("BucketInfo")
        node = _sub(root, "Bucket")
        for tag, value in self._bucket_fields(bucket):
            _sub(node, tag, value)
        self._owner(node)
        _sub(_sub(node, "AccessControlList"), "Grant", "private")
        _sub(node, "DataRedundancyType", "LRS")
        _sub(node, "Comment", "")
        _sub(_sub(node, "ServerSideEncryptionRule"), "SSEAlgorithm", "None")
        return self._xml(root)

    def _max(self, call: _Call, name: str, default: int) -> int:
        raw = call.query.get(name) or str(default)
        if not raw.isdigit() or not 1 <= int(raw) <= 1000:
            raise OssError(400, "InvalidArgument", f"{name} must be between 1 and 1000.",
                           ArgumentName=name, ArgumentValue=raw)
        return int(raw)

    def _list_objects(self, call: _Call, bucket: _Bucket) -> Response:
        q = call.query
        v2 = q.get("list-type") == "2"
        url = q.get("encoding-type") == "url"
        enc = (lambda s: quote(s, safe="/")) if url else (lambda s: s)
        prefix, delimiter = q.get("prefix", ""), q.get("delimiter", "")
        max_keys = self._max(call, "max-keys", 100)
        root = ET.Element("ListBucketResult")
        _sub(root, "Name", bucket.name)
        _sub(root, "Prefix", enc(prefix))
        if v2:
            after = q.get("start-after", "")
            token = q.get("continuation-token", "")
            if token:
                try:
                    after = max(after, base64.urlsafe_b64decode(token + "==").decode())
                except (binascii.Error, UnicodeDecodeError) as exc:
                    raise OssError(400, "InvalidArgument", "Invalid continuation-token.") from exc
                _sub(root, "ContinuationToken", token)
            if q.get("start-after"):
                _sub(root, "StartAfter", enc(q["start-after"]))
        else:
            after = q.get("marker", "")
            _sub(root, "Marker", enc(after))
        _sub(root, "MaxKeys", max_keys)
        _sub(root, "Delimiter", enc(delimiter))
        if url:
            _sub(root, "EncodingType", "url")
        keys, prefixes, truncated, last = _list_page(
            bucket.objects, prefix, delimiter, after, max_keys
        )
        _sub(root, "IsTruncated", str(truncated).lower())
        if truncated and v2:
            _sub(root, "NextContinuationToken",
                 base64.urlsafe_b64encode(last.encode()).decode().rstrip("="))
        elif truncated:
            _sub(root, "NextMarker", enc(last))
        if v2:
            _sub(root, "KeyCount", len(keys) + len(prefixes))
        for key in keys:
            obj = bucket.objects[key]
            node = _sub(root, "Contents")
            _sub(node, "Key", enc(key))
            _sub(node, "LastModified", _iso(obj.last_modified))
            _sub(node, "ETag", f'"{obj.etag}"')
            _sub(node, "Type", obj.object_type)
            _sub(node, "Size", len(obj.data))
            _sub(node, "StorageClass", "Standard")
            if not v2 or q.get("fetch-owner") == "true":
                self._owner(node)
        for common in prefixes:
            _sub(_sub(root, "CommonPrefixes"), "Prefix", enc(common))
        return self._xml(root)

    def _delete_objects(self, call: _Call, bucket: _Bucket) -> Response:
        self._check_md5(call)
        try:
            request = ET.fromstring(call.body)
        except ET.ParseError as exc:
            raise OssError(400, "MalformedXML", "The XML is not well-formed.") from exc
        keys = [node.findtext("Key") or "" for node in request.findall("Object")]
        if request.tag != "Delete" or not keys or len(keys) > 1000:
            raise OssError(400, "MalformedXML", "The XML you provided was not well-formed.")
        url = call.query.get("encoding-type") == "url"
        root = ET.Element("DeleteResult")
        if url:
            _sub(root, "EncodingType", "url")
        for key in keys:
            bucket.objects.pop(key, None)
            if (request.findtext("Quiet") or "false").lower() != "true":
                _sub(_sub(root, "Deleted"), "Key", quote(key, safe="/") if url else key)
        return self._xml(root)

    # -- objects -------------------------------------------------------------------------------
    def _check_md5(self, call: _Call) -> None:
        sent = call.headers.get("content-md5")
        if sent is not None and sent != base64.b64encode(hashlib.md5(call.body).digest()).decode():
            raise OssError(400, "InvalidDigest", "The Content-MD5 you specified was invalid.")

    def _user_meta(self, call: _Call) -> dict[str, str]:
        meta = {k: v for k, v in call.headers.items() if k.startswith(_META_PREFIX)}
        for name in meta:
            if not _META_NAME.fullmatch(name):
                raise OssError(400, "InvalidArgument", "The user metadata key is invalid: "
                               "only letters, digits and '-' are allowed.", EC="0011-00000004",
                               ArgumentName=name)
        size = sum(len(k) + len(v.encode("latin-1", "replace")) for k, v in meta.items())
        if size > self.user_meta_limit:
            raise OssError(400, "InvalidArgument", "Your metadata headers exceed the maximum "
                           "allowed metadata size.", EC="0011-00000002",
                           ArgumentName="x-oss-meta-*", ArgumentValue=str(size))
        return meta

    def _std_headers(self, call: _Call) -> dict[str, str]:
        return {k: call.headers[k] for k in _STANDARD_HEADERS if k in call.headers}

    def _check_overwrite(self, call: _Call, bucket: _Bucket) -> None:
        forbid = call.headers.get("x-oss-forbid-overwrite", "").lower() == "true"
        if forbid and call.key in bucket.objects:
            raise OssError(409, "FileAlreadyExists", "The object you specified already exists "
                           "and can not be overwritten.")

    def _stored(self, obj: StoredObject) -> Response:
        headers = {"ETag": f'"{obj.etag}"', "x-oss-hash-crc64ecma": str(obj.crc)}
        headers["Content-MD5"] = base64.b64encode(bytes.fromhex(obj.etag)).decode()
        return Response(b"", 200, headers)

    def _put_object(self, call: _Call, bucket: _Bucket) -> Response:
        self._check_md5(call)
        meta = self._user_meta(call)
        self._check_overwrite(call, bucket)
        obj = StoredObject(
            call.body,
            _md5_hex(call.body),
            content_type=call.headers.get("content-type") or "application/octet-stream",
            metadata=meta,
            headers=self._std_headers(call),
        )
        bucket.objects[call.key] = obj
        return self._stored(obj)

    def _object_headers(self, obj: StoredObject) -> dict[str, str]:
        headers = {
            "ETag": f'"{obj.etag}"',
            "Last-Modified": _http_date(obj.last_modified),
            "x-oss-object-type": obj.object_type,
            "x-oss-storage-class": "Standard",
            "x-oss-hash-crc64ecma": str(obj.crc),
            "Accept-Ranges": "bytes",
            **obj.headers,
            **obj.metadata,
        }
        if obj.object_type == "Normal":
            headers["Content-MD5"] = base64.b64encode(bytes.fromhex(obj.etag)).decode()
        return headers

    def _lookup(self, bucket: _Bucket, key: str) -> StoredObject:
        obj = bucket.objects.get(key)
        if obj is None:
            raise OssError(404, "NoSuchKey", "The specified key does not exist.", Key=key)
        return obj

    def _get_object(self, call: _Call, bucket: _Bucket) -> Response:
        obj = self._lookup(bucket, call.key)
        etag = f'"{obj.etag}"'
        if_match, if_none = call.headers.get("if-match"), call.headers.get("if-none-match")
        if if_match is not None and if_match.strip() not in (etag, obj.etag, "*"):
            raise OssError(412, "PreconditionFailed", "At least one of the pre-conditions you "
                           "specified did not hold.", Condition="If-Match")
        if if_none is not None and if_none.strip() in (etag, obj.etag, "*"):
            return Response(b"", 304, {"ETag": etag})
        size = len(obj.data)
        if "objectMeta" in call.query:
            headers = {"ETag": etag, "Last-Modified": _http_date(obj.last_modified)}
            return Response(obj.data, 200, headers)  # werkzeug sends no body for HEAD
        headers = self._object_headers(obj)
        standard = call.headers.get("x-oss-range-behavior", "").lower() == "standard"
        try:
            span = _parse_range(call.headers.get("range"), size, standard)
        except OssError as err:
            err.extra["ActualObjectSize"] = str(size)
            raise
        status, data = 200, obj.data
        if span is not None:
            status, data = 206, obj.data[span[0] : span[1] + 1]
            headers["Content-Range"] = f"bytes {span[0]}-{span[1]}/{size}"
            headers.pop("Content-MD5", None)
            if not self.crc_on_ranges:
                del headers["x-oss-hash-crc64ecma"]
        for param, header in _RESPONSE_OVERRIDES.items():
            if param in call.query:
                headers[header] = call.query[param]
        content_type = headers.pop("Content-Type", obj.content_type)
        if call.method == "GET":
            self.bytes_sent += len(data)
        # werkzeug sets Content-Length from the data and drops the body of a HEAD response.
        return Response(data, status, headers, content_type=content_type)

    def _copy_source(self, call: _Call) -> StoredObject:
        source = call.headers["x-oss-copy-source"].partition("?")[0]
        src_bucket, _, src_key = unquote(source).lstrip("/").partition("/")
        if not src_bucket or not src_key:
            raise OssError(400, "InvalidArgument", "Copy Source must mention the source bucket "
                           "and key: /sourcebucket/sourcekey.", ArgumentName="x-oss-copy-source")
        return self._lookup(self._bucket(src_bucket), src_key)

    def _copy_object(self, call: _Call, bucket: _Bucket) -> Response:
        source = self._copy_source(call)
        if len(source.data) > self.max_copy_size:
            raise OssError(400, "EntityTooLarge", "The source object is larger than CopyObject "
                           "allows; use UploadPartCopy.")
        directive = call.headers.get("x-oss-metadata-directive", "COPY").upper()
        if directive not in ("COPY", "REPLACE"):
            raise OssError(400, "InvalidArgument", "x-oss-metadata-directive must be COPY or "
                           "REPLACE.", ArgumentName="x-oss-metadata-directive")
        self._check_overwrite(call, bucket)
        obj = StoredObject(
            source.data, source.etag, source.object_type, source.content_type,
            dict(source.metadata), dict(source.headers),
        )
        if directive == "REPLACE":
            obj.metadata = self._user_meta(call)
            obj.headers = self._std_headers(call)
            obj.content_type = call.headers.get("content-type") or source.content_type
        bucket.objects[call.key] = obj
        root = _tree("CopyObjectResult", ("ETag", f'"{obj.etag}"'),
                     ("LastModified", _iso(obj.last_modified)))
        return self._xml(root, ETag=f'"{obj.etag}"', **{"x-oss-hash-crc64ecma": str(obj.crc)})

    # -- multipart -----------------------------------------------------------------------------
    def _get_upload(self, call: _Call, bucket: _Bucket) -> _Upload:
        upload = bucket.uploads.get(call.query.get("uploadId", ""))
        if upload is None or upload.key != call.key:
            raise OssError(404, "NoSuchUpload", "The specified upload does not exist. The upload "
                           "ID may be invalid, or the upload may have been aborted or completed.",
                           UploadId=call.query.get("uploadId", ""))
        return upload

    def _initiate(self, call: _Call, bucket: _Bucket) -> Response:
        self._check_overwrite(call, bucket)
        upload_id = f"{next(self._upload_seq):08X}{secrets.token_hex(12).upper()}"
        bucket.uploads[upload_id] = _Upload(
            call.key,
            upload_id,
            call.headers.get("content-type") or "application/octet-stream",
            self._user_meta(call),
            self._std_headers(call),
        )
        url = call.query.get("encoding-type") == "url"
        root = _tree("InitiateMultipartUploadResult", ("Bucket", bucket.name),
                     ("Key", quote(call.key, safe="/") if url else call.key),
                     ("UploadId", upload_id))
        if url:
            _sub(root, "EncodingType", "url")
        return self._xml(root)

    def _upload_part(self, call: _Call, bucket: _Bucket) -> Response:
        upload = self._get_upload(call, bucket)
        number = call.query["partNumber"]
        if not number.isdigit() or not 1 <= int(number) <= 10000:
            raise OssError(400, "InvalidArgument", "Part number must be an integer between 1 "
                           "and 10000, inclusive.", ArgumentName="partNumber",
                           ArgumentValue=number)
        copy = "x-oss-copy-source" in call.headers
        if copy:
            data = self._copy_source(call).data
            spec = call.headers.get("x-oss-copy-source-range")
            if spec:
                match = re.fullmatch(r"bytes=(\d+)-(\d*)", spec.strip())
                start = int(match[1]) if match else -1
                end = int(match[2]) if match and match[2] else len(data) - 1
                if not match or start > end or end >= len(data):
                    raise OssError(400, "InvalidArgument", "The x-oss-copy-source-range is "
                                   "invalid.", ArgumentName="x-oss-copy-source-range")
                data = data[start : end + 1]
        else:
            self._check_md5(call)
            data = call.body
        part = _Part(data, _md5_hex(data), crc64(data), time.time())
        upload.parts[int(number)] = part
        headers = {"ETag": f'"{part.etag}"', "x-oss-hash-crc64ecma": str(part.crc)}
        if copy:
            root = _tree("CopyPartResult", ("LastModified", _iso(part.last_modified)),
                         ("ETag", f'"{part.etag}"'))
            return self._xml(root, **headers)
        headers["Content-MD5"] = base64.b64encode(bytes.fromhex(part.etag)).decode()
        return Response(b"", 200, headers)

    def _complete(self, call: _Call, bucket: _Bucket) -> Response:
        upload = self._get_upload(call, bucket)
        if call.headers.get("x-oss-complete-all", "").lower() == "yes":
            if call.body:
                raise OssError(400, "InvalidArgument", "With x-oss-complete-all the body must "
                               "be empty.")
            chosen = sorted(upload.parts.items())
        else:
            try:
                root = ET.fromstring(call.body)
                wanted = [
                    (int(node.findtext("PartNumber") or ""), (node.findtext("ETag") or ""))
                    for node in root.findall("Part")
                ]
            except (ET.ParseError, ValueError) as exc:
                raise OssError(400, "MalformedXML", "The XML you provided was not "
                               "well-formed.") from exc
            if root.tag != "CompleteMultipartUpload" or not wanted:
                raise OssError(400, "MalformedXML", "The XML you provided was not well-formed.")
            numbers = [n for n, _ in wanted]
            if numbers != sorted(set(numbers)):
                raise OssError(400, "InvalidPartOrder", "The list of parts was not in ascending "
                               "order. The parts list must be specified in order by part number.")
            chosen = []
            for number, etag in wanted:
                part = upload.parts.get(number)
                if part is None or etag.strip().strip('"').upper() != part.etag:
                    raise OssError(400, "InvalidPart", "One or more of the specified parts could "
                                   "not be found or the specified entity tag might not have "
                                   "matched the part's entity tag.", PartNumber=str(number),
                                   ETag=etag)
                chosen.append((number, part))
        if not chosen:
            raise OssError(400, "InvalidPart", "No parts were uploaded.")
        for number, part in chosen[:-1]:
            if len(part.data) < self.min_part_size:
                raise OssError(400, "EntityTooSmall", "Your proposed upload is smaller than the "
                               "minimum allowed size.", PartNumber=str(number),
                               MinSizeAllowed=str(self.min_part_size))
        self._check_overwrite(call, bucket)
        digest = hashlib.md5(b"".join(bytes.fromhex(p.etag) for _, p in chosen)).hexdigest()
        obj = StoredObject(
            b"".join(p.data for _, p in chosen), f"{digest.upper()}-{len(chosen)}", "Multipart",
            upload.content_type, upload.metadata, upload.headers,
        )
        bucket.objects[call.key] = obj
        del bucket.uploads[upload.upload_id]
        url = call.query.get("encoding-type") == "url"
        key = quote(call.key, safe="/") if url else call.key
        root = _tree("CompleteMultipartUploadResult", *([("EncodingType", "url")] if url else []),
                     ("Location", f"{self.endpoint}/{bucket.name}/{quote(call.key, safe='')}"),
                     ("Bucket", bucket.name), ("Key", key), ("ETag", f'"{obj.etag}"'))
        return self._xml(root, ETag=f'"{obj.etag}"', **{"x-oss-hash-crc64ecma": str(obj.crc)})

    def _list_uploads(self, call: _Call, bucket: _Bucket) -> Response:
        q = call.query
        url = q.get("encoding-type") == "url"
        enc = (lambda s: quote(s, safe="/")) if url else (lambda s: s)
        prefix, delimiter = q.get("prefix", ""), q.get("delimiter", "")
        key_marker, id_marker = q.get("key-marker", ""), q.get("upload-id-marker", "")
        limit = self._max(call, "max-uploads", 1000)
        root = _tree("ListMultipartUploadsResult", ("Bucket", bucket.name),
                     ("KeyMarker", enc(key_marker)), ("UploadIdMarker", id_marker))
        entries: list[tuple[str, str, _Upload | None]] = []  # (key, upload id, upload|prefix)
        truncated = False
        for upload in sorted(bucket.uploads.values(), key=lambda u: (u.key, u.upload_id)):
            key = upload.key
            if not key.startswith(prefix):
                continue
            if (key, upload.upload_id) <= (key_marker, id_marker if id_marker else "\uffff"):
                continue
            cut = key.find(delimiter, len(prefix)) if delimiter else -1
            if cut >= 0:
                common = key[: cut + len(delimiter)]
                if common <= key_marker or (entries and entries[-1][0] == common):
                    continue
                entry: tuple[str, str, _Upload | None] = (common, "", None)
            else:
                entry = (key, upload.upload_id, upload)
            if len(entries) == limit:
                truncated = True
                break
            entries.append(entry)
        last_key, last_id = (entries[-1][0], entries[-1][1]) if truncated else ("", "")
        _sub(root, "NextKeyMarker", enc(last_key))
        _sub(root, "NextUploadIdMarker", last_id)
        _sub(root, "Delimiter", enc(delimiter))
        _sub(root, "Prefix", enc(prefix))
        _sub(root, "MaxUploads", limit)
        _sub(root, "IsTruncated", str(truncated).lower())
        if url:
            _sub(root, "EncodingType", "url")
        for key, upload_id, upload in entries:
            if upload is None:
                _sub(_sub(root, "CommonPrefixes"), "Prefix", enc(key))
                continue
            node = _sub(root, "Upload")
            _sub(node, "Key", enc(key))
            _sub(node, "UploadId", upload_id)
            _sub(node, "StorageClass", "Standard")
            _sub(node, "Initiated", _iso(upload.initiated))
        return self._xml(root)

    def _list_parts(self, call: _Call, bucket: _Bucket) -> Response:
        upload = self._get_upload(call, bucket)
        marker = call.query.get("part-number-marker") or "0"
        if not marker.isdigit():
            raise OssError(400, "InvalidArgument", "part-number-marker must be an integer.")
        limit = self._max(call, "max-parts", 1000)
        numbers = [n for n in sorted(upload.parts) if n > int(marker)]
        page, truncated = numbers[:limit], len(numbers) > limit
        root = _tree("ListPartsResult", ("Bucket", bucket.name), ("Key", call.key),
                     ("UploadId", upload.upload_id), ("PartNumberMarker", int(marker)),
                     ("NextPartNumberMarker", page[-1] if page else 0), ("MaxParts", limit),
                     ("IsTruncated", str(truncated).lower()))
        for number in page:
            part = upload.parts[number]
            node = _sub(root, "Part")
            _sub(node, "PartNumber", number)
            _sub(node, "LastModified", _iso(part.last_modified))
            _sub(node, "ETag", f'"{part.etag}"')
            _sub(node, "HashCrc64ecma", part.crc)
            _sub(node, "Size", len(part.data))
        return self._xml(root)
