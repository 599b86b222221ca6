"""One MCP client session (the Model Context Protocol, handshake revisions
2024-11-05 to 2025-11-25), on trio, over any :class:`Transport`.

    async with open_session("everything", transport) as session:
        session.tools                    # listed at start, re-listed on notifications/tools/list_changed
        await session.call("echo", {"text": "hi"}, timeout=30)

The session owns one reader task (in the nursery ``open_session`` opens): it
routes each response to the call waiting for it, answers the server's ``ping``,
refuses every other server-to-client request (auxot offers no sampling, roots
or elicitation), and re-lists the tools when the server says they changed.  A
call past its deadline sends ``notifications/cancelled`` and fails; a transport
that closes fails every call in flight at once — nothing waits forever.
"""

from __future__ import annotations

import itertools
import logging
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, AsyncIterator, Callable, Protocol

import trio

from .. import __version__
from . import jsonrpc

log = logging.getLogger("auxot.tools.mcp")

PROTOCOL_VERSION = "2025-11-25"
ACCEPTED_VERSIONS = ("2024-11-05", "2025-03-26", "2025-06-18", "2025-11-25")
INIT_TIMEOUT = 30.0
LIST_TIMEOUT = 30.0
RESULT_TEXT_MAX = 64 * 1024  # characters of text a result carries on to the model; the rest is cut with a note
MAX_LIST_PAGES = 100  # a server whose cursor never ends does not hang the worker


