"""The worker wire protocol, flow control and reconnect backoff: pure, synchronous."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from auxot import ir
from auxot.workers import wire
from auxot.workers.dial import Backoff
from auxot.workers.flow import FlowError, ReceiveWindow, SendCredit

# --- strategies for every IR type ---------------------------------------------

text = st.text(max_size=20)
opt_text = st.none() | text
small = st.integers(-(2**40), 2**40)
number = st.floats(allow_nan=False, allow_infinity=False) | small
json_value = st.recursive(
    st.none() | st.booleans() | number | text,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(text, inner, max_size=3), max_leaves=8,
)
json_object = st.dictionaries(text, json_value, max_size=3)

texts = st.builds(ir.Text, text)
images = st.builds(ir.Image, opt_text, opt_text, opt_text, opt_text)
parts = st.one_of(
    texts, images,
    st.builds(ir.Thinking, text, opt_text, st.booleans()),
    st.builds(ir.ToolCall, text, text, text),
    st.builds(ir.ToolResult, text, st.lists(texts | images, max_size=2).map(tuple), st.booleans()),
)
usage = st.builds(ir.Usage, st.none() | small, st.none() | small, st.none() | small, st.none() | small)
requests = st.builds(
    ir.Request,
    model=text,
    messages=st.lists(st.builds(ir.Message, st.sampled_from(ir.Role), st.lists(parts, max_size=3).map(tuple), opt_text),
                      max_size=3).map(tuple),
    system=st.lists(texts, max_size=2).map(tuple),
    tools=st.lists(st.builds(ir.Tool, text, opt_text, st.none() | json_object, st.none() | st.booleans()), max_size=2).map(tuple),
    tool_choice=st.none() | st.builds(ir.ToolChoice, st.sampled_from(["auto", "none", "required", "tool"]), opt_text),
    parallel_tool_calls=st.none() | st.booleans(),
    sampling=st.builds(
        ir.Sampling, st.none() | number, st.none() | number, st.none() | small, st.none() | small, st.none() | number,
        st.none() | number, st.none() | small, st.lists(text, max_size=2).map(tuple),
        st.none() | st.dictionaries(text, st.floats(allow_nan=False, allow_infinity=False), max_size=2),
        st.none() | st.integers(0, 20),
    ),
    response_format=st.none() | st.builds(ir.ResponseFormat, text, st.none() | json_object, opt_text, st.none() | st.booleans()),
    stream=st.booleans(),
    include_usage=st.booleans(),
    metadata=st.none() | json_object,
    user=opt_text,
    reasoning=st.none() | st.builds(ir.Reasoning, st.booleans(), st.none() | small, opt_text),
)
index = st.integers(0, 1000)
finite = st.floats(allow_nan=False, allow_infinity=False)
token_bytes = st.none() | st.lists(st.integers(0, 255), max_size=4).map(tuple)
top_logprobs = st.builds(ir.TokenLogprob, text, finite, token_bytes)
logprobs = st.lists(st.builds(ir.TokenLogprob, text, finite, token_bytes, st.lists(top_logprobs, max_size=2).map(tuple)),
                    max_size=2).map(tuple)
events = st.one_of(
    st.builds(ir.MessageStart, text, usage),
    st.builds(ir.TextStart, index), st.builds(ir.ThinkingStart, index), st.builds(ir.ToolCallStart, index, text, text),
    st.builds(ir.TextDelta, index, text, logprobs), st.builds(ir.ThinkingDelta, index, text, opt_text),
    st.builds(ir.ToolArgumentsDelta, index, text), st.builds(ir.BlockStop, index),
    st.builds(ir.MessageStop, st.none() | st.sampled_from(ir.StopReason), opt_text, usage),
    st.builds(ir.StreamError, text, text),
)


@settings(max_examples=300)
@given(requests)
def test_every_request_survives_the_wire(req: ir.Request) -> None:
    frame = wire.job("j1", req)
    msg = wire.parse(frame, wire.FROM_ROUTER)
    assert msg.type == "job" and msg.job == "j1" and msg.body["request"] == req


@settings(max_examples=300)
@given(events, text)
def test_every_event_survives_the_wire(event: ir.Event, job: str) -> None:
    msg = wire.parse(wire.event(job, event), wire.FROM_WORKER)
    assert msg.body["event"] == event and msg.job == job


@settings(max_examples=300)
@given(json_value)
def test_garbage_is_a_wire_error_and_nothing_else(value: object) -> None:
    for accepted in (wire.FROM_WORKER, wire.FROM_ROUTER):
        for frame in (json.dumps(value), json.dumps({"type": "event", "job": "j", "event": value}),
                      json.dumps({"type": "job", "job": "j", "request": value})):
            try:
                wire.parse(frame, accepted)
            except wire.WireError:
                pass


def test_frames_are_compact_and_leave_defaults_out() -> None:
    req = ir.Request(model="m", messages=(ir.Message(ir.Role.USER, (ir.Text("hi"),)),), sampling=ir.Sampling(max_tokens=5))
    assert json.loads(wire.job("j7", req)) == {
        "type": "job", "job": "j7",
        "request": {"model": "m", "messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}]}],
                    "sampling": {"max_tokens": 5}},
    }
    assert wire.event("j7", ir.TextDelta(0, "Hel")) == (
        '{"type":"event","job":"j7","event":{"type":"text_delta","index":0,"text":"Hel"}}')


@pytest.mark.parametrize("frame, accepted, message", [
    (b"\x00", wire.FROM_WORKER, "binary frame"),
    ("{", wire.FROM_WORKER, "not JSON"),
    ('{"type":"job","job":"j","request":{}}', wire.FROM_WORKER, "unexpected message type 'job'"),
    ('{"type":"hello","protocol":1}', wire.FROM_WORKER, "hello.name is missing"),
    ('{"type":"hello","protocol":1,"name":"w","version":"1","models":[],"slots":1,"state":"ready"}', wire.FROM_WORKER,
     "1 to 64 models"),
    ('{"type":"hello","protocol":1,"name":"a b","version":"1","models":["m"],"slots":1,"state":"ready"}', wire.FROM_WORKER,
     "hello.name must be 1-64 of"),
    ('{"type":"hello","protocol":1,"name":"w","version":"1","models":["m"],"slots":1,"state":"happy"}', wire.FROM_WORKER,
     "hello.state must be one of"),
    ('{"type":"hello","protocol":1,"name":"w","version":"1","models":["m"],"slots":1,"state":"ready","facts":{"x":"'
     + "y" * 20000 + '"}}', wire.FROM_WORKER, "over 16384 bytes"),
    ('{"type":"credit","job":"j","n":0}', wire.FROM_ROUTER, "credit.n must be at least 1"),
    ('{"type":"event","job":"j","event":{"type":"text_delta","index":"0","text":"x"}}', wire.FROM_WORKER,
     "event.index must be an integer"),
    ('{"type":"event","job":"j","event":{"type":"text_delta","index":0,"text":"x","extra":1}}', wire.FROM_WORKER,
     "unknown field(s) ['extra']"),
    ('{"type":"event","job":"j","event":{"type":"message_stop","stop_reason":"bored"}}', wire.FROM_WORKER,
     "'bored' is not a StopReason"),
    ('{"type":"job","job":"j","request":{"model":"m","messages":[{"role":"user","content":[{"type":"video"}]}]}}',
     wire.FROM_ROUTER, "unknown type 'video'"),
    ('{"type":"job","job":"j","request":{"messages":[]}}', wire.FROM_ROUTER, "model"),
])
def test_bad_frames_say_what_is_wrong(frame: str | bytes, accepted: frozenset[str], message: str) -> None:
    with pytest.raises(wire.WireError) as caught:
        wire.parse(frame, accepted)
    assert message in str(caught.value)


def test_hello_and_welcome_round_trip() -> None:
    hello = wire.parse(wire.hello(name="gpu-1", instance="abc", version="0.1.0", models=["a", "b"], slots=4, ctx_size=8192,
                                  state="ready", facts={"accelerator": {"kind": "cuda"}}), wire.FROM_WORKER)
    assert hello.body == {"protocol": wire.PROTOCOL_VERSION, "name": "gpu-1", "instance": "abc", "version": "0.1.0",
                          "models": ("a", "b"),
                          "slots": 4, "ctx_size": 8192, "state": "ready", "facts": {"accelerator": {"kind": "cuda"}},
                          "features": ("count_tokens",)}
    welcome = wire.parse(wire.welcome(name="gpu-1-2", heartbeat_interval=5, heartbeat_timeout=15, window=64), wire.FROM_ROUTER)
    assert welcome.body["name"] == "gpu-1-2" and welcome.body["window"] == 64
    fail = wire.parse(wire.fail("j", status=503, kind="unavailable", message="down", retriable=True), wire.FROM_WORKER)
    assert fail.body["error"] == {"status": 503, "kind": "unavailable", "message": "down", "retriable": True}


# --- flow control ---------------------------------------------------------------


def test_window_credits_back_in_half_window_batches() -> None:
    window = ReceiveWindow(8)
    for _ in range(8):
        window.received()
    with pytest.raises(FlowError):
        window.received()  # a ninth event without credit
    grants = [window.consumed() for _ in range(8)]
    assert grants == [0, 0, 0, 4, 0, 0, 0, 4] and window.in_flight == 0 and window.peak == 8


@given(st.integers(1, 64), st.lists(st.booleans(), max_size=400))
def test_a_sender_that_respects_credit_never_overflows_the_receiver(size: int, steps: list[bool]) -> None:
    """Random interleavings of 'worker sends if it may' and 'client consumes if it
    can', with credits delivered in order: the router never holds more than the
    window, and nothing stalls for good."""
    sender, receiver = SendCredit(size), ReceiveWindow(size)
    buffered = 0
    for send in steps:
        if send and sender.available:
            sender.spend()
            receiver.received()
            buffered += 1
        elif not send and buffered:
            buffered -= 1
            if credit := receiver.consumed():
                sender.grant(credit)
        assert buffered <= receiver.in_flight <= size
        assert sender.available + receiver.in_flight == size  # credits are never lost nor made up
    while buffered:  # drain: the sender always gets its whole window back
        buffered -= 1
        if credit := receiver.consumed():
            sender.grant(credit)
    assert sender.available + receiver.in_flight == size and sender.available >= size - max(1, size // 2) + 1


def test_send_credit_refuses_overspending_and_overgranting() -> None:
    credit = SendCredit(2)
    credit.spend()
    credit.spend()
    with pytest.raises(FlowError):
        credit.spend()
    credit.grant(2)
    with pytest.raises(FlowError):
        credit.grant(1)


# --- reconnect backoff ------------------------------------------------------------


def test_backoff_doubles_to_its_cap_with_equal_jitter() -> None:
    low, high = Backoff(0.5, 30, rng=lambda: 0.0), Backoff(0.5, 30, rng=lambda: 1.0)
    assert [low.next() for _ in range(9)] == [0.25, 0.5, 1, 2, 4, 8, 15, 15, 15]
    assert [high.next() for _ in range(9)] == [0.5, 1, 2, 4, 8, 16, 30, 30, 30]
    high.reset()
    assert high.next() == 0.5
    forever = Backoff(0.5, 30)
    assert all(15 <= d <= 30 for d in [forever.next() for _ in range(2000)][10:])


def test_count_and_counted_round_trip_and_hello_announces_its_features() -> None:
    req = ir.Request(model="auto", messages=(ir.Message(ir.Role.USER, (ir.Text("hi"),)),))
    count = wire.parse(wire.count("c1", req), wire.FROM_ROUTER)
    assert (count.type, count.job, count.body["request"]) == ("count", "c1", req)
    counted = wire.parse(wire.counted("c1", 17), wire.FROM_WORKER)
    assert (counted.type, counted.job, counted.body["input_tokens"]) == ("counted", "c1", 17)
    with pytest.raises(wire.WireError, match="must not be negative"):
        wire.parse('{"type":"counted","job":"c1","input_tokens":-1}', wire.FROM_WORKER)
    hello = wire.parse(wire.hello(name="w", instance="i", version="v", models=["m"], slots=1, ctx_size=None, state="ready",
                                  facts={}), wire.FROM_WORKER)
    assert tuple(hello.body["features"]) == wire.FEATURES == ("count_tokens",)
    older = '{"type":"hello","protocol":1,"name":"w","version":"v","models":["m"],"slots":1,"state":"ready"}'
    assert "features" not in wire.parse(older, wire.FROM_WORKER).body  # an older worker announces none
