"""OpenAI Responses ← IR: the response object and its output items.

Shared by the JSON answer (:func:`encode_response`) and the stream encoder
(:mod:`.responses_stream`).  ``output`` is a list of items (``reasoning``,
``message`` with ``output_text``, ``function_call``; ``mcp_list_tools`` and
``mcp_call`` for the MCP servers a request named).  IR blocks map one to one
onto output items, so the stream encoder is a small state machine over block
events.  Mappings: spec/mapping.md §responses.

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
from . import logprobs, mcp_use
from .responses import settings

__all__ = ["conversation_items", "encode_response", "response_object"]

DEFAULT_TEMPERATURE = 1.0  # the Responses reference's defaults, said where a provider does not say its own
DEFAULT_TOP_P = 1.0


def _or(value: float | None, default: float) -> float:
    return default if value is None else value


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
    return mcp_use.as_turns(resp.content)
