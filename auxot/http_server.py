"""The inbound HTTP server: an accept loop of our own, HTTP/1.1 of our own
(``http11``), and hypercorn's protocol code for HTTP/2 and upgrades.

``hypercorn.trio.serve`` is close to what a router needs, but what an operator
meets on a bad day, and what every request costs, are out of its reach, so
this module owns the listening sockets and each connection:

- **HTTP/1.1**, every plain request, is served by ``http11``: the app runs in
  the connection's own task (hypercorn spawns a task per request and another
  for its keep-alive timer; the bench measured ~650 µs of CPU per request for
  an empty app, where trio and h11 alone cost ~140 µs, and ``http11`` without
  h11 ~100 µs).  A TLS connection that
  chose h2, and a request that asks to upgrade (WebSocket, h2c), go to
  hypercorn's ``TCPServer`` instead.
- **A client that stops reading.**  hypercorn shields every socket write, so
  nothing above it can cancel a write that never completes.  Here every send
  has a progress deadline (``[server] send_timeout``, ``http_socket``); one
  that moves no byte for that long closes the connection, the app sees
  ``http.disconnect`` and cancels the upstream work, and
  :meth:`Connections.stalled` tells it why.
- **A burst of new connections** is accepted at once: every connection waiting
  in the backlog is taken when the listening socket says one is (up to
  :data:`ACCEPT_BURST` a pass).  trio's ``serve_listeners`` accepts one per
  scheduler pass, so with 64 clients busy each pass took ~10-40 ms and the
  64th of a burst of new clients waited ~64 of them for its first byte (the
  bench's c=64 p99 was those first requests: 440-700 ms where no request took
  over 100 ms in the server).
- **Shutdown.**  The listening sockets are closed the moment shutdown begins,
  so new connections are refused instead of waiting in the backlog; requests in
  flight keep ``graceful_timeout``; idle keep-alive connections are closed.

hypercorn's internals used here (``TCPServer``, ``WorkerContext``) are pinned
by the version range in setup.cfg.
"""

from __future__ import annotations

import errno
import logging
import os
import re
import socket
from functools import partial
from typing import Any

import h11
import trio
from hypercorn.config import Config as HypercornConfig
from hypercorn.events import Closed, RawData
from hypercorn.trio.tcp_server import TCPServer
from hypercorn.trio.worker_context import WorkerContext
from hypercorn.typing import ConnectionState
from hypercorn.utils import parse_socket_addr, repr_socket_addr, wrap_app

from .http11 import Http11
from .http_socket import Connections, Departures, IdleDeadline, SocketWriter

__all__ = ["Connections", "serve_http"]

log = logging.getLogger("auxot.http")

_BARE_LF = re.compile(rb"(?<!\r)\n")
# Fed to hypercorn's h11 connection once its chunk framing is malformed: it can
# never parse as a chunk line, so h11 raises and the request is answered 400.
POISON = b"\x00\r\n\r\n"

ACCEPT_BURST = 256  # connections accepted in one pass of the scheduler, at most
# accept(2) errors that say the machine is out of something: logged, and accepting pauses (as trio does)
_CAPACITY = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOMEM, errno.ENOBUFS})
_CAPACITY_PAUSE = 0.1
# accept(2) errors that concern one connection, not the listener (as trio's SocketListener)
_ONE_CONNECTION = frozenset(getattr(errno, name) for name in (
    "ECONNABORTED", "EPROTO", "ENETDOWN", "ENOPROTOOPT", "EHOSTDOWN", "ENONET", "EHOSTUNREACH", "EOPNOTSUPP", "ENETUNREACH",
    "EPERM") if hasattr(errno, name))  # (ENONET is Linux's)


class _Connection(TCPServer):
    """A connection for hypercorn's protocol code (HTTP/2, WebSocket, h2c): its
    writes and keep-alive deadline are the same as HTTP/1.1's (``http_socket``),
    and it may start with bytes already read (a request that asked to upgrade)."""

    def __init__(self, connections: Connections, first: bytes, *args: Any) -> None:
        super().__init__(*args)
        self._first = first
        self._writer = SocketWriter(self.stream, connections)
        self.idle_task = self._idle = IdleDeadline(connections, self.config.keep_alive_timeout)  # type: ignore[assignment]

    async def _close(self) -> None:
        self._idle.close()
        await super()._close()

    async def protocol_send(self, event: Any) -> None:
        if not isinstance(event, RawData):
            await super().protocol_send(event)
        elif not await self._writer.write(event.data):
            await self.protocol.handle(Closed())

    async def _read_data(self) -> None:
        if self._first:
            await self.protocol.handle(RawData(self._first))
        while (data := await self._idle.read(self.stream, self.config.read_timeout)) is not None:
            await self.protocol.handle(RawData(data))
            if data == b"":
                break
            conn = getattr(getattr(self.protocol, "protocol", None), "connection", None)
            if isinstance(conn, h11.Connection) and malformed_chunks(conn):
                await self.protocol.handle(RawData(POISON))  # hypercorn answers 400 and closes
        await self.protocol.handle(Closed())


