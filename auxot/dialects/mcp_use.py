"""The dialects' own MCP shapes (spec/tools_protocol.md §explicit, §shown).

Asking: a request names an MCP server the router's tools workers run, read into
:class:`ir.McpUse`.  Refused with 400, naming the field: a server URL
(client-supplied servers are not reached; the router's are named), credentials
(they live on the tools worker), and ``require_approval`` other than
``"never"`` (approvals do not exist yet).

Showing: the calls the router ran for such a request come back as the
dialect's own items (Responses ``mcp_call``, Anthropic ``mcp_tool_use`` +
``mcp_tool_result``), and a client sends them back in its next turn; their
output is text (:func:`output_text`).  Pure."""

from __future__ import annotations

from typing import Any

from .. import ir
from ..errors import InvalidRequest
from ..sse import dumps as sse_dumps
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


def output_text(output: tuple[ir.Text | ir.Image, ...]) -> str:
    """A server tool's result as the one string these shapes carry: its text;
    an image as a note naming it (the model itself was given the image)."""
    return "\n".join(p.text if isinstance(p, ir.Text) else f"[image: {p.media_type or p.url or 'image'}]" for p in output)


def exposed(server: str, name: str) -> str:
    """A server tool's name as the model is offered it."""
    return server + ir.SERVER_TOOL_SEPARATOR + name


def server_call(server: str, name: str, call_id: str, arguments: str) -> ir.ToolCall:
    """A shown call, sent back by the client: the model's call as it made it."""
    return ir.ToolCall(call_id, exposed(server, name), arguments)


def as_turns(content: tuple[ir.Part | ir.ServerToolCall | ir.ServerToolResult | ir.ServerTools, ...]) -> list[ir.Message]:
    """An assistant's content as the model saw it: each call the router ran itself
    is the model's tool call (``server__tool``) in an assistant turn, and its result
    a tool result in a tool turn after it; server tool listings are left out."""
    turns: list[ir.Message] = []

    def add(role: ir.Role, part: ir.Part) -> None:
        if turns and turns[-1].role is role:
            turns[-1] = ir.Message(role, (*turns[-1].content, part))
        else:
            turns.append(ir.Message(role, (part,)))

    for part in content:
        if isinstance(part, ir.ServerToolCall):
            add(ir.Role.ASSISTANT, server_call(part.server, part.name, part.id, part.arguments))
        elif isinstance(part, ir.ServerToolResult):
            add(ir.Role.TOOL, ir.ToolResult(part.call_id, part.output, part.is_error))
        elif isinstance(part, ir.ToolResult):
            add(ir.Role.TOOL, part)
        elif not isinstance(part, ir.ServerTools):
            add(ir.Role.ASSISTANT, part)
    return turns


def error_text(raw: Any) -> str:
    """The text of a Responses ``mcp_call.error`` as sent back: a string, an
    ``mcp_tool_execution_error`` with content, or a protocol/HTTP error with a message."""
    if isinstance(raw, str):
        return raw
    if isinstance(raw, dict):
        if isinstance(raw.get("message"), str):
            return str(raw["message"])
        content = raw.get("content")
        if isinstance(content, list):
            return "\n".join(str(c.get("text", "")) for c in content if isinstance(c, dict))
        if isinstance(content, str):
            return content
    return sse_dumps(raw)
