"""What each expectation asks of a deployment beyond the shape of one answer.

A canned answer has the right shape; what it cannot have is behaviour that
follows the request.  So each case, after checking the documented request's
answer, sends a few requests of its own whose answers are known only to a
deployment that really runs a model behind the dialect:

- ``max_tokens: N`` (N drawn at random) → exactly N output tokens and the
  dialect's length stop;
- a stop sequence taken from the deployment's own earlier answer → it is not
  in the new answer, which stops early with the dialect's stop reason;
- the same request streamed and not, at temperature 0 → the same text, the
  same counts (and Anthropic's ``message_start`` already knows the input);
- ``count_tokens`` of a request = that request's ``usage.input_tokens``, and it
  grows when a message is added; ``previous_response_id`` → the input covers
  the first exchange; a longer input to compact → more input tokens;
- a JSON schema with a random key and random allowed values → an answer that
  parses and validates;
- a model id drawn at random → 404; the tool round trip uses the model's own
  call (forced if it did not call on its own) or is *inconclusive*, never
  invented.

Every answer's id must be new to the run and its clock close to now.
"""

from __future__ import annotations

import json
import secrets
from typing import TYPE_CHECKING, Any, Callable

from . import checks, read, responses_schema
from .json_prefix import json_prefix
from .client import Answer

if TYPE_CHECKING:
    from .runner import Findings, Runner

COUNT = "Count from 1 to 50, separated by spaces."
TOKENS = (5, 9)  # N for the length probes is drawn from this range


def _user(text: str) -> dict[str, str]:
    return {"role": "user", "content": text}


def _shape(f: Findings, problem: str | None, what: str) -> bool:
    if problem:
        f.fail(f"{what}: {problem}")
        return False
    return True


def _stop_word(text: str) -> str | None:
    """A piece of an earlier answer to stop on: its shortest ending that first
    occurs after the start (so the text before it is not empty)."""
    stripped = text.rstrip()
    for k in range(1, len(stripped)):
        piece = stripped[-k:]
        if piece.strip() and text.find(piece) > 0:
            return piece
    return None


def _length(f: Findings, what: str, reading: read.Reading, n: int, length_stop: str) -> bool:
    if reading.stop == length_stop and reading.output_tokens == n:
        return True
    if reading.stop != length_stop and reading.output_tokens is not None and reading.output_tokens < n:
        f.unsure(f"{what}: the model stopped on its own after {reading.output_tokens} of {n} tokens")
        return False
    f.fail(f"{what}: asked for at most {n} tokens of counting; got {reading.output_tokens} tokens, stop {reading.stop!r}"
           f" (expected exactly {n} and {length_stop!r})")
    return False


def _same(f: Findings, what: str, streamed: read.Reading, whole: read.Reading) -> None:
    if streamed.text != whole.text:
        f.fail(f"{what}: at temperature 0 the stream said {streamed.text[:60]!r}, the JSON answer {whole.text[:60]!r}")
    elif (streamed.output_tokens, streamed.input_tokens) != (whole.output_tokens, whole.input_tokens):
        f.fail(f"{what}: streamed usage (in {streamed.input_tokens}, out {streamed.output_tokens}) differs from the JSON "
               f"answer's (in {whole.input_tokens}, out {whole.output_tokens})")


Count = Callable[..., "read.Reading | None"]  # (r, f, path, model, n, stream=…) → an answer to the counting prompt


def _length_then_stream(r: Runner, f: Findings, path: str, model: Any, count: Count, stream: bool, what: str,
                        length_stop: str) -> read.Reading | None:
    """The length probe (N drawn at random), then for a streaming case the same
    request streamed, which must say the same.  Returns the JSON answer when a
    non-streaming case goes on to its own probes; None when the case is done."""
    n = r.rng.randint(*TOKENS)
    whole = count(r, f, path, model, n)
    if whole is None or not _length(f, f"{what} {n}", whole, n, length_stop):
        return None
    if stream:
        streamed = count(r, f, path, model, n, stream=True)
        if streamed is not None:
            _same(f, "stream vs JSON", streamed, whole)
        return None
    return whole


# --- OpenAI Chat Completions ----------------------------------------------------


def _chat_count(r: Runner, f: Findings, path: str, model: Any, n: int, stream: bool = False, **extra: Any) -> read.Reading | None:
    body: dict[str, Any] = {"model": model, "messages": [_user(COUNT)], "max_tokens": n, "temperature": 0, "seed": 7, **extra}
    if stream:
        body.update(stream=True, stream_options={"include_usage": True})
    answer = r.post(path, body)
    check = checks.openai_chat_stream if stream else checks.openai_chat
    if not _shape(f, check(answer), f"probe ({'stream' if stream else 'JSON'}, max_tokens {n})"):
        return None
    reading = read.chat_stream(answer) if stream else read.chat(answer)
    r.seen(f, reading)
    return reading


