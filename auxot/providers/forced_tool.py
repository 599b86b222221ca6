"""A forced tool call (``tool_choice`` "required" or a named tool) on llama-server,
made real by a JSON-schema grammar.  Pure.

llama.cpp's own answer to a forced tool choice is a grammar that requires a call
*at the end*, but lets the model write any text before it (its tool-call parser,
for a chat template in the Hermes style, allows content up to the first
``<tool_call>``).  A small model writes that text until ``max_tokens`` and never
calls: the answer is prose, which is no tool call at all.

So auxot asks differently.  The tools stay in the prompt (the chat template
renders them), ``tool_choice`` becomes "none", and a JSON schema admits exactly
one object ``{"name": <an allowed tool>, "arguments": <that tool's schema>}``;
llama-server turns the schema into a grammar, so the first token already starts
the call.  The answer's text is then read back as one tool call
(:class:`ToolCallReader`).  Measured with SmolLM2-135M: "What is the weather in
Paris?" with a forced ``get_weather`` gives ``get_weather({"city": "Paris"})``,
where llama.cpp's own grammar gave 60 tokens of prose.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Callable

from .. import ir
from ..errors import InvalidRequest


def constrain(req: ir.Request) -> ir.Request | None:
    """The request to send for a forced tool call, or None when none is forced."""
    choice = req.tool_choice
    if not req.tools or choice is None or choice.mode not in ("required", "tool"):
        return None
    tools = [t for t in req.tools if choice.mode == "required" or t.name == choice.name]
    if not tools:
        raise InvalidRequest(f"tool_choice names {choice.name!r}, which is not among the request's tools", param="tool_choice")
    schema = {"anyOf": [{
        "type": "object",
        "properties": {"name": {"const": t.name}, "arguments": t.parameters or {"type": "object"}},
        "required": ["name", "arguments"],
    } for t in tools]}
    return dataclasses.replace(req, tool_choice=ir.ToolChoice("none"),
                               response_format=ir.ResponseFormat("json_schema", schema=schema, name="tool_call", strict=True))


class ToolCallReader:
    """The constrained answer's events → one tool call.  Text is held until the
    answer ends, then given as the call; anything else passes through.  An answer
    cut short (``max_tokens``) is given as the text it is, with its stop reason."""

    def __init__(self, id_factory: Callable[[], str]) -> None:
        self._new_id = id_factory
        self._text: list[str] = []

    def feed(self, event: ir.Event) -> list[ir.Event]:
        match event:
            case ir.TextStart() | ir.BlockStop():
                return []
            case ir.TextDelta(text=text):
                self._text.append(text)
                return []
            case ir.MessageStop():
                return [*self._call(event), event if self._cut(event) else dataclasses.replace(event, stop_reason=ir.StopReason.TOOL_USE)]
        return [event]

    def _cut(self, stop: ir.MessageStop) -> bool:
        return stop.stop_reason is ir.StopReason.MAX_TOKENS or self._parsed() is None

    def _parsed(self) -> tuple[str, str] | None:
        try:
            call = json.loads("".join(self._text))
        except ValueError:
            return None
        if not isinstance(call, dict) or not isinstance(call.get("name"), str) or not isinstance(call.get("arguments"), dict):
            return None
        return call["name"], json.dumps(call["arguments"], ensure_ascii=False)

    def _call(self, stop: ir.MessageStop) -> list[ir.Event]:
        parsed = self._parsed()
        if self._cut(stop) or parsed is None:
            text = "".join(self._text)
            return [ir.TextStart(0), ir.TextDelta(0, text), ir.BlockStop(0)] if text else []
        name, arguments = parsed
        return [ir.ToolCallStart(0, self._new_id(), name), ir.ToolArgumentsDelta(0, arguments), ir.BlockStop(0)]
