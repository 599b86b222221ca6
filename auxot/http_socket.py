"""A client connection's socket as both inbound protocols use it (HTTP/1.1 in
``http11``, hypercorn's HTTP/2 and WebSocket in ``http_server``): its
writes, its keep-alive deadline, and what the app may ask about it.

- **Writes** go out at once when the socket takes them: no lock and no trip
  through trio's scheduler, which for a stream is once per chunk.  A write
  that would block waits, and every send that moves no byte for
  ``[server] send_timeout`` closes the connection: a client that stopped
  reading cannot hold its provider slot for ever (:meth:`Connections.stalled`
  tells the app why it saw ``http.disconnect``).  A slow reader that keeps
  taking bytes is waited for however long the whole takes.
- **Keep-alive** is a deadline on the connection's read, set when it goes
  idle and cleared when a request comes: no timer task per request.  On
  shutdown, idle connections close at once (:meth:`Connections.close_idle`).
"""

from __future__ import annotations

import logging
import math
import os
import select
import time
from typing import Any, Callable

import trio

log = logging.getLogger("auxot.http")

STALL_MEMORY = 300.0  # seconds a stalled client's address is remembered for the app to ask about
TLS_PIECE = 16 * 1024  # bytes per TLS send: the progress deadline applies to each
MAX_RECV = 2**16


class Connections:
    """What the app may ask of the server about its clients' connections, and
    the connections waiting for their next request."""

    def __init__(self, send_timeout: float) -> None:
        self.send_timeout = send_timeout
        self._stalled: dict[tuple[Any, ...], float] = {}
        self.idle: set[IdleDeadline] = set()
        self.closing = False  # shutdown has begun: no connection is kept for another request

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

    def close_idle(self) -> None:
        """Shutdown: close the connections waiting for a next request, and any
        that go idle from now on."""
        self.closing = True
        for idle in list(self.idle):
            idle.close()


class IdleDeadline:
    """The keep-alive deadline of one connection, applied to its read.

    Also the stand-in for hypercorn's keep-alive timer (its ``TrioSingleTask``:
    ``restart`` and ``stop``), which spawns a task (``nursery.start``, under a
    lock) every time a connection goes idle and cancels it at the next request."""

    def __init__(self, connections: Connections, keep_alive: float) -> None:
        self._connections = connections
        self._keep_alive = keep_alive
        self.deadline = math.inf  # when the read gives up on an idle connection
        self.read_scope: trio.CancelScope | None = None  # the read in progress
        self.read_until = math.inf  # its own deadline ([server] read_timeout)

    def _set(self, deadline: float) -> None:
        self.deadline = deadline
        if self.read_scope is not None:
            self.read_scope.deadline = min(self.read_until, deadline)

    def idle(self) -> None:
        """The connection waits for a request (the answer is out, or it has just opened)."""
        self._connections.idle.add(self)
        self._set(-math.inf if self._connections.closing else trio.current_time() + self._keep_alive)

    def busy(self) -> None:
        """A request came: no keep-alive deadline while it is answered."""
        self._connections.idle.discard(self)
        self._set(math.inf)

    def close(self) -> None:
        self._connections.idle.discard(self)
        self._set(-math.inf)

    async def restart(self, task_group: object, action: object) -> None:  # TrioSingleTask's signature
        self.idle()

    async def stop(self) -> None:
        self.busy()

    async def read(self, stream: trio.abc.ReceiveStream, read_timeout: float | None) -> bytes | None:
        """What the peer sent next (b"" at its end), or None when the read timed
        out, the keep-alive deadline passed, or the connection broke."""
        self.read_until = trio.current_time() + (read_timeout or math.inf)
        data: bytes | bytearray = b""
        try:
            with trio.CancelScope(deadline=min(self.read_until, self.deadline)) as scope:
                self.read_scope = scope
                data = await stream.receive_some(MAX_RECV)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            return None
        finally:
            self.read_scope = None
        return None if scope.cancelled_caught else bytes(data)


