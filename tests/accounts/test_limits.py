"""The pure parts of keys' limits and the ledger: the rate limiter and the
failure back-off on a fake clock, time specs, the usage record, "auto" under a
key limited to some models, and the table ``python -m auxot usage`` prints."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from hypothesis import given
from hypothesis import strategies as st

from auxot import ir, timespec
from auxot.accounts import ledger_table
from auxot.accounts.gate import permitted_model
from auxot.accounts.limits import (
    WINDOW,
    FailureBackoff,
    RateLimiter,
    retry_after_header,
)
from auxot.errors import PermissionDenied
from auxot.request import Record


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_requests_per_minute_is_a_sliding_window() -> None:
    clock = FakeClock()
    limiter = RateLimiter(clock)
    assert limiter.admit("k", rpm=2, tpm=None) is None
    clock.now += 10
    assert limiter.admit("k", rpm=2, tpm=None) is None
    clock.now += 5
    refusal = limiter.admit("k", rpm=2, tpm=None)
    assert refusal is not None and "2 requests per minute" in refusal.reason
    assert refusal.retry_after == pytest.approx(45)  # the first request leaves the window at +60
    clock.now += 44.9
    assert limiter.admit("k", rpm=2, tpm=None) is not None  # refusals are not counted …
    clock.now += 0.1
    assert limiter.admit("k", rpm=2, tpm=None) is None  # … so it is admitted right on time
    assert limiter.admit("other", rpm=2, tpm=None) is None  # keys are independent


def test_tokens_per_minute_are_charged_when_a_request_ends() -> None:
    clock = FakeClock()
    limiter = RateLimiter(clock)
    assert limiter.admit("k", rpm=None, tpm=100) is None
    assert limiter.admit("k", rpm=None, tpm=100) is None  # nothing charged yet
    limiter.charge("k", 60)
    clock.now += 20
    limiter.charge("k", 50)  # one request may carry the key past its limit
    refusal = limiter.admit("k", rpm=None, tpm=100)
    assert refusal is not None and "100 tokens per minute" in refusal.reason
    assert refusal.retry_after == pytest.approx(40)  # until the 60-token charge leaves the window
    clock.now += 40
    assert limiter.admit("k", rpm=None, tpm=100) is None  # 50 left in the window


def test_unlimited_keys_are_not_tracked() -> None:
    limiter = RateLimiter(FakeClock())
    for _ in range(1000):
        assert limiter.admit("k", rpm=None, tpm=None) is None
    limiter.charge("k", 10**6)
    assert limiter._windows == {}


@given(st.lists(st.tuples(st.floats(0, 30), st.integers(0, 3)), max_size=60), st.integers(1, 5))
def test_never_more_than_rpm_admitted_in_any_window(steps: list[tuple[float, int]], rpm: int) -> None:
    clock = FakeClock()
    limiter = RateLimiter(clock)
    admitted: list[float] = []
    for gap, tries in steps:
        clock.now += gap
        for _ in range(tries):
            refusal = limiter.admit("k", rpm=rpm, tpm=None)
            if refusal is None:
                admitted.append(clock.now)
            else:
                assert 0 < refusal.retry_after <= WINDOW
    for at in admitted:
        assert sum(1 for t in admitted if at - WINDOW < t <= at) <= rpm


def test_retry_after_header_is_whole_seconds_rounded_up() -> None:
    assert [retry_after_header(s) for s in (0.0, 0.2, 1.0, 1.01, 59.5)] == [1, 1, 1, 2, 60]


def test_failure_backoff_grows_is_bounded_and_forgets() -> None:
    clock = FakeClock()
    backoff = FailureBackoff(clock, free=3, base=0.25, cap=2.0, window=300)
    delays = [backoff.failed("10.0.0.1") for _ in range(8)]
    assert delays == [0, 0, 0, 0.25, 0.5, 1.0, 2.0, 2.0]
    assert backoff.failed("10.0.0.2") == 0  # per address
    clock.now += 301
    assert backoff.failures("10.0.0.1") == 0 and backoff.failed("10.0.0.1") == 0


def test_failure_backoff_remembers_a_bounded_number_of_addresses() -> None:
    backoff = FailureBackoff(FakeClock(), max_addresses=100)
    for i in range(1000):
        backoff.failed(f"10.0.{i // 256}.{i % 256}")
    assert len(backoff._failures) == 100


def test_time_specs() -> None:
    now = 1_700_000_000.0
    assert timespec.parse("30d", now, direction=+1) == now + 30 * 86400
    assert timespec.parse("90m", now, direction=-1) == now - 5400
    assert timespec.parse("never", now, direction=+1) is None
    assert timespec.parse("2024-01-01T00:00:00Z", now, direction=+1) == 1704067200.0
    assert timespec.parse("2024-01-01", now, direction=-1) is not None
    with pytest.raises(timespec.TimeSpecError, match="not a time"):
        timespec.parse("next tuesday", now, direction=+1)


def test_usage_record_from_events() -> None:
    record = Record("openai.chat_completions", started_at=1.0, started=10.0, key_id="key_1", model_requested="auto")
    events = [
        (10.5, ir.MessageStart("served-model", ir.Usage(input_tokens=12))),
        (10.7, ir.TextStart(0)), (10.75, ir.TextDelta(0, "Hel")), (10.8, ir.TextDelta(0, "lo")), (10.8, ir.BlockStop(0)),
        (10.9, ir.MessageStop(ir.StopReason.END_TURN, usage=ir.Usage(output_tokens=2))),
    ]
    for at, event in events:
        record.observe(event, at)
    record.status, record.ended = 200, 11.0
    row = record.row()
    assert row["model_served"] == "served-model" and (row["input_tokens"], row["output_tokens"]) == (12, 2)
    assert row["ttft_ms"] == 750.0 and row["latency_ms"] == 1000.0 and row["outcome"] == "ok"
    assert record.charged_tokens() == 14


@pytest.mark.parametrize(
    ("status", "events", "outcome"),
    [
        (None, [], "disconnected"),  # nothing was sent
        (404, [], "error"),
        (200, [], "ok"),  # an endpoint that streams no model output (count_tokens)
        (200, [ir.MessageStart("m"), ir.TextStart(0), ir.TextDelta(0, "x")], "disconnected"),  # cut short
        (200, [ir.MessageStart("m"), ir.StreamError("upstream", "boom")], "error"),
    ],
)
def test_usage_outcomes(status: int | None, events: list[ir.Event], outcome: str) -> None:
    record = Record("e", 0.0, 0.0, status=status)
    for event in events:
        record.observe(event, 0.0)
    assert record.outcome == outcome


def test_a_cut_stream_is_charged_for_the_output_it_sent() -> None:
    record = Record("e", 0.0, 0.0)
    for event in [ir.MessageStart("m", ir.Usage(input_tokens=5)), ir.TextStart(0), *[ir.TextDelta(0, "x")] * 7]:
        record.observe(event, 0.0)
    assert record.output_tokens is None and record.charged_tokens() == 12


@dataclass
class P:
    name: str
    tier: str
    state: str
    models: tuple[str, ...]
    order: int = 0


def test_auto_under_a_key_limited_to_some_models() -> None:
    gpu = P("local", "gpu", "ready", ("small", "gpt-4o-mini"))
    cloud = P("openai", "cloud", "ready", ("gpt-4o", "gpt-4o-mini"))
    assert permitted_model(("gpt-4o", "small"), "small", [gpu, cloud]) == "small"
    assert permitted_model(("gpt-4o", "small"), "auto", [cloud, gpu]) == "small"  # the gpu tier first
    assert permitted_model(("gpt-4o",), "auto", [gpu, cloud]) == "gpt-4o"  # only where it is allowed
    gpu.state = "starting"
    assert permitted_model(("gpt-4o-mini", "small"), "auto", [gpu, cloud]) == "gpt-4o-mini"  # ready first
    with pytest.raises(PermissionDenied, match="may not use model 'gpt-4o'; it may use: small") as exc:
        permitted_model(("small",), "gpt-4o", [gpu, cloud])
    assert exc.value.status == 403
    with pytest.raises(PermissionDenied, match="no provider on this router serves any of them"):
        permitted_model(("claude",), "auto", [gpu, cloud])


def test_usage_table_and_totals() -> None:
    rows = [
        {"started_at": 1_700_000_000.0, "key_id": "key_a", "endpoint": "openai.chat_completions", "model_requested": "auto",
         "model_served": "SmolLM2", "provider": "local", "input_tokens": 30, "output_tokens": 5, "ttft_ms": 41.2,
         "latency_ms": 120.0, "status": 200, "outcome": "ok"},
        {"started_at": 1_700_000_001.0, "key_id": "key_a", "endpoint": "anthropic.messages", "model_requested": "x",
         "model_served": None, "provider": None, "input_tokens": None, "output_tokens": None, "ttft_ms": None,
         "latency_ms": 3.0, "status": 403, "outcome": "error"},
    ]
    totals = [{"key_id": "key_a", "requests": 3, "not_ok": 1, "input_tokens": 30, "output_tokens": 5, "mean_latency_ms": 61.5}]
    text = ledger_table.render(rows, totals, limit=2)
    lines = text.splitlines()
    assert lines[0].split() == ["TIME", "KEY", "ENDPOINT", "MODEL", "SERVED", "BY", "IN", "OUT", "TTFT", "ms", "TOTAL", "ms", "STATUS"]
    assert "auto → SmolLM2" in lines[1] and lines[1].rstrip().endswith("200 ok")
    assert lines[2].split()[-2:] == ["403", "error"]
    assert "(the newest 2 of 3 requests; --limit 0 shows all)" in text
    assert lines[-1].split() == ["total", "3", "1", "30", "5"]
    assert ledger_table.render([], [], limit=50) == "no requests in the ledger for this selection"
