"""OpenAI Responses ⇄ IR.

Pure, like every codec.  The Responses dialect is item oriented: ``input`` is a
string or a list of items (messages with ``input_text`` / ``input_image`` parts,
``function_call``, ``function_call_output``, ``reasoning``), and ``output`` is a
list of items (``reasoning``, ``message`` with ``output_text``, ``function_call``).
IR blocks map one to one onto output items, so the stream encoder is a small
state machine over block events.  Mappings: spec/mapping.md §responses.

    stream  response.created, response.in_progress,
            (response.output_item.added, [content_part.added, output_text.delta…,
             output_text.done, content_part.done | function_call_arguments.delta…,
             function_call_arguments.done | reasoning_summary_…], response.output_item.done)*,
            response.completed | response.incomplete | response.failed
            — every event with a rising ``sequence_number``.
"""

from __future__ import annotations

import json
from typing import Any, Callable

from .. import ir
from ..errors import InvalidRequest
from . import check
from .openai_chat import (  # OpenAI's error envelope
    decode_function,
    decode_json_schema,
    error_body,
    image_from_url,
)

__all__ = ["decode_request", "encode_response", "StreamEncoder", "error_body", "conversation_items"]

HOSTED_TOOLS = {"web_search", "web_search_preview", "file_search", "computer_use_preview", "code_interpreter",
                "image_generation", "mcp", "local_shell"}
CUSTOM_PARAMETERS = {"type": "object", "properties": {"input": {"type": "string"}}, "required": ["input"]}


# --- requests ----------------------------------------------------------------


def decode_request(body: Any, history: Callable[[str], list[ir.Message] | None] | None = None) -> ir.Request:
    """``history`` resolves ``previous_response_id`` to the stored conversation."""
    body = check.obj(body, "body")
    model = check.model_id(body.get("model"))
    raw_input = body.get("input")
    if raw_input is None:
        raise InvalidRequest("input is required", param="input")
    item_tools: list[ir.Tool] = []
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
    return ir.Request(
        model=model,
        messages=tuple(messages),
        system=tuple(system),
        tools=(*_decode_tools(check.array(body.get("tools"), "tools"), "tools"), *item_tools),
        tool_choice=_decode_tool_choice(body.get("tool_choice")),
        parallel_tool_calls=check.boolean(body.get("parallel_tool_calls"), "parallel_tool_calls"),
        sampling=ir.Sampling(
            temperature=check.number(body.get("temperature"), "temperature", 0, 2),
            top_p=check.number(body.get("top_p"), "top_p", 0, 1),
            max_tokens=check.integer(body.get("max_output_tokens"), "max_output_tokens", 1),
        ),
        response_format=_decode_format(text.get("format")),
        stream=bool(check.boolean(body.get("stream"), "stream")),
        include_usage=True,
        metadata=check.obj(body.get("metadata"), "metadata") or None,
        user=body.get("user") if isinstance(body.get("user"), str) else None,
        reasoning=ir.Reasoning(effort != "none", effort=effort) if isinstance(effort, str) else None,
    )


def _decode_items(items: list[Any]) -> tuple[list[ir.Message], list[ir.Tool]]:
    """The conversation, and the tools declared among the items (Codex's
    ``additional_tools``, mapping §responses)."""
    messages: list[ir.Message] = []
    tools: list[ir.Tool] = []

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
            case "reasoning":
                summary = check.array(item.get("summary"), f"{path}.summary")
                text = "".join(s.get("text", "") for s in summary if isinstance(s, dict) and isinstance(s.get("text"), str))
                add(ir.Role.ASSISTANT, ir.Thinking(text, item.get("encrypted_content") if isinstance(item.get("encrypted_content"), str) else None))
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


def _decode_tools(raws: list[Any], path: str) -> list[ir.Tool]:
    """Function tools; a ``namespace`` (Codex groups sub-agent tools so) is flattened
    into its function tools (mapping §responses)."""
    tools: list[ir.Tool] = []
    for i, raw in enumerate(raws):
        item = check.obj(raw, f"{path}[{i}]")
        if item.get("type") == "namespace":
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
    raise InvalidRequest(f"tool_choice must be auto, none, required or a function; got {raw!r}", param="tool_choice")


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
    return {"input_tokens": input_tokens, "input_tokens_details": {"cached_tokens": cached},
            "output_tokens": output, "output_tokens_details": {"reasoning_tokens": 0}, "total_tokens": input_tokens + output}


def _status(stop: ir.StopReason | None) -> tuple[str, dict[str, str] | None]:
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


