"""The dialects' own MCP shapes (spec/tools_protocol.md §explicit, §shown).

Asking: a request names an MCP server the router's tools workers run, or gives
the URL of its own (with its credentials, sent to that URL only), read into
:class:`ir.McpUse`; whether the operator lets the router reach that URL is
decided later (``tools/client_servers.py``).  Refused with 400, naming the
field: credentials for a tools worker's server (they live on the worker), a
connector, a URL that is not http(s), and ``require_approval`` other than
``"never"`` (approvals do not exist yet).

Showing: the calls the router ran for such a request come back as the
dialect's own items (Responses ``mcp_call``, Anthropic ``mcp_tool_use`` +
``mcp_tool_result``), and a client sends them back in its next turn; their
output is text (:func:`output_text`).  Pure."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlsplit

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


def _url(raw: Any, path: str) -> str:
    url: str = check.string(raw, path, required=True)
    parts = urlsplit(url)
    try:
        parts.port  # noqa: B018 (a port that is not a number raises)
    except ValueError:
        raise InvalidRequest(f"{path} has a port that is not a number", param=path) from None
    if parts.scheme not in ("http", "https") or not parts.hostname or any(c.isspace() for c in url):
        raise InvalidRequest(f"{path} must be an http:// or https:// URL", param=path)
    return url


_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_TRANSPORTS_OWN = frozenset({"host", "content-length", "transfer-encoding", "connection", "content-type", "accept",
                             "mcp-session-id", "mcp-protocol-version", "te", "upgrade", "keep-alive"})


def _headers(raw: Any, path: str) -> list[tuple[str, str]]:
    """The headers a client sends its own server: names and values HTTP can carry,
    none of those the transport sets itself."""
    headers = check.obj(raw, path)
    for name, value in headers.items():
        if not _TOKEN.fullmatch(name) or name.lower() in _TRANSPORTS_OWN:
            raise InvalidRequest(f"{path}: {name[:60]!r} is not a header a request may set here", param=path)
        if not isinstance(value, str) or any(c in value for c in "\r\n\0"):
            raise InvalidRequest(f"{path}.{name[:60]} must be a string of one line", param=path)
    return list(headers.items())


def _bearer(raw: Any, path: str) -> tuple[str, str]:
    token: str = check.string(raw, path, required=True)
    if not token or any(c in token for c in "\r\n\0 "):
        raise InvalidRequest(f"{path} must be a token of one word", param=path)
    return ("Authorization", f"Bearer {token}")


def _credentials_need_url(server: dict[str, Any], path: str, fields: tuple[str, ...]) -> None:
    for field in fields:
        if server.get(field) is not None:
            raise InvalidRequest(f"{path}.{field}: credentials go only with the client's own server URL; the MCP servers "
                                 "this router's tools workers run keep theirs on the worker", param=f"{path}.{field}")


def from_openai(tool: dict[str, Any], path: str) -> ir.McpUse:
    """Responses (and Chat Completions) ``{"type": "mcp", "server_label", "server_url", "headers",
    "authorization", "allowed_tools", "require_approval"}``."""
    label = check.string(tool.get("server_label"), f"{path}.server_label", required=True)
    if tool.get("connector_id") is not None:
        raise InvalidRequest(f"{path}.connector_id: this router has no connectors; name an MCP server with "
                             "server_label (and server_url for your own)", param=f"{path}.connector_id")
    approval = tool.get("require_approval", "always")
    if approval != "never":
        raise InvalidRequest(f"{path}.require_approval must be \"never\" (approvals are not supported; "
                             "OpenAI's default is \"always\")", param=f"{path}.require_approval")
    allowed = _allowed(tool.get("allowed_tools"), f"{path}.allowed_tools")
    if tool.get("server_url") is None:
        _credentials_need_url(tool, path, ("headers", "authorization"))
        return ir.McpUse(label, allowed, param=f"{path}.server_label")
    url = _url(tool["server_url"], f"{path}.server_url")
    sent = _headers(tool.get("headers") or {}, f"{path}.headers")
    if tool.get("authorization") is not None:
        sent.append(_bearer(tool["authorization"], f"{path}.authorization"))
    return ir.McpUse(label, allowed, url, tuple(sent), f"{path}.server_url")


def from_anthropic(raw: Any) -> tuple[ir.McpUse, ...]:
    """Anthropic ``mcp_servers: [{"type": "url", "url", "name", "authorization_token",
    "tool_configuration": {"enabled", "allowed_tools"}}]`` (``url`` may be left out to
    name a tools worker's server)."""
    uses = []
    for i, entry in enumerate(check.array(raw, "mcp_servers")):
        path = f"mcp_servers[{i}]"
        server = check.obj(entry, path)
        name = check.string(server.get("name"), f"{path}.name", required=True)
        if server.get("type", "url") != "url":
            raise InvalidRequest(f"{path}.type must be \"url\"", param=f"{path}.type")
        config = check.obj(server.get("tool_configuration") or {}, f"{path}.tool_configuration")
        allowed = _allowed(config.get("allowed_tools"), f"{path}.tool_configuration.allowed_tools")
        if server.get("url") is None:
            _credentials_need_url(server, path, ("authorization_token",))
            use = ir.McpUse(name, allowed, param=f"{path}.name")
        else:
            token = server.get("authorization_token")
            use = ir.McpUse(name, allowed, _url(server["url"], f"{path}.url"),
                            (_bearer(token, f"{path}.authorization_token"),) if token is not None else (), f"{path}.url")
        if config.get("enabled") is not False:
            uses.append(use)
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
