"""The server ceiling: an almost empty ASGI app on auxot's own server
(``auxot.http_server.serve_http``, HTTP/1.1 on h11) with the settings
``auxot serve`` uses (``--server hypercorn``: on ``hypercorn.trio.serve``, the
server auxot used before), run as its own process (``python -m tests.bench.ceiling``;
it prints its base URL when it listens).

It reads the request body and answers the same fixed JSON the upstream does;
``POST /hold...`` instead streams the hold fixture, one chunk every
``hold_seconds / hold_chunks`` (the open-streams scenario's ceiling).  What it
costs is what the server and trio cost per request, nothing of auxot's.

With ``--upstream URL`` it is the *floor* instead: the same app, but each
non-streamed answer is fetched from ``URL/v1/chat/completions`` (nginx's fixed
JSON) through auxot's own HTTP client (``auxot.http.Pool``, over a trio
socket, keep-alive) and passed back untouched.  No parsing, no auth, no
ledger: what any router built on this server, trio and this client must pay at least.
"""

from __future__ import annotations

import argparse
import logging
from typing import Any

import trio
from hypercorn.config import Config as HypercornConfig
from hypercorn.trio import serve

from auxot.asgi import SSE_HEADERS, Receive, Scope, Send
from auxot.http import Pool
from auxot.http_server import Connections, serve_http

from . import fixtures

BODY = fixtures.CHAT_JSON.encode()
HEADERS = [(b"content-type", b"application/json"), (b"content-length", str(len(BODY)).encode())]


def hypercorn_config() -> HypercornConfig:
    """The settings of auxot.server.serve (keep in step with it), bound to a free port."""
    hc = HypercornConfig()
    hc.bind = ["127.0.0.1:0"]
    hc.graceful_timeout = 10.0
    hc.accesslog = None
    hc.keep_alive_timeout = 75
    hc.errorlog = logging.getLogger("hypercorn.error")
    return hc


def make_app(hold_seconds: float, hold_chunks: int, upstream: str | None = None) -> Any:
    pool = Pool(upstream, max_connections=4096) if upstream else None
    pieces = [p.encode() + b"\n\n" for p in fixtures.sse_tokens(fixtures.token_texts(hold_chunks)).split("\n\n") if p]

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                await send({"type": message["type"] + ".complete"})
                if message["type"] == "lifespan.shutdown":
                    return
        if scope["type"] != "http":
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        if not scope["path"].startswith("/hold"):
            status, headers, answer = 200, HEADERS, BODY
            if pool is not None:  # the floor: the same answer, fetched through one upstream hop
                content_type = ("Content-Type", "application/json")
                async with pool.request("POST", "/v1/chat/completions", headers=[content_type], body=body) as response:
                    answer = await response.read()
                status = response.status
                headers = [(b"content-type", b"application/json"), (b"content-length", str(len(answer)).encode())]
            await send({"type": "http.response.start", "status": status, "headers": headers})
            await send({"type": "http.response.body", "body": answer})
            return
        await send({"type": "http.response.start", "status": 200, "headers": SSE_HEADERS})
        for piece in pieces:
            await send({"type": "http.response.body", "body": piece, "more_body": True})
            await trio.sleep(hold_seconds / len(pieces))
        await send({"type": "http.response.body", "body": b""})

    return app


async def main(hold_seconds: float, hold_chunks: int, upstream: str | None, server: str) -> None:
    app = make_app(hold_seconds, hold_chunks, upstream)
    async with trio.open_nursery() as nursery:
        if server == "hypercorn":
            binds = await nursery.start(serve, app, hypercorn_config())
        else:
            binds = await nursery.start(serve_http, app, hypercorn_config(), Connections(30.0), trio.Event())
        print(binds[0], flush=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m tests.bench.ceiling")
    parser.add_argument("--hold-seconds", type=float, default=30.0)
    parser.add_argument("--hold-chunks", type=int, default=60)
    parser.add_argument("--upstream", help="the floor: fetch each answer from this base URL through auxot.http.Pool")
    parser.add_argument("--server", choices=("auxot", "hypercorn"), default="auxot",
                        help="auxot's own server (auxot.http_server, as auxot serve runs it), or hypercorn.trio.serve")
    args = parser.parse_args()
    try:
        trio.run(main, args.hold_seconds, args.hold_chunks, args.upstream, args.server)
    except KeyboardInterrupt:
        pass
