"""A recording HTTP proxy on a loopback socket: forwards every request to a real
upstream, streams the answer back as it comes, and keeps the request bodies, so
a test can see exactly what a CLI sent its upstream.  Threads and the standard
library only (the tests that use it are synchronous)."""

from __future__ import annotations

import http.client
import http.server
import json
import threading
from typing import Any
from urllib.parse import urlsplit


class RecordingProxy:
    def __init__(self, upstream: str) -> None:
        self.upstream = urlsplit(upstream)
        self.requests: list[tuple[str, Any]] = []  # (path, JSON body or None)
        self.methods: list[str] = []  # each request's method, in order
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def forward(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length") or 0))
                proxy.methods.append(self.command)
                try:
                    proxy.requests.append((self.path, json.loads(body) if body else None))
                except ValueError:
                    proxy.requests.append((self.path, body))
                conn = http.client.HTTPConnection(proxy.upstream.hostname, proxy.upstream.port, timeout=300)
                headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "connection", "accept-encoding")}
                conn.request(self.command, self.path, body=body or None, headers=headers)
                resp = conn.getresponse()
                self.send_response(resp.status)
                for key, value in resp.getheaders():
                    if key.lower() not in ("transfer-encoding", "content-length", "connection"):
                        self.send_header(key, value)
                self.send_header("Connection", "close")  # the body ends when the connection does
                self.end_headers()
                while chunk := resp.read1(65536):
                    self.wfile.write(chunk)
                    self.wfile.flush()
                conn.close()
                self.close_connection = True

            do_GET = do_POST = do_HEAD = do_DELETE = forward

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> RecordingProxy:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
