"""A small fault-injecting HTTP proxy for S3 tests (127.0.0.1, one thread per connection).

It stands between s3fs and the moto server and relays every request, except those a test
plans a fault for, by *request type* (see :func:`kind`):

* ``"500"`` / ``"503"``: an S3 error response (``InternalError`` / ``SlowDown``), the request
  is not forwarded;
* ``"reset"``: the connection is reset (RST) before the request is forwarded;
* ``"reset-after"``: the request is forwarded and processed, then the connection is reset
  instead of answering (a response lost on the way back);
* ``"truncate"``: the response is sent with its full ``Content-Length`` but only half of its
  body, then the connection is closed;
* ``"short"``: the response body is cut (at an odd offset) *and* ``Content-Length`` says so,
  with no checksum header: a well-formed short answer;
* ``"delay:S"``: the response is sent after ``S`` seconds;
* ``"trickle:S"``: the response body is sent in 4 KiB pieces, ``S`` seconds apart (a store
  too slow to finish, never slow enough for a socket timeout).

Counters: ``seen[kind]`` requests relayed or faulted, ``injected[(kind, fault)]`` faults.
"""

from __future__ import annotations

import http.client
import socket
import struct
import threading
import time
import urllib.parse
from collections import Counter, deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

KINDS = (
    "head",
    "get",
    "get-range",
    "list",
    "put",
    "copy",
    "create-mpu",
    "upload-part",
    "upload-part-copy",
    "complete-mpu",
    "abort-mpu",
    "delete",
    "other",
)

_HOP = {"connection", "keep-alive", "transfer-encoding", "expect", "proxy-connection"}


def kind(method: str, target: str, headers: Any) -> str:
    """The S3 request type of one HTTP request."""
    query = urllib.parse.parse_qs(urllib.parse.urlsplit(target).query, keep_blank_values=True)
    copy = "x-amz-copy-source" in {k.lower() for k in headers}
    if method == "HEAD":
        return "head"
    if method == "GET":
        if "list-type" in query or "uploads" in query or "prefix" in query:
            return "list"
        return "get-range" if headers.get("Range") else "get"
    if method == "PUT":
        if "partNumber" in query:
            return "upload-part-copy" if copy else "upload-part"
        return "copy" if copy else "put"
    if method == "POST":
        if "uploads" in query:
            return "create-mpu"
        if "uploadId" in query:
            return "complete-mpu"
    if method == "DELETE":
        return "abort-mpu" if "uploadId" in query else "delete"
    return "other"


class FaultProxy:
    """``FaultProxy(upstream_url).start()``; ``url`` is the endpoint to give s3fs."""

    def __init__(self, upstream: str) -> None:
        parts = urllib.parse.urlsplit(upstream)
        self.upstream = (parts.hostname or "127.0.0.1", parts.port or 80)
        self.lock = threading.Lock()
        self.plans: dict[str, deque[tuple[str, int | None, int]]] = {}
        self.seen: Counter[str] = Counter()
        self.injected: Counter[tuple[str, str]] = Counter()
        proxy = self

        class Handler(_Relay):
            owner = proxy

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> FaultProxy:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    # -- plans -------------------------------------------------------------------------------
    def plan(self, kind: str, fault: str, times: int | None = 1, after: int = 0) -> None:
        """Fault ``times`` requests of ``kind`` (None: every one) after letting ``after`` pass."""
        assert kind in KINDS, kind
        with self.lock:
            self.plans.setdefault(kind, deque()).append((fault, times, after))

    def clear(self) -> None:
        with self.lock:
            self.plans.clear()

    def take(self, kind: str) -> str | None:
        """The fault for the next request of ``kind`` (and count it), or None."""
        with self.lock:
            self.seen[kind] += 1
            queue = self.plans.get(kind)
            if not queue:
                return None
            fault, times, after = queue[0]
            if after > 0:
                queue[0] = (fault, times, after - 1)
                return None
            if times is not None:
                if times <= 1:
                    queue.popleft()
                else:
                    queue[0] = (fault, times - 1, 0)
            self.injected[(kind, fault)] += 1
            return fault


class _Relay(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    owner: FaultProxy

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    def do_GET(self) -> None:
        self.relay()

    do_HEAD = do_PUT = do_POST = do_DELETE = do_GET

    # -- plumbing ----------------------------------------------------------------------------
    def _body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            out = bytearray()
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return bytes(out)
                out += self.rfile.read(size)
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _reset(self) -> None:
        try:
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.connection.close()
        except OSError:
            pass
        self.close_connection = True
        self.wfile = _Sink()  # nothing more reaches the client

    def _error(self, status: int) -> None:
        code = {500: "InternalError", 503: "SlowDown"}[status]
        body = (
            '<?xml version="1.0" encoding="UTF-8"?>'
            f"<Error><Code>{code}</Code><Message>injected fault</Message>"
            "<RequestId>fault-proxy</RequestId></Error>"
        ).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/xml")
        self.send_header("Content-Length", str(0 if self.command == "HEAD" else len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _forward(self, body: bytes) -> tuple[int, list[tuple[str, str]], bytes]:
        conn = http.client.HTTPConnection(*self.owner.upstream, timeout=60)
        try:
            conn.putrequest(self.command, self.path, skip_host=True, skip_accept_encoding=True)
            for name, value in self.headers.items():
                if name.lower() not in _HOP and name.lower() != "content-length":
                    conn.putheader(name, value)
            if body or self.command in ("PUT", "POST"):
                conn.putheader("Content-Length", str(len(body)))
            conn.endheaders(body or None)
            resp = conn.getresponse()
            data = resp.read()
            return resp.status, list(resp.getheaders()), data
        finally:
            conn.close()

    def relay(self) -> None:
        body = self._body()
        fault = self.owner.take(kind(self.command, self.path, self.headers))
        if fault in ("500", "503"):
            self._error(int(fault))
            return
        if fault == "reset":
            self._reset()
            return
        status, headers, data = self._forward(body)
        if fault == "reset-after":
            self._reset()
            return
        if fault and fault.startswith("delay:"):
            time.sleep(float(fault.split(":", 1)[1]))
        send = data
        length = len(data)
        if fault == "truncate" and data:
            send = data[: len(data) // 2]
        elif fault == "short" and len(data) > 1:
            send = data[: len(data) // 2 + 7] if len(data) > 20 else data[:-1]
            length = len(send)
        if fault == "short":  # a well-formed short answer carries no checksum to catch it
            headers = [(k, v) for k, v in headers if not k.lower().startswith("x-amz-checksum")]
        self.send_response(status)
        for name, value in headers:
            if name.lower() not in _HOP and name.lower() != "content-length":
                self.send_header(name, value)
        if self.command == "HEAD":
            self.send_header(
                "Content-Length",
                dict((k.lower(), v) for k, v in headers).get("content-length", "0"),
            )
        else:
            self.send_header("Content-Length", str(length))
        self.end_headers()
        if self.command != "HEAD" and fault and fault.startswith("trickle:"):
            pause = float(fault.split(":", 1)[1])
            for pos in range(0, len(send), 4096):  # every socket read gets bytes in time
                self.wfile.write(send[pos : pos + 4096])
                self.wfile.flush()
                time.sleep(pause)
        elif self.command != "HEAD":
            self.wfile.write(send)
        if fault == "truncate":
            self.wfile.flush()
            self._reset()


class _Sink:
    closed = False

    def write(self, data: bytes) -> int:
        return len(data)

    def flush(self) -> None:
        pass

    def close(self) -> None:
        pass
