"""What happened to one API request, filled in as it goes.

The endpoint opens a :class:`RequestRecord` (which surface, which key, which
model was asked for); the scheduler notes who served it and how many providers
it tried; the relay notes the status, the first byte and the tokens.  When the
request ends, the record feeds the metrics (and the usage ledger).  Pure.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from . import ir


@dataclass
class RequestRecord:
    endpoint: str  # e.g. "openai.chat", "anthropic.messages", "responses"
    model_requested: str = ""
    key_id: str | None = None
    started: float = 0.0  # trio.current_time() at the start
    provider: str | None = None
    provider_tier: str | None = None
    model_served: str | None = None
    attempts: int = 0  # providers tried, including the one that served
    failovers: int = 0  # of those, how many failed before the first byte
    queued_s: float = 0.0  # time spent waiting for a slot
    status: int = 0  # HTTP status sent to the client (200 for a stream, even one that ends in an error event)
    outcome: str = ""  # ok | error | disconnected
    first_byte_at: float | None = None
    ended_at: float | None = None
    usage: ir.Usage = field(default_factory=ir.Usage)

    def note_usage(self, usage: ir.Usage) -> None:
        self.usage = ir.merge_usage(self.usage, usage)

    @property
    def ttft_s(self) -> float | None:
        return None if self.first_byte_at is None else self.first_byte_at - self.started

    @property
    def latency_s(self) -> float | None:
        return None if self.ended_at is None else self.ended_at - self.started
