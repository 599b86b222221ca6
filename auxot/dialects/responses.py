"""OpenAI Responses → IR: requests.

Pure, like every codec.  The Responses dialect is item oriented: ``input`` is a
string or a list of items (messages with ``input_text`` / ``input_image`` parts,
``function_call``, ``function_call_output``, ``reasoning``, ``mcp_call``), read
here into an :class:`ir.Request`; the answer's side — the response object and
its output items, for the JSON answer and the stream — is in
:mod:`.responses_output`.  Mappings: spec/mapping.md §responses.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from .. import ir
from ..errors import InvalidRequest
from . import check, logprobs, mcp_use
from .openai_chat import (  # OpenAI's error envelope
    decode_function,
    decode_json_schema,
    error_body,
    image_from_url,
)

__all__ = ["decode_request", "error_body", "settings"]

HOSTED_TOOLS = {"web_search", "web_search_preview", "file_search", "computer_use_preview", "code_interpreter",
                "image_generation", "local_shell"}
CUSTOM_PARAMETERS = {"type": "object", "properties": {"input": {"type": "string"}}, "required": ["input"]}


# --- requests ----------------------------------------------------------------


def decode_request(body: Any, history: Callable[[str], list[ir.Message] | None] | None = None) -> ir.Request:
    """``history`` resolves ``previous_response_id`` to the stored conversation."""
    body = check.obj(body, "body")
    model = check.model_id(body.get("model"))
    raw_input = body.get("input")
    if raw_input is None:
        raise InvalidRequest("input is required", param="input")
    item_tools: list[ir.Tool | ir.McpUse] = []
    if isinstance(raw_input, str):
        messages = [ir.Message(ir.Role.USER, (ir.Text(raw_input),))]
    else:
        items = check.array(raw_input, "input")
        if not items:
            raise InvalidRequest("input cannot be empty", param="input")
        messages, item_tools = _decode_items(items)
    previous = body.get("previous_response_id")
    if previous is not None:
        check.string(previous, "previous_response_id")
        earlier = history(previous) if history is not None else None
        if earlier is None:
            raise InvalidRequest(f"Previous response with id '{previous}' not found.", param="previous_response_id")
        messages = [*earlier, *messages]
    system = []
    if isinstance(body.get("instructions"), str) and body["instructions"]:
        system.append(ir.Text(body["instructions"]))
    elif body.get("instructions") is not None:
        check.string(body["instructions"], "instructions")
    text = check.obj(body.get("text"), "text")
    reasoning = check.obj(body.get("reasoning"), "reasoning")
    effort = reasoning.get("effort")
    declared = [*_decode_tools(check.array(body.get("tools"), "tools"), "tools"), *item_tools]
    return ir.Request(
        model=model,
        messages=tuple(messages),
        system=tuple(system),
        tools=tuple(t for t in declared if isinstance(t, ir.Tool)),
        mcp=tuple(t for t in declared if isinstance(t, ir.McpUse)),
        tool_choice=_decode_tool_choice(body.get("tool_choice")),
        parallel_tool_calls=check.boolean(body.get("parallel_tool_calls"), "parallel_tool_calls"),
        sampling=ir.Sampling(
            temperature=check.number(body.get("temperature"), "temperature", 0, 2),
            top_p=check.number(body.get("top_p"), "top_p", 0, 1),
            max_tokens=check.integer(body.get("max_output_tokens"), "max_output_tokens", 1),
            presence_penalty=check.number(body.get("presence_penalty"), "presence_penalty", -2, 2),
            frequency_penalty=check.number(body.get("frequency_penalty"), "frequency_penalty", -2, 2),
            logprobs=_decode_logprobs(body),
        ),
        response_format=_decode_format(text.get("format")),
        stream=bool(check.boolean(body.get("stream"), "stream")),
        include_usage=True,
        metadata=check.obj(body.get("metadata"), "metadata") or None,
        user=body.get("user") if isinstance(body.get("user"), str) else None,
        reasoning=ir.Reasoning(effort != "none", effort=effort) if isinstance(effort, str) else None,
    )


LOGPROBS_INCLUDE = "message.output_text.logprobs"


def _decode_logprobs(body: dict[str, Any]) -> int | None:
    """``include: ["message.output_text.logprobs"]`` and/or ``top_logprobs: k``
    ask for the output tokens' log probabilities (mapping §logprobs)."""
    include = [check.string(v, f"include[{i}]") for i, v in enumerate(check.array(body.get("include"), "include"))]
    top = check.integer(body.get("top_logprobs"), "top_logprobs", 0)
    if top is not None and top > logprobs.MAX_TOP:
        raise InvalidRequest(f"top_logprobs must be at most {logprobs.MAX_TOP}; got {top}", param="top_logprobs")
    return (top or 0) if LOGPROBS_INCLUDE in include or top else None


