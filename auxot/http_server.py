"""The inbound HTTP server: hypercorn's protocol code on an accept loop of our own.

``hypercorn.trio.serve`` is close to what a router needs, but three things an
operator meets on a bad day are out of its reach, so this module owns the
listening sockets and the per-connection object and leaves the protocol
(h11, h2, WebSocket, ASGI) to hypercorn:

- **A client that stops reading.**  hypercorn shields every socket write, so
  nothing above it can cancel a write that never completes: a streaming client
  that stopped reading held its provider slot for ever.  Here every write has a
  progress deadline (``[server] send_timeout``); a write that moves no byte for
  that long closes the connection, the app sees ``http.disconnect`` and cancels
  the upstream work, and :meth:`Connections.stalled` tells it why.
- **Malformed chunked framing.**  A chunk-size line ended by a bare LF leaves
  h11 waiting for a CRLF that never comes: no answer, ever.  It is answered 400
  as soon as it is seen (RFC 9112 §7.1: every chunk line ends in CRLF).
- **Shutdown.**  The listening sockets are closed the moment shutdown begins,
  so new connections are refused instead of waiting in the backlog; requests in
  flight keep ``graceful_timeout``; idle keep-alive connections are closed.

hypercorn's internals used here (``TCPServer``, ``WorkerContext``) are pinned
by the version range in setup.cfg.
"""

from __future__ import annotations

import math
import os
import re
import time
from functools import partial
from typing import Any

import h11
import trio
from hypercorn.config import Config as HypercornConfig
from hypercorn.events import Closed, RawData
from hypercorn.trio.tcp_server import MAX_RECV, TCPServer
from hypercorn.trio.worker_context import WorkerContext
from hypercorn.typing import ConnectionState
from hypercorn.utils import repr_socket_addr, wrap_app

_BARE_LF = re.compile(rb"(?<!\r)\n")
# Appended to a connection whose chunk framing is already malformed: it can never
# parse as a chunk line, so h11 raises and hypercorn answers 400 and closes.
_POISON = b"\x00\r\n\r\n"
STALL_MEMORY = 300.0  # seconds a stalled client's address is remembered for the app to ask about


class Connections:
    """What the app may ask of the server about its clients' connections."""

    def __init__(self, send_timeout: float) -> None:
        self.send_timeout = send_timeout
        self._stalled: dict[tuple[Any, ...], float] = {}

    def note_stall(self, client: tuple[Any, ...] | None) -> None:
        now = time.monotonic()
        self._stalled = {c: t for c, t in self._stalled.items() if now - t < STALL_MEMORY}
        if client is not None:
            self._stalled[client] = now

    def stalled(self, client: Any) -> bool:
        """Did the connection from ``client`` (the ASGI scope's ``client``) close
        because a write to it made no progress for ``send_timeout`` seconds?
        Asked once: the answer is forgotten (the address may be used again)."""
        return self._stalled.pop(tuple(client or ()), None) is not None


TLS_PIECE = 16 * 1024  # bytes per TLS send: the progress deadline applies to each