def output_item(part: ir.Text | ir.Thinking | ir.ToolCall, item_id: str, status: str = "completed",
                custom: frozenset[str] = frozenset()) -> dict[str, Any]:
    match part:
        case ir.ToolCall(id=call_id, name=name, arguments=arguments) if name in custom:
            return {"type": "custom_tool_call", "id": item_id, "call_id": call_id, "name": name,
                    "input": custom_input(arguments), "status": status}
        case ir.Text(text=text):
            return {"type": "message", "id": item_id, "status": status, "role": "assistant",
                    "content": [{"type": "output_text", "text": text, "annotations": []}]}
        case ir.Thinking(text=text):
            return {"type": "reasoning", "id": item_id, "summary": [{"type": "summary_text", "text": text}] if text else []}
        case ir.ToolCall(id=call_id, name=name, arguments=arguments):
            return {"type": "function_call", "id": item_id, "call_id": call_id, "name": name, "arguments": arguments, "status": status}


def _shell(response_id: str, model: str, created: int, req: ir.Request | None) -> dict[str, Any]:
    return {
        "id": response_id, "object": "response", "created_at": created, "status": "in_progress", "model": model,
        "output": [], "error": None, "incomplete_details": None,
        "instructions": "\n\n".join(t.text for t in req.system) if req and req.system else None,
        "max_output_tokens": req.sampling.max_tokens if req else None,
        "parallel_tool_calls": req.parallel_tool_calls if req and req.parallel_tool_calls is not None else True,
        "temperature": req.sampling.temperature if req else None, "top_p": req.sampling.top_p if req else None,
        "tool_choice": "auto", "tools": [], "text": {"format": {"type": "text"}}, "usage": None,
        "metadata": (req.metadata if req else None) or {},
    }


def encode_response(resp: ir.Response, created: int, req: ir.Request | None = None, item_ids: Callable[[str], str] | None = None) -> dict[str, Any]:
    new_id = item_ids or (lambda prefix: f"{prefix}_{resp.id}")
    body = _shell(resp.id, resp.model, created, req)
    prefixes = {ir.Text: "msg", ir.Thinking: "rs", ir.ToolCall: "fc"}
    custom = custom_names(req)
    body["output"] = [output_item(p, new_id(prefixes[type(p)]), custom=custom) for p in resp.content]
    body["status"], body["incomplete_details"] = _status(resp.stop_reason)
    body["usage"] = encode_usage(resp.usage)
    return body


def conversation_items(resp: ir.Response) -> list[ir.Message]:
    """The assistant turn of a response, as IR messages to store for previous_response_id."""
    return [ir.Message(ir.Role.ASSISTANT, tuple(resp.content))] if resp.content else []


# --- streams -----------------------------------------------------------------


