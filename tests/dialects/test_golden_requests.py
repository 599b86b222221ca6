"""Request goldens: a client's body → the IR → the body sent upstream, for every
client dialect × every upstream dialect.

Inputs are ``golden/requests/CLIENT.json`` (Chat Completions, Anthropic
Messages, Responses: one rich request each — system text, an image, an earlier
tool call and its result, tools, sampling, stop sequences); the expected
upstream bodies are ``golden/requests/CLIENT-to-UPSTREAM.json``.  A change in
what reaches a provider shows as a diff here.  Regenerate after an intended
change: AUXOT_REGEN_GOLDEN=1, then review the diff.
"""

from __future__ import annotations

import json
import os
from typing import Any

import pytest

from auxot import ir
from auxot.dialects import anthropic, anthropic_upstream, openai_chat, openai_chat_upstream, responses
from tests.support import GOLDEN

REQUESTS = GOLDEN / "requests"

DECODERS = {
    "chat": openai_chat.decode_request,
    "messages": anthropic.decode_request,
    "responses": lambda body: responses.decode_request(body, history=lambda _id: None),
}
UPSTREAMS = {
    "openai": openai_chat_upstream.encode_request,
    "anthropic": anthropic_upstream.encode_request,
}
CASES = [(client, upstream) for client in DECODERS for upstream in UPSTREAMS]


def upstream_body(client: str, upstream: str) -> dict[str, Any]:
    body = json.loads((REQUESTS / f"{client}.json").read_text())
    request = DECODERS[client](body)
    assert isinstance(request, ir.Request)
    return UPSTREAMS[upstream](request, "upstream-model")


@pytest.mark.parametrize("client,upstream", CASES, ids=[f"{c}-to-{u}" for c, u in CASES])
def test_request_golden(client: str, upstream: str) -> None:
    got = upstream_body(client, upstream)
    path = REQUESTS / f"{client}-to-{upstream}.json"
    if os.environ.get("AUXOT_REGEN_GOLDEN"):
        path.write_text(json.dumps(got, indent=2, ensure_ascii=False) + "\n")
    assert got == json.loads(path.read_text())


def test_every_client_request_carries_its_whole_conversation_upstream() -> None:
    """Not a golden: what must survive whatever the goldens say — the system text,
    the image, the earlier tool call with its arguments, its result, the last turn,
    the tool's schema and the sampling settings."""
    for client, upstream in CASES:
        text = json.dumps(upstream_body(client, upstream))
        for needle in ("You are terse.", "iVBORw0KGgo=", "get_weather", "Paris", "18 C, cloudy",
                       "Thanks. Answer in one line.", '"city"', "0.2", "0.9", "256"):
            assert needle in text, (client, upstream, needle)
