"""Anthropic Messages ⇄ IR.

Pure, like every codec: request and response bodies are JSON values.  Streams
(upstream SSE → IR, IR → the client's SSE) live in :mod:`.anthropic_stream`; IR → a request
for an Anthropic upstream in :mod:`.anthropic_upstream`.
Mappings and what cannot be carried: spec/mapping.md (cited as ``mapping §…``).

Anthropic's wire shapes, for the reader:

    request   {model, max_tokens, system?, messages: [{role, content}], tools?, tool_choice?,
               stop_sequences?, temperature?, top_p?, top_k?, thinking?, metadata?, stream?}
    response  {id, type: "message", role: "assistant", model, content: [blocks],
               stop_reason, stop_sequence, usage}
    stream    message_start, (content_block_start, content_block_delta*, content_block_stop)*,
              message_delta, message_stop — with ping anywhere and error in place of the rest
"""

from __future__ import annotations

import json
from typing import Any

from .. import ir
from ..errors import AuxotError, ErrorKind, InvalidRequest
from . import check, mcp_use

# mapping §stop-reasons
STOP_REASONS = {
    "end_turn": ir.StopReason.END_TURN,
    "max_tokens": ir.StopReason.MAX_TOKENS,
    "tool_use": ir.StopReason.TOOL_USE,
    "stop_sequence": ir.StopReason.STOP_SEQUENCE,
    "refusal": ir.StopReason.REFUSAL,
    "pause_turn": ir.StopReason.END_TURN,
    "model_context_window_exceeded": ir.StopReason.MAX_TOKENS,
}

# mapping §errors
ERROR_TYPES: dict[str, str] = {
    ErrorKind.INVALID_REQUEST: "invalid_request_error",
    ErrorKind.AUTHENTICATION: "authentication_error",
    ErrorKind.PERMISSION: "permission_error",
    ErrorKind.NOT_FOUND: "not_found_error",
    ErrorKind.REQUEST_TOO_LARGE: "request_too_large",
    ErrorKind.RATE_LIMIT: "rate_limit_error",
    ErrorKind.UPSTREAM: "api_error",
    ErrorKind.UNAVAILABLE: "overloaded_error",
    ErrorKind.TIMEOUT: "api_error",
    ErrorKind.INTERNAL: "api_error",
}



def error_body(err: AuxotError) -> dict[str, Any]:
    return error_fields(err.kind, err.message)


def error_fields(kind: str, message: str) -> dict[str, Any]:
    return {"type": "error", "error": {"type": ERROR_TYPES.get(kind, "api_error"), "message": message}}


# --- requests ----------------------------------------------------------------


def decode_request(body: Any) -> ir.Request:
    body = check.obj(body, "body")
    model = check.model_id(body.get("model"), "model: Field required (You must specify a model to call)")
    if body.get("max_tokens") is None:
        raise InvalidRequest("max_tokens: Field required", param="max_tokens")
    max_tokens = check.integer(body.get("max_tokens"), "max_tokens", 1)
    raw_messages = check.array(body.get("messages"), "messages", required=True)
    if not raw_messages:
        raise InvalidRequest("Messages array cannot be empty", param="messages")

    messages: list[ir.Message] = []
    for i, raw in enumerate(raw_messages):
        messages.extend(_decode_message(raw, f"messages[{i}]"))

    stops = tuple(
        check.string(s, f"stop_sequences[{j}]", required=True)
        for j, s in enumerate(check.array(body.get("stop_sequences"), "stop_sequences"))
    )
    tool_choice, parallel = _decode_tool_choice(body.get("tool_choice"))
    tools = []
    for j, raw_tool in enumerate(check.array(body.get("tools"), "tools")):
        tool = _decode_tool(raw_tool, f"tools[{j}]")
        if tool is not None:
            tools.append(tool)
    metadata = body.get("metadata")
    return ir.Request(
        model=model,
        messages=tuple(messages),
        system=tuple(_decode_system(body.get("system"))),
        tools=tuple(tools),
        mcp=mcp_use.from_anthropic(body.get("mcp_servers")),
        tool_choice=tool_choice,
        parallel_tool_calls=parallel,
        sampling=ir.Sampling(
            temperature=check.number(body.get("temperature"), "temperature", 0, 1),
            top_p=check.number(body.get("top_p"), "top_p", 0, 1),
            top_k=check.integer(body.get("top_k"), "top_k", 0),
            max_tokens=max_tokens,
            stop=stops,
        ),
        stream=bool(check.boolean(body.get("stream"), "stream")),
        include_usage=True,
        metadata=check.obj(metadata, "metadata") if metadata is not None else None,
        reasoning=_decode_thinking(body.get("thinking")),
    )