def openai_chat(r: Runner, f: Findings, path: str, body: dict[str, Any], answer: Answer, stream: bool) -> None:
    if not _shape(f, (checks.openai_chat_stream if stream else checks.openai_chat)(answer), "the documented request"):
        return
    r.seen(f, read.chat_stream(answer) if stream else read.chat(answer))
    fmt = (body.get("response_format") or {}).get("type")
    if fmt == "json_object":
        _json_mode(f, read.chat(answer))
        _json_schema(r, f, path, body["model"])
    whole = _length_then_stream(r, f, path, body.get("model"), _chat_count, stream, "max_tokens", "length")
    if whole is None:
        return
    n = whole.output_tokens or 0
    word = _stop_word(whole.text)
    if word is None:
        f.unsure(f"stop probe: the counting answer {whole.text!r} has nothing to stop on after its start")
        return
    stopped = _chat_count(r, f, path, body.get("model"), n + 4, stop=[word])
    if stopped is not None and (word in stopped.text or stopped.stop != "stop" or len(stopped.text) >= len(whole.text)):
        f.fail(f"stop {word!r}: got {stopped.text!r} with finish_reason {stopped.stop!r} (the text before it, and 'stop', "
               f"were due: the same request without stop said {whole.text!r})")


def _json_mode(f: Findings, reading: read.Reading) -> None:
    try:
        json.loads(reading.text)
    except ValueError:
        if reading.stop != "length":
            f.fail(f"json_object: the answer is not JSON: {reading.text[:80]!r}")
        elif not json_prefix(reading.text):
            f.fail(f"json_object: the answer, cut at max_tokens, is not even the start of a JSON document: {reading.text[:80]!r}")


def _json_schema(r: Runner, f: Findings, path: str, model: Any) -> None:
    key, allowed = "k" + secrets.token_hex(3), [f"v{secrets.token_hex(2)}", f"w{secrets.token_hex(2)}"]
    schema = {"type": "object", "properties": {key: {"type": "string", "enum": allowed}}, "required": [key],
              "additionalProperties": False}
    body = {"model": model, "max_tokens": 60, "temperature": 0, "messages": [_user(f"Give {key} as JSON.")],
            "response_format": {"type": "json_schema", "json_schema": {"name": "probe", "strict": True, "schema": schema}}}
    answer = r.post(path, body)
    if not _shape(f, checks.openai_chat(answer), "json_schema probe"):
        return
    text = read.chat(answer).text
    try:
        value = json.loads(text)
    except ValueError:
        f.fail(f"json_schema probe: the answer is not JSON: {text[:80]!r}")
        return
    if not isinstance(value, dict) or value.get(key) not in allowed or set(value) != {key}:
        f.fail(f"json_schema probe: {text[:80]!r} does not validate against the schema sent ({key!r} one of {allowed})")


def openai_models(r: Runner, f: Findings, path: str, body: Any, answer: Answer, stream: bool) -> None:
    if not _shape(f, checks.openai_models(answer), "the documented request"):
        return
    chat_path = path.rsplit("/models", 1)[0] + "/chat/completions"
    unknown = f"no-such-model-{secrets.token_hex(4)}"
    probe = r.post(chat_path, {"model": unknown, "max_tokens": 1, "messages": [_user("Hi")]})
    _shape(f, checks.error(probe, 404, "openai", f"Model not found: {unknown}"), f"a model not in the list ({unknown})")


def openai_tool_round_trip(r: Runner, f: Findings, path: str, body: dict[str, Any], answer: Answer, stream: bool) -> None:
    tool = body["tools"][0]["function"]["name"]
    first = answer
    if not _shape(f, checks.openai_chat(first), "turn 1"):
        return
    calls = read.chat(first).calls
    if not calls:  # the model answered in text: force the call, as a client that needs it would
        first = r.post(path, dict(body, tool_choice={"type": "function", "function": {"name": tool}}))
        if not _shape(f, checks.openai_chat(first), "turn 1 (tool_choice forced)"):
            return
        calls = read.chat(first).calls
    if not calls:
        f.unsure("the model did not call the tool, even when tool_choice forced it: name a model that calls tools "
                 "(--tool-model)")
        return
    call = calls[0]
    try:
        arguments = json.loads(call["function"]["arguments"])
    except (KeyError, TypeError, ValueError):
        arguments = None
    if call.get("function", {}).get("name") != tool or not isinstance(arguments, dict):
        f.fail(f"turn 1: the tool call is not a call of {tool!r} with a JSON object of arguments: {call}")
        return
    code = secrets.token_hex(3)
    follow = dict(body, messages=[*body["messages"], {"role": "assistant", "content": None, "tool_calls": calls},
                                  *({"role": "tool", "tool_call_id": c["id"], "content": f'{{"temperature_c": 18, "station": "{code}"}}'}
                                    for c in calls)])
    second = r.post(path, follow)
    if not _shape(f, checks.openai_chat(second), "turn 2 (tool results)"):
        return
    one, two = read.chat(first), read.chat(second)
    r.seen(f, one)
    r.seen(f, two)
    if one.input_tokens is None or two.input_tokens is None or two.input_tokens <= one.input_tokens:
        f.fail(f"turn 2 carries the call and its result, yet counts {two.input_tokens} input tokens to turn 1's {one.input_tokens}")


