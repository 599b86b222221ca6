"""Accumulate a stream of IR events into one :class:`ir.Response`, for clients
that asked for a single JSON answer.  Pure and incremental."""

from __future__ import annotations

from dataclasses import dataclass, field

from .ir import (
    BlockStop,
    ChoiceEnd,
    ChoiceStart,
    Event,
    MessageStart,
    MessageStop,
    Output,
    Response,
    Sampling,
    ServerToolCall,
    ServerToolCallDone,
    ServerToolCallStart,
    ServerToolResult,
    ServerTools,
    ServerToolsListed,
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


@dataclass
class _Block:
    """One content block as it streams in: its pieces, joined at the end."""

    kind: str  # text | thinking | tool | server (a server tool call, its result or a server's tools: whole)
    pieces: list[str] = field(default_factory=list)
    signature: str | None = None  # thinking
    call_id: str = ""  # tool, server
    name: str = ""  # tool, server
    server: ServerToolCall | ServerToolResult | ServerTools | None = None  # whole blocks

    def part(self) -> Output:
        joined = "".join(self.pieces)
        if self.server is not None:
            return self.server
        if self.kind == "text":
            return Text(joined)
        if self.kind == "thinking":
            return Thinking(joined, self.signature)
        return ToolCall(self.call_id, self.name, joined or "{}")


class Fold:
    """Accumulate a stream of events into a :class:`Response` (for clients that
    asked for a single JSON answer).  Pure and incremental."""

    def __init__(self, response_id: str) -> None:
        self.id = response_id
        self.model = ""
        self.fingerprint: str | None = None
        self.sampling: Sampling | None = None
        self.usage = Usage()
        self.blocks: dict[int, _Block] = {}
        self.stop: MessageStop | None = None
        self.error: StreamError | None = None
        self.logprobs: list[TokenLogprob] | None = None
        self.choices: list[tuple[dict[int, _Block], list[TokenLogprob] | None, ChoiceEnd]] = []  # ended ones

    def feed(self, event: Event) -> None:
        match event:
            case MessageStart(model=model, usage=usage, fingerprint=fingerprint, sampling=sampling):
                self.model = model
                self.usage = usage
                self.fingerprint = fingerprint
                self.sampling = sampling
            case TextStart(index=i):
                self.blocks[i] = _Block("text")
            case ThinkingStart(index=i):
                self.blocks[i] = _Block("thinking")
            case ToolCallStart(index=i, id=call_id, name=name):
                self.blocks[i] = _Block("tool", call_id=call_id, name=name)
            case TextDelta(index=i, text=text, logprobs=logprobs):
                self.blocks[i].pieces.append(text)
                if logprobs:
                    if self.logprobs is None:
                        self.logprobs = []
                    self.logprobs.extend(logprobs)
            case ToolArgumentsDelta(index=i, json=text):
                self.blocks[i].pieces.append(text)
            case ThinkingDelta(index=i, text=text, signature=signature):
                self.blocks[i].pieces.append(text)
                if signature is not None:
                    self.blocks[i].signature = signature
            case ServerToolCallStart(index=i, id=call_id, server=server, name=name, arguments=arguments):
                self.blocks[i] = _Block("server", server=ServerToolCall(call_id, server, name, arguments))
            case ServerToolCallDone(index=i, call_id=call_id, output=output, is_error=is_error):
                self.blocks[i] = _Block("server", server=ServerToolResult(call_id, output, is_error))
            case ServerToolsListed(index=i, server=server, tools=tools):
                self.blocks[i] = _Block("server", server=ServerTools(server, tools))
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


def _content(blocks: dict[int, _Block]) -> tuple[Output, ...]:
    return tuple(block.part() for _, block in sorted(blocks.items()))
