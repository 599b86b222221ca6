"""The dialects' own ways of asking for an MCP server's tools, read into
:class:`ir.McpUse` (spec/tools_protocol.md §explicit).  The server is named; its
tools run on the router's tools workers.  Refused with 400, naming the field:
a server URL (client-supplied servers are not reached; the router's are named),
credentials (they live on the tools worker), and ``require_approval`` other
than ``"never"`` (approvals do not exist yet).  Pure."""

from __future__ import annotations

from typing import Any

from .. import ir
from ..errors import InvalidRequest
from . import check


def _allowed(raw: Any, path: str) -> tuple[str, ...] | None:
    if raw is None:
        return None
    if isinstance(raw, dict):  # {"tool_names": [...]} (OpenAI's filter object)
        raw = raw.get("tool_names")
    names = check.array(raw, path)
    if not all(isinstance(n, str) for n in names):
        raise InvalidRequest(f"{path} must list tool names", param=path)
    return tuple(names)


def from_openai(tool: dict[str, Any], path: str) -> ir.McpUse:
    """Responses (and Chat Completions) ``{"type": "mcp", "server_label", "allowed_tools", "require_approval"}``."""
    label = check.string(tool.get("server_label"), f"{path}.server_label", required=True)
    for field in ("server_url", "connector_id"):
        if tool.get(field) is not None:
            raise InvalidRequest(f"{path}.{field}: this router reaches only the MCP servers its tools workers run; "
                                 "name one with server_label", param=f"{path}.{field}")
    for field in ("headers", "authorization"):
        if tool.get(field) is not None:
            raise InvalidRequest(f"{path}.{field}: an MCP server's credentials live on its tools worker, not in requests",
                                 param=f"{path}.{field}")
    approval = tool.get("require_approval", "always")
    if approval != "never":
        raise InvalidRequest(f"{path}.require_approval must be \"never\" (approvals are not supported; "
                             "OpenAI's default is \"always\")", param=f"{path}.require_approval")
    return ir.McpUse(label, _allowed(tool.get("allowed_tools"), f"{path}.allowed_tools"))


def from_anthropic(raw: Any) -> tuple[ir.McpUse, ...]:
    """Anthropic ``mcp_servers: [{"type": "url", "name", "tool_configuration": {"enabled", "allowed_tools"}}]``."""
    uses = []
    for i, entry in enumerate(check.array(raw, "mcp_servers")):
        path = f"mcp_servers[{i}]"
        server = check.obj(entry, path)
        name = check.string(server.get("name"), f"{path}.name", required=True)
        if server.get("url") is not None:
            raise InvalidRequest(f"{path}.url: this router reaches only the MCP servers its tools workers run; "
                                 "name one and leave url out", param=f"{path}.url")
        if server.get("authorization_token") is not None:
            raise InvalidRequest(f"{path}.authorization_token: an MCP server's credentials live on its tools worker",
                                 param=f"{path}.authorization_token")
        config = check.obj(server.get("tool_configuration") or {}, f"{path}.tool_configuration")
        if config.get("enabled") is False:
            continue
        uses.append(ir.McpUse(name, _allowed(config.get("allowed_tools"), f"{path}.tool_configuration.allowed_tools")))
    return tuple(uses)