class SocketWriter:
    """Writes to one client connection, in order, each send under the progress deadline."""

    def __init__(self, stream: trio.abc.Stream, connections: Connections) -> None:
        self.stream = stream
        self._connections = connections
        self._lock = trio.Lock()

    def _write_now(self, data: bytes) -> int:
        """Write what a plain TCP socket takes at once, without waiting: the bytes
        written, 0 when it would block (or is TLS, or closed, or failed: the
        waiting path then says how)."""
        if self._lock.locked() or not isinstance(self.stream, trio.SocketStream):
            return 0  # another write is waiting: keep the order
        fd = self.stream.socket.fileno()  # -1 once closed: a reused descriptor number is never written
        if fd < 0:
            return 0
        try:
            return os.write(fd, data)
        except OSError:
            return 0

    async def write(self, data: bytes) -> bool:
        """True once all of ``data`` is written; False if the client is gone, or
        stalled (then the connection is closed and the stall noted)."""
        if (sent := self._write_now(data)) == len(data):
            return True
        async with self._lock:
            try:
                moved = await self._send_making_progress(data[sent:])
            except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
                return False
            if not moved:
                self._connections.note_stall(self.peer())
                await trio.aclose_forcefully(self.stream)
            return moved

    async def _send_making_progress(self, data: bytes) -> bool:
        """Send all of ``data``; False if a send moved no byte for ``send_timeout``.
        Shielded (a cancelled write would corrupt the stream); each scope's own
        deadline still applies inside the shield."""
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

    def peer(self) -> tuple[Any, ...] | None:
        stream: Any = getattr(self.stream, "transport_stream", self.stream)
        try:
            return tuple(stream.socket.getpeername()[:2])
        except (OSError, AttributeError):
            return None


Callback = Callable[[], None]


class Departures:
    """One task for the whole server that learns when clients leave.

    While a request is answered, the app wants to know if its client goes (to
    cancel the upstream work and free the provider's slot).  The portable way is
    a task per request reading the socket until EOF; spawning it, and its
    nursery, cost ~100 µs per request on the bench's machine.  Here the sockets
    of requests being answered sit in an epoll set of their own that waits only
    for the peer's hang-up (``EPOLLRDHUP``; a reset is ``EPOLLHUP``/``EPOLLERR``,
    always reported), and one task waits on that set: a request costs two
    ``epoll_ctl`` calls.  Data the client sends meanwhile (a next request) does
    not wake it.  Linux only: elsewhere :func:`Departures.available` is False
    and the app falls back to reading its ``receive``."""

    def __init__(self) -> None:
        self._epoll = select.epoll()
        self._callbacks: dict[int, Callback] = {}

    @staticmethod
    def available() -> bool:
        return hasattr(select, "epoll") and hasattr(select, "EPOLLRDHUP")

    def add(self, fd: int, callback: Callback) -> bool:
        """Call ``callback`` (once, from the watch task) when the peer of ``fd`` hangs up."""
        try:
            self._epoll.register(fd, select.EPOLLRDHUP)
        except (OSError, ValueError):
            return False
        self._callbacks[fd] = callback
        return True

    def discard(self, fd: int, callback: Callback) -> None:
        """Stop watching ``fd`` for ``callback`` (not for another connection that
        has since been given the same descriptor number)."""
        if self._callbacks.get(fd) is callback:
            del self._callbacks[fd]
            try:
                self._epoll.unregister(fd)
            except (OSError, ValueError):  # closed already: the kernel dropped it
                pass

    async def run(self) -> None:
        try:
            while True:
                await trio.lowlevel.wait_readable(self._epoll.fileno())
                for fd, _ in self._epoll.poll(0):
                    callback = self._callbacks.pop(fd, None)
                    try:
                        self._epoll.unregister(fd)
                    except (OSError, ValueError):
                        pass
                    if callback is not None:
                        try:
                            callback()
                        except Exception:
                            log.exception("a departure callback failed")
        finally:
            self._epoll.close()
