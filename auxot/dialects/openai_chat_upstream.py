"""IR → a Chat Completions request for an upstream (llama-server, an
OpenAI-compatible cloud).  Pure.  The client side of the dialect — decoding a
client's request, encoding answers and errors — is ``openai_chat.py``.
Mappings: spec/mapping.md (§system, §tool-results, §sampling, §logprobs).
"""

from __future__ import annotations

from typing import Any

from .. import ir

__all__ = ["encode_request", "TOOL_ERROR_MARK"]


def encode_request(req: ir.Request, model: str) -> dict[str, Any]:
    """IR → a Chat Completions request for an upstream.  Always streams with usage
    so that the router sees tokens as they come and the final counts."""
    messages: list[dict[str, Any]] = []
    if req.system:
        messages.append({"role": "system", "content": "\n\n".join(t.text for t in req.system)})
    images: list[ir.Part] = []  # from tool results, for the next user turn (mapping §tool-results)
    for message in req.messages:
        if images and message.role is ir.Role.USER:
            message, images = ir.Message(ir.Role.USER, (*images, *message.content), message.name), []
        elif images and message.role is not ir.Role.TOOL:
            messages.append({"role": "user", "content": _encode_content(images)})
            images = []
        encoded, carried = _encode_message(message)
        messages.extend(encoded)
        images += carried
    if images:
        messages.append({"role": "user", "content": _encode_content(images)})
    body: dict[str, Any] = {"model": model, "messages": messages, "stream": True, "stream_options": {"include_usage": True}}
    if req.extensions:
        body.update(req.extensions)  # only a llama.cpp provider is sent these (capabilities.missing)
    s = req.sampling
    for key, value in (
        ("temperature", s.temperature), ("top_p", s.top_p), ("top_k", s.top_k), ("max_tokens", s.max_tokens),
        ("presence_penalty", s.presence_penalty), ("frequency_penalty", s.frequency_penalty), ("seed", s.seed),
    ):
        if value is not None:
            body[key] = value
    if s.stop:
        body["stop"] = list(s.stop)
    if s.logit_bias:
        body["logit_bias"] = s.logit_bias
    if s.logprobs is not None:
        body["logprobs"] = True
        if s.logprobs:
            body["top_logprobs"] = s.logprobs
    if req.tools:
        body["tools"] = [_encode_tool(t) for t in req.tools]
    if req.tool_choice is not None:
        tc = req.tool_choice
        body["tool_choice"] = {"type": "function", "function": {"name": tc.name}} if tc.mode == "tool" else tc.mode
    if req.parallel_tool_calls is not None:
        body["parallel_tool_calls"] = req.parallel_tool_calls
    if req.response_format is not None:
        rf = req.response_format
        if rf.type == "json_schema":
            spec: dict[str, Any] = {"name": rf.name or "response", "schema": rf.schema or {}}
            if rf.strict is not None:
                spec["strict"] = rf.strict
            body["response_format"] = {"type": "json_schema", "json_schema": spec}
        else:
            body["response_format"] = {"type": rf.type}
    if req.user is not None:
        body["user"] = req.user
    if req.reasoning is not None and req.reasoning.effort in ("none", "minimal", "low", "medium", "high", "xhigh"):
        body["reasoning_effort"] = req.reasoning.effort
    if req.metadata:
        body["metadata"] = req.metadata
    return body


TOOL_ERROR_MARK = "[tool error] "  # mapping §tool-results: how an error result reads where results cannot say so


def _encode_results(results: list[ir.ToolResult]) -> tuple[list[dict[str, Any]], list[ir.Part]]:
    """Tool messages, and the images their results held: a tool message carries
    text only, so the images follow in the next user turn (mapping §tool-results)."""
    out: list[dict[str, Any]] = []
    images: list[ir.Part] = []
    for result in results:
        text = "".join(p.text for p in result.content if isinstance(p, ir.Text))
        pictures = [p for p in result.content if isinstance(p, ir.Image)]
        if pictures:
            text += f"{chr(10) if text else ''}[{len(pictures)} image(s): in the next user message]"
            images += [ir.Text(f"Image(s) returned by tool call {result.tool_call_id}:"), *pictures]
        if result.is_error:
            text = TOOL_ERROR_MARK + text
        out.append({"role": "tool", "tool_call_id": result.tool_call_id, "content": text})
    return out, images


def _encode_message(message: ir.Message) -> tuple[list[dict[str, Any]], list[ir.Part]]:
    """The message's OpenAI messages, and images from its tool results that must
    follow in a user turn."""
    if message.role is ir.Role.TOOL:
        return _encode_results([p for p in message.content if isinstance(p, ir.ToolResult)])
    if message.role is ir.Role.ASSISTANT:
        encoded: dict[str, Any] = {"role": "assistant"}
        text = "".join(p.text for p in message.content if isinstance(p, ir.Text))
        encoded["content"] = text or None
        reasoning = "".join(p.text for p in message.content if isinstance(p, ir.Thinking))
        if reasoning:
            encoded["reasoning_content"] = reasoning
        calls = [p for p in message.content if isinstance(p, ir.ToolCall)]
        if calls:
            encoded["tool_calls"] = [
                {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}} for c in calls
            ]
        return [encoded], []
    role = "system" if message.role is ir.Role.SYSTEM else "user"
    out, images = _encode_results([p for p in message.content if isinstance(p, ir.ToolResult)])
    others: list[ir.Part] = [p for p in message.content if not isinstance(p, ir.ToolResult)]
    if role == "user":
        others, images = [*images, *others], []
    if others or not out:
        out.append({"role": role, "content": _encode_content(others)})
    return out, images


def _encode_content(parts: list[ir.Part]) -> str | list[dict[str, Any]]:
    if all(isinstance(p, ir.Text) for p in parts):
        return "".join(p.text for p in parts)  # type: ignore[union-attr]
    encoded: list[dict[str, Any]] = []
    for p in parts:
        if isinstance(p, ir.Text):
            encoded.append({"type": "text", "text": p.text})
        elif isinstance(p, ir.Image):
            url = p.url if p.url is not None else f"data:{p.media_type or 'image/png'};base64,{p.data}"
            image: dict[str, Any] = {"url": url}
            if p.detail:
                image["detail"] = p.detail
            encoded.append({"type": "image_url", "image_url": image})
    return encoded


def _encode_tool(tool: ir.Tool) -> dict[str, Any]:
    fn: dict[str, Any] = {"name": tool.name, "parameters": tool.parameters or {"type": "object", "properties": {}}}
    if tool.description is not None:
        fn["description"] = tool.description
    if tool.strict is not None:
        fn["strict"] = tool.strict
    return {"type": "function", "function": fn}


# --- responses ---------------------------------------------------------------
