"""Whose fault is an upstream's error (providers/outcome.py): the request's — a
400 with the upstream's reason, no retry, no penalty — or the provider's —
failover and back-off.  The bodies are what the upstreams really send (the
llama-server ones were captured from the build this project provisions)."""

from __future__ import annotations

import json

import pytest

from auxot import ir
from auxot.errors import (
    CannotServe,
    ErrorKind,
    ProviderError,
    ProviderTimeout,
    RequestRejected,
    UpstreamError,
)
from auxot.providers import capabilities, outcome


def body(message: str, kind: str, code: int) -> bytes:
    return json.dumps({"error": {"code": code, "message": message, "type": kind}}).encode()


REQUEST_FAULTS = [
    # llama-server answers an image to a text-only model with a 500 and a server_error type.
    (500, body("image input is not supported - hint: if this is unexpected, you may need to provide the mmproj", "server_error", 500)),
    (400, body("request (2031 tokens) exceeds the available context size (512 tokens), try increasing it",
               "exceed_context_size_error", 400)),
    (400, body("Failed to initialize samplers: failed to parse grammar", "invalid_request_error", 400)),
    (400, body("Unable to generate parser for this template. Automatic parser generation failed: JSON schema error at "
               "#/properties/a: unrecognized type frob", "invalid_request_error", 400)),
    (400, json.dumps({"type": "error", "error": {"type": "invalid_request_error", "message": "prompt is too long"}}).encode()),
    (422, b"unprocessable"),
]


@pytest.mark.parametrize(("status", "raw"), REQUEST_FAULTS)
def test_the_request_s_fault_is_a_400_with_the_upstream_s_reason(status: int, raw: bytes) -> None:
    err = outcome.from_status("llama-server 'local'", status, raw)
    assert isinstance(err, RequestRejected) and not isinstance(err, ProviderError)
    assert err.status == 400 and err.kind == ErrorKind.INVALID_REQUEST
    assert err.message.startswith("llama-server 'local' cannot serve this request: ")
    assert outcome.upstream_reason(raw)[0] in err.message


def test_too_large_stays_413() -> None:
    err = outcome.from_status("u", 413, b"")
    assert isinstance(err, RequestRejected) and err.status == 413 and err.kind == ErrorKind.REQUEST_TOO_LARGE


@pytest.mark.parametrize(("status", "raw", "expect_status", "penalize"), [
    (401, body("Invalid API Key", "authentication_error", 401), 502, True),
    (403, b"forbidden", 502, True),
    (500, body("overloaded", "server_error", 500), 502, True),
    (502, b"<html>bad gateway</html>", 502, True),
    (503, body("Loading model", "unavailable_error", 503), 503, True),
    (529, json.dumps({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}).encode(), 502, True),
    (404, body("model 'x' not found", "not_found_error", 404), 502, False),
])
def test_the_provider_s_fault_fails_over(status: int, raw: bytes, expect_status: int, penalize: bool) -> None:
    err = outcome.from_status("u", status, raw)
    assert isinstance(err, UpstreamError) and err.retriable
    assert err.status == expect_status and err.penalize is penalize


def test_rate_limits_keep_the_upstream_s_retry_after_and_timeouts_are_the_provider_s() -> None:
    err = outcome.from_status("u", 429, body("slow down", "rate_limit_error", 429), "7")
    assert isinstance(err, UpstreamError) and err.status == 429 and err.retry_after == 7.0 and err.kind == ErrorKind.RATE_LIMIT
    assert isinstance(outcome.from_status("u", 408, b""), ProviderTimeout)


def test_a_provider_s_secret_is_never_echoed() -> None:
    err = outcome.from_status("u", 401, body("bad key sk-secret-123", "authentication_error", 401), secret="sk-secret-123")
    assert "sk-secret-123" not in err.message and "[redacted]" in err.message


def test_an_error_in_place_of_the_first_event() -> None:
    assert isinstance(outcome.from_stream_error("p", ErrorKind.INVALID_REQUEST, "bad"), RequestRejected)
    assert isinstance(outcome.from_stream_error("p", ErrorKind.UPSTREAM, "image input is not supported"), RequestRejected)
    err = outcome.from_stream_error("p", ErrorKind.UPSTREAM, "crashed")
    assert isinstance(err, UpstreamError) and err.retriable


def test_a_worker_s_fail_keeps_its_side_of_the_line() -> None:
    """A remote worker maps its llama-server's answer with the same function and
    sends status and retriability; the router reads them back the same way."""
    sent = outcome.from_status("llama-server 'w'", 500, REQUEST_FAULTS[0][1])
    back = outcome.from_wire("worker 'w'", {"status": sent.status, "kind": sent.kind, "message": sent.message, "retriable": False})
    assert isinstance(back, RequestRejected) and back.status == 400 and "image input is not supported" in back.message
    cannot = outcome.from_wire("worker 'w'", {"status": 400, "kind": "invalid_request", "message": "m", "retriable": True})
    assert isinstance(cannot, CannotServe) and cannot.retriable and not cannot.penalize
    lost = outcome.from_wire("worker 'w'", {"status": 503, "kind": "unavailable", "message": "m", "retriable": True})
    assert isinstance(lost, UpstreamError) and lost.status == 503 and lost.retriable