def _decode_system(raw: Any, path: str = "system") -> list[ir.Text]:
    if raw is None:
        return []
    if isinstance(raw, str):
        return [ir.Text(raw)] if raw else []
    out = []
    for j, block in enumerate(check.array(raw, path)):
        block = check.obj(block, f"{path}[{j}]")
        if block.get("type") != "text":
            raise InvalidRequest(f"{path}[{j}].type must be 'text'; got {block.get('type')!r}", param=f"{path}[{j}].type")
        out.append(ir.Text(check.string(block.get("text"), f"{path}[{j}].text", required=True)))
    return out


def _decode_message(raw: Any, path: str) -> list[ir.Message]:
    """One Anthropic message → one or two IR messages: tool results travel in an
    IR TOOL message ahead of the rest of the user's turn (mapping §tool-results)."""
    raw = check.obj(raw, path)
    role = raw.get("role")
    if role == "system":
        # Claude Code's mid-conversation system turns (a beta of its own): carried in
        # place (mapping §system), text only.
        texts = _decode_system(raw.get("content"), f"{path}.content")
        return [ir.Message(ir.Role.SYSTEM, tuple(texts))] if texts else []
    if role not in ("user", "assistant"):
        raise InvalidRequest(f"{path}.role must be 'user', 'assistant' or 'system'; got {role!r}", param=f"{path}.role")
    content = raw.get("content")
    if isinstance(content, str):
        blocks: list[Any] = [{"type": "text", "text": content}] if content else []
    else:
        blocks = check.array(content, f"{path}.content", required=True)
    results: list[ir.Part] = []
    parts: list[ir.Part] = []
    for j, block in enumerate(blocks):
        part = _decode_block(block, f"{path}.content[{j}]", role)
        if part is None:
            continue
        (results if isinstance(part, ir.ToolResult) and role == "user" else parts).append(part)
    if role == "assistant":  # the calls the router ran (mcp_tool_use + mcp_tool_result) as the model made and saw them
        return mcp_use.as_turns(tuple(parts)) or [ir.Message(ir.Role.ASSISTANT, ())]
    out = []
    if results:
        out.append(ir.Message(ir.Role.TOOL, tuple(results)))
    if parts or not results:
        out.append(ir.Message(ir.Role.USER if role == "user" else ir.Role.ASSISTANT, tuple(parts)))
    return out