# --- Anthropic Messages -----------------------------------------------------------


def _messages_count(r: Runner, f: Findings, path: str, model: Any, n: int, stream: bool = False, **extra: Any) -> read.Reading | None:
    body: dict[str, Any] = {"model": model, "max_tokens": n, "temperature": 0, "messages": [_user(COUNT)], **extra}
    if stream:
        body["stream"] = True
    answer = r.post(path, body)
    if not _shape(f, (checks.anthropic_stream if stream else checks.anthropic_message)(answer),
                  f"probe ({'stream' if stream else 'JSON'}, max_tokens {n})"):
        return None
    reading = read.anthropic_stream(answer) if stream else read.anthropic(answer)
    r.seen(f, reading)
    return reading


def _count_tokens(r: Runner, f: Findings, path: str, body: dict[str, Any]) -> int | None:
    ask = {k: v for k, v in body.items() if k not in ("max_tokens", "stream", "temperature")}
    answer = r.post(path.split("?")[0] + "/count_tokens", ask)
    if answer.status != 200:
        f.fail(f"count_tokens: HTTP {answer.status}: {answer.body[:120]!r}")
        return None
    value = answer.json().get("input_tokens") if isinstance(answer.json(), dict) else None
    if not isinstance(value, int):
        f.fail(f"count_tokens: no integer input_tokens in {answer.body[:120]!r}")
        return None
    return value


def anthropic_message(r: Runner, f: Findings, path: str, body: dict[str, Any], answer: Answer, stream: bool) -> None:
    if not _shape(f, (checks.anthropic_stream if stream else checks.anthropic_message)(answer), "the documented request"):
        return
    doc = read.anthropic_stream(answer) if stream else read.anthropic(answer)
    r.seen(f, doc)
    if stream and doc.start_input_tokens in (None, 0):
        f.fail(f"message_start reports {doc.start_input_tokens} input tokens: the count is due before the first token")
    whole = _length_then_stream(r, f, path, body.get("model"), _messages_count, stream, "max_tokens", "max_tokens")
    if whole is None:
        return
    n = whole.output_tokens or 0
    counted = _count_tokens(r, f, path, body)
    if counted is not None and counted != doc.input_tokens:
        f.fail(f"count_tokens says {counted} for the documented request; its answer's usage says {doc.input_tokens}")
    longer = _count_tokens(r, f, path, dict(body, messages=[*body["messages"], {"role": "assistant", "content": "Noted."},
                                                            _user("Now say it again in other words.")]))
    if counted is not None and longer is not None and longer <= counted:
        f.fail(f"count_tokens did not grow when two messages were added ({counted} → {longer})")
    word = _stop_word(whole.text)
    if word is None:
        f.unsure(f"stop probe: the counting answer {whole.text!r} has nothing to stop on after its start")
        return
    stopped = _messages_count(r, f, path, body.get("model"), n + 4, stop_sequences=[word])
    if stopped is not None and (word in stopped.text or stopped.stop != "stop_sequence" or stopped.stop_sequence != word):
        f.fail(f"stop_sequences [{word!r}]: got {stopped.text!r}, stop_reason {stopped.stop!r}, stop_sequence "
               f"{stopped.stop_sequence!r} (the same request without it said {whole.text!r})")


def anthropic_tool_round_trip(r: Runner, f: Findings, path: str, body: dict[str, Any], answer: Answer, stream: bool) -> None:
    tool = body["tools"][0]["name"]
    first = answer
    if not _shape(f, checks.anthropic_message(first), "turn 1"):
        return
    uses = read.anthropic(first).calls
    if not uses:
        first = r.post(path, dict(body, tool_choice={"type": "tool", "name": tool}))
        if not _shape(f, checks.anthropic_message(first), "turn 1 (tool_choice forced)"):
            return
        uses = read.anthropic(first).calls
    if not uses:
        f.unsure("the model did not call the tool, even when tool_choice forced it: name a model that calls tools "
                 "(--tool-model)")
        return
    if uses[0].get("name") != tool or not isinstance(uses[0].get("input"), dict) or read.anthropic(first).stop != "tool_use":
        f.fail(f"turn 1: not a tool_use of {tool!r} with an input object and stop_reason tool_use: {uses[0]}")
        return
    code = secrets.token_hex(3)
    follow = dict(body, messages=[*body["messages"], {"role": "assistant", "content": uses}, {"role": "user", "content": [
        {"type": "tool_result", "tool_use_id": u["id"], "content": f'{{"temperature_c": 18, "station": "{code}"}}'} for u in uses]}])
    second = r.post(path, follow)
    if not _shape(f, checks.anthropic_message(second), "turn 2 (tool results)"):
        return
    one, two = read.anthropic(first), read.anthropic(second)
    r.seen(f, one)
    r.seen(f, two)
    if one.input_tokens is None or two.input_tokens is None or two.input_tokens <= one.input_tokens:
        f.fail(f"turn 2 carries the call and its result, yet counts {two.input_tokens} input tokens to turn 1's {one.input_tokens}")