def settings(body: Any) -> dict[str, Any]:
    """The Responses-only request fields that every response object repeats,
    checked; the rest of the echo comes from the IR request (:func:`response_object`)."""
    body = check.obj(body, "body")
    truncation = body.get("truncation", "disabled")
    if truncation not in ("disabled", "auto", None):
        raise InvalidRequest(f"truncation must be auto or disabled; got {truncation!r}", param="truncation")
    if check.boolean(body.get("background"), "background"):
        raise InvalidRequest("background responses are not supported: this router answers while the request is open",
                             param="background")
    text = dict(check.obj(body.get("text"), "text"))
    text.setdefault("format", {"type": "text"})
    reasoning = check.obj(body.get("reasoning"), "reasoning")
    return {
        "previous_response_id": check.string(body.get("previous_response_id"), "previous_response_id"),
        # "auto" asks to drop early items when the input does not fit; the router never drops
        # input (a request too long is a 400), so what was applied is "disabled" (mapping §responses).
        "truncation": "disabled",
        "store": check.boolean(body.get("store"), "store") is not False,
        "background": False,
        "service_tier": "default",  # the router has no tiers
        "safety_identifier": check.string(body.get("safety_identifier"), "safety_identifier"),
        "prompt_cache_key": check.string(body.get("prompt_cache_key"), "prompt_cache_key"),
        "max_tool_calls": check.integer(body.get("max_tool_calls"), "max_tool_calls", 1),
        "tools": check.array(body.get("tools"), "tools"),
        "tool_choice": body.get("tool_choice") if body.get("tool_choice") is not None else "auto",
        "text": text,
        "reasoning": {"effort": reasoning.get("effort"), "summary": reasoning.get("summary")},
    }


def _decode_items(items: list[Any]) -> tuple[list[ir.Message], list[ir.Tool | ir.McpUse]]:
    """The conversation, and the tools declared among the items (Codex's
    ``additional_tools``, mapping §responses)."""
    messages: list[ir.Message] = []
    tools: list[ir.Tool | ir.McpUse] = []

    def add(role: ir.Role, part: ir.Part) -> None:
        # Consecutive function calls (or outputs) belong to one assistant (or tool) turn.
        if messages and messages[-1].role is role and role in (ir.Role.ASSISTANT, ir.Role.TOOL):
            messages[-1] = ir.Message(role, (*messages[-1].content, part))
        else:
            messages.append(ir.Message(role, (part,)))

    for i, raw in enumerate(items):
        path = f"input[{i}]"
        item = check.obj(raw, path)
        kind = item.get("type", "message")
        match kind:
            case "message":
                role = item.get("role")
                roles = {"user": ir.Role.USER, "assistant": ir.Role.ASSISTANT, "system": ir.Role.SYSTEM, "developer": ir.Role.SYSTEM}
                if not isinstance(role, str) or role not in roles:
                    raise InvalidRequest(f"{path}.role must be user, assistant, system or developer; got {role!r}", param=f"{path}.role")
                parts = _decode_content(item.get("content"), f"{path}.content")
                if roles[role] is ir.Role.ASSISTANT:
                    for part in parts:
                        add(ir.Role.ASSISTANT, part)
                else:
                    messages.append(ir.Message(roles[role], tuple(parts)))
            case "function_call":
                add(ir.Role.ASSISTANT, ir.ToolCall(
                    check.string(item.get("call_id"), f"{path}.call_id", required=True),
                    check.string(item.get("name"), f"{path}.name", required=True),
                    check.string(item.get("arguments"), f"{path}.arguments") or "{}",
                ))
            case "custom_tool_call":
                add(ir.Role.ASSISTANT, ir.ToolCall(
                    check.string(item.get("call_id"), f"{path}.call_id", required=True),
                    check.string(item.get("name"), f"{path}.name", required=True),
                    json.dumps({"input": check.string(item.get("input"), f"{path}.input") or ""}, ensure_ascii=False),
                ))
            case "additional_tools":
                tools.extend(_decode_tools(check.array(item.get("tools"), f"{path}.tools"), f"{path}.tools"))
            case "function_call_output" | "custom_tool_call_output":
                output = item.get("output")
                content = _decode_content(output, f"{path}.output") if output is not None else []
                add(ir.Role.TOOL, ir.ToolResult(
                    check.string(item.get("call_id"), f"{path}.call_id", required=True),
                    tuple(p for p in content if isinstance(p, (ir.Text, ir.Image))),
                ))
            case "mcp_call":  # a call the router ran, sent back: the model's call and its result (mapping §tools)
                call_id = check.string(item.get("id"), f"{path}.id", required=True)
                add(ir.Role.ASSISTANT, mcp_use.server_call(
                    check.string(item.get("server_label"), f"{path}.server_label", required=True),
                    check.string(item.get("name"), f"{path}.name", required=True), call_id,
                    check.string(item.get("arguments"), f"{path}.arguments") or "{}"))
                failed = item.get("error") is not None
                text = mcp_use.error_text(item["error"]) if failed else check.string(item.get("output"), f"{path}.output") or ""
                add(ir.Role.TOOL, ir.ToolResult(call_id, (ir.Text(text),), failed))
            case "mcp_list_tools":
                pass  # what the server offered then; the router lists its tools workers' servers afresh each request
            case "mcp_approval_request" | "mcp_approval_response":
                raise InvalidRequest(f"{path}.type {kind!r}: approvals are not supported (require_approval must be \"never\")",
                                     param=f"{path}.type")
            case "reasoning":
                summary = check.array(item.get("summary"), f"{path}.summary")
                text = "".join(s.get("text", "") for s in summary if isinstance(s, dict) and isinstance(s.get("text"), str))
                add(
                    ir.Role.ASSISTANT,
                    ir.Thinking(text, item.get("encrypted_content") if isinstance(item.get("encrypted_content"), str) else None),
                )
            case _:
                raise InvalidRequest(f"{path}.type {kind!r} is not supported", param=f"{path}.type")
    return messages, tools


