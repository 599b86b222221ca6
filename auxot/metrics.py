"""Prometheus text exposition (format 0.0.4), by hand: counters and histograms
fed from finished :class:`~auxot.request.Record` s, gauges read from
the scheduler when scraped.  Pure: no trio, no I/O.

    auxot_requests_total{endpoint,status,provider}      counter
    auxot_request_duration_seconds{endpoint}            histogram
    auxot_time_to_first_token_seconds{endpoint,provider} histogram
    auxot_tokens_total{direction,provider}              counter (direction: in | out)
    auxot_failovers_total{provider}                     counter (provider: the one that failed)
    auxot_queue_rejections_total{reason}                counter (full | timeout)
    auxot_queue_depth                                   gauge
    auxot_provider_up{provider,tier}                    gauge (1: ready and not sitting out)
    auxot_provider_slots{provider,state}                gauge (state: used | total)
    auxot_provider_restarts_total{provider}             counter
    auxot_uptime_seconds                                gauge
"""

from __future__ import annotations

import math
from collections import defaultdict
from typing import Any, Iterable, Sequence

from .request import Record

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)

Labels = tuple[tuple[str, str], ...]


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(labels: Labels, extra: tuple[tuple[str, str], ...] = ()) -> str:
    pairs = (*labels, *extra)
    if not pairs:
        return ""
    return "{" + ",".join(f'{k}="{_escape(v)}"' for k, v in pairs) + "}"


def _number(value: float) -> str:
    if value == math.inf:
        return "+Inf"
    if float(value).is_integer():
        return str(int(value))
    return repr(float(value))


class Counter:
    def __init__(self, name: str, help_text: str) -> None:
        self.name, self.help = name, help_text
        self.values: dict[Labels, float] = defaultdict(float)

    def inc(self, labels: Labels, amount: float = 1) -> None:
        self.values[labels] += amount

    def render(self) -> Iterable[str]:
        yield f"# HELP {self.name} {self.help}"
        yield f"# TYPE {self.name} counter"
        for labels, value in sorted(self.values.items()):
            yield f"{self.name}{_labels(labels)} {_number(value)}"


class Histogram:
    def __init__(self, name: str, help_text: str, buckets: Sequence[float] = LATENCY_BUCKETS) -> None:
        self.name, self.help, self.buckets = name, help_text, tuple(buckets)
        self.counts: dict[Labels, list[int]] = {}
        self.sums: dict[Labels, float] = defaultdict(float)

    def observe(self, labels: Labels, value: float) -> None:
        counts = self.counts.setdefault(labels, [0] * (len(self.buckets) + 1))
        for i, bound in enumerate(self.buckets):
            if value <= bound:
                counts[i] += 1
        counts[-1] += 1  # +Inf
        self.sums[labels] += value

    def render(self) -> Iterable[str]:
        yield f"# HELP {self.name} {self.help}"
        yield f"# TYPE {self.name} histogram"
        for labels, counts in sorted(self.counts.items()):
            for bound, count in zip((*self.buckets, math.inf), counts):
                yield f"{self.name}_bucket{_labels(labels, (('le', _number(bound)),))} {count}"
            yield f"{self.name}_sum{_labels(labels)} {_number(self.sums[labels])}"
            yield f"{self.name}_count{_labels(labels)} {counts[-1]}"


def _gauge(name: str, help_text: str, samples: Iterable[tuple[Labels, float]]) -> Iterable[str]:
    yield f"# HELP {name} {help_text}"
    yield f"# TYPE {name} gauge"
    for labels, value in samples:
        yield f"{name}{_labels(labels)} {_number(value)}"


class Metrics:
    def __init__(self) -> None:
        self.requests = Counter("auxot_requests_total", "API requests by endpoint, HTTP status and serving provider.")
        self.duration = Histogram("auxot_request_duration_seconds", "Time from request to the end of the answer.")
        self.ttft = Histogram("auxot_time_to_first_token_seconds", "Time from request to the first output token.")
        self.tokens = Counter("auxot_tokens_total", "Tokens in (prompt) and out (completion), by provider.")

    def observe(self, record: Record) -> None:
        provider = record.provider or "none"
        self.requests.inc((("endpoint", record.endpoint), ("status", str(record.status or 499)), ("provider", provider)))
        if record.latency_s is not None:
            self.duration.observe((("endpoint", record.endpoint),), record.latency_s)
        if record.ttft_s is not None and record.provider:
            self.ttft.observe((("endpoint", record.endpoint), ("provider", provider)), record.ttft_s)
        if record.input_tokens:
            self.tokens.inc((("direction", "in"), ("provider", provider)), record.input_tokens)
        if record.output_tokens:
            self.tokens.inc((("direction", "out"), ("provider", provider)), record.output_tokens)

    def render(self, providers: Sequence[dict[str, Any]], queue_depth: int, rejections: dict[str, int], uptime: float) -> str:
        lines: list[str] = []
        for metric in (self.requests, self.duration, self.ttft, self.tokens):
            lines.extend(metric.render())
        lines.extend(_from_providers("auxot_failovers_total", "Requests moved on after this provider failed before its first byte.",
                                     providers, "failed_over"))
        rejected = Counter("auxot_queue_rejections_total", "Requests turned away by the queue: full (429) or timed out (503).")
        for reason, count in rejections.items():
            rejected.inc((("reason", reason),), count)
        lines.extend(rejected.render())
        lines.extend(_gauge("auxot_queue_depth", "Requests waiting for a slot.", [((), queue_depth)]))
        lines.extend(_gauge("auxot_provider_up", "1 when the provider is ready and not sitting out after failures.",
                            [((("provider", p["name"]), ("tier", p["tier"])), 1 if p["healthy"] else 0) for p in providers]))
        lines.extend(_gauge("auxot_provider_slots", "Concurrency slots per provider: used and total.",
                            [((("provider", p["name"]), ("state", state)), p[f"slots_{state}"]) for p in providers
                             for state in ("used", "total")]))
        lines.extend(_from_providers("auxot_provider_restarts_total", "Times a supervised provider process was restarted.",
                                     providers, "restarts"))
        lines.extend(_gauge("auxot_uptime_seconds", "Seconds since the router started.", [((), round(uptime, 3))]))
        return "\n".join(lines) + "\n"


def _from_providers(name: str, help_text: str, providers: Sequence[dict[str, Any]], field: str) -> Iterable[str]:
    """A counter the scheduler or the provider keeps itself, read at scrape time."""
    counter = Counter(name, help_text)
    for p in providers:
        if isinstance(p.get(field), int):
            counter.inc((("provider", p["name"]),), p[field])
    return counter.render()
