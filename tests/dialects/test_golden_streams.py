"""Every provider dialect × every client dialect, through the IR, on recorded or
documented upstream streams replayed in randomly sized pieces (fixed seeds).

Inputs are ``golden/NAME.UPSTREAM.sse``; the expected client streams are
``golden/NAME.UPSTREAM-to-CLIENT.sse``.  Ids and clocks are fixed.
Regenerate after an intended change: AUXOT_REGEN_GOLDEN=1, then review the diff.
"""

from __future__ import annotations

import itertools
import json
import os
import random
from pathlib import Path

import pytest

from auxot import sse
from auxot.dialects import anthropic_stream, openai_chat_stream
from auxot.dialects.responses_stream import StreamEncoder
from auxot.dialects.upstream import UpstreamStream
from conformance import responses_schema
from tests.support import GOLDEN

INPUTS = sorted(p for p in GOLDEN.glob("*.sse") if "-to-" not in p.name)
CLIENTS = ("openai", "anthropic", "responses")


def client_encoder(client: str):  # type: ignore[no-untyped-def]
    if client == "openai":
        return openai_chat_stream.StreamEncoder("chatcmpl-auxot-golden", 1700000000, "golden-model", include_usage=True)
    if client == "responses":
        ids = itertools.count()
        return StreamEncoder("resp_golden", 1700000000, "golden-model", None, lambda prefix: f"{prefix}_{next(ids)}",
                             clock=lambda: 1700000001)
    return anthropic_stream.StreamEncoder("msg_auxot_golden", "golden-model")


def translate(raw: bytes, upstream: str, client: str, seed: int) -> bytes:
    rng = random.Random(seed)
    ids = (f"call_{n}" for n in itertools.count())
    stream = UpstreamStream(upstream, lambda: next(ids))
    encoder = client_encoder(client)
    out = bytearray()
    i = 0
    while i < len(raw):
        n = rng.randint(1, 64)
        for event in stream.feed(raw[i : i + n]):
            out += encoder.encode(event)
        i += n
    for event in stream.end():
        out += encoder.encode(event)
    return bytes(out)


CASES = [(p.name.split(".")[0], p.name.split(".")[1], client) for p in INPUTS for client in CLIENTS]


@pytest.mark.parametrize(("name", "upstream", "client"), CASES, ids=[f"{n}:{u}->{c}" for n, u, c in CASES])
def test_golden(name: str, upstream: str, client: str) -> None:
    raw = (GOLDEN / f"{name}.{upstream}.sse").read_bytes()
    expected_path = GOLDEN / f"{name}.{upstream}-to-{client}.sse"
    if os.environ.get("AUXOT_REGEN_GOLDEN"):
        expected_path.write_bytes(translate(raw, upstream, client, seed=0))
    expected = expected_path.read_bytes()
    for seed in range(20):
        assert translate(raw, upstream, client, seed) == expected


def anthropic_events(out: bytes) -> list[tuple[str | None, dict]]:
    return [(e.event, json.loads(e.data)) for e in sse.Decoder().feed(out)]


def test_anthropic_client_gets_the_full_event_sequence_from_an_openai_upstream() -> None:
    out = translate((GOLDEN / "parallel_tools.openai.sse").read_bytes(), "openai", "anthropic", seed=5)
    names = [name for name, _ in anthropic_events(out)]
    assert names == [
        "message_start", "ping",
        "content_block_start", *["content_block_delta"] * 3, "content_block_stop",
        "content_block_start", *["content_block_delta"] * 2, "content_block_stop",
        "message_delta", "message_stop",
    ]
    events = anthropic_events(out)
    starts = [d["content_block"] for n, d in events if n == "content_block_start"]
    assert [(b["type"], b["id"], b["name"]) for b in starts] == [
        ("tool_use", "call_paris", "get_weather"), ("tool_use", "call_rome", "get_weather"),
    ]
    args = {0: "", 1: ""}
    for n, d in events:
        if n == "content_block_delta":
            args[d["index"]] += d["delta"]["partial_json"]
    assert json.loads(args[0]) == {"city": "Paris"} and json.loads(args[1]) == {"city": "Rome"}
    delta = next(d for n, d in events if n == "message_delta")
    assert delta["delta"]["stop_reason"] == "tool_use"
    assert delta["usage"] == {"output_tokens": 30, "input_tokens": 16}


