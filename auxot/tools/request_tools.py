"""A request's server-side tools, made ready before the model is asked: the
key's grant, the tools workers' tools it may use (and those the request names),
and the client's own servers (``client_servers.py``), opened for the request
and held open in ``held`` until its answer is out.  The same for every surface
that runs the loop (the HTTP pipeline, Responses over WebSocket)."""

from __future__ import annotations

from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .. import ir
from . import client_servers, policy

if TYPE_CHECKING:
    from ..accounts.store import KeyRecord
    from ..services import Services


@dataclass(frozen=True)
class RequestTools:
    request: ir.Request  # as the model gets it: the server tools added, its ``mcp`` consumed
    grant: policy.Grant
    server_tools: dict[str, dict[str, Any]]  # offered name → tool, of every server
    shown: frozenset[str]  # the servers whose calls the client sees (tools_protocol.md §shown)
    own: client_servers.ClientServers  # the client's own servers, open


async def prepare(svc: Services, key: KeyRecord, request: ir.Request, shows: bool, held: AsyncExitStack) -> RequestTools:
    grant = policy.Grant.of(key)
    available = svc.tools.tools()
    uses = client_servers.check(request.mcp, svc.config.tools, available)
    own = await held.enter_async_context(client_servers.opened(uses, svc.config.tools))
    request, server_tools, shown = policy.plan(grant, request, available, svc.config.tools.inject, shows, own.tools)
    return RequestTools(request, grant, server_tools, shown, own)