async def serve_http(
    app: Any, config: HypercornConfig, connections: Connections, shutdown: trio.Event, *,
    task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve ``app`` until ``shutdown`` is set, then refuse new connections at
    once and give those in flight ``config.graceful_timeout`` seconds.  Reports
    the bound addresses (``http://127.0.0.1:PORT``) once listening."""
    sockets = config.create_sockets()
    listening: list[tuple[socket.socket, Any]] = []  # (socket, TLS context or None)
    binds = []
    for sock in sockets.secure_sockets:
        tls = config.create_ssl_context()
        assert tls is not None  # hypercorn makes secure sockets only when it has a certificate
        listening.append((sock, tls))
        binds.append("https://" + repr_socket_addr(sock.family, sock.getsockname()))
    for sock in sockets.insecure_sockets:
        listening.append((sock, None))
        binds.append("http://" + repr_socket_addr(sock.family, sock.getsockname()))
    for sock, _ in listening:
        sock.setblocking(False)
        sock.listen(config.backlog)
    context = WorkerContext(None)
    departures = Departures() if Departures.available() else None
    hypercorn = partial(_Connection, connections)
    wrapped = wrap_app(app, config.wsgi_max_body_size, "asgi")

    async def handler(stream: Any) -> None:
        handed_on = False
        try:
            first = await _http11(app, stream, connections, config, departures)
            if first is not None:  # HTTP/2 or an upgrade: hypercorn's (which closes it)
                handed_on = True
                await hypercorn(first, wrapped, config, context, ConnectionState({}), stream)
        except Exception:  # a bug here must cost one connection, never the server
            log.exception("the connection failed")
        finally:
            if not handed_on:
                with trio.CancelScope(shield=True):
                    await _close(stream)

    async with trio.open_nursery() as watching:
        if departures is not None:
            watching.start_soon(departures.run)
        async with trio.open_nursery() as clients:
            async with trio.open_nursery() as accepting:
                for sock, tls in listening:
                    accepting.start_soon(_accept, sock, tls, handler, clients)
                task_status.started(binds)
                await shutdown.wait()
                accepting.cancel_scope.cancel()
            for sock, _ in listening:
                sock.close()  # refused from now on, not left in the backlog (no task waits on it: cancelled above)
            await context.terminated.set()  # busy keep-alive connections are not recycled
            connections.close_idle()  # idle ones close
            clients.cancel_scope.deadline = trio.current_time() + config.graceful_timeout
        watching.cancel_scope.cancel()


def malformed_chunks(conn: h11.Connection) -> bool:
    """A chunked body whose unparsed rest holds a line ended by a bare LF.
    While h11 reads a body, what it leaves unparsed is only ever an incomplete
    chunk-size line or trailer (data is handed on as it comes), so a bare LF
    there can only be broken framing (not yet refused: no POISON after it);
    h11 would wait for a CRLF that never comes."""
    if conn.their_state is not h11.SEND_BODY:
        return False
    pending, _ = conn.trailing_data
    return bool(_BARE_LF.search(pending)) and not pending.endswith(POISON)


async def _accept(sock: socket.socket, tls: Any, handler: Any, clients: trio.Nursery) -> None:
    """Start ``handler`` for each connection on ``sock``: all those waiting
    when it becomes readable (``ACCEPT_BURST`` at most), then wait again."""
    while True:
        await trio.lowlevel.wait_readable(sock)
        for _ in range(ACCEPT_BURST):
            try:
                conn, _ = sock.accept()
            except BlockingIOError:
                break
            except OSError as exc:
                if exc.errno in _ONE_CONNECTION:
                    continue
                if exc.errno not in _CAPACITY:
                    raise
                log.error("accept returned %s (%s); retrying in %s s", errno.errorcode[exc.errno], os.strerror(exc.errno),
                          _CAPACITY_PAUSE)
                await trio.sleep(_CAPACITY_PAUSE)
                break
            stream: Any = trio.SocketStream(trio.socket.from_stdlib_socket(conn))
            if tls is not None:
                stream = trio.SSLStream(stream, tls, server_side=True, https_compatible=True)
            clients.start_soon(handler, stream)


async def _http11(app: Any, stream: Any, connections: Connections, config: HypercornConfig,
                  departures: Departures | None) -> bytes | None:
    """Serve a connection's HTTP/1.1 requests; the bytes read so far when it is
    to be handed to hypercorn (b"" for a TLS connection that chose h2)."""
    if isinstance(stream, trio.SSLStream):
        with trio.move_on_after(config.ssl_handshake_timeout) as handshake:
            try:
                await stream.do_handshake()
            except trio.BrokenResourceError:
                return None
        if handshake.cancelled_caught:
            return None
        if stream.selected_alpn_protocol() == "h2":
            return b""
        sock, scheme = stream.transport_stream.socket, "https"
    else:
        sock, scheme = stream.socket, "http"
    try:
        client, server = parse_socket_addr(sock.family, sock.getpeername()), parse_socket_addr(sock.family, sock.getsockname())
    except OSError:  # gone already
        return None
    return await Http11(app, stream, connections, config, scheme=scheme, client=client, server=server,
                        departures=departures, fd=sock.fileno()).run()


async def _close(stream: Any) -> None:
    try:
        await stream.send_eof()
    except (trio.BrokenResourceError, trio.BusyResourceError, trio.ClosedResourceError, AttributeError):
        pass  # gone already, or TLS (which has no half-close)
    await stream.aclose()
