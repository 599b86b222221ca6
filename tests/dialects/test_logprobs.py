"""Token log probabilities (mapping §logprobs): asked in Chat Completions or
Responses, carried from an OpenAI-dialect upstream (llama-server) through the IR
to both, JSON and stream; refused with 400 where no provider can give them."""

from __future__ import annotations

import json

import pytest

from auxot import ir, sse
from auxot.dialects import (
    openai_chat,
    openai_chat_upstream,
    responses,
    responses_output,
)
from auxot.dialects.upstream import UpstreamStream
from auxot.errors import InvalidRequest
from auxot.fold import Fold
from auxot.providers.capabilities import Capabilities, missing, needs
from tests.support import GOLDEN


def folded(name: str = "llamacpp_logprobs.openai.sse") -> ir.Response:
    fold = Fold("r")
    for event in UpstreamStream("openai", lambda: "call").feed((GOLDEN / name).read_bytes()):
        fold.feed(event)
    return fold.result()


def test_requests_ask_and_upstreams_are_asked() -> None:
    chat = openai_chat.decode_request({"model": "m", "messages": [{"role": "user", "content": "x"}], "logprobs": True, "top_logprobs": 2})
    assert chat.sampling.logprobs == 2
    body = openai_chat_upstream.encode_request(chat, "m")
    assert (body["logprobs"], body["top_logprobs"]) == (True, 2)
    plain = openai_chat.decode_request({"model": "m", "messages": [{"role": "user", "content": "x"}], "logprobs": True})
    assert plain.sampling.logprobs == 0 and "top_logprobs" not in openai_chat_upstream.encode_request(plain, "m")
    assert responses.decode_request({"model": "m", "input": "x", "include": ["message.output_text.logprobs"]}).sampling.logprobs == 0
    assert responses.decode_request({"model": "m", "input": "x", "top_logprobs": 3}).sampling.logprobs == 3
    assert responses.decode_request({"model": "m", "input": "x"}).sampling.logprobs is None


@pytest.mark.parametrize(("body", "message"), [
    ({"top_logprobs": 2}, "top_logprobs requires logprobs to be true"),
    ({"logprobs": True, "top_logprobs": 21}, "top_logprobs must be at most 20"),
    ({"logprobs": "yes"}, "logprobs must be true or false"),
])
def test_bad_asks(body: dict, message: str) -> None:
    with pytest.raises(InvalidRequest, match=message):
        openai_chat.decode_request({"model": "m", "messages": [{"role": "user", "content": "x"}], **body})


def test_the_upstream_s_logprobs_reach_a_json_answer() -> None:
    resp = folded()
    text = "".join(p.text for p in resp.content if isinstance(p, ir.Text))
    assert resp.logprobs and "".join(t.token for t in resp.logprobs) == text
    assert all(len(t.top) == 2 and t.top[0].logprob >= t.top[1].logprob for t in resp.logprobs)
    choice = openai_chat.encode_response(resp, 1)["choices"][0]
    assert [e["token"] for e in choice["logprobs"]["content"]] == [t.token for t in resp.logprobs]
    assert choice["logprobs"]["content"][0]["top_logprobs"][1].keys() == {"token", "logprob", "bytes"}
    (item,) = responses_output.encode_response(resp, 1)["output"]
    assert item["content"][0]["logprobs"] == choice["logprobs"]["content"]
    assert openai_chat.encode_response(folded("llamacpp_text.openai.sse"), 1)["choices"][0]["logprobs"] is None


def test_the_upstream_s_logprobs_reach_every_stream_chunk() -> None:
    raw = (GOLDEN / "llamacpp_logprobs.openai-to-openai.sse").read_bytes()
    chunks = [json.loads(e.data) for e in sse.Decoder().feed(raw) if e.data != "[DONE]"]
    pairs = [(c["choices"][0]["delta"].get("content"), c["choices"][0]["logprobs"]) for c in chunks if c["choices"]]
    texts = [(text, lp) for text, lp in pairs if text]
    assert texts and all(lp and "".join(e["token"] for e in lp["content"]) == text for text, lp in texts)
    raw = (GOLDEN / "llamacpp_logprobs.openai-to-responses.sse").read_bytes()
    events = [json.loads(e.data) for e in sse.Decoder().feed(raw)]
    deltas = [e for e in events if e["type"] == "response.output_text.delta"]
    assert deltas and all("".join(t["token"] for t in e["logprobs"]) == e["delta"] for e in deltas)
    (done,) = [e for e in events if e["type"] == "response.output_text.done"]
    assert len(done["logprobs"]) == sum(len(e["logprobs"]) for e in deltas)


def test_a_provider_that_cannot_give_them_is_not_asked() -> None:
    req = openai_chat.decode_request({"model": "m", "messages": [{"role": "user", "content": "x"}], "logprobs": True})
    assert "logprobs" in (missing(Capabilities(logprobs=False), needs(req)) or "")
    assert missing(Capabilities(logprobs=None), needs(req)) is None and missing(Capabilities(logprobs=True), needs(req)) is None


def test_text_blocks_share_the_tokens_in_order() -> None:
    tokens = tuple(ir.TokenLogprob(t, -1.0) for t in ("He", "llo", " wor", "ld"))
    content = (ir.Text("Hello"), ir.ToolCall("c", "f", "{}"), ir.Text(" world"))
    assert responses_output.split_logprobs(content, tokens) == [tokens[:2], tokens[2:]]