class _Connection(TCPServer):
    """One client connection: hypercorn's, with a deadline on each write and a
    check of the chunk framing after each read."""

    def __init__(self, connections: Connections, *args: Any) -> None:
        super().__init__(*args)
        self._connections = connections

    def _peer(self) -> tuple[Any, ...] | None:
        stream = getattr(self.stream, "transport_stream", self.stream)
        try:
            return tuple(stream.socket.getpeername()[:2])
        except (OSError, AttributeError):
            return None

    def _write_now(self, data: bytes) -> int:
        """Write what a plain TCP socket takes at once, without waiting or a trip
        through trio's scheduler (its lock and its send take one each, per chunk
        of every stream): the bytes written, 0 when it would block (or is TLS, or
        closed, or failed: the waiting path then says how).  The relay still
        yields once per upstream read, so nothing is starved."""
        if self.send_lock.locked() or not isinstance(self.stream, trio.SocketStream):
            return 0  # another write is waiting: keep the order
        fd = self.stream.socket.fileno()  # -1 once closed: a reused descriptor number is never written
        if fd < 0:
            return 0
        try:
            return os.write(fd, data)
        except OSError:
            return 0

    async def protocol_send(self, event: Any) -> None:
        if not isinstance(event, RawData):
            await super().protocol_send(event)
            return
        if (sent := self._write_now(event.data)) == len(event.data):
            return
        if sent:
            event = RawData(event.data[sent:])
        async with self.send_lock:
            try:
                moved = await self._send_making_progress(event.data)
            except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
                await self.protocol.handle(Closed())
                return
            if not moved:
                self._connections.note_stall(self._peer())
                await trio.aclose_forcefully(self.stream)
                await self.protocol.handle(Closed())

    async def _send_making_progress(self, data: bytes) -> bool:
        """Send all of ``data``; False if a send moved no byte for ``send_timeout``
        (a slow reader that keeps taking bytes is waited for however long the whole
        takes).  Shielded as hypercorn does (a cancelled write would corrupt the
        stream); each scope's own deadline still applies inside the shield."""
        sock = self.stream.socket if isinstance(self.stream, trio.SocketStream) else None
        view = memoryview(data)
        while view:
            with trio.CancelScope(shield=True, deadline=trio.current_time() + self._connections.send_timeout) as scope:
                if sock is not None:
                    sent = await sock.send(view)  # what the socket takes, once it takes any
                else:  # TLS: a piece at a time
                    sent = min(len(view), TLS_PIECE)
                    await self.stream.send_all(view[:sent])
            if scope.cancelled_caught:
                return False
            view = view[sent:]
        return True

    async def _read_data(self) -> None:
        while True:
            data: bytes | bytearray = b""
            try:
                with trio.CancelScope(deadline=trio.current_time() + (self.config.read_timeout or math.inf)) as scope:
                    data = await self.stream.receive_some(MAX_RECV)
            except (trio.ClosedResourceError, trio.BrokenResourceError):
                break
            if scope.cancelled_caught:
                break
            await self.protocol.handle(RawData(bytes(data)))
            if data == b"":
                break
            if self._malformed_chunks():
                await self.protocol.handle(RawData(_POISON))
        await self.protocol.handle(Closed())

    def _malformed_chunks(self) -> bool:
        """A chunked request body whose unparsed rest holds a line ended by a
        bare LF.  While h11 reads a body, what it leaves unparsed is only ever an
        incomplete chunk-size line or trailer (data is handed on as it comes),
        so a bare LF there can only be broken framing."""
        conn = getattr(getattr(self.protocol, "protocol", None), "connection", None)
        if not isinstance(conn, h11.Connection) or conn.their_state is not h11.SEND_BODY:
            return False
        pending, _ = conn.trailing_data
        return bool(_BARE_LF.search(pending))


async def serve_http(
    app: Any, config: HypercornConfig, connections: Connections, shutdown: trio.Event, *,
    task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve ``app`` until ``shutdown`` is set, then refuse new connections at
    once and give those in flight ``config.graceful_timeout`` seconds.  Reports
    the bound addresses (``http://127.0.0.1:PORT``) once listening."""
    sockets = config.create_sockets()
    listeners: list[trio.abc.Listener[Any]] = []
    binds = []
    for sock in sockets.secure_sockets:
        sock.listen(config.backlog)
        tls = config.create_ssl_context()
        assert tls is not None  # hypercorn makes secure sockets only when it has a certificate
        listeners.append(trio.SSLListener(trio.SocketListener(trio.socket.from_stdlib_socket(sock)), tls, https_compatible=True))
        binds.append("https://" + repr_socket_addr(sock.family, sock.getsockname()))
    for sock in sockets.insecure_sockets:
        sock.listen(config.backlog)
        listeners.append(trio.SocketListener(trio.socket.from_stdlib_socket(sock)))
        binds.append("http://" + repr_socket_addr(sock.family, sock.getsockname()))
    context = WorkerContext(None)
    handler = partial(_Connection, connections, wrap_app(app, config.wsgi_max_body_size, "asgi"), config, context,
                      ConnectionState({}))
    async with trio.open_nursery() as clients:
        async with trio.open_nursery() as accepting:
            for listener in listeners:
                accepting.start_soon(partial(trio.serve_listeners, handler, [listener], handler_nursery=clients))
            task_status.started(binds)
            await shutdown.wait()
            accepting.cancel_scope.cancel()
        with trio.CancelScope(shield=True):
            for listener in listeners:
                await listener.aclose()  # refused from now on, not left in the backlog
        await context.terminated.set()  # idle keep-alive connections close; busy ones are not recycled
        clients.cancel_scope.deadline = trio.current_time() + config.graceful_timeout