class McpError(Exception):
    """The server answered with an error, broke the protocol, or went away."""

    def __init__(self, message: str, code: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.code = code


class McpClosed(McpError):
    """The transport closed (the server exited, the connection dropped)."""


class McpTimeout(McpError):
    """No answer within the deadline; the server was told to cancel."""


class Transport(Protocol):
    protocol_version: str | None  # negotiated; set by the session after initialize

    async def send(self, message: dict[str, Any]) -> None: ...

    async def receive(self) -> dict[str, Any]: ...  # raises McpClosed when there is nothing more

    def abandon(self, ident: int | str) -> None: ...  # the session gave up waiting for this request's answer


@dataclass(frozen=True)
class Tool:
    name: str
    description: str
    input_schema: dict[str, Any]
    title: str | None = None


@dataclass(frozen=True)
class CallResult:
    content: tuple[dict[str, Any], ...]  # MCP content blocks as the server sent them (text, image, audio, resource…)
    structured: Any = None  # structuredContent, if any
    is_error: bool = False
    duration_s: float = 0.0


def cut(content: tuple[dict[str, Any], ...]) -> list[dict[str, Any]]:
    """Text beyond RESULT_TEXT_MAX characters (all parts together) is cut, with a note saying so."""
    out: list[dict[str, Any]] = []
    left = RESULT_TEXT_MAX
    for part in content:
        if part.get("type") == "text" and isinstance(part.get("text"), str):
            text = part["text"]
            if len(text) > left:
                out.append({**part, "text": text[:left] + f"\n[auxot: result cut at {RESULT_TEXT_MAX} characters; "
                                                          f"{len(text) - left} more were dropped]"})
                left = 0
                continue
            left -= len(text)
        out.append(part)
    return out


class Session:
    def __init__(self, name: str, transport: Transport, *, on_tools: Callable[[Session], None] | None = None) -> None:
        self.name = name
        self.transport = transport
        self.tools: tuple[Tool, ...] = ()
        self.server_info: dict[str, Any] = {}
        self.capabilities: dict[str, Any] = {}
        self._on_tools = on_tools
        self._ids = itertools.count(1)
        self._pending: dict[int | str, trio.MemorySendChannel[jsonrpc.Response]] = {}
        self._progress: dict[int | str, Callable[[float, float | None], None]] = {}
        self._relisting = False
        self.closed: McpError | None = None  # why the session ended, once it has
        self.ended = trio.Event()  # set when it has

    # --- the reader ---------------------------------------------------------

    async def read(self, nursery: trio.Nursery) -> None:
        try:
            while True:
                raw = await self.transport.receive()
                try:
                    msg = jsonrpc.parse(raw)
                except jsonrpc.ProtocolViolation as exc:
                    log.warning("MCP server %r: %s", self.name, exc)
                    continue
                match msg:
                    case jsonrpc.Response(id=ident):
                        waiter = self._pending.pop(ident, None) if ident is not None else None
                        if waiter is not None:
                            waiter.send_nowait(msg)
                    case jsonrpc.Request(id=ident, method="ping"):
                        nursery.start_soon(self._send_quietly, jsonrpc.result(ident, {}))
                    case jsonrpc.Request(id=ident, method=method):
                        nursery.start_soon(self._send_quietly, jsonrpc.error(
                            ident, jsonrpc.METHOD_NOT_FOUND, f"auxot does not offer {method!r} to MCP servers"))
                    case jsonrpc.Notification(method="notifications/tools/list_changed"):
                        if not self._relisting:
                            nursery.start_soon(self._relist)
                    case jsonrpc.Notification(method="notifications/progress", params=params):
                        report = self._progress.get(params.get("progressToken"))  # type: ignore[arg-type]
                        if report is not None and isinstance(params.get("progress"), (int, float)):
                            total = params.get("total")
                            report(float(params["progress"]), float(total) if isinstance(total, (int, float)) else None)
                    case jsonrpc.Notification():
                        pass  # logging messages and the like: nothing a tool call needs
        except McpError as exc:
            self._close(exc)
        except BaseException:
            self._close(McpClosed(f"MCP server {self.name!r}: the session ended"))
            raise

    def _close(self, why: McpError) -> None:
        if self.closed is None:
            self.closed = why
        self.ended.set()
        for waiter in self._pending.values():
            waiter.close()  # the waiting call sees EndOfChannel: it fails with self.closed
        self._pending.clear()

    async def _send_quietly(self, message: dict[str, Any]) -> None:
        try:
            with trio.move_on_after(10):
                await self.transport.send(message)
        except McpError:
            pass

    async def _relist(self) -> None:
        self._relisting = True
        try:
            await self.list_tools()
        except McpError as exc:
            log.warning("MCP server %r: re-listing its tools failed: %s", self.name, exc.message)
        finally:
            self._relisting = False

    # --- requests ------------------------------------------------------------

    async def request(self, method: str, params: dict[str, Any] | None, timeout: float) -> Any:
        if self.closed is not None:
            raise self.closed
        ident = next(self._ids)
        answers_in, answers = trio.open_memory_channel[jsonrpc.Response](1)
        self._pending[ident] = answers_in
        try:
            with trio.move_on_after(timeout) as waited:
                await self.transport.send(jsonrpc.request(ident, method, params))
                try:
                    answer = await answers.receive()
                except trio.EndOfChannel:
                    raise self.closed or McpClosed(f"MCP server {self.name!r} went away") from None
            if waited.cancelled_caught:
                self.transport.abandon(ident)
                with trio.CancelScope(shield=True), trio.move_on_after(5):
                    await self._send_quietly(jsonrpc.notification(
                        "notifications/cancelled", {"requestId": ident, "reason": f"no answer within {timeout:g} s"}))
                raise McpTimeout(f"MCP server {self.name!r} did not answer {method} within {timeout:g} s")
        finally:
            self._pending.pop(ident, None)
            self._progress.pop(ident, None)
        if answer.error is not None:
            raise McpError(f"MCP server {self.name!r}: {answer.error.get('message')}", answer.error.get("code"))
        return answer.result

    async def initialize(self) -> None:
        result = await self.request("initialize", {
            "protocolVersion": PROTOCOL_VERSION, "capabilities": {},
            "clientInfo": {"name": "auxot", "version": __version__},
        }, INIT_TIMEOUT)
        if not isinstance(result, dict):
            raise McpError(f"MCP server {self.name!r} answered initialize with {str(result)[:80]}")
        version = result.get("protocolVersion")
        if version not in ACCEPTED_VERSIONS:
            raise McpError(f"MCP server {self.name!r} speaks protocol {version!r}; auxot speaks {', '.join(ACCEPTED_VERSIONS)}")
        self.transport.protocol_version = version
        self.server_info = _obj(result.get("serverInfo"))
        self.capabilities = _obj(result.get("capabilities"))
        await self.transport.send(jsonrpc.notification("notifications/initialized"))

    async def list_tools(self) -> tuple[Tool, ...]:
        tools: list[Tool] = []
        cursor: str | None = None
        for _ in range(MAX_LIST_PAGES):
            result = await self.request("tools/list", {"cursor": cursor} if cursor else {}, LIST_TIMEOUT)
            if not isinstance(result, dict) or not isinstance(result.get("tools"), list):
                raise McpError(f"MCP server {self.name!r} answered tools/list without a list of tools")
            tools.extend(t for t in map(_tool, result["tools"]) if t is not None)
            cursor = result.get("nextCursor")
            if not isinstance(cursor, str) or not cursor:
                break
        self.tools = tuple(tools)
        if self._on_tools is not None:
            self._on_tools(self)
        return self.tools

    async def call(
        self, name: str, arguments: dict[str, Any], timeout: float, *,
        progress: Callable[[float, float | None], None] | None = None,
    ) -> CallResult:
        params: dict[str, Any] = {"name": name, "arguments": arguments}
        started = trio.current_time()
        if progress is not None:
            token = f"p{next(self._ids)}"
            params["_meta"] = {"progressToken": token}
            self._progress[token] = progress
        try:
            result = await self.request("tools/call", params, timeout)
        finally:
            if progress is not None:
                self._progress.pop(token, None)
        if not isinstance(result, dict) or not isinstance(result.get("content", []), list):
            raise McpError(f"MCP server {self.name!r} answered tools/call with {str(result)[:80]}")
        content = tuple(c for c in result.get("content", []) if isinstance(c, dict) and isinstance(c.get("type"), str))
        return CallResult(content, result.get("structuredContent"), result.get("isError") is True, trio.current_time() - started)


def _tool(raw: Any) -> Tool | None:
    if not isinstance(raw, dict) or not isinstance(raw.get("name"), str) or not raw["name"]:
        return None
    schema = raw.get("inputSchema")
    description, title = raw.get("description"), raw.get("title")
    return Tool(raw["name"], description if isinstance(description, str) else "",
                schema if isinstance(schema, dict) else {"type": "object"}, title if isinstance(title, str) else None)


def _obj(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def one_error(group: BaseExceptionGroup) -> BaseException:  # type: ignore[type-arg]
    """The one exception a nursery wrapped (what the caller should see), or the group."""
    errors = [e for e in group.exceptions if not isinstance(e, trio.Cancelled)]
    return errors[0] if len(errors) == 1 else group


@asynccontextmanager
async def open_session(
    name: str, transport: Transport, *, on_tools: Callable[[Session], None] | None = None,
) -> AsyncIterator[Session]:
    """A session, initialized and with its tools listed; its reader runs until the
    block ends (or the transport closes: then calls fail with ``session.closed``)."""
    session = Session(name, transport, on_tools=on_tools)
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(session.read, nursery)
            try:
                await session.initialize()
                await session.list_tools()
                yield session
            finally:
                nursery.cancel_scope.cancel()
    except BaseExceptionGroup as group:
        raise one_error(group) from None
