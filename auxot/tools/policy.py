"""Which server-side tools a request may use: those a tools worker offers now,
that the key allows (``keys create --tools 'web_fetch,everything__*'``; default
none) and its team too, where the team sets a limit (``keys team-tools``).
Checked when the tools are offered to the model and again when a call is about
to run.  Pure."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import TYPE_CHECKING, Any, Iterable

from .. import ir
from ..errors import InvalidRequest, PermissionDenied
from .servers import SEPARATOR

if TYPE_CHECKING:
    from ..accounts.store import KeyRecord


def allowed(patterns: Iterable[str], name: str) -> bool:
    """A key's pattern names an exposed tool (``server__tool``, globs allowed),
    or a tool by its own name on any server (``web_fetch``)."""
    bare = name.partition(SEPARATOR)[2]
    return any(fnmatchcase(name, p) or (SEPARATOR not in p and fnmatchcase(bare, p)) for p in patterns)


@dataclass(frozen=True)
class Grant:
    """The server-side tools a key may use: its own patterns (``keys create
    --tools``), cut to its team's where the team sets some (``keys team-tools``)."""

    key: tuple[str, ...] = ()
    team: tuple[str, ...] | None = None

    def allows(self, name: str) -> bool:
        return allowed(self.key, name) and (self.team is None or allowed(self.team, name))

    @classmethod
    def of(cls, key: KeyRecord) -> Grant:
        return cls(key.tools, key.team_tools)


def offered(grant: Grant, available: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The tools this key may have, of those on offer."""
    return {name: tool for name, tool in available.items() if grant.allows(name)}


def with_server_tools(request: ir.Request, server_tools: dict[str, dict[str, Any]]) -> ir.Request:
    """The request with the server's tools added to the client's.  A client tool
    named like a server tool is a 400: which one a call meant could not be told."""
    clash = sorted({t.name for t in request.tools} & set(server_tools))
    if clash:
        raise InvalidRequest(f"tool name(s) {', '.join(clash)} are also server-side tools this key may use; "
                             "rename the client's tool", param="tools")
    added = tuple(ir.Tool(name, tool.get("description") or None, tool.get("input_schema") or {"type": "object"})
                  for name, tool in sorted(server_tools.items()))
    return dataclasses.replace(request, tools=request.tools + added)


def chosen(grant: Grant, uses: tuple[ir.McpUse, ...], available: dict[str, dict[str, Any]],
           inject: str) -> dict[str, dict[str, Any]]:
    """The server tools a request gets.  ``inject = "policy"``: every tool the key
    may use, plus any the request names; ``"explicit"``: only those the request
    names in its dialect's own shape (``uses``) — always within what the key may use."""
    mine = offered(grant, available)
    picked: dict[str, dict[str, Any]] = {}
    for use in uses:
        if use.url is not None:
            continue  # the client's own server (client_servers.py)
        on_server = {name: tool for name, tool in available.items() if tool["server"] == use.server}
        if not on_server:
            raise InvalidRequest(f"no MCP server {use.server!r} is on this router's tools workers now", param="tools")
        wanted = {name: tool for name, tool in on_server.items()
                  if use.allowed_tools is None or name.partition(SEPARATOR)[2] in use.allowed_tools}
        permitted = {name: tool for name, tool in wanted.items() if name in mine}
        if not permitted:
            raise PermissionDenied(f"this API key may not use the tools of MCP server {use.server!r}", param="tools")
        picked.update(permitted)
    return picked if inject == "explicit" else {**mine, **picked}


def plan(grant: Grant, request: ir.Request, available: dict[str, dict[str, Any]], inject: str,
         shows: bool, own: dict[str, dict[str, Any]] | None = None,
         ) -> tuple[ir.Request, dict[str, dict[str, Any]], frozenset[str]]:
    """A request's server tools: the request as the model gets it (the server
    tools added, its ``mcp`` consumed), the tools it may call by their offered
    name, and the servers whose calls the client is shown (those it named, where
    its dialect ``shows`` them).  ``own``: the tools of the client's own servers,
    open for this request (the operator allowed their URLs; no key pattern applies)."""
    server_tools = {**chosen(grant, request.mcp, available, inject), **(own or {})}
    shown = frozenset(use.server for use in request.mcp) if shows else frozenset()
    request = dataclasses.replace(request, mcp=()) if request.mcp else request
    return (with_server_tools(request, server_tools) if server_tools else request), server_tools, shown
