"""An upstream's SSE body, in either provider dialect, as IR events.

Pure and incremental: ``feed`` bytes as they arrive, ``end`` when the body
closes.  The SSE framing and the JSON are read here, once; each dialect's
decoder has one interface, ``feed(payload) -> list[ir.Event]`` and ``end()``
(so the Anthropic decoder also reads Claude Code's JSON lines).  Providers that speak OpenAI Chat (llama-server, OpenAI-compatible
clouds) or Anthropic Messages use this one class, so every provider dialect
reaches every client dialect through the IR.
"""

from __future__ import annotations

import json
from typing import Callable

from .. import ir, sse
from ..errors import ErrorKind
from . import anthropic_stream, openai_chat_stream


class UpstreamStream:
    def __init__(self, dialect: str, id_factory: Callable[[], str], max_event_bytes: int = 64 * 1024 * 1024) -> None:
        if dialect not in ("openai", "anthropic"):
            raise ValueError(f"unknown upstream dialect {dialect!r}")
        self.dialect = dialect
        self._sse = sse.Decoder(max_event_bytes)
        self._openai = openai_chat_stream.StreamDecoder(id_factory)
        self._anthropic = anthropic_stream.StreamDecoder()
        self.finished = False  # a stop or an error was emitted; nothing more follows

    def feed(self, data: bytes) -> list[ir.Event]:
        if self.finished:
            return []
        try:
            events = self._sse.feed(data)
        except ValueError as exc:
            return self._fail(f"upstream stream is malformed: {exc}")
        out: list[ir.Event] = []
        for event in events:
            if self.dialect == "openai" and event.data == "[DONE]":
                out += self._openai.end()
                self.finished = True
                return out
            try:
                payload = json.loads(event.data)
            except ValueError:
                return out + self._fail(f"upstream sent an event that is not JSON: {event.data[:80]!r}")
            if self.dialect == "anthropic" and isinstance(payload, dict) and "type" not in payload and event.event:
                payload["type"] = event.event  # the SSE event name says what the data does not
            produced = (self._openai if self.dialect == "openai" else self._anthropic).feed(payload)
            out += produced
            # A stop or an error is always the last event a decoder produces for a payload.
            if produced and isinstance(produced[-1], (ir.MessageStop, ir.StreamError)):
                self.finished = True
                return out
        return out

    def end(self) -> list[ir.Event]:
        """The upstream closed its body (possibly without a proper ending)."""
        if self.finished:
            return []
        self.finished = True
        return self._openai.end() if self.dialect == "openai" else self._anthropic.end()

    def _fail(self, message: str) -> list[ir.Event]:
        self.finished = True
        return [ir.StreamError(ErrorKind.UPSTREAM, message)]
