"""New connections that arrive together are accepted together.

trio's ``serve_listeners`` takes one connection from the backlog per pass of
the scheduler; under load a pass took 10-40 ms, and the last of 64 clients
that connected at once waited ~64 passes for its first answer (the bench's
c=64 p99: 440-700 ms, where no request spent over 100 ms in the server).
``http_server._accept`` takes every waiting connection when the listening
socket is readable.  The fake this rejects: an accept loop that takes one
connection per pass (trio's), which needs at least ``CLIENTS`` passes here."""

from __future__ import annotations

import socket
from functools import partial
from typing import Any

import trio
from hypercorn.config import Config as HypercornConfig

from auxot.http_server import Connections, serve_http

CLIENTS = 48


async def _app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "http":
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})
        await send({"type": "http.response.body", "body": b"ok"})


def _answered(sock: socket.socket) -> bool:
    try:
        return sock.recv(64, socket.MSG_PEEK | socket.MSG_DONTWAIT).startswith(b"HTTP/1.1 200")
    except BlockingIOError:
        return False


async def test_a_burst_of_new_connections_is_served_in_a_few_passes_not_one_pass_each() -> None:
    hc = HypercornConfig()
    hc.bind = ["127.0.0.1:0"]
    shutdown = trio.Event()
    async with trio.open_nursery() as nursery:
        (url,) = await nursery.start(partial(serve_http, _app, hc, Connections(5.0), shutdown))
        port = int(url.rsplit(":", 1)[1])
        # Blocking connects and sends, with no checkpoint between them: the
        # kernel completes each handshake into the backlog; the server has not run.
        clients = [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(CLIENTS)]
        try:
            for sock in clients:
                sock.settimeout(None)  # blocking: MSG_DONTWAIT below then never waits
                sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            passes = 0
            with trio.fail_after(10):
                while not all(_answered(sock) for sock in clients):
                    await trio.lowlevel.checkpoint()
                    passes += 1
            assert passes < CLIENTS // 3, passes  # 4 here; one connection a pass took 52
        finally:
            for sock in clients:
                sock.close()
        shutdown.set()