def _decode_block(block: Any, path: str, role: str) -> ir.Part | None:
    block = check.obj(block, path)
    kind = block.get("type")
    match kind:
        case "text":
            return ir.Text(check.string(block.get("text"), f"{path}.text", required=True))
        case "image" if role == "user":
            return _decode_image(block, path)
        case "tool_use" if role == "assistant":
            tool_input = block.get("input", {})
            check.obj(tool_input, f"{path}.input")
            return ir.ToolCall(
                check.string(block.get("id"), f"{path}.id", required=True),
                check.string(block.get("name"), f"{path}.name", required=True),
                json.dumps(tool_input, ensure_ascii=False),
            )
        case "tool_result" if role == "user":
            content = block.get("content")
            if isinstance(content, str) or content is None:
                inner: list[ir.Text | ir.Image] = [ir.Text(content)] if content else []
            else:
                inner = []
                for k, item in enumerate(check.array(content, f"{path}.content")):
                    item = check.obj(item, f"{path}.content[{k}]")
                    if item.get("type") == "text":
                        inner.append(ir.Text(check.string(item.get("text"), f"{path}.content[{k}].text", required=True)))
                    elif item.get("type") == "image":
                        inner.append(_decode_image(item, f"{path}.content[{k}]"))
                    else:
                        raise InvalidRequest(
                            f"{path}.content[{k}].type {item.get('type')!r} is not supported in a tool_result",
                            param=f"{path}.content[{k}].type",
                        )
            return ir.ToolResult(
                check.string(block.get("tool_use_id"), f"{path}.tool_use_id", required=True),
                tuple(inner),
                bool(check.boolean(block.get("is_error"), f"{path}.is_error")),
            )
        case "mcp_tool_use" if role == "assistant":  # a call the router ran, sent back (mapping §tools)
            server_input = check.obj(block.get("input", {}), f"{path}.input")
            return mcp_use.server_call(check.string(block.get("server_name"), f"{path}.server_name", required=True),
                                       check.string(block.get("name"), f"{path}.name", required=True),
                                       check.string(block.get("id"), f"{path}.id", required=True),
                                       json.dumps(server_input, ensure_ascii=False))
        case "mcp_tool_result" if role == "assistant":
            content = block.get("content")
            texts = [content] if isinstance(content, str) else [
                check.string(check.obj(item, f"{path}.content[{k}]").get("text"), f"{path}.content[{k}].text", required=True)
                for k, item in enumerate(check.array(content, f"{path}.content"))]
            return ir.ToolResult(check.string(block.get("tool_use_id"), f"{path}.tool_use_id", required=True),
                                 tuple(ir.Text(t) for t in texts), bool(check.boolean(block.get("is_error"), f"{path}.is_error")))
        case "mcp_tool_listing" if role == "assistant":
            return None  # what the server offered then; the router lists its tools workers' servers afresh each request
        case "thinking" if role == "assistant":
            return ir.Thinking(
                check.string(block.get("thinking"), f"{path}.thinking", required=True),
                check.string(block.get("signature"), f"{path}.signature"),
            )
        case "redacted_thinking" if role == "assistant":
            return ir.Thinking("", check.string(block.get("data"), f"{path}.data", required=True), redacted=True)
        case _:
            raise InvalidRequest(f"{path}.type {kind!r} is not supported in a {role} message", param=f"{path}.type")


def _decode_image(block: dict[str, Any], path: str) -> ir.Image:
    source = check.obj(block.get("source"), f"{path}.source", required=True)
    match source.get("type"):
        case "base64":
            return ir.Image(
                media_type=check.string(source.get("media_type"), f"{path}.source.media_type", required=True),
                data=check.string(source.get("data"), f"{path}.source.data", required=True),
            )
        case "url":
            return ir.Image(url=check.string(source.get("url"), f"{path}.source.url", required=True))
        case other:
            raise InvalidRequest(f"{path}.source.type must be 'base64' or 'url'; got {other!r}", param=f"{path}.source.type")


def _decode_tool(raw: Any, path: str) -> ir.Tool | None:
    raw = check.obj(raw, path)
    kind = raw.get("type")
    if kind not in (None, "custom"):
        # Anthropic-hosted tools (web_search_…, bash_…, text_editor_…) run on
        # Anthropic's side; no provider here can run them (mapping §tools).
        return None
    schema = raw.get("input_schema")
    return ir.Tool(
        name=check.string(raw.get("name"), f"{path}.name", required=True),
        description=check.string(raw.get("description"), f"{path}.description"),
        parameters=check.obj(schema, f"{path}.input_schema") if schema is not None else None,
        strict=check.boolean(raw.get("strict"), f"{path}.strict"),
    )


def _decode_tool_choice(raw: Any) -> tuple[ir.ToolChoice | None, bool | None]:
    if raw is None:
        return None, None
    raw = check.obj(raw, "tool_choice")
    parallel = None
    if check.boolean(raw.get("disable_parallel_tool_use"), "tool_choice.disable_parallel_tool_use"):
        parallel = False
    match raw.get("type"):
        case "auto":
            return ir.ToolChoice("auto"), parallel
        case "any":
            return ir.ToolChoice("required"), parallel
        case "none":
            return ir.ToolChoice("none"), parallel
        case "tool":
            return ir.ToolChoice("tool", check.string(raw.get("name"), "tool_choice.name", required=True)), parallel
        case other:
            raise InvalidRequest(f"tool_choice.type must be auto, any, tool or none; got {other!r}", param="tool_choice.type")


def _decode_thinking(raw: Any) -> ir.Reasoning | None:
    if raw is None:
        return None
    raw = check.obj(raw, "thinking")
    match raw.get("type"):
        case "enabled":
            return ir.Reasoning(True, check.integer(raw.get("budget_tokens"), "thinking.budget_tokens", 0))
        case "adaptive":
            return ir.Reasoning(True, effort="adaptive")
        case "disabled":
            return ir.Reasoning(False)
        case other:
            raise InvalidRequest(f"thinking.type must be enabled, adaptive or disabled; got {other!r}", param="thinking.type")


