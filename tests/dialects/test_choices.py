"""Several answers to one request (OpenAI's ``n``): asked one after another,
carried as one IR stream (auxot/choices.py), encoded as n choices."""

from __future__ import annotations

import json
from typing import AsyncIterator

from auxot import choices, ir, sse
from auxot.dialects import openai_chat
from auxot.dialects.openai_chat_stream import StreamEncoder
from auxot.fold import Fold


def answer(text: str, stop: ir.StopReason) -> list[ir.Event]:
    return [ir.MessageStart("m", ir.Usage(10, None, 4)), ir.TextStart(0), ir.TextDelta(0, text), ir.BlockStop(0),
            ir.MessageStop(stop, usage=ir.Usage(10, len(text), 4))]


async def collect(n: int, answers: list[list[ir.Event]]) -> list[ir.Event]:
    pending = iter(answers)

    async def ask() -> AsyncIterator[ir.Event]:
        for event in next(pending):
            yield event

    return [e async for e in choices.one_after_another(n, ask)]


async def test_answers_come_one_after_another_with_the_prompt_counted_once() -> None:
    events = await collect(2, [answer("abc", ir.StopReason.END_TURN), answer("de", ir.StopReason.MAX_TOKENS)])
    assert [type(e).__name__ for e in events] == [
        "MessageStart", "ChoiceStart", "TextStart", "TextDelta", "BlockStop", "ChoiceEnd",
        "ChoiceStart", "TextStart", "TextDelta", "BlockStop", "ChoiceEnd", "MessageStop"]
    assert events[-1] == ir.MessageStop(ir.StopReason.MAX_TOKENS, usage=ir.Usage(10, 5, 4))

    fold = Fold("r")
    for event in events:
        fold.feed(event)
    body = openai_chat.encode_response(fold.result(), 1)
    assert [(c["index"], c["message"]["content"], c["finish_reason"]) for c in body["choices"]] == [
        (0, "abc", "stop"), (1, "de", "length")]
    assert body["usage"]["completion_tokens"] == 5 and body["usage"]["prompt_tokens"] == 14

    encoder = StreamEncoder("r", 1, "m", include_usage=True)
    chunks = [json.loads(e.data) for e in sse.Decoder().feed(b"".join(encoder.encode(e) for e in events)) if e.data != "[DONE]"]
    per_choice: dict[int, str] = {}
    finishes = {}
    for chunk in chunks:
        for c in chunk["choices"]:
            per_choice[c["index"]] = per_choice.get(c["index"], "") + (c["delta"].get("content") or "")
            if c["finish_reason"]:
                finishes[c["index"]] = c["finish_reason"]
    assert per_choice == {0: "abc", 1: "de"} and finishes == {0: "stop", 1: "length"}
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["completion_tokens"] == 5


async def test_a_failed_answer_ends_the_stream_with_its_error() -> None:
    broken = [ir.MessageStart("m"), ir.StreamError("upstream", "boom")]
    events = await collect(3, [answer("abc", ir.StopReason.END_TURN), broken, answer("x", ir.StopReason.END_TURN)])
    assert events[-1] == ir.StreamError("upstream", "boom") and not any(isinstance(e, ir.MessageStop) for e in events)
