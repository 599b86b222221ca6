"""A small WebSocket client for tests: wsproto (which hypercorn brings) over a trio socket."""

from __future__ import annotations

import trio
from wsproto import ConnectionType, WSConnection
from wsproto.events import (
    AcceptConnection,
    BytesMessage,
    CloseConnection,
    RejectConnection,
    RejectData,
    Request,
    TextMessage,
)


class Rejected(ConnectionError):
    """The server answered the upgrade over HTTP instead of accepting it."""

    def __init__(self, status: int, headers: list[tuple[bytes, bytes]], body: bytes) -> None:
        super().__init__(f"rejected with {status}: {body[:200]!r}")
        self.status, self.headers, self.body = status, headers, body


class WSClient:
    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self.ws = WSConnection(ConnectionType.CLIENT)
        self.closed: CloseConnection | None = None
        self._texts: list[str] = []
        self._partial = ""

    @classmethod
    async def connect(cls, host: str, port: int, path: str, headers: list[tuple[str, str]]) -> "WSClient":
        client = cls(await trio.open_tcp_stream(host, port))
        try:
            return await client._handshake(host, port, path, headers)
        except BaseException:
            await trio.aclose_forcefully(client.stream)
            raise

    async def _handshake(self, host: str, port: int, path: str, headers: list[tuple[str, str]]) -> "WSClient":
        client = self
        await client.stream.send_all(client.ws.send(Request(host=f"{host}:{port}", target=path,
                                                            extra_headers=[(k.encode(), v.encode()) for k, v in headers])))
        rejected: RejectConnection | None = None
        body = b""
        while True:
            data = await client.stream.receive_some(65536)
            client.ws.receive_data(data or None)
            accepted = False
            for event in client.ws.events():
                if isinstance(event, AcceptConnection):
                    accepted = True
                elif isinstance(event, RejectConnection):
                    rejected = event
                    if not event.has_body:
                        raise Rejected(event.status_code, list(event.headers), b"")
                elif isinstance(event, RejectData):
                    body += event.data
                    if event.body_finished and rejected is not None:
                        raise Rejected(rejected.status_code, list(rejected.headers), body)
                else:  # frames that arrived in the same read as the handshake reply
                    await client._handle(event)
            if accepted:
                return client
            if not data:
                raise ConnectionError("the server closed the connection during the handshake")

    async def send_text(self, text: str) -> None:
        await self.stream.send_all(self.ws.send(TextMessage(data=text)))

    async def send_bytes(self, data: bytes) -> None:
        await self.stream.send_all(self.ws.send(BytesMessage(data=data)))

    async def receive(self) -> str | None:
        """The next text message, or None once the server closed."""
        while not self._texts:
            if self.closed is not None:
                return None
            data = await self.stream.receive_some(65536)
            if not data:
                return None
            self.ws.receive_data(data)
            for event in self.ws.events():
                await self._handle(event)
        return self._texts.pop(0)

    async def _handle(self, event: object) -> None:
        if isinstance(event, TextMessage):
            self._partial += event.data
            if event.message_finished:
                self._texts.append(self._partial)
                self._partial = ""
        elif isinstance(event, CloseConnection):
            self.closed = event
            await self.stream.send_all(self.ws.send(event.response()))

    async def aclose(self) -> None:
        await self.stream.aclose()