def tool_input(arguments: str) -> dict[str, Any]:
    """Tool-call arguments as Anthropic's ``input`` object.  Arguments that are not
    a JSON object (a model may emit broken JSON) are kept, not lost (mapping §tool-input)."""
    try:
        value = json.loads(arguments) if arguments.strip() else {}
    except ValueError:
        return {"_unparsed_arguments": arguments}
    return value if isinstance(value, dict) else {"_value": value}


# --- responses ---------------------------------------------------------------


def encode_usage(usage: ir.Usage) -> dict[str, Any]:
    """mapping §usage: input_tokens excludes cache reads and writes."""
    return {
        "input_tokens": usage.input_tokens or 0,
        "output_tokens": usage.output_tokens or 0,
        "cache_creation_input_tokens": usage.cache_write_tokens or 0,
        "cache_read_input_tokens": usage.cache_read_tokens or 0,
    }


def decode_usage(raw: Any) -> ir.Usage:
    raw = raw if isinstance(raw, dict) else {}

    def num(key: str) -> int | None:
        value = raw.get(key)
        return value if isinstance(value, int) and not isinstance(value, bool) else None

    return ir.Usage(num("input_tokens"), num("output_tokens"), num("cache_read_input_tokens"), num("cache_creation_input_tokens"))


def decode_stop_reason(raw: Any) -> ir.StopReason | None:
    return STOP_REASONS.get(raw) if isinstance(raw, str) else None


def stop_reason_name(stop: ir.StopReason | None) -> str | None:
    return stop.value if stop is not None else None


def encode_response(resp: ir.Response) -> dict[str, Any]:
    content: list[dict[str, Any]] = []
    for part in resp.content:
        match part:
            case ir.Text(text=text):
                content.append({"type": "text", "text": text})
            case ir.Thinking(text=text, signature=signature, redacted=redacted):
                content.append({"type": "redacted_thinking", "data": signature or ""} if redacted
                               else {"type": "thinking", "thinking": text, "signature": signature or ""})
            case ir.ToolCall(id=call_id, name=name, arguments=arguments):
                content.append({"type": "tool_use", "id": call_id, "name": name, "input": tool_input(arguments)})
            case ir.ServerToolCall(id=call_id, server=server, name=name, arguments=arguments):
                content.append(mcp_tool_use(call_id, server, name, tool_input(arguments)))
            case ir.ServerToolResult(call_id=call_id, output=output, is_error=is_error):
                content.append(mcp_tool_result(call_id, output, is_error))
    return {
        "id": resp.id,
        "type": "message",
        "role": "assistant",
        "model": resp.model,
        "content": content,
        "stop_reason": stop_reason_name(resp.stop_reason),
        "stop_sequence": resp.stop_sequence,
        "usage": encode_usage(resp.usage),
    }


def mcp_tool_use(call_id: str, server: str, name: str, arguments: dict[str, Any]) -> dict[str, Any]:
    return {"type": "mcp_tool_use", "id": call_id, "name": name, "server_name": server, "input": arguments}


def mcp_tool_result(call_id: str, output: tuple[ir.Text | ir.Image, ...], is_error: bool) -> dict[str, Any]:
    return {"type": "mcp_tool_result", "tool_use_id": call_id, "is_error": is_error,
            "content": [{"type": "text", "text": mcp_use.output_text(output)}]}


def decode_response(body: Any) -> ir.Response:
    body = check.obj(body, "response")
    parts: list[ir.Text | ir.Thinking | ir.ToolCall] = []
    for j, block in enumerate(check.array(body.get("content"), "content")):
        part = _decode_block(block, f"content[{j}]", "assistant")
        if isinstance(part, (ir.Text, ir.Thinking, ir.ToolCall)):
            parts.append(part)
    return ir.Response(
        id=str(body.get("id", "")),
        model=str(body.get("model", "")),
        content=tuple(parts),
        stop_reason=decode_stop_reason(body.get("stop_reason")),
        stop_sequence=body.get("stop_sequence") if isinstance(body.get("stop_sequence"), str) else None,
        usage=decode_usage(body.get("usage")),
    )
