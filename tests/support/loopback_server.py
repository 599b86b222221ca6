"""A tiny HTTP/1.1 server on a real loopback socket, for testing the client.

Each test gives it a handler ``(method, target, body) -> (status, headers, chunks)``
where ``chunks`` is an async iterator of bytes (so a test can be slow, stall,
or close mid-body).  It counts accepted connections.
"""

from __future__ import annotations

import ssl
from contextlib import aclosing
from functools import partial
from typing import AsyncIterator, Awaitable, Callable

import h11
import trio

Handler = Callable[[str, str, bytes], Awaitable[tuple[int, list[tuple[str, str]], AsyncIterator[bytes]]]]


class LoopbackServer:
    def __init__(self, handler: Handler, tls: ssl.SSLContext | None = None) -> None:
        self.handler = handler
        self.tls = tls
        self.requests: list[tuple[str, str, list[tuple[bytes, bytes]], bytes]] = []
        self.connections = 0
        self.closed = 0
        self.port = 0

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        self.port = listeners[0].socket.getsockname()[1]
        served: list[trio.abc.Listener] = list(listeners)
        if self.tls is not None:
            served = [trio.SSLListener(l, self.tls, https_compatible=True) for l in listeners]
        task_status.started()
        await trio.serve_listeners(partial(self._connection), served)  # type: ignore[arg-type]

    async def _connection(self, stream: trio.abc.Stream) -> None:
        self.connections += 1
        conn = h11.Connection(h11.SERVER)
        try:
            while True:
                request, body = await self._read_request(stream, conn)
                if request is None:
                    return
                self.requests.append((request.method.decode(), request.target.decode(), list(request.headers), body))
                status, headers, chunks = await self.handler(request.method.decode(), request.target.decode(), body)
                await stream.send_all(conn.send(h11.Response(status_code=status, headers=headers)))
                async with aclosing(chunks):  # a client gone mid-body: the body's generator is closed, not left to GC
                    async for chunk in chunks:
                        await stream.send_all(conn.send(h11.Data(data=chunk)))
                await stream.send_all(conn.send(h11.EndOfMessage()))
                if conn.our_state is not h11.DONE or conn.their_state is not h11.DONE:
                    return
                conn.start_next_cycle()
        except (trio.BrokenResourceError, h11.ProtocolError, _Close, ssl.SSLError):
            return
        finally:
            self.closed += 1
            await trio.aclose_forcefully(stream)

    async def _read_request(self, stream: trio.abc.Stream, conn: h11.Connection) -> tuple[h11.Request | None, bytes]:
        request = None
        body = b""
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                data = await stream.receive_some(65536)
                conn.receive_data(data)
                continue
            if isinstance(event, h11.Request):
                request = event
            elif isinstance(event, h11.Data):
                body += event.data
            elif isinstance(event, h11.EndOfMessage):
                return request, body
            elif isinstance(event, h11.ConnectionClosed):
                return None, b""


class _Close(Exception):
    """Raised by a chunk iterator to drop the connection mid-body."""


async def chunks_of(*parts: bytes, delay: float = 0.0, then_close: bool = False) -> AsyncIterator[bytes]:
    for part in parts:
        if delay:
            await trio.sleep(delay)
        yield part
    if then_close:
        raise _Close()