def test_openai_client_gets_thinking_and_a_tool_call_from_an_anthropic_upstream() -> None:
    out = translate((GOLDEN / "thinking_tool_use.anthropic.sse").read_bytes(), "anthropic", "openai", seed=2)
    chunks = [json.loads(e.data) for e in sse.Decoder().feed(out) if e.data != "[DONE]"]
    deltas = [c["choices"][0]["delta"] for c in chunks if c["choices"]]
    assert "".join(d.get("reasoning_content", "") for d in deltas) == "The user wants the weather; call get_weather."
    assert "".join(d.get("content", "") for d in deltas) == "Let me check the weather."
    calls = [tc for d in deltas for tc in d.get("tool_calls", ())]
    assert calls[0]["id"] == "toolu_01T1x1fJ34qAmk2tNTrN7Up6" and calls[0]["index"] == 0
    assert json.loads("".join(tc["function"].get("arguments", "") for tc in calls)) == {"location": "San Francisco, CA"}
    final = [c for c in chunks if c["choices"] and c["choices"][0]["finish_reason"]]
    assert final[0]["choices"][0]["finish_reason"] == "tool_calls"
    assert chunks[-1]["usage"] == {
        "prompt_tokens": 1496, "completion_tokens": 89, "total_tokens": 1585, "prompt_tokens_details": {"cached_tokens": 1024},
    }


def test_anthropic_to_anthropic_keeps_the_signature() -> None:
    out = translate((GOLDEN / "thinking_tool_use.anthropic.sse").read_bytes(), "anthropic", "anthropic", seed=9)
    sigs = [
        d["delta"]["signature"]
        for n, d in anthropic_events(out)
        if n == "content_block_delta" and d["delta"]["type"] == "signature_delta"
    ]
    assert sigs == ["EqQBCgIYAhIM1gbcDa9GJwZA2b3h"]


@pytest.mark.parametrize("client", CLIENTS)
@pytest.mark.parametrize(("upstream", "name"), [("openai", "llamacpp_text"), ("anthropic", "thinking_tool_use")])
def test_cut_streams_end_in_an_error_never_a_normal_stop(upstream: str, name: str, client: str) -> None:
    raw = (GOLDEN / f"{name}.{upstream}.sse").read_bytes()
    cut = raw[: len(raw) * 2 // 3]
    cut = cut[: cut.rindex(b"\n\n") + 2]
    out = translate(cut, upstream, client, seed=1)
    last = sse.Decoder().feed(out)[-1]
    if client == "openai":
        assert json.loads(last.data)["error"]["type"] == "upstream_error"
        assert b"[DONE]" not in out and b"finish_reason\":\"" not in out
    elif client == "responses":
        assert last.event == "response.failed" and json.loads(last.data)["response"]["status"] == "failed"
        assert b"response.completed" not in out
    else:
        assert last.event == "error" and json.loads(last.data)["error"]["type"] == "api_error"
        names = [name for name, _ in anthropic_events(out)]
        assert "message_stop" not in names and "message_delta" not in names


def test_responses_client_gets_items_in_order_with_rising_sequence_numbers() -> None:
    out = translate((GOLDEN / "thinking_tool_use.anthropic.sse").read_bytes(), "anthropic", "responses", seed=4)
    events = [(e.event, json.loads(e.data)) for e in sse.Decoder().feed(out)]
    assert [d["sequence_number"] for _, d in events] == list(range(len(events)))
    names = [n for n, _ in events]
    assert names[:2] == ["response.created", "response.in_progress"] and names[-1] == "response.completed"
    final = events[-1][1]["response"]
    assert [i["type"] for i in final["output"]] == ["reasoning", "message", "function_call"]
    assert final["output"][1]["content"][0]["text"] == "Let me check the weather."
    assert json.loads(final["output"][2]["arguments"]) == {"location": "San Francisco, CA"}
    assert final["output"][2]["call_id"] == "toolu_01T1x1fJ34qAmk2tNTrN7Up6"
    deltas = "".join(d["delta"] for n, d in events if n == "response.function_call_arguments.delta")
    assert deltas == final["output"][2]["arguments"]
    assert final["usage"]["input_tokens"] == 1496 and final["usage"]["input_tokens_details"]["cached_tokens"] == 1024


@pytest.mark.parametrize("path", sorted(GOLDEN.glob("*-to-responses.sse")), ids=lambda p: p.name)
def test_responses_goldens_carry_every_required_field(path: Path) -> None:
    events = [json.loads(e.data) for e in sse.Decoder().feed(path.read_bytes())]
    assert events and responses_schema.stream_problems(events) == []


@pytest.mark.parametrize("name", ["cut_midstream.openai", "overloaded_midstream.anthropic"])
@pytest.mark.parametrize("client", CLIENTS)
def test_error_streams_end_in_the_dialects_error_never_a_normal_stop(name: str, client: str) -> None:
    upstream = name.split(".")[1]
    out = translate((GOLDEN / f"{name}.sse").read_bytes(), upstream, client, seed=11).decode()
    last = [line for line in out.splitlines() if line.startswith(("event:", "data:"))][-2:]
    if client == "anthropic":
        assert last[0] == "event: error" and "message_stop" not in out
    elif client == "openai":
        assert last[-1].startswith('data: {"error":') and '"finish_reason":"stop"' not in out and "[DONE]" not in out
    else:
        assert last[0] == "event: response.failed" and "response.completed" not in out
