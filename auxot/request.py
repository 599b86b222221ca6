"""What one API request did (or one WebSocket turn): ONE record, passed
explicitly from the pipeline to whoever learns a fact, filled in as it goes.

    pipeline        endpoint, start times, key, model asked
    scheduler       provider and its tier, model served, attempts, failovers, time queued
    relay           first token, tokens in / out, stop or error, a stalled reader
    gate            HTTP status (its ``metered`` send), then the ledger row

When the request ends the record becomes one usage-ledger row (:meth:`row`) and
feeds the metrics.  Pure: no I/O and no trio; times come from whoever fills it
(``started`` and the other monotonic times are trio's clock).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from . import ir

# Events that carry output: the first of them marks the time to first token.
OUTPUT = (ir.TextDelta, ir.ThinkingDelta, ir.ToolArgumentsDelta, ir.ToolCallStart)


@dataclass
class Record:
    endpoint: str  # which surface: the ledger's "endpoint" column and the metrics' label, e.g. "openai.chat_completions"
    started_at: float = 0.0  # wall clock (seconds since the epoch): the ledger's time
    started: float = 0.0  # monotonic: latencies are measured from here
    key_id: str | None = None
    model_requested: str | None = None  # as the client asked (before a key's model list narrowed "auto")
    provider: str | None = None
    provider_tier: str | None = None
    model_served: str | None = None
    attempts: int = 0  # providers tried, including the one that served
    failovers: int = 0  # of those, how many failed before the first byte
    queued_s: float = 0.0  # time spent waiting for a slot
    status: int | None = None  # the HTTP status sent (or a WebSocket turn's); None if nothing was
    input_tokens: int | None = None  # as the IR counts them: not including cached tokens
    output_tokens: int | None = None
    cached_tokens: int | None = None  # prompt tokens read from (or written to) the provider's cache
    first_token: float | None = None  # monotonic
    ended: float | None = None  # monotonic
    output_events: int = 0
    saw_stop: bool = False
    saw_error: bool = False
    saw_events: bool = False
    stalled: bool = False  # the client stopped reading; the server closed it (http_server)
    tool_rounds: int = 0  # rounds of server-side tool calls (tools/loop.py)
    tool_calls: int = 0

    def observe(self, event: ir.Event, now: float) -> None:
        self.saw_events = True
        if isinstance(event, OUTPUT):
            self.output_events += 1
            if self.first_token is None:
                self.first_token = now
        match event:
            case ir.MessageStart(model=model, usage=usage):
                self.model_served = model or self.model_served  # what the provider says served wins
                self._take(usage)
            case ir.MessageStop(usage=usage):
                self.saw_stop = True
                self._take(usage)
            case ir.StreamError():
                self.saw_error = True

    def _take(self, usage: ir.Usage) -> None:
        if usage.input_tokens is not None:
            self.input_tokens = usage.input_tokens
        if usage.output_tokens is not None:
            self.output_tokens = usage.output_tokens
        if usage.cache_read_tokens is not None or usage.cache_write_tokens is not None:
            self.cached_tokens = (usage.cache_read_tokens or 0) + (usage.cache_write_tokens or 0)

    @property
    def prompt_tokens(self) -> int | None:
        """Every prompt token, cached or not: the ledger's "tokens in"."""
        if self.input_tokens is None and self.cached_tokens is None:
            return None
        return (self.input_tokens or 0) + (self.cached_tokens or 0)

    @property
    def outcome(self) -> str:
        """ok | error | disconnected (nothing sent, or a stream cut before its end)
        | stalled (the client stopped reading, so the answer was cut off)."""
        if self.stalled:
            return "stalled"
        if self.status is None:
            return "disconnected"
        if self.status >= 400 or self.saw_error:
            return "error"
        if self.saw_events and not self.saw_stop:
            return "disconnected"
        return "ok"

    @property
    def ttft_s(self) -> float | None:
        return None if self.first_token is None else self.first_token - self.started

    @property
    def latency_s(self) -> float | None:
        return None if self.ended is None else self.ended - self.started

    def charged_tokens(self) -> int:
        """Tokens counted against the key's per-minute limit.  A stream cut before
        the provider reported usage is charged one token per output event seen."""
        output = self.output_tokens if self.output_tokens is not None else self.output_events
        return (self.prompt_tokens or 0) + output

    def row(self) -> dict[str, Any]:
        def ms(at: float | None) -> float | None:
            return None if at is None else round((at - self.started) * 1000, 1)

        return {
            "started_at": self.started_at, "key_id": self.key_id, "endpoint": self.endpoint,
            "model_requested": self.model_requested, "model_served": self.model_served, "provider": self.provider,
            "input_tokens": self.prompt_tokens, "cached_tokens": self.cached_tokens, "output_tokens": self.output_tokens,
            "ttft_ms": ms(self.first_token), "latency_ms": ms(self.ended), "status": self.status, "outcome": self.outcome,
            "tool_rounds": self.tool_rounds or None, "tool_calls": self.tool_calls or None,
        }
