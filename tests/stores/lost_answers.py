"""A forwarding HTTP proxy that loses the answer of every multipart Complete: the request
reaches the store (which completes the upload) and the client sees the connection close."""

from __future__ import annotations

import contextlib
import http.client
import socket
import threading
import urllib.parse
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar


class _DropComplete(BaseHTTPRequestHandler):
    upstream: ClassVar[str] = ""
    dropped: ClassVar[list[str]] = []

    def log_message(self, *args: Any) -> None:
        pass

    def _forward(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else None
        up = urllib.parse.urlsplit(self.upstream)
        conn = http.client.HTTPConnection(up.hostname, up.port, timeout=60)
        headers = {k: v for k, v in self.headers.items() if k.lower() != "host"}
        headers["Host"] = up.netloc
        conn.request(self.command, self.path, body=body, headers=headers)
        resp = conn.getresponse()
        data = resp.read()
        conn.close()
        query = urllib.parse.parse_qs(urllib.parse.urlsplit(self.path).query)
        if self.command == "POST" and "uploadId" in query:  # CompleteMultipartUpload
            self.dropped.append(self.path)
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        self.send_response(resp.status)
        for k, v in resp.getheaders():
            if k.lower() not in ("transfer-encoding", "connection"):
                self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    do_GET = do_PUT = do_POST = do_HEAD = do_DELETE = _forward


@contextlib.contextmanager
def drop_complete_answers(upstream: str) -> Iterator[str]:
    """The URL of a proxy to ``upstream`` that drops every Complete answer (127.0.0.1)."""
    handler = type("Handler", (_DropComplete,), {"upstream": upstream, "dropped": []})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