class StreamEncoder:
    """IR events → Responses SSE (``event: type`` + ``data: {…, sequence_number}``)."""

    def __init__(
        self, response_id: str, created: int, model: str, req: ir.Request | None, item_ids: Callable[[str], str],
        framing: str = "sse",
    ) -> None:
        """``framing``: "sse" for HTTP, or "lines" (one JSON document per line) for
        WebSocket mode, where each line becomes one text frame."""
        self._framing = framing
        self._response = _shell(response_id, model, created, req)
        self._new_id = item_ids
        self._seq = 0
        self._items: dict[int, dict[str, Any]] = {}  # IR block index → output item being built
        self._order: list[int] = []  # IR block indices in output order
        self._position: dict[int, int] = {}  # IR block index → output_index
        self._texts: dict[int, list[str]] = {}
        self._usage = ir.Usage()
        self._custom = custom_names(req)  # custom tools: their input is sent whole when the call ends

    def _event(self, kind: str, **fields: Any) -> bytes:
        payload = {"type": kind, "sequence_number": self._seq, **fields}
        self._seq += 1
        if self._framing == "lines":
            return ir.dumps(payload).encode() + b"\n"  # JSON escapes newlines, so one line per event
        return f"event: {kind}\ndata: {ir.dumps(payload)}\n\n".encode()

    def _open(self, block: int, item: dict[str, Any]) -> bytes:
        self._items[block] = item
        self._position[block] = len(self._order)
        self._order.append(block)
        self._texts[block] = []
        return self._event("response.output_item.added", output_index=len(self._order) - 1, item=item)

    def encode(self, event: ir.Event) -> bytes:
        match event:
            case ir.TextDelta(index=block, text=text):
                self._texts[block].append(text)
                item = self._items[block]
                return self._event("response.output_text.delta", item_id=item["id"], output_index=self._position[block],
                                   content_index=0, delta=text, logprobs=[])
            case ir.ToolArgumentsDelta(index=block, json=fragment):
                self._texts[block].append(fragment)
                if self._items[block]["type"] == "custom_tool_call":
                    return b""  # fragments of {"input": …}, not of the input itself
                return self._event("response.function_call_arguments.delta", item_id=self._items[block]["id"],
                                   output_index=self._position[block], delta=fragment)
            case ir.ThinkingDelta(index=block, text=text):
                if not text:
                    return b""
                self._texts[block].append(text)
                return self._event("response.reasoning_summary_text.delta", item_id=self._items[block]["id"],
                                   output_index=self._position[block], summary_index=0, delta=text)
            case ir.MessageStart(usage=usage):
                self._usage = usage
                return (self._event("response.created", response=self._response)
                        + self._event("response.in_progress", response=self._response))
            case ir.TextStart(index=block):
                item = {"type": "message", "id": self._new_id("msg"), "status": "in_progress", "role": "assistant", "content": []}
                part = {"type": "output_text", "text": "", "annotations": []}
                return self._open(block, item) + self._event("response.content_part.added", item_id=item["id"],
                                                             output_index=len(self._order) - 1, content_index=0, part=part)
            case ir.ThinkingStart(index=block):
                item = {"type": "reasoning", "id": self._new_id("rs"), "summary": []}
                return self._open(block, item) + self._event("response.reasoning_summary_part.added", item_id=item["id"],
                                                             output_index=len(self._order) - 1, summary_index=0,
                                                             part={"type": "summary_text", "text": ""})
            case ir.ToolCallStart(index=block, id=call_id, name=name) if name in self._custom:
                item = {"type": "custom_tool_call", "id": self._new_id("ctc"), "call_id": call_id, "name": name, "input": "",
                        "status": "in_progress"}
                return self._open(block, item)
            case ir.ToolCallStart(index=block, id=call_id, name=name):
                item = {"type": "function_call", "id": self._new_id("fc"), "call_id": call_id, "name": name, "arguments": "", "status": "in_progress"}
                return self._open(block, item)
            case ir.BlockStop(index=block):
                return self._close(block)
            case ir.MessageStop(stop_reason=stop, usage=usage):
                status, incomplete = _status(stop)
                self._response.update(status=status, incomplete_details=incomplete,
                                      usage=encode_usage(ir.merge_usage(self._usage, usage)),
                                      output=[self._final(b) for b in self._order])
                return self._event("response.completed" if status == "completed" else "response.incomplete", response=self._response)
            case ir.StreamError(message=message):
                self._response.update(status="failed", error={"code": "server_error", "message": message},
                                      output=[self._final(b) for b in self._order])
                return self._event("response.failed", response=self._response)
        return b""

    def _final(self, block: int) -> dict[str, Any]:
        item = dict(self._items[block])
        text = "".join(self._texts[block])
        if item["type"] == "message":
            item.update(status="completed", content=[{"type": "output_text", "text": text, "annotations": []}])
        elif item["type"] == "function_call":
            item.update(status="completed", arguments=text)
        elif item["type"] == "custom_tool_call":
            item.update(status="completed", input=custom_input(text))
        else:
            item["summary"] = [{"type": "summary_text", "text": text}] if text else []
        return item

    def _close(self, block: int) -> bytes:
        if block not in self._items:
            return b""
        final = self._final(block)
        index = self._position[block]
        text = "".join(self._texts[block])
        out = b""
        if final["type"] == "message":
            out += self._event("response.output_text.done", item_id=final["id"], output_index=index, content_index=0, text=text, logprobs=[])
            out += self._event("response.content_part.done", item_id=final["id"], output_index=index, content_index=0, part=final["content"][0])
        elif final["type"] == "function_call":
            out += self._event("response.function_call_arguments.done", item_id=final["id"], output_index=index, arguments=text)
        elif final["type"] == "custom_tool_call":
            out += self._event("response.custom_tool_call_input.delta", item_id=final["id"], output_index=index, delta=final["input"])
            out += self._event("response.custom_tool_call_input.done", item_id=final["id"], output_index=index, input=final["input"])
        else:
            out += self._event("response.reasoning_summary_text.done", item_id=final["id"], output_index=index, summary_index=0, text=text)
            out += self._event("response.reasoning_summary_part.done", item_id=final["id"], output_index=index, summary_index=0,
                               part={"type": "summary_text", "text": text})
        return out + self._event("response.output_item.done", output_index=index, item=final)