# --- OpenAI Responses ------------------------------------------------------------


def _responses_count(r: Runner, f: Findings, path: str, model: Any, n: int, stream: bool = False) -> read.Reading | None:
    body: dict[str, Any] = {"model": model, "input": COUNT, "max_output_tokens": n, "temperature": 0}
    if stream:
        body["stream"] = True
    answer = r.post(path, body)
    if not _shape(f, _responses_check(answer, stream), f"probe ({'stream' if stream else 'JSON'}, max_output_tokens {n})"):
        return None
    reading = read.responses_stream(answer) if stream else read.responses(answer)
    r.seen(f, reading)
    return reading


def _responses_check(answer: Answer, stream: bool) -> str | None:
    if problem := (checks.responses_stream(answer) if stream else checks.responses(answer)):
        return problem
    if stream:
        events = read.responses_stream_events(answer)
        names = [name for name, _ in checks.sse_events(answer.body)]
        if names != [e.get("type") for e in events]:
            return "an event's `event:` line does not name its data's type"
        problems = responses_schema.stream_problems(events)
        text = read.responses_stream(answer)
        final = read.response(events[-1].get("response") or {})
        if not problems and text.text != final.text:
            problems = [f"the deltas say {text.text[:60]!r}, the final response {final.text[:60]!r}"]
    else:
        problems = responses_schema.response_problems(answer.json())
    return "; ".join(problems[:3]) if problems else None


def responses(r: Runner, f: Findings, path: str, body: dict[str, Any], answer: Answer, stream: bool) -> None:
    if not _shape(f, _responses_check(answer, stream), "the documented request"):
        return
    first = read.responses_stream(answer) if stream else read.responses(answer)
    r.seen(f, first)
    if _length_then_stream(r, f, path, body.get("model"), _responses_count, stream, "max_output_tokens",
                           "max_output_tokens") is None:
        return
    follow = r.post(path, {"model": body.get("model"), "input": "And what did you just say?", "previous_response_id": first.id,
                           "max_output_tokens": 8})
    if not _shape(f, _responses_check(follow, False), "previous_response_id"):
        return
    second = read.responses(follow)
    r.seen(f, second)
    if None in (first.input_tokens, first.output_tokens, second.input_tokens) or \
            second.input_tokens < first.input_tokens + first.output_tokens:  # type: ignore[operator]
        f.fail(f"previous_response_id: the second input counts {second.input_tokens} tokens, less than the first exchange "
               f"({first.input_tokens} in + {first.output_tokens} out)")


def responses_compact(r: Runner, f: Findings, path: str, body: dict[str, Any], answer: Answer, stream: bool) -> None:
    if not _shape(f, checks.responses_compact(answer), "the documented request"):
        return
    short = (answer.json().get("usage") or {}).get("input_tokens")
    story = " ".join(f"On day {d} the team moved crate {d * 7} to shelf {d % 5}." for d in range(1, 25))
    longer = r.post(path, dict(body, input=[_user(story), {"role": "assistant", "content": "Noted."}, _user("Continue.")]))
    if not _shape(f, checks.responses_compact(longer), "a longer input"):
        return
    grown = (longer.json().get("usage") or {}).get("input_tokens")
    if not isinstance(short, int) or not isinstance(grown, int) or grown <= short:
        f.fail(f"compacting a 24-sentence conversation counted {grown} input tokens, the documented one {short}")


Judge = Callable[["Runner", "Findings", str, Any, Answer, bool], None]

JUDGES: dict[str, tuple[Judge, bool]] = {  # expectation → (judge, the documented request streams)
    "openai-chat": (openai_chat, False),
    "openai-chat-stream": (openai_chat, True),
    "openai-models": (openai_models, False),
    "openai-tool-round-trip": (openai_tool_round_trip, False),
    "anthropic-message": (anthropic_message, False),
    "anthropic-stream": (anthropic_message, True),
    "anthropic-tool-round-trip": (anthropic_tool_round_trip, False),
    "responses": (responses, False),
    "responses-stream": (responses, True),
    "responses-compact": (responses_compact, False),
}
