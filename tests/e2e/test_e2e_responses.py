"""The Responses API end to end: the real openai SDK → auxot (a real process) →
the real llama-server with SmolLM2."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

import openai
import pytest

from auxot import sse
from conformance import responses_schema
from tests.support.router_process import RouterProcess

MODEL = "SmolLM2-135M-Instruct"


@pytest.fixture
def client(router: RouterProcess) -> openai.OpenAI:
    return openai.OpenAI(base_url=router.base_url + "/v1", api_key=router.key, max_retries=0, timeout=60)


def test_create_and_continue_with_previous_response_id(client: openai.OpenAI) -> None:
    first = client.responses.create(model="auto", input="My name is Ada. Say hello.", max_output_tokens=40, instructions="Be brief.")
    assert first.object == "response" and first.model == MODEL and first.status in ("completed", "incomplete")
    assert first.output_text and first.usage.input_tokens > 0 and first.usage.output_tokens > 0
    second = client.responses.create(model="auto", input="What is my name?", previous_response_id=first.id, max_output_tokens=20)
    assert second.output_text and second.usage.input_tokens > first.usage.input_tokens  # the history was sent
    with pytest.raises(openai.BadRequestError, match="Previous response with id 'resp_nope' not found"):
        client.responses.create(model="auto", input="x", previous_response_id="resp_nope")


def test_stream_event_order(client: openai.OpenAI) -> None:
    events = list(client.responses.create(model="auto", input="Write a haiku about servers.", max_output_tokens=24, stream=True))
    types = [e.type for e in events]
    assert types[:4] == ["response.created", "response.in_progress", "response.output_item.added", "response.content_part.added"]
    assert types[-4:-1] == ["response.output_text.done", "response.content_part.done", "response.output_item.done"]
    assert types[-1] in ("response.completed", "response.incomplete")
    assert [e.sequence_number for e in events] == list(range(len(events)))
    text = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert text and text == events[-1].response.output_text


def test_function_call_output_round_trip(client: openai.OpenAI) -> None:
    r = client.responses.create(
        model="auto", max_output_tokens=30,
        tools=[{"type": "function", "name": "get_weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}},
               {"type": "web_search"}],
        input=[
            {"role": "user", "content": "Weather in Paris?"},
            {"type": "function_call", "call_id": "call_1", "name": "get_weather", "arguments": "{\"city\": \"Paris\"}"},
            {"type": "function_call_output", "call_id": "call_1", "output": "18C and sunny"},
        ],
    )
    assert r.status in ("completed", "incomplete") and r.output


def test_compact_keeps_the_last_user_turn(router: RouterProcess) -> None:
    body = {"model": "auto", "input": [
        {"role": "user", "content": "We are planning a trip to Lisbon in May for three people."},
        {"role": "assistant", "content": [{"type": "output_text", "text": "Great, Lisbon in May is lovely."}]},
        {"role": "user", "content": "Book the hotel near the river."},
    ]}
    req = urllib.request.Request(router.base_url + "/v1/responses/compact", data=json.dumps(body).encode(),
                                 headers={"Authorization": f"Bearer {router.key}", "Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=60) as resp:
        out = json.loads(resp.read())
    assert out["object"] == "response.compaction" and len(out["output"]) == 2
    assert out["output"][0]["content"][0]["text"].startswith("Summary of the conversation so far:")
    assert out["output"][1]["content"][0]["text"] == "Book the hotel near the river."


def test_errors_are_openai_shaped(router: RouterProcess) -> None:
    req = urllib.request.Request(router.base_url + "/api/openai/responses", data=b'{"model":"auto"}',
                                 headers={"Authorization": f"Bearer {router.key}"})
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(req, timeout=10)
    assert info.value.code == 400 and json.loads(info.value.read())["error"]["message"] == "input is required"


def post(router: RouterProcess, body: dict) -> tuple[str, bytes]:
    req = urllib.request.Request(router.base_url + "/v1/responses", data=json.dumps(body).encode(),
                                 headers={"Authorization": f"Bearer {router.key}", "Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=60) as resp:
        return resp.headers.get("Content-Type", ""), resp.read()


def test_every_answer_carries_the_schema_s_required_fields(router: RouterProcess) -> None:
    """spec/responses.md §required fields, on the wire: the JSON answer and every
    stream event, with the request's settings repeated (issue: a response object
    with 18 of its 31 fields, tools always [] and temperature null)."""
    tools = [{"type": "function", "name": "get_weather", "description": "Weather", "parameters": {"type": "object"}}]
    body = {"model": "auto", "input": "Say hi.", "max_output_tokens": 8, "tools": tools, "tool_choice": "none",
            "top_p": 0.9, "safety_identifier": "user-7", "store": False}
    kind, raw = post(router, body)
    answer = json.loads(raw)
    assert kind.startswith("application/json") and responses_schema.response_problems(answer) == []
    assert answer["tools"] == tools and answer["tool_choice"] == "none" and answer["store"] is False
    # temperature unset: llama-server's own default, which it says in /props (not the reference's 1)
    assert (answer["temperature"], answer["top_p"], answer["safety_identifier"]) == (0.8, 0.9, "user-7")
    assert answer["status"] != "completed" or answer["completed_at"] >= answer["created_at"]

    kind, raw = post(router, {**body, "stream": True})
    assert kind.startswith("text/event-stream")
    decoded = sse.Decoder().feed(raw)
    events = [json.loads(e.data) for e in decoded]
    assert [e.event for e in decoded] == [e["type"] for e in events]
    assert responses_schema.stream_problems(events) == []
    assert events[-1]["response"]["tools"] == tools and events[-1]["response"]["top_p"] == 0.9
