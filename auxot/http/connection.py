"""One HTTP/1.1 connection: an h11 state machine over a trio stream.

Every network wait has a deadline, applied to the one operation it guards:
``first_byte`` while waiting for the response head, ``idle`` between body
chunks.  Protocol and network failures are mapped to the project's errors here.
"""

from __future__ import annotations

import select
import time
from dataclasses import dataclass
from typing import AsyncIterator

import h11
import trio

from ..errors import ConnectError, ProtocolError, ReadTimeout

READ_SIZE = 64 * 1024


@dataclass(frozen=True)
class Timeouts:
    connect: float = 10.0
    tls_handshake: float = 10.0
    first_byte: float = 600.0  # a model may think a long time before its first token
    idle: float = 300.0  # between body chunks
    total: float | None = None  # the whole exchange, from sending to the last body byte
    pool_idle: float = 30.0  # keep-alive connections older than this are closed


class Connection:
    def __init__(self, stream: trio.abc.Stream) -> None:
        self._stream = stream
        self._h11 = h11.Connection(h11.CLIENT, max_incomplete_event_size=1024 * 1024)
        self.last_used = time.monotonic()
        self.requests = 0
        self.reusable = False  # true once a response ended cleanly and h11 is ready for the next
        self.received = 0  # bytes received for the current request


    def is_idle_expired(self, max_idle: float) -> bool:
        return time.monotonic() - self.last_used > max_idle

    def peer_closed(self) -> bool:
        """An idle connection that is readable has been closed by the peer (or
        holds bytes nobody asked for): either way it must not carry a request."""
        sock = getattr(getattr(self._stream, "transport_stream", self._stream), "socket", None)
        if sock is None:
            return False
        try:
            readable, _, _ = select.select([sock.fileno()], [], [], 0)
        except (OSError, ValueError):
            return True
        return bool(readable)

    async def send_request(self, method: str, target: str, headers: list[tuple[str, str]], body: bytes) -> None:
        self.requests += 1
        self.reusable = False
        self.received = 0
        try:
            data = self._h11.send(h11.Request(method=method, target=target, headers=headers))
            if body:
                data += self._h11.send(h11.Data(data=body))
            data += self._h11.send(h11.EndOfMessage())
            await self._stream.send_all(data)
        except h11.LocalProtocolError as exc:
            raise ProtocolError(f"cannot send request: {exc}") from None
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
            raise ConnectError(f"connection lost while sending: {exc}") from None

    async def _next_event(self, timeout: float, waiting_for: str) -> h11.Event:
        while True:
            try:
                event = self._h11.next_event()
            except h11.RemoteProtocolError as exc:
                raise ProtocolError(f"malformed response from upstream: {exc}") from None
            if event is not h11.NEED_DATA:
                return event  # type: ignore[return-value]  # PAUSED only follows a complete answer, never read past
            data: bytes | bytearray = b""
            try:
                # A plain scope, not fail_after (a generator context manager): once per read of every stream.
                with trio.CancelScope(deadline=trio.current_time() + timeout) as scope:
                    data = await self._stream.receive_some(READ_SIZE)
            except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
                raise ConnectError(f"connection lost while waiting for {waiting_for}: {exc}") from None
            if scope.cancelled_caught:
                raise ReadTimeout(f"no {waiting_for} from upstream within {timeout:g}s")
            if not data and not self.received:
                # Closed before a single byte of the answer (a kept-alive connection
                # the peer dropped as the request went out): the peer never took it.
                raise ConnectError(f"upstream closed the connection before any {waiting_for}")
            self.received += len(data)
            self._h11.receive_data(data)  # type: ignore[arg-type]  # trio's receive_some gives bytes or bytearray; h11 takes both

    async def receive_response(self, timeout: float) -> tuple[int, list[tuple[bytes, bytes]]]:
        while True:
            event = await self._next_event(timeout, "response")
            if isinstance(event, h11.InformationalResponse):
                continue
            if isinstance(event, h11.Response):
                return event.status_code, list(event.headers)
            if isinstance(event, h11.ConnectionClosed):
                raise ConnectError("upstream closed the connection before responding")
            raise ProtocolError(f"unexpected {type(event).__name__} before the response head")

    async def iter_body(self, idle: float, deadline: float | None = None) -> AsyncIterator[bytes]:
        """The body's chunks; ``deadline`` (time.monotonic) bounds the whole body."""
        while True:
            timeout = idle
            if deadline is not None:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise ReadTimeout("the upstream exchange exceeded its total deadline")
                timeout = min(idle, left)
            event = await self._next_event(timeout, "data")
            if isinstance(event, h11.Data):
                yield bytes(event.data)
            elif isinstance(event, h11.EndOfMessage):
                self.last_used = time.monotonic()
                if self._h11.our_state is h11.DONE and self._h11.their_state is h11.DONE:
                    self._h11.start_next_cycle()
                    self.reusable = True
                return
            elif isinstance(event, h11.ConnectionClosed):
                raise ConnectError("upstream closed the connection mid-body")

    async def aclose(self) -> None:
        await trio.aclose_forcefully(self._stream)


class Response:
    """A response whose body is streamed.  Read it with :meth:`iter_bytes` or
    :meth:`read`; the pool gets the connection back when the body is complete."""

    def __init__(self, status: int, headers: list[tuple[bytes, bytes]], body: AsyncIterator[bytes]) -> None:
        self.status = status
        self.headers = headers
        self._body = body

    def header(self, name: str) -> str | None:
        key = name.lower().encode()
        for k, v in self.headers:
            if k.lower() == key:
                return v.decode("latin-1")
        return None

    def iter_bytes(self) -> AsyncIterator[bytes]:
        return self._body

    async def read(self, limit: int = 64 * 1024 * 1024) -> bytes:
        parts = bytearray()
        async for chunk in self._body:
            parts += chunk
            if len(parts) > limit:
                raise ProtocolError(f"response body larger than {limit} bytes")
        return bytes(parts)
