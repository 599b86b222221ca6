"""MCP's Streamable HTTP transport, on the project's own HTTP client and SSE parser.

Every message the client sends is one ``POST`` to the server's endpoint.  A
request's answer comes back in that POST's body — one JSON message, or an SSE
stream of messages (progress, list changes, server requests, then the
response) — and a notification's is ``202 Accepted``.  The session id the
server gives at ``initialize`` (``Mcp-Session-Id``) and the negotiated
``MCP-Protocol-Version`` go with every later message; a ``GET`` opens the
stream on which the server says things unprompted (where it offers one);
``DELETE`` ends the session.  Each POST's body is read in a task of its own,
so calls run side by side and a slow tool blocks nothing else.
"""

from __future__ import annotations

import json
import logging
from contextlib import asynccontextmanager
from typing import Any, AsyncIterator, Mapping
from urllib.parse import urlsplit

import trio

from .. import sse
from ..errors import HTTPClientError
from ..http import Pool
from ..http.connection import Timeouts
from . import jsonrpc
from .mcp import McpClosed, one_error

log = logging.getLogger("auxot.tools.http")

MAX_BODY = 16 * 1024 * 1024
INBOX = 256


class HttpTransport:
    def __init__(self, name: str, url: str, headers: Mapping[str, str], nursery: trio.Nursery) -> None:
        parts = urlsplit(url)
        self.name = name
        self.protocol_version: str | None = None
        self.session_id: str | None = None
        self._pool = Pool(f"{parts.scheme}://{parts.netloc}", timeouts=Timeouts(first_byte=3600, idle=3600))
        self._path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        self._headers = list(headers.items())
        self._nursery = nursery
        self._inbox, self._messages = trio.open_memory_channel[dict[str, Any]](INBOX)
        self._listening = False
        self._exchanges: dict[Any, trio.CancelScope] = {}  # request id → its POST, while its answer is read

    def _request_headers(self) -> list[tuple[str, str]]:
        headers = [("Content-Type", "application/json"), ("Accept", "application/json, text/event-stream"), *self._headers]
        if self.session_id:
            headers.append(("Mcp-Session-Id", self.session_id))
        if self.protocol_version:
            headers.append(("MCP-Protocol-Version", self.protocol_version))
        return headers

    async def send(self, message: dict[str, Any]) -> None:
        body = json.dumps(message, ensure_ascii=False, separators=(",", ":")).encode()
        if "method" in message and "id" in message:  # a request: its answer comes in this POST's body
            self._nursery.start_soon(self._exchange, message, body)
            return
        try:
            async with self._pool.request("POST", self._path, headers=self._request_headers(), body=body,
                                          first_byte_timeout=30) as resp:
                await resp.read(MAX_BODY)
                if resp.status == 404 and self.session_id:
                    raise McpClosed(f"MCP server {self.name!r} ended the session (404)")
                if resp.status not in (200, 202, 204):
                    log.warning("MCP server %r answered a notification with %d", self.name, resp.status)
        except HTTPClientError as exc:
            raise McpClosed(f"MCP server {self.name!r} is unreachable: {exc}") from None

    def abandon(self, ident: int | str) -> None:
        """Stop reading the answer to a request the session gave up on."""
        scope = self._exchanges.pop(ident, None)
        if scope is not None:
            scope.cancel()

    async def _exchange(self, message: dict[str, Any], body: bytes) -> None:
        ident = message["id"]
        with trio.CancelScope() as self._exchanges[ident]:
            await self._post_request(message, body)
        self._exchanges.pop(ident, None)

    async def _post_request(self, message: dict[str, Any], body: bytes) -> None:
        ident = message["id"]
        try:
            async with self._pool.request("POST", self._path, headers=self._request_headers(), body=body) as resp:
                if message["method"] == "initialize" and (sid := resp.header("mcp-session-id")):
                    self.session_id = sid
                if resp.status != 200:
                    text = (await resp.read(4096)).decode("utf-8", "replace")
                    gone = resp.status == 404 and self.session_id and message["method"] != "initialize"
                    await self._put(jsonrpc.error(ident, jsonrpc.INTERNAL_ERROR, f"HTTP {resp.status}: {text[:200]}"))
                    if gone:
                        await self._inbox.aclose()
                    return
                if (resp.header("content-type") or "").startswith("text/event-stream"):
                    await self._read_events(resp.iter_bytes())
                else:
                    await self._put_json(await resp.read(MAX_BODY))
        except HTTPClientError as exc:
            await self._put(jsonrpc.error(ident, jsonrpc.INTERNAL_ERROR, f"MCP server {self.name!r} is unreachable: {exc}"))
        if message["method"] == "initialize":
            self._nursery.start_soon(self._listen)

    async def _listen(self) -> None:
        """The server's own stream (``GET``), where it offers one (else 405)."""
        if self._listening:
            return
        self._listening = True
        headers = [(k, v) for k, v in self._request_headers() if k != "Content-Type"]
        headers = [("Accept", "text/event-stream") if k == "Accept" else (k, v) for k, v in headers]
        try:
            async with self._pool.request("GET", self._path, headers=headers, first_byte_timeout=30) as resp:
                if resp.status != 200:
                    await resp.read(4096)
                    return
                await self._read_events(resp.iter_bytes())
        except HTTPClientError:
            pass

    async def _read_events(self, chunks: AsyncIterator[bytes]) -> None:
        decoder = sse.Decoder(MAX_BODY)
        async for chunk in chunks:
            for event in decoder.feed(chunk):
                if event.data:
                    await self._put_json(event.data.encode())

    async def _put_json(self, data: bytes) -> None:
        try:
            parsed = json.loads(data)
        except ValueError:
            log.warning("MCP server %r sent a body that is not JSON: %r", self.name, data[:120])
            return
        for message in parsed if isinstance(parsed, list) else [parsed]:  # a JSON-RPC batch, from older servers
            if isinstance(message, dict):
                await self._put(message)

    async def _put(self, message: dict[str, Any]) -> None:
        try:
            await self._inbox.send(message)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass

    async def receive(self) -> dict[str, Any]:
        try:
            return await self._messages.receive()
        except (trio.EndOfChannel, trio.ClosedResourceError):
            raise McpClosed(f"MCP server {self.name!r} ended the session") from None

    async def end_session(self) -> None:
        """``DELETE`` the session (best effort, briefly), then close the connections."""
        with trio.CancelScope(shield=True):
            if self.session_id:
                with trio.move_on_after(3):
                    try:
                        async with self._pool.request("DELETE", self._path, headers=self._request_headers()) as resp:
                            await resp.read(4096)
                    except HTTPClientError:
                        pass
            await self._pool.aclose()


@asynccontextmanager
async def open_http(name: str, url: str, headers: Mapping[str, str] = {}) -> AsyncIterator[HttpTransport]:
    try:
        async with trio.open_nursery() as nursery:
            transport = HttpTransport(name, url, headers, nursery)
            try:
                yield transport
            finally:
                nursery.cancel_scope.cancel()
                await transport.end_session()
    except BaseExceptionGroup as group:
        raise one_error(group) from None