def _decode_content(content: Any, path: str) -> list[ir.Part]:
    if isinstance(content, str):
        return [ir.Text(content)] if content else []
    parts: list[ir.Part] = []
    for j, raw in enumerate(check.array(content, path, required=True)):
        ppath = f"{path}[{j}]"
        part = check.obj(raw, ppath)
        kind = part.get("type")
        if kind in ("input_text", "output_text", "text", "summary_text"):
            parts.append(ir.Text(check.string(part.get("text"), f"{ppath}.text", required=True)))
        elif kind == "refusal":
            parts.append(ir.Text(check.string(part.get("refusal"), f"{ppath}.refusal", required=True)))
        elif kind == "input_image":
            url = check.string(part.get("image_url"), f"{ppath}.image_url", required=True)
            parts.append(image_from_url(url, part.get("detail") if isinstance(part.get("detail"), str) else None))
        else:
            raise InvalidRequest(f"{ppath}.type {kind!r} is not supported", param=f"{ppath}.type")
    return parts


def _decode_tools(raws: list[Any], path: str) -> list[ir.Tool | ir.McpUse]:
    """Function tools; a ``namespace`` (Codex groups sub-agent tools so) is flattened
    into its function tools (mapping §responses)."""
    tools: list[ir.Tool | ir.McpUse] = []
    for i, raw in enumerate(raws):
        item = check.obj(raw, f"{path}[{i}]")
        if item.get("type") == "mcp":
            tools.append(mcp_use.from_openai(item, f"{path}[{i}]"))
        elif item.get("type") == "namespace":
            tools.extend(_decode_tools(check.array(item.get("tools"), f"{path}[{i}].tools"), f"{path}[{i}].tools"))
        elif (tool := _decode_tool(item, f"{path}[{i}]")) is not None:
            tools.append(tool)
    return tools


def _decode_tool(raw: Any, path: str) -> ir.Tool | None:
    tool = check.obj(raw, path)
    kind = tool.get("type")
    if isinstance(kind, str) and kind in HOSTED_TOOLS:
        return None  # mapping §responses: hosted tools run on OpenAI's side; no provider here can serve them
    if kind == "custom":
        name = check.string(tool.get("name"), f"{path}.name", required=True)
        description = check.string(tool.get("description"), f"{path}.description") or ""
        fmt = tool.get("format")
        if isinstance(fmt, dict) and fmt.get("type") == "grammar" and isinstance(fmt.get("definition"), str):
            description += f"\n\nThe input must follow this {fmt.get('syntax', '')} grammar:\n{fmt['definition']}"
        return ir.Tool(name, description or None, CUSTOM_PARAMETERS, custom=True)
    if kind != "function":
        raise InvalidRequest(f"{path}.type {kind!r} is not supported", param=f"{path}.type")
    return decode_function(tool, path)


def _decode_tool_choice(raw: Any) -> ir.ToolChoice | None:
    if raw is None:
        return None
    if raw in ("auto", "none", "required"):
        return ir.ToolChoice(raw)
    if isinstance(raw, dict) and raw.get("type") == "function":
        return ir.ToolChoice("tool", check.string(raw.get("name"), "tool_choice.name", required=True))
    if isinstance(raw, dict) and raw.get("type") == "mcp":  # a tool of an MCP server the request names (tools_protocol §explicit)
        server = check.string(raw.get("server_label"), "tool_choice.server_label", required=True)
        if raw.get("name") is None:
            raise InvalidRequest("tool_choice.name is required: name the server's tool to force (or use \"required\")",
                                 param="tool_choice.name")
        return ir.ToolChoice("tool", mcp_use.exposed(server, check.string(raw.get("name"), "tool_choice.name", required=True)))
    raise InvalidRequest(f"tool_choice must be auto, none, required, a function or an mcp tool; got {raw!r}", param="tool_choice")


def _decode_format(raw: Any) -> ir.ResponseFormat | None:
    if raw is None:
        return None
    fmt = check.obj(raw, "text.format")
    kind = fmt.get("type")
    if kind in ("text", "json_object"):
        return ir.ResponseFormat(kind)
    if kind == "json_schema":
        return decode_json_schema(fmt, "text.format")
    raise InvalidRequest(f"text.format.type must be text, json_object or json_schema; got {kind!r}", param="text.format.type")


# --- responses ---------------------------------------------------------------
