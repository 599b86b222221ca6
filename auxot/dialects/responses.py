"""OpenAI Responses ⇄ IR.

Pure, like every codec.  The Responses dialect is item oriented: ``input`` is a
string or a list of items (messages with ``input_text`` / ``input_image`` parts,
``function_call``, ``function_call_output``, ``reasoning``, ``mcp_call``), and
``output`` is a list of items (``reasoning``, ``message`` with ``output_text``,
``function_call``; ``mcp_list_tools`` and ``mcp_call`` for the MCP servers a
request named). IR blocks map one to one onto output items, so the stream
encoder is a small state machine over block events.  Mappings: spec/mapping.md
§responses.

    stream  response.created, response.in_progress,
            (response.output_item.added, [content_part.added, output_text.delta…,
             output_text.done, content_part.done | function_call_arguments.delta…,
             function_call_arguments.done | reasoning_summary_… | mcp_list_tools.in_progress,
             mcp_list_tools.completed | mcp_call_arguments.delta, mcp_call_arguments.done,
             mcp_call.in_progress, mcp_call.completed | mcp_call.failed], response.output_item.done)*,
            response.completed | response.incomplete | response.failed
            — every event with a rising ``sequence_number``.
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

__all__ = ["conversation_items", "decode_request", "encode_response", "error_body", "response_object", "settings"]

DEFAULT_TEMPERATURE = 1.0  # the Responses reference's defaults, said where a provider does not say its own
DEFAULT_TOP_P = 1.0
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


def _or(value: float | None, default: float) -> float:
    return default if value is None else value


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


def encode_usage(usage: ir.Usage) -> dict[str, Any]:
    cached = usage.cache_read_tokens or 0
    input_tokens = (usage.input_tokens or 0) + cached + (usage.cache_write_tokens or 0)
    output = usage.output_tokens or 0
    details = {"cached_tokens": cached, "cache_write_tokens": usage.cache_write_tokens or 0}
    return {"input_tokens": input_tokens, "input_tokens_details": details,
            "output_tokens": output, "output_tokens_details": {"reasoning_tokens": 0}, "total_tokens": input_tokens + output}


def status_of(stop: ir.StopReason | None) -> tuple[str, dict[str, str] | None]:
    if stop is ir.StopReason.MAX_TOKENS:
        return "incomplete", {"reason": "max_output_tokens"}
    if stop is ir.StopReason.REFUSAL:
        return "incomplete", {"reason": "content_filter"}
    return "completed", None


def custom_input(arguments: str) -> str:
    """A custom tool's input, back from the ``input`` argument it travelled in."""
    try:
        value = json.loads(arguments)
    except ValueError:
        return arguments
    return value["input"] if isinstance(value, dict) and isinstance(value.get("input"), str) else arguments


def custom_names(req: ir.Request | None) -> frozenset[str]:
    return frozenset(t.name for t in req.tools if t.custom) if req else frozenset()


def output_item(part: ir.Text | ir.Thinking | ir.ToolCall | ir.ServerTools, item_id: str, status: str = "completed",
                custom: frozenset[str] = frozenset(), tokens: tuple[ir.TokenLogprob, ...] = ()) -> dict[str, Any]:
    match part:
        case ir.ServerTools(server=server, tools=tools):
            return {"type": "mcp_list_tools", "id": item_id, "server_label": server, "tools": list(tools), "error": None}
        case ir.ToolCall(id=call_id, name=name, arguments=arguments) if name in custom:
            return {"type": "custom_tool_call", "id": item_id, "call_id": call_id, "name": name,
                    "input": custom_input(arguments), "status": status}
        case ir.Text(text=text):
            return {"type": "message", "id": item_id, "status": status, "role": "assistant",
                    "content": [output_text(text, tokens)]}
        case ir.Thinking(text=text):
            return {"type": "reasoning", "id": item_id, "summary": [{"type": "summary_text", "text": text}] if text else []}
        case ir.ToolCall(id=call_id, name=name, arguments=arguments):
            return {"type": "function_call", "id": item_id, "call_id": call_id, "name": name, "arguments": arguments, "status": status}
    raise AssertionError(part)


def mcp_call_item(call: ir.ServerToolCall, result: ir.ServerToolResult | None, item_id: str) -> dict[str, Any]:
    """An ``mcp_call`` item: the call, with its result's output (or error) once there is one."""
    failed = result is not None and result.is_error
    output = mcp_use.output_text(result.output) if result else None
    return {"type": "mcp_call", "id": item_id, "server_label": call.server, "name": call.name, "arguments": call.arguments,
            "output": None if failed else output, "approval_request_id": None,
            "error": {"type": "mcp_tool_execution_error", "content": [{"type": "text", "text": output}]} if failed else None,
            "status": "in_progress" if result is None else "failed" if failed else "completed"}


