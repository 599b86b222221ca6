"""Request bodies for fuzzing, shared by the property tests (tests/test_fuzz_http.py)
and the ``hostile`` bench: a valid, feature-rich body per dialect endpoint, and a
Hypothesis strategy of their mutations (a value replaced at any depth, a key
dropped, a field the decoders look for set to anything).  Needs hypothesis, a
test dependency; only imported where fuzzing is done."""

from __future__ import annotations

import copy
from typing import Any

from hypothesis import strategies as st

MODEL = "double"

VALID: dict[str, dict[str, Any]] = {
    "/v1/chat/completions": {
        "model": MODEL, "stream": False, "max_tokens": 20, "temperature": 0.5, "stop": ["x"], "n": 1,
        "stream_options": {"include_usage": True}, "response_format": {"type": "json_schema", "json_schema": {
            "name": "s", "schema": {"type": "object"}, "strict": True}},
        "tools": [{"type": "function", "function": {"name": "f", "description": "d", "parameters": {"type": "object"}}}],
        "tool_choice": {"type": "function", "function": {"name": "f"}}, "parallel_tool_calls": True,
        "messages": [
            {"role": "system", "content": "be brief"},
            {"role": "user", "content": [{"type": "text", "text": "hi"},
                                         {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}]},
            {"role": "assistant", "content": None, "tool_calls": [
                {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}]},
            {"role": "tool", "tool_call_id": "c1", "content": "42"},
        ],
    },
    "/api/anthropic/v1/messages": {
        "model": MODEL, "max_tokens": 20, "stream": False, "system": [{"type": "text", "text": "be brief"}],
        "thinking": {"type": "enabled", "budget_tokens": 1024}, "stop_sequences": ["x"], "top_k": 3,
        "tools": [{"name": "f", "description": "d", "input_schema": {"type": "object"}}],
        "tool_choice": {"type": "tool", "name": "f"}, "metadata": {"user_id": "u"},
        "messages": [
            {"role": "user", "content": [{"type": "text", "text": "hi"}, {"type": "image", "source": {
                "type": "base64", "media_type": "image/png", "data": "AAAA"}}]},
            {"role": "assistant", "content": [{"type": "thinking", "thinking": "hm", "signature": "s"},
                                              {"type": "tool_use", "id": "t1", "name": "f", "input": {"a": 1}}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1", "content": [
                {"type": "text", "text": "42"}], "is_error": False}]},
        ],
    },
    "/api/anthropic/v1/messages/count_tokens": {
        "model": MODEL, "messages": [{"role": "user", "content": "hi"}], "system": "s",
        "tools": [{"name": "f", "input_schema": {"type": "object"}}],
    },
    "/v1/responses": {
        "model": MODEL, "instructions": "be brief", "max_output_tokens": 20, "stream": False, "store": False,
        "text": {"format": {"type": "json_schema", "name": "s", "schema": {"type": "object"}}},
        "reasoning": {"effort": "low"}, "tool_choice": "auto", "parallel_tool_calls": False,
        "tools": [{"type": "function", "name": "f", "parameters": {"type": "object"}},
                  {"type": "namespace", "tools": [{"type": "function", "name": "g"}]}],
        "input": [
            {"role": "developer", "content": "d"},
            {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "hi"},
                                                             {"type": "input_image", "image_url": "data:image/png;base64,AAAA"}]},
            {"type": "reasoning", "summary": [{"type": "summary_text", "text": "hm"}]},
            {"type": "function_call", "call_id": "c1", "name": "f", "arguments": "{}"},
            {"type": "function_call_output", "call_id": "c1", "output": "42"},
        ],
    },
    "/v1/responses/compact": {"model": MODEL, "input": [{"role": "user", "content": "hi"}]},
}

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=12,
)
# Field names the decoders look for, so mutations reach past the first check.
FIELDS = ["model", "messages", "role", "content", "type", "text", "tools", "tool_choice", "function", "name",
          "arguments", "input", "image_url", "url", "source", "system", "max_tokens", "stream", "tool_calls",
          "tool_use_id", "call_id", "output", "summary", "format", "schema", "response_format", "stop", "thinking",
          "reasoning", "effort", "instructions", "previous_response_id", "parameters", "input_schema", "is_error",
          "json_schema", "stream_options", "metadata", "n", "signature", "detail", "media_type", "data"]


def paths(value: Any, here: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every path into ``value``, the root first."""
    found = [here]
    if isinstance(value, dict):
        for k, v in value.items():
            found += paths(v, (*here, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            found += paths(v, (*here, i))
    return found


@st.composite
def mutated(draw: st.DrawFn, path: str, model: str = MODEL) -> Any:
    """A mutation of the valid body for ``path``, asking for ``model``."""
    body = copy.deepcopy(VALID[path])
    body["model"] = model
    for _ in range(draw(st.integers(1, 3))):
        where = draw(st.sampled_from(paths(body)))
        if not where:
            body = draw(json_values)  # type: ignore[arg-type]  # any JSON value at all, in place of the body
            break
        parent = body
        for step in where[:-1]:
            parent = parent[step]
        action = draw(st.sampled_from(["replace", "drop", "add"]))
        if action == "replace":
            parent[where[-1]] = draw(json_values)
        elif action == "drop" and isinstance(parent, dict):
            del parent[where[-1]]
        elif isinstance(parent[where[-1]], dict):
            parent[where[-1]][draw(st.sampled_from(FIELDS))] = draw(json_values)
    return body
