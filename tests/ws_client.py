"""A small WebSocket client for tests: wsproto (which hypercorn brings) over a trio socket."""

from __future__ import annotations

import trio
from wsproto import ConnectionType, WSConnection
from wsproto.events import AcceptConnection, BytesMessage, CloseConnection, RejectConnection, Request, TextMessage


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
        await client.stream.send_all(client.ws.send(Request(host=f"{host}:{port}", target=path,
                                                            extra_headers=[(k.encode(), v.encode()) for k, v in headers])))
        while True:
            client.ws.receive_data(await client.stream.receive_some(65536))
            accepted = False
            for event in client.ws.events():
                if isinstance(event, AcceptConnection):
                    accepted = True
                elif isinstance(event, RejectConnection):
                    raise ConnectionError(f"rejected with {event.status_code}")
                else:  # frames that arrived in the same read as the handshake reply
                    await client._handle(event)
            if accepted:
                return client

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
