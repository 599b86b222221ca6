"""Keep-alive connections per origin.

``async with pool.request(...) as response`` leases a connection: reused if an
idle one is fresh, opened otherwise.  When the body was read to its end the
connection goes back to the pool; on any error or cancellation (a client that
disconnected) it is closed instead, since its state is unknown.
"""

from __future__ import annotations

import ssl
import time
from contextlib import asynccontextmanager
from typing import AsyncIterator
from urllib.parse import urlsplit

import trio

from ..errors import ConnectError, ProtocolError
from .connection import Connection, Response, Timeouts
from .head import HeadError, field_lines
from .network import open_stream


class Pool:
    def __init__(
        self, base_url: str, *, timeouts: Timeouts = Timeouts(), max_connections: int = 64,
        tls: ssl.SSLContext | None = None, headers: list[tuple[str, str]] = (),  # type: ignore[assignment]
    ) -> None:
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"base URL must be http(s)://host[:port][/path]; got {base_url!r}")
        self.host = parts.hostname
        self.port = parts.port or (443 if parts.scheme == "https" else 80)
        self.base_path = parts.path.rstrip("/")
        self._tls = (tls or ssl.create_default_context()) if parts.scheme == "https" else None
        self.timeouts = timeouts
        self._headers = [("Host", parts.netloc), *headers]  # sent with every request (a credential, say)
        self._fields = b""  # those, as header lines: checked and written once, at the first request
        self._idle: list[Connection] = []
        self._limit = trio.Semaphore(max_connections)
        self.opened = 0  # connections opened over the pool's life (for tests and benchmarks)

    async def _acquire(self) -> Connection:
        while self._idle:
            conn = self._idle.pop()
            if not conn.is_idle_expired(self.timeouts.pool_idle) and not conn.peer_closed():
                return conn
            await conn.aclose()
        return await self._open()

    async def _open(self) -> Connection:
        t = self.timeouts
        stream = await open_stream(self.host, self.port, tls=self._tls, connect_timeout=t.connect, tls_timeout=t.tls_handshake)
        self.opened += 1
        return Connection(stream)

    @asynccontextmanager
    async def request(
        self, method: str, path: str, *, headers: list[tuple[str, str]] = (), body: bytes = b"",  # type: ignore[assignment]
        first_byte_timeout: float | None = None,
    ) -> AsyncIterator[Response]:
        # Take a free connection slot without a trip through the scheduler (each
        # checkpoint costs about as much as parsing a response head); wait only
        # when the pool is full.
        try:
            fields = self._header_lines(headers, body)
        except HeadError as exc:
            raise ProtocolError(f"cannot send request: {exc}") from None
        try:
            self._limit.acquire_nowait()
        except trio.WouldBlock:
            await self._limit.acquire()
        try:
            deadline = time.monotonic() + self.timeouts.total if self.timeouts.total else None
            conn = await self._acquire()
            reused = conn.requests > 0
            try:
                try:
                    await conn.send_request(method, self.base_path + path, fields, body)
                    status, head = await conn.receive_response(first_byte_timeout or self.timeouts.first_byte)
                except ConnectError:
                    if not reused or conn.received:
                        raise
                    # A kept-alive connection the peer closed while it sat idle (the
                    # close raced our request): it failed writing, or ended before a
                    # single response byte, so the peer never took the request.  Retry
                    # once on a fresh connection.  Never after a timeout or any byte of
                    # an answer: the upstream may be generating, and a second
                    # request would be a second, paid-for generation.
                    await conn.aclose()
                    conn = await self._open()
                    await conn.send_request(method, self.base_path + path, fields, body)
                    status, head = await conn.receive_response(first_byte_timeout or self.timeouts.first_byte)
                yield Response(status, head, conn.iter_body(self.timeouts.idle, deadline))
            except BaseException:
                with trio.CancelScope(shield=True):
                    await conn.aclose()
                raise
            if conn.reusable:  # its body was read to the end, and the answer lets it be kept
                self._idle.append(conn)
            else:
                await conn.aclose()
        finally:
            self._limit.release()

    def _header_lines(self, headers: list[tuple[str, str]], body: bytes) -> bytes:
        if not self._fields:
            self._fields = field_lines(self._headers)
        length = b"Content-Length: %d\r\n" % len(body) if body else b""
        return self._fields + (field_lines(headers) if headers else b"") + length

    async def aclose(self) -> None:
        idle, self._idle = self._idle, []
        with trio.CancelScope(shield=True):
            for conn in idle:
                await conn.aclose()
