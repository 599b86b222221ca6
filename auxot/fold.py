"""Accumulate a stream of IR events into one :class:`ir.Response`, for clients
that asked for a single JSON answer.  Pure and incremental."""

from __future__ import annotations

from typing import Any

from .ir import (
    BlockStop,
    ChoiceEnd,
    ChoiceStart,
    Event,
    MessageStart,
    MessageStop,
    Response,
    Sampling,
    StreamError,
    Text,
    TextDelta,
    TextStart,
    Thinking,
    ThinkingDelta,
    ThinkingStart,
    TokenLogprob,
    ToolArgumentsDelta,
    ToolCall,
    ToolCallStart,
    Usage,
    merge_usage,
)

__all__ = ["Fold"]


class Fold:
    """Accumulate a stream of events into a :class:`Response` (for clients that
    asked for a single JSON answer).  Pure and incremental."""

    def __init__(self, response_id: str) -> None:
        self.id = response_id
        self.model = ""
        self.fingerprint: str | None = None
        self.sampling: Sampling | None = None
        self.usage = Usage()
        self.blocks: dict[int, list[Any]] = {}
        self.stop: MessageStop | None = None
        self.error: StreamError | None = None
        self.logprobs: list[TokenLogprob] | None = None
        self.choices: list[tuple[dict[int, list[Any]], list[TokenLogprob] | None, ChoiceEnd]] = []  # ended ones

    def feed(self, event: Event) -> None:
        match event:
            case MessageStart(model=model, usage=usage, fingerprint=fingerprint, sampling=sampling):
                self.model = model
                self.usage = usage
                self.fingerprint = fingerprint
                self.sampling = sampling
            case TextStart(index=i):
                self.blocks[i] = ["text", []]
            case ThinkingStart(index=i):
                self.blocks[i] = ["thinking", [], None]
            case ToolCallStart(index=i, id=call_id, name=name):
                self.blocks[i] = ["tool", [], call_id, name]
            case TextDelta(index=i, text=text, logprobs=logprobs):
                self.blocks[i][1].append(text)
                if logprobs:
                    if self.logprobs is None:
                        self.logprobs = []
                    self.logprobs.extend(logprobs)
            case ToolArgumentsDelta(index=i, json=text):
                self.blocks[i][1].append(text)
            case ThinkingDelta(index=i, text=text, signature=signature):
                self.blocks[i][1].append(text)
                if signature is not None:
                    self.blocks[i][2] = signature
            case BlockStop():
                pass
            case MessageStop():
                self.stop = event
            case StreamError():
                self.error = event
            case ChoiceStart():
                self.blocks, self.logprobs = {}, None
            case ChoiceEnd():
                self.choices.append((self.blocks, self.logprobs, event))
                self.blocks, self.logprobs = {}, None

    def result(self) -> Response:
        stop = self.stop or MessageStop(None)
        usage = merge_usage(self.usage, stop.usage)
        choices = tuple(
            Response(self.id, self.model, _content(blocks), end.stop_reason, end.stop_sequence, end.usage, self.fingerprint,
                     tuple(logprobs) if logprobs is not None else None)
            for blocks, logprobs, end in self.choices)
        if choices:
            first = choices[0]
            return Response(self.id, self.model, first.content, first.stop_reason, first.stop_sequence, usage, self.fingerprint,
                            first.logprobs, choices, self.sampling)
        logprobs = tuple(self.logprobs) if self.logprobs is not None else None
        return Response(self.id, self.model, _content(self.blocks), stop.stop_reason, stop.stop_sequence, usage, self.fingerprint,
                        logprobs, sampling=self.sampling)


def _content(blocks: dict[int, list[Any]]) -> tuple[Text | Thinking | ToolCall, ...]:
    content: list[Text | Thinking | ToolCall] = []
    for _, block in sorted(blocks.items()):
        joined = "".join(block[1])
        if block[0] == "text":
            content.append(Text(joined))
        elif block[0] == "thinking":
            content.append(Thinking(joined, block[2]))
        else:
            content.append(ToolCall(block[2], block[3], joined or "{}"))
    return tuple(content)