def output_text(text: str, tokens: tuple[ir.TokenLogprob, ...] | list[ir.TokenLogprob] = ()) -> dict[str, Any]:
    return {"type": "output_text", "text": text, "annotations": [], "logprobs": logprobs.encode(tuple(tokens))}


def split_logprobs(content: tuple[Any, ...], tokens: tuple[ir.TokenLogprob, ...] | None) -> list[tuple[ir.TokenLogprob, ...]]:
    """A folded response's token logprobs, shared out to its text blocks in order
    (each takes tokens until their text covers its own)."""
    shares: list[tuple[ir.TokenLogprob, ...]] = []
    rest = list(tokens or ())
    for part in content:
        if isinstance(part, ir.Text):
            taken: list[ir.TokenLogprob] = []
            covered = 0
            while rest and covered < len(part.text):
                taken.append(rest.pop(0))
                covered += len(taken[-1].token)
            shares.append(tuple(taken))
    return shares


def applied(req: ir.Request | None, provider: ir.Sampling | None) -> dict[str, float]:
    """The temperature and top_p used: the request's, else what the provider
    says it applies (llama-server's own defaults), else the reference's."""
    asked = req.sampling if req else ir.Sampling()
    said = provider or ir.Sampling()
    return {"temperature": _or(asked.temperature if asked.temperature is not None else said.temperature, DEFAULT_TEMPERATURE),
            "top_p": _or(asked.top_p if asked.top_p is not None else said.top_p, DEFAULT_TOP_P)}


def response_object(response_id: str, model: str, created: int, req: ir.Request | None,
                    echo: dict[str, Any] | None = None, provider: ir.Sampling | None = None) -> dict[str, Any]:
    """A response object, in progress: every field the schema requires
    (spec/responses.md §required), the request's settings repeated;
    ``provider``: the sampling it says it applies (MessageStart)."""
    sampling = req.sampling if req else ir.Sampling()
    return {
        "id": response_id, "object": "response", "created_at": created, "completed_at": None, "status": "in_progress",
        "model": model, "output": [], "error": None, "incomplete_details": None,
        "instructions": "\n\n".join(t.text for t in req.system) if req and req.system else None,
        "max_output_tokens": sampling.max_tokens,
        "parallel_tool_calls": req.parallel_tool_calls if req and req.parallel_tool_calls is not None else True,
        **applied(req, provider),
        "presence_penalty": sampling.presence_penalty or 0, "frequency_penalty": sampling.frequency_penalty or 0,
        "top_logprobs": sampling.logprobs or 0, "usage": None, "metadata": (req.metadata if req else None) or {},
        **(echo if echo is not None else settings({})),
    }


def encode_response(resp: ir.Response, created: int, req: ir.Request | None = None, item_ids: Callable[[str], str] | None = None,
                    echo: dict[str, Any] | None = None, completed: int | None = None) -> dict[str, Any]:
    new_id = item_ids or (lambda prefix: f"{prefix}_{resp.id}")
    body = response_object(resp.id, resp.model, created, req, echo, resp.sampling)
    prefixes = {ir.Text: "msg", ir.Thinking: "rs", ir.ToolCall: "fc", ir.ServerTools: "mcpl"}
    custom = custom_names(req)
    shares = iter(split_logprobs(resp.content, resp.logprobs))
    results = {p.call_id: p for p in resp.content if isinstance(p, ir.ServerToolResult)}  # each in its call's mcp_call
    body["output"] = [mcp_call_item(p, results.get(p.id), new_id("mcp")) if isinstance(p, ir.ServerToolCall)
                      else output_item(p, new_id(prefixes[type(p)]), custom=custom, tokens=next(shares) if isinstance(p, ir.Text) else ())
                      for p in resp.content if not isinstance(p, ir.ServerToolResult)]
    body["status"], body["incomplete_details"] = status_of(resp.stop_reason)
    if body["status"] == "completed":
        body["completed_at"] = completed if completed is not None else created
    body["usage"] = encode_usage(resp.usage)
    return body


def conversation_items(resp: ir.Response) -> list[ir.Message]:
    """The assistant turn of a response, as IR messages to store for previous_response_id
    (the calls the router ran as the model's calls and their results)."""
    return ir.as_turns(resp.content)
