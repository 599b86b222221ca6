"""IR → an Anthropic Messages request for an upstream (Anthropic's API, or
llama-server's own Anthropic dialect when only it can say which stop sequence
ended an answer).  Pure.  The client side of the dialect is ``anthropic.py``.
Mappings: spec/mapping.md (§system, §tools and §tool-ids, §tool-input, §sampling).
"""

from __future__ import annotations

import re
from typing import Any

from .. import ir
from .anthropic import tool_input

__all__ = ["encode_request"]

TOOL_ID = re.compile(r"[^a-zA-Z0-9_-]")  # mapping §tool-ids: Anthropic's id pattern


def encode_request(req: ir.Request, model: str) -> dict[str, Any]:
    """IR → an Anthropic Messages request for an upstream (always streaming)."""
    system = [t.text for t in req.system]
    messages: list[dict[str, Any]] = []
    for message in req.messages:
        if message.role is ir.Role.SYSTEM:
            # mapping §system: Anthropic has no mid-conversation system turn.
            system.extend(p.text for p in message.content if isinstance(p, ir.Text))
            continue
        role = "assistant" if message.role is ir.Role.ASSISTANT else "user"
        blocks = [b for b in (_encode_block(p) for p in message.content) if b is not None]
        if messages and messages[-1]["role"] == role:
            messages[-1]["content"].extend(blocks)  # consecutive turns of one role merge
        else:
            messages.append({"role": role, "content": blocks})
    s = req.sampling
    body: dict[str, Any] = {"model": model, "max_tokens": s.max_tokens or 4096, "messages": messages, "stream": True}
    if system:
        body["system"] = "\n\n".join(system)
    for key, value in (("temperature", s.temperature), ("top_p", s.top_p), ("top_k", s.top_k)):
        if value is not None:
            body[key] = min(value, 1.0) if key == "temperature" else value  # mapping §sampling
    if s.stop:
        body["stop_sequences"] = list(s.stop)
    if req.tools:
        body["tools"] = [_encode_tool(t) for t in req.tools]
    if req.tool_choice is not None or req.parallel_tool_calls is False:
        mode = req.tool_choice.mode if req.tool_choice else "auto"
        choice: dict[str, Any] = {"type": {"required": "any"}.get(mode, mode)}
        if mode == "tool":
            choice["name"] = req.tool_choice.name  # type: ignore[union-attr]
        if req.parallel_tool_calls is False and mode != "none":
            choice["disable_parallel_tool_use"] = True
        body["tool_choice"] = choice
    if req.reasoning is not None:
        r = req.reasoning
        if not r.enabled:
            body["thinking"] = {"type": "disabled"}
        elif r.budget_tokens is not None:
            body["thinking"] = {"type": "enabled", "budget_tokens": r.budget_tokens}
        elif r.effort == "adaptive":
            body["thinking"] = {"type": "adaptive"}
    if req.metadata and isinstance(req.metadata.get("user_id"), str):
        body["metadata"] = {"user_id": req.metadata["user_id"]}
    return body


def _tool_id(raw: str) -> str:
    """Anthropic accepts tool ids matching ^[a-zA-Z0-9_-]+$ (mapping §tool-ids)."""
    return TOOL_ID.sub("_", raw) or "toolu_"


def _encode_block(part: ir.Part) -> dict[str, Any] | None:
    match part:
        case ir.Text(text=text):
            return {"type": "text", "text": text} if text else None
        case ir.Image():
            return _encode_image(part)
        case ir.ToolCall(id=call_id, name=name, arguments=arguments):
            return {"type": "tool_use", "id": _tool_id(call_id), "name": name, "input": tool_input(arguments)}
        case ir.ToolResult(tool_call_id=call_id, content=content, is_error=is_error):
            inner = [b for b in (_encode_block(p) for p in content) if b is not None]
            block: dict[str, Any] = {"type": "tool_result", "tool_use_id": _tool_id(call_id), "content": inner}
            if is_error:
                block["is_error"] = True
            return block
        case ir.Thinking(text=text, signature=signature, redacted=redacted):
            if redacted:
                return {"type": "redacted_thinking", "data": signature or ""}
            if signature is None:
                return None  # mapping §thinking: unsigned thinking cannot be sent back to Anthropic
            return {"type": "thinking", "thinking": text, "signature": signature}
    return None


def _encode_image(image: ir.Image) -> dict[str, Any]:
    if image.data is not None:
        return {"type": "image", "source": {"type": "base64", "media_type": image.media_type or "image/png", "data": image.data}}
    return {"type": "image", "source": {"type": "url", "url": image.url}}


def _encode_tool(tool: ir.Tool) -> dict[str, Any]:
    encoded: dict[str, Any] = {"name": tool.name, "input_schema": tool.parameters or {"type": "object", "properties": {}}}
    if tool.description is not None:
        encoded["description"] = tool.description
    return encoded
