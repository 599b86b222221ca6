"""A WebSocket client (RFC 6455): wsproto's state machine over the stream that
``network.open_stream`` opens, so ``ws://`` and ``wss://`` reuse the project's
TCP, TLS and deadline handling.

Sans-IO wsproto does the handshake and the framing; this module only moves
bytes and maps what goes wrong into the project's errors, once:

- the TCP connect or TLS handshake fails       → :class:`ConnectError`
- the server answers the upgrade with a status → :class:`WebSocketRejected`
  (status and body, e.g. 401 "worker key revoked")
- the connection closes                        → :class:`WebSocketClosed`
  (the close code and reason, RFC 6455 §7.4; 1006 when it just dropped)

Pings from the server are answered here.  Sends are serialised by a lock
(trio streams refuse concurrent ``send_all``) and bounded by a write deadline,
so a peer that stops reading cannot hold a sender forever.
"""

from __future__ import annotations

import ssl
from urllib.parse import urlsplit

import trio
from wsproto import ConnectionType, WSConnection
from wsproto.connection import ConnectionState
from wsproto.events import (
    AcceptConnection,
    BytesMessage,
    CloseConnection,
    Ping,
    RejectConnection,
    RejectData,
    Request,
    TextMessage,
)
from wsproto.utilities import LocalProtocolError, RemoteProtocolError

from ..errors import ConnectError, WebSocketClosed, WebSocketRejected
from .network import open_stream

READ_SIZE = 64 * 1024
ABNORMAL = 1006  # RFC 6455 §7.1.5: closed without a close frame


class WebSocket:
    def __init__(self, stream: trio.abc.Stream, ws: WSConnection, *, write_timeout: float, max_message: int) -> None:
        self._stream = stream
        self._ws = ws
        self._send_lock = trio.Lock()
        self._write_timeout = write_timeout
        self._max_message = max_message
        self._texts: list[str] = []
        self._partial: list[str] = []
        self._partial_size = 0
        self.closed: WebSocketClosed | None = None

    async def _write(self, data: bytes) -> None:
        if not data:
            return
        async with self._send_lock:
            try:
                with trio.fail_after(self._write_timeout):
                    await self._stream.send_all(data)
            except trio.TooSlowError:
                raise self._lost(f"the peer read nothing for {self._write_timeout:g}s") from None
            except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
                raise self._lost(f"connection lost while sending: {exc}") from None

    def _lost(self, why: str) -> WebSocketClosed:
        if self.closed is None:
            self.closed = WebSocketClosed(ABNORMAL, why)
        return self.closed

    async def send_text(self, text: str) -> None:
        if self.closed is not None:
            raise self.closed
        try:
            data = self._ws.send(TextMessage(data=text))
        except LocalProtocolError:  # the close handshake has begun
            raise self._lost("the connection is closing") from None
        await self._write(data)

    async def receive_text(self) -> str:
        """The next complete text message; WebSocketClosed once closed."""
        while not self._texts:
            if self.closed is not None:
                raise self.closed
            try:
                data = await self._stream.receive_some(READ_SIZE)
            except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
                raise self._lost(f"connection lost: {exc}") from None
            if not data:
                raise self._lost("the peer closed the TCP connection without a close frame")
            try:
                self._ws.receive_data(bytes(data))
                await self._handle_events()
            except RemoteProtocolError as exc:
                raise self._lost(f"the peer broke RFC 6455: {exc}") from None
        return self._texts.pop(0)

    async def _handle_events(self) -> None:
        for event in self._ws.events():
            if isinstance(event, TextMessage):
                self._partial.append(event.data)
                self._partial_size += len(event.data)
                if self._partial_size > self._max_message:
                    await self.aclose(1009, "message too big")
                    raise self._lost(f"a message over {self._max_message} bytes")
                if event.message_finished:
                    self._texts.append("".join(self._partial))
                    self._partial, self._partial_size = [], 0
            elif isinstance(event, BytesMessage):
                await self.aclose(1003, "binary frames are not accepted")
                raise self._lost("the peer sent a binary frame")
            elif isinstance(event, Ping):
                await self._write(self._ws.send(event.response()))
            elif isinstance(event, CloseConnection):
                # Record the peer's code and reason before answering: a sender in
                # another task that runs while the answer is written must see them,
                # not "the connection is closing".
                self.closed = WebSocketClosed(event.code, event.reason or "")
                if self._ws.state is ConnectionState.REMOTE_CLOSING:
                    try:
                        await self._write(self._ws.send(event.response()))
                    except WebSocketClosed:
                        pass

    async def aclose(self, code: int = 1000, reason: str = "") -> None:
        """Send a close frame (best effort, bounded) and close the stream."""
        with trio.CancelScope(shield=True), trio.move_on_after(1):
            if self._ws.state is ConnectionState.OPEN:
                try:
                    await self._write(self._ws.send(CloseConnection(code=code, reason=reason)))
                except (WebSocketClosed, LocalProtocolError):
                    pass
        if self.closed is None:
            self.closed = WebSocketClosed(code, reason or "closed by us")
        await trio.aclose_forcefully(self._stream)


