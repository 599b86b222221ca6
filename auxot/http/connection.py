"""One HTTP/1.1 connection over a trio stream: ``head`` writes the request and
reads the response head, ``body`` reads the body (h11's rules, without its
cost: once per request for a head, once per streamed token for the body).

Every network wait has a deadline, applied to the one operation it guards:
``first_byte`` while waiting for the response head, ``idle`` between body
chunks.  Protocol and network failures are mapped to the project's errors here.
"""

from __future__ import annotations

import os
import select
import time
from dataclasses import dataclass
from typing import AsyncIterator

import trio

from ..errors import ConnectError, ProtocolError, ReadTimeout
from .body import BodyError, Chunked, Length, UntilClose, reader_for
from .deadlines import read_deadlines
from .head import HeadError, read_head, request_head

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
        # Plain TCP is read straight from its socket: trio's stream and socket layers cost
        # more than the read itself, once per streamed token.
        self._socket = stream.socket if isinstance(stream, trio.SocketStream) else None
        self._deadlines = read_deadlines()  # its reads' deadlines, without a cancel scope each
        self._expired = False
        self._drained = True  # the socket's buffer was emptied by the last read (or none came yet)
        self._method = ""
        self._body: Chunked | Length | UntilClose = Length(0)
        self._keep_alive = False  # what the response head allows
        self._early = b""  # the body's first bytes, read with the head
        self.last_used = time.monotonic()
        self.requests = 0
        self.reusable = False  # true once a response ended cleanly and nothing was sent past it
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

    async def send_request(self, method: str, target: str, fields: bytes, body: bytes) -> None:
        """``fields``: the header lines (``head.field_lines``), Host and a body's Content-Length among them."""
        self.requests += 1
        self.reusable = False
        self.received = 0
        self._method = method
        self._drained = True  # the answer is not there yet
        try:
            data = request_head(method, target, fields) + body
            sent = self._write_now(data)
            if sent < len(data):
                await self._stream.send_all(memoryview(data)[sent:])
        except HeadError as exc:
            raise ProtocolError(f"cannot send request: {exc}") from None
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
            raise ConnectError(f"connection lost while sending: {exc}") from None

    def _write_now(self, data: bytes) -> int:
        """What a plain TCP socket takes at once (a request usually fits), written
        without trio's stream layers: the bytes written; 0 for TLS or when it is full."""
        if self._socket is None:
            return 0
        try:
            return os.write(self._socket.fileno(), data)
        except BlockingIOError:
            return 0

    def _read_now(self) -> bytes | None:
        """What a plain TCP socket holds now (b"": the peer closed), read without
        trio's socket layers; None when nothing is there yet, or the stream is TLS."""
        if self._socket is None:
            return None
        try:
            data = os.read(self._socket.fileno(), READ_SIZE)  # -1 once closed: EBADF, never another descriptor
        except BlockingIOError:
            return None
        self._drained = len(data) < READ_SIZE
        return data

    async def _wait_and_read(self, deadline: float) -> bytes | None:
        """The next read, once there is something to read; None if ``deadline`` passed first."""
        if self._socket is None:
            with trio.CancelScope(deadline=deadline):
                return bytes(await self._stream.receive_some(READ_SIZE))
            return None
        while True:
            self._expired = False
            self._deadlines.arm(self, deadline)
            try:
                await trio.lowlevel.wait_readable(self._socket)
            except trio.ClosedResourceError:
                if self._expired:
                    return None
                raise
            finally:
                self._deadlines.disarm(self)
            if (data := self._read_now()) is not None:
                return data

    def expire(self) -> None:
        """A read's deadline passed (``deadlines.ReadDeadlines``): wake it; the pool then closes the connection."""
        self._expired = True
        if self._socket is not None:
            trio.lowlevel.notify_closing(self._socket)

    async def _receive(self, timeout: float, waiting_for: str) -> bytes:
        """One read: b"" when the peer closed."""
        try:
            # A read that took less than it could emptied the socket: the next one
            # waits first (a streamed token arrives alone) instead of failing once.
            data = None if self._drained else self._read_now()
            if data is not None:
                await trio.lowlevel.checkpoint_if_cancelled()
            elif (data := await self._wait_and_read(trio.current_time() + timeout)) is None:
                raise ReadTimeout(f"no {waiting_for} from upstream within {timeout:g}s")
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
            raise ConnectError(f"connection lost while waiting for {waiting_for}: {exc}") from None
        if not data and not self.received:
            # Closed before a single byte of the answer (a kept-alive connection
            # the peer dropped as the request went out): the peer never took it.
            raise ConnectError(f"upstream closed the connection before any {waiting_for}")
        self.received += len(data)
        return data

    async def receive_response(self, timeout: float) -> tuple[int, list[tuple[bytes, bytes]]]:
        """The response head (names lower-cased); its body is then read by :meth:`iter_body`."""
        buf = b""
        while True:
            try:
                found = read_head(buf) if buf else None
            except HeadError as exc:
                raise ProtocolError(f"malformed response from upstream: {exc}") from None
            if found is None:
                data = await self._receive(timeout, "response")
                if not data:
                    raise (ProtocolError if buf else ConnectError)("upstream closed the connection before responding")
                buf += data
                continue
            head, size = found
            buf = buf[size:]
            if head.status == 101:
                raise ProtocolError("upstream switched protocols unasked (101)")
            if head.status >= 200:
                break  # else an interim answer (100 Continue, 103 Early Hints): the answer follows
        self._keep_alive = head.http_version == b"1.1" and not any(
            name == b"connection" and b"close" in value.lower() for name, value in head.headers)
        self._body = reader_for(head.status, head.headers, self._method)
        self._early = buf
        return head.status, head.headers

    async def iter_body(self, idle: float, deadline: float | None = None) -> AsyncIterator[bytes]:
        """The body's pieces, one per read; ``deadline`` (time.monotonic) bounds the whole body."""
        body, data, closed = self._body, self._early, False  # first, what came with the head
        self._early = b""
        while True:
            try:
                piece = body.feed(data) if data else b""
                if closed:
                    body.eof()
            except BodyError as exc:
                raise (ConnectError if closed else ProtocolError)(f"upstream's body: {exc}") from None
            if piece:
                yield piece
            if body.done or closed:
                break
            timeout = idle
            if deadline is not None:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise ReadTimeout("the upstream exchange exceeded its total deadline")
                timeout = min(idle, left)
            data = await self._receive(timeout, "data")
            closed = not data
        self.last_used = time.monotonic()
        self.reusable = self._keep_alive and not closed and not body.extra

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