# --- capabilities (auxot/providers/capabilities.py) -------------------------------------------

PNG = ir.Image(media_type="image/png", data="AAAA")


def request(*parts: ir.Part, **kwargs: object) -> ir.Request:
    return ir.Request(model="auto", messages=(ir.Message(ir.Role.USER, parts),), **kwargs)  # type: ignore[arg-type]


def test_what_a_request_needs_and_a_provider_lacks() -> None:
    text_only = capabilities.Capabilities(images=False, tools=False, context=4096)
    unknown = capabilities.UNKNOWN
    image = capabilities.needs(request(ir.Text("what is this?"), PNG))
    assert capabilities.missing(text_only, image) == "image input" and capabilities.missing(unknown, image) is None
    in_result = capabilities.needs(ir.Request(model="auto", messages=(
        ir.Message(ir.Role.TOOL, (ir.ToolResult("c1", (ir.Text("see"), PNG)),)),)))
    assert in_result.images
    tool = ir.Tool("f", parameters={"type": "object"})
    forced = capabilities.needs(request(ir.Text("x"), tools=(tool,), tool_choice=ir.ToolChoice("required")))
    assert capabilities.missing(text_only, forced) is not None and "tool" in capabilities.missing(text_only, forced)  # type: ignore[operator]
    optional = capabilities.needs(request(ir.Text("x"), tools=(tool,), tool_choice=ir.ToolChoice("auto")))
    assert "tools" in (capabilities.missing(text_only, optional) or "")
    assert capabilities.missing(capabilities.Capabilities(tools=True), forced) is None


def test_the_prompt_bound_is_never_below_its_bytes() -> None:
    text = "héllo wörld " * 500
    req = request(ir.Text(text), tools=(ir.Tool("f", "d" * 100, {"type": "object"}),))
    assert capabilities.prompt_tokens_bound(req) >= len(text.encode()) + 100


def test_llama_cpp_fields_need_a_llama_cpp_provider() -> None:
    from auxot.dialects import openai_chat, openai_chat_upstream

    req = openai_chat.decode_request({"model": "m", "messages": [{"role": "user", "content": "x"}], "grammar": "root ::= x"})
    need = capabilities.needs(req)
    assert req.extensions == {"grammar": "root ::= x"} and need.extensions == ("grammar",)
    assert "grammar" in (capabilities.missing(capabilities.Capabilities(llama_extensions=False), need) or "")
    assert capabilities.missing(capabilities.Capabilities(llama_extensions=True), need) is None
    assert openai_chat_upstream.encode_request(req, "m")["grammar"] == "root ::= x"


# --- a forced tool call on llama-server (providers/forced_tool.py) --------------------

from auxot.providers import forced_tool  # noqa: E402

WEATHER = ir.Tool("get_weather", "the weather", {"type": "object", "properties": {"city": {"type": "string"}}})


def test_a_forced_tool_is_asked_for_with_a_schema_and_read_back_as_a_call() -> None:
    req = request(ir.Text("weather?"), tools=(WEATHER, ir.Tool("other")), tool_choice=ir.ToolChoice("tool", "get_weather"))
    sent = forced_tool.constrain(req)
    assert sent is not None and sent.tool_choice == ir.ToolChoice("none") and sent.tools == req.tools
    assert sent.response_format is not None and sent.response_format.schema == {"anyOf": [{
        "type": "object", "properties": {"name": {"const": "get_weather"}, "arguments": WEATHER.parameters},
        "required": ["name", "arguments"]}]}
    assert forced_tool.constrain(request(ir.Text("x"), tools=(WEATHER,), tool_choice=ir.ToolChoice("auto"))) is None
    reader = forced_tool.ToolCallReader(lambda: "call_1")
    events = [e for event in (ir.MessageStart("m"), ir.TextStart(0), ir.TextDelta(0, '{"name": "get_weather", '),
                              ir.TextDelta(0, '"arguments": {"city": "Paris"}}'), ir.BlockStop(0),
                              ir.MessageStop(ir.StopReason.END_TURN)) for e in reader.feed(event)]
    assert events == [ir.MessageStart("m"), ir.ToolCallStart(0, "call_1", "get_weather"),
                      ir.ToolArgumentsDelta(0, '{"city": "Paris"}'), ir.BlockStop(0), ir.MessageStop(ir.StopReason.TOOL_USE)]
    cut = forced_tool.ToolCallReader(lambda: "call_2")
    tail = [e for event in (ir.TextDelta(0, '{"name": "get_we'), ir.MessageStop(ir.StopReason.MAX_TOKENS)) for e in cut.feed(event)]
    assert tail == [ir.TextStart(0), ir.TextDelta(0, '{"name": "get_we'), ir.BlockStop(0), ir.MessageStop(ir.StopReason.MAX_TOKENS)]


def test_tools_offered_to_a_template_without_them_are_refused_not_dropped() -> None:
    no_tools = capabilities.Capabilities(tools=False)
    offered = capabilities.needs(request(ir.Text("x"), tools=(WEATHER,)))
    assert "tools" in (capabilities.missing(no_tools, offered) or "")
    declined = capabilities.needs(request(ir.Text("x"), tools=(WEATHER,), tool_choice=ir.ToolChoice("none")))
    assert capabilities.missing(no_tools, declined) is None