async def connect(
    url: str, *, headers: list[tuple[str, str]] = (), tls: ssl.SSLContext | None = None,  # type: ignore[assignment]
    connect_timeout: float = 10.0, handshake_timeout: float = 10.0, write_timeout: float = 30.0,
    max_message: int = 64 * 1024 * 1024,
) -> WebSocket:
    """Open ``ws://host[:port]/path`` or ``wss://…`` and complete the upgrade."""
    parts = urlsplit(url)
    if parts.scheme not in ("ws", "wss") or not parts.hostname:
        raise ValueError(f"a WebSocket URL is ws[s]://host[:port]/path; got {url!r}")
    secure = parts.scheme == "wss"
    port = parts.port or (443 if secure else 80)
    context = (tls or ssl.create_default_context()) if secure else None
    stream = await open_stream(parts.hostname, port, tls=context, connect_timeout=connect_timeout, tls_timeout=handshake_timeout)
    ws = WSConnection(ConnectionType.CLIENT)
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    try:
        with trio.fail_after(handshake_timeout):
            await stream.send_all(ws.send(Request(
                host=parts.netloc, target=target, extra_headers=[(k.encode(), v.encode()) for k, v in headers],
            )))
            return await _upgrade(stream, ws, write_timeout=write_timeout, max_message=max_message)
    except BaseException as exc:
        await trio.aclose_forcefully(stream)
        if isinstance(exc, trio.TooSlowError):
            raise ConnectError(f"WebSocket handshake with {parts.netloc} timed out after {handshake_timeout:g}s") from None
        if isinstance(exc, (trio.BrokenResourceError, trio.ClosedResourceError, OSError)):
            raise ConnectError(f"connection to {parts.netloc} lost during the WebSocket handshake: {exc}") from None
        if isinstance(exc, RemoteProtocolError):
            raise ConnectError(f"{parts.netloc} answered the WebSocket handshake with garbage: {exc}") from None
        raise


async def _upgrade(stream: trio.abc.Stream, ws: WSConnection, *, write_timeout: float, max_message: int) -> WebSocket:
    rejected: RejectConnection | None = None
    body = bytearray()
    while True:
        data = await stream.receive_some(READ_SIZE)
        if not data:
            if rejected is not None:
                raise WebSocketRejected(rejected.status_code, bytes(body))
            raise ConnectError("the server closed the connection during the WebSocket handshake")
        ws.receive_data(bytes(data))
        client = WebSocket(stream, ws, write_timeout=write_timeout, max_message=max_message)
        for event in ws.events():
            if isinstance(event, AcceptConnection):
                # Frames that arrived in the same read as the 101 answer are kept.
                await client._handle_events()
                return client
            if isinstance(event, RejectConnection):
                rejected = event
                if not event.has_body:
                    raise WebSocketRejected(event.status_code, b"")
            elif isinstance(event, RejectData):
                body += event.data[: 64 * 1024 - len(body)]
                if event.body_finished:
                    assert rejected is not None
                    raise WebSocketRejected(rejected.status_code, bytes(body))
