"""Clients' own MCP servers: a request that gives a server's URL (Responses and
Chat ``{"type": "mcp", "server_label", "server_url", "headers", "authorization"}``,
Anthropic ``mcp_servers: [{"url", "name", "authorization_token"}]``) has the
router itself reach that server, over Streamable HTTP, for that request only —
where the operator allows the URL:

    [tools]
    client_servers = ["https://mcp.example.com/*"]   # URL globs; none by default: a server URL is a 400
    client_servers_private = ["127.0.0.1"]           # non-public addresses they may resolve to; none by default

The request's headers (its credentials) go to that server and nowhere else;
they are not logged or stored.  Its tools are offered as ``<label>__<tool>``
beside the tools workers' and run in the same loop, under the same limits.
The sessions open side by side, before the model is asked, within the call
timeout; a server that cannot be reached or does not speak MCP is the
request's fault (424, naming the field; 400 for an address the operator
did not allow), never a provider's.  They end
(``DELETE``) when the answer is out.
"""

from __future__ import annotations

from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from typing import Any, AsyncIterator
from urllib.parse import urlsplit

import trio

from .. import ir
from ..config import ToolsConfig
from ..errors import ClientError, InvalidRequest
from ..workers.wire import valid_name
from .addresses import Refused, check_host, networks
from .mcp import CallResult, McpError, McpTimeout, Session, cut, one_error, open_session
from .servers import SEPARATOR
from .streamable_http import open_http


class ServerFailed(ClientError):
    """The client's own MCP server could not be reached, or did not answer as one
    (OpenAI answers 424 here too)."""

    status = 424


@dataclass
class ClientServers:
    """A request's own MCP servers, open: their tools by offered name, and the calls to them."""

    sessions: dict[str, Session] = field(default_factory=dict)  # label → session
    tools: dict[str, dict[str, Any]] = field(default_factory=dict)  # offered name → {name, server, description, input_schema}

    async def call(self, name: str, arguments: dict[str, Any], timeout: float) -> CallResult:
        label, _, tool = name.partition(SEPARATOR)
        try:
            result = await self.sessions[label].call(tool, arguments, timeout)
        except McpTimeout:
            return _error(f"the tool did not finish within {timeout:g} s")
        except McpError as exc:
            return _error(exc.message)
        return CallResult(tuple(cut(result.content)), result.structured, result.is_error, result.duration_s)


def _error(text: str) -> CallResult:
    return CallResult(({"type": "text", "text": text},), is_error=True)


def allowed_url(config: ToolsConfig, url: str) -> bool:
    return any(fnmatchcase(url, pattern) for pattern in config.client_servers)


def check(uses: tuple[ir.McpUse, ...], config: ToolsConfig, available: dict[str, dict[str, Any]]) -> list[ir.McpUse]:
    """The request's own servers, each allowed by the operator and labelled so its
    tools' names are unambiguous (not the name of a server whose tools are
    ``available`` from the tools workers); else a 400 naming the field."""
    own = [use for use in uses if use.url is not None]
    if not own:
        return own
    workers_servers = {tool["server"] for tool in available.values()}
    labels: set[str] = set()
    for use in own:
        assert use.url is not None
        if not allowed_url(config, use.url):
            raise InvalidRequest(f"{use.param}: this router's operator does not allow MCP servers at {use.url[:200]!r} "
                                 "([tools] client_servers)", param=use.param)
        if not valid_name(use.server) or SEPARATOR in use.server:
            raise InvalidRequest(f"the MCP server's label {use.server[:80]!r} must be 1-64 of A-Z a-z 0-9 . _ - "
                                 f"without {SEPARATOR!r}", param=use.param)
        if use.server in workers_servers or use.server in labels:
            raise InvalidRequest(f"the MCP server label {use.server!r} is taken (by another of this request's servers, "
                                 "or one of this router's); choose another", param=use.param)
        labels.add(use.server)
    return own


@asynccontextmanager
async def opened(uses: list[ir.McpUse], config: ToolsConfig) -> AsyncIterator[ClientServers]:
    """Sessions with the request's own servers (none: nothing opens), open until the block ends."""
    servers = ClientServers()
    if not uses:
        yield servers
        return
    failures: list[ClientError] = []
    opening = len(uses)
    all_open, done = trio.Event(), trio.Event()
    private = networks(config.client_servers_private)

    async def hold(use: ir.McpUse) -> None:
        nonlocal opening
        assert use.url is not None
        try:
            parts = urlsplit(use.url)
            await check_host(parts.hostname or "", parts.port or (443 if parts.scheme == "https" else 80), private,
                             "[tools] client_servers_private in the router's config")
            async with open_http(use.server, use.url, dict(use.headers)) as transport, \
                    open_session(use.server, transport) as session:
                servers.sessions[use.server] = session
                opening -= 1
                if not opening:
                    all_open.set()
                await done.wait()
        except Refused as exc:
            failures.append(InvalidRequest(f"{use.param}: {exc}", param=use.param))
            all_open.set()
        except McpError as exc:
            failures.append(ServerFailed(f"{use.param}: the MCP server at {use.url[:200]!r} failed: {exc}",
                                         param=use.param))
            all_open.set()

    try:
        async with trio.open_nursery() as nursery:
            for use in uses:
                nursery.start_soon(hold, use)
            with trio.move_on_after(config.call_timeout):
                await all_open.wait()
            try:
                if failures:
                    raise failures[0]
                if opening:
                    slow = next(u for u in uses if u.server not in servers.sessions)
                    raise ServerFailed(f"{slow.param}: the MCP server at {slow.url!r} did not open a session within "
                                       f"{config.call_timeout:g} s", param=slow.param)
                for use in uses:
                    for tool in servers.sessions[use.server].tools:
                        if use.allowed_tools is None or tool.name in use.allowed_tools:
                            servers.tools[use.server + SEPARATOR + tool.name] = {
                                "name": use.server + SEPARATOR + tool.name, "server": use.server,
                                "description": tool.description, "input_schema": tool.input_schema}
                yield servers
            finally:
                done.set()
                if failures or opening:
                    nursery.cancel_scope.cancel()
    except BaseExceptionGroup as group:
        raise one_error(group) from None
