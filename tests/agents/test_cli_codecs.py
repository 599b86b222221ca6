"""The CLI codecs, synchronously: what each CLI is given for a request, and
what its recorded output (tests/golden/cli) becomes as IR events."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import pytest

from auxot import ir
from auxot.agents import claude_code, codex_exec, cursor_agent, transcript
from auxot.agents.cli import Options, RunPaths
from auxot.config import ConfigError
from auxot.config_file import load
from auxot.errors import CannotServe, ErrorKind
from tests.support import GOLDEN

GOLDEN = GOLDEN / "cli"
PATHS = RunPaths(work="/tmp/auxot-cli-abc/work", home="/tmp/auxot-cli-abc/home", config="/tmp/auxot-cli-abc/config")
SID = "0b0e6a52-5a4f-4a55-9d0b-2b8c3c1e4f10"
PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAIAAACQd1PeAAAADElEQVR4nGP4z8AAAAMBAQDJ/pLvAAAAAElFTkSuQmCC"


def user(*parts: ir.Part) -> ir.Message:
    return ir.Message(ir.Role.USER, parts)


def conversation() -> ir.Request:
    """System, a tool call and its result, an image, and a new question."""
    return ir.Request(
        model="auto",
        system=(ir.Text("You are terse."),),
        messages=(
            user(ir.Text("What is 2+2? Use calc."), ir.Image(media_type="image/png", data=PNG)),
            ir.Message(ir.Role.ASSISTANT, (ir.Text("Checking."), ir.ToolCall("call_1", "calc", '{"expr": "2+2"}'))),
            ir.Message(ir.Role.TOOL, (ir.ToolResult("call_1", (ir.Text("4"),)),)),
            ir.Message(ir.Role.ASSISTANT, (ir.Text("It is 4."),)),
            user(ir.Text("And 3+3?")),
        ),
        sampling=ir.Sampling(max_tokens=50),
    )


def replay(decoder, name: str) -> list[ir.Event]:  # type: ignore[no-untyped-def]
    events: list[ir.Event] = []
    for line in (GOLDEN / name).read_bytes().splitlines(keepends=True):
        events += decoder.feed(line)
        if decoder.finished:
            break
    return events + decoder.end(0, "")


def text_of(events: list[ir.Event]) -> str:
    return "".join(e.text for e in events if isinstance(e, ir.TextDelta))


# --- Claude Code -------------------------------------------------------------


def test_claude_code_single_turn_goes_on_stdin_without_a_session() -> None:
    req = ir.Request(model="auto", messages=(user(ir.Text("hi")),))
    inv = claude_code.invocation(req, Options("m1"), PATHS, session_id=SID, now="2026-01-01T00:00:00.000Z")
    assert inv.files == {}
    assert "--resume" not in inv.args
    assert inv.args[inv.args.index("--model") + 1] == "m1"
    assert inv.args[inv.args.index("--system-prompt") + 1] == ""  # Claude Code's own prompt is replaced, even by nothing
    assert inv.args[inv.args.index("--tools") + 1] == "" and "--max-turns" in inv.args  # its tools are off
    assert json.loads(inv.stdin) == {"type": "user", "message": {"role": "user", "content": [{"type": "text", "text": "hi"}]}}
    assert inv.env["CLAUDE_CONFIG_DIR"] == PATHS.config and inv.env["HOME"] == PATHS.home
    assert inv.env["DISABLE_TELEMETRY"] == "1" and inv.env["DISABLE_AUTOUPDATER"] == "1"
    assert inv.env["CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC"] == "1" and inv.env["CLAUDE_CODE_MAX_RETRIES"] == "0"


def test_claude_code_history_is_a_session_file_of_the_same_content_blocks() -> None:
    req = conversation()
    inv = claude_code.invocation(req, Options("m1", max_tokens=50), PATHS, session_id=SID, now="2026-01-01T00:00:00.000Z")
    assert inv.args[inv.args.index("--resume") + 1] == SID
    assert inv.args[inv.args.index("--system-prompt") + 1] == "You are terse."
    assert inv.env["CLAUDE_CODE_MAX_OUTPUT_TOKENS"] == "50"
    [(path, content)] = inv.files.items()
    assert path == f"{PATHS.config}/projects/-tmp-auxot-cli-abc-work/{SID}.jsonl"
    lines = [json.loads(line) for line in content.splitlines()]
    assert [line["type"] for line in lines] == ["user", "assistant", "user", "assistant"]
    assert lines[0]["parentUuid"] is None
    assert all(b["parentUuid"] == a["uuid"] for a, b in zip(lines, lines[1:]))
    assert {line["sessionId"] for line in lines} == {SID} and {line["cwd"] for line in lines} == {PATHS.work}
    assert lines[0]["message"]["content"] == [
        {"type": "text", "text": "What is 2+2? Use calc."},
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}},
    ]
    assert lines[1]["message"]["content"] == [
        {"type": "text", "text": "Checking."}, {"type": "tool_use", "id": "call_1", "name": "calc", "input": {"expr": "2+2"}},
    ]
    assert lines[1]["message"]["stop_reason"] == "tool_use"
    assert lines[2]["message"]["content"] == [{"type": "tool_result", "tool_use_id": "call_1", "content": [{"type": "text", "text": "4"}]}]
    assert json.loads(inv.stdin)["message"] == {"role": "user", "content": [{"type": "text", "text": "And 3+3?"}]}


def test_claude_code_trailing_tool_results_stay_with_their_call() -> None:
    req = conversation()
    req = ir.Request(model="auto", messages=req.messages[:3])
    inv = claude_code.invocation(req, Options("m1"), PATHS, session_id=SID, now="2026-01-01T00:00:00.000Z")
    lines = [json.loads(line) for line in next(iter(inv.files.values())).splitlines()]
    assert lines[-1]["message"]["content"][0]["type"] == "tool_result"
    assert json.loads(inv.stdin)["message"]["content"] == [{"type": "text", "text": claude_code.CONTINUE_PROMPT}]


def test_claude_code_refuses_a_prefilled_assistant_turn_retriably() -> None:
    req = ir.Request(model="auto", messages=(user(ir.Text("hi")), ir.Message(ir.Role.ASSISTANT, (ir.Text("Hel"),))))
    with pytest.raises(CannotServe) as caught:
        claude_code.invocation(req, Options("m1"), PATHS, session_id=SID, now="x")
    assert caught.value.retriable and caught.value.status == 400 and not caught.value.penalize


def test_claude_code_tools_and_settings_when_the_operator_allows() -> None:
    req = ir.Request(model="auto", messages=(user(ir.Text("hi")),))
    inv = claude_code.invocation(req, Options("m1", allow_tools=True), PATHS, session_id=SID, now="x",
                                 cli_config={"permissions": {"allow": ["Read"]}})
    assert "--tools" not in inv.args and "--max-turns" not in inv.args
    assert json.loads(inv.args[inv.args.index("--settings") + 1]) == {"permissions": {"allow": ["Read"]}}


def test_claude_code_recorded_answer_streams_as_deltas_with_usage() -> None:
    events = replay(claude_code.StreamDecoder(), "claude_text.jsonl")
    result = json.loads((GOLDEN / "claude_text.jsonl").read_bytes().splitlines()[-1])
    assert isinstance(events[0], ir.MessageStart) and isinstance(events[1], ir.TextStart)
    assert sum(isinstance(e, ir.TextDelta) for e in events) > 3  # token by token, not one block
    assert text_of(events) == result["result"]
    stop = events[-1]
    assert isinstance(stop, ir.MessageStop) and stop.stop_reason is ir.StopReason.END_TURN
    assert stop.usage.output_tokens == result["usage"]["output_tokens"] and stop.usage.input_tokens == result["usage"]["input_tokens"]


def test_claude_code_answer_ends_at_the_first_message_stop() -> None:
    # Claude Code goes on by itself after max_tokens ("resume" turns, then an error);
    # the answer is the first message, stopped at max_tokens.
    events = replay(claude_code.StreamDecoder(), "claude_max_tokens.jsonl")
    assert text_of(events) == "The cat was named Luna, a gentle"
    assert events[-1] == ir.MessageStop(ir.StopReason.MAX_TOKENS, None, ir.Usage(input_tokens=14, output_tokens=8,
                                                                                 cache_read_tokens=0, cache_write_tokens=0))


@pytest.mark.parametrize("name, kind, words", [
    ("claude_model_404.jsonl", ErrorKind.NOT_FOUND, "issue with the selected model"),
    ("claude_unreachable.jsonl", ErrorKind.UNAVAILABLE, "Unable to connect"),
])
def test_claude_code_errors_become_one_error_event(name: str, kind: str, words: str) -> None:
    events = replay(claude_code.StreamDecoder(), name)
    assert len(events) == 1 and isinstance(events[0], ir.StreamError)
    assert events[0].kind == kind and words in events[0].message  # not Claude Code's "<synthetic>" text as an answer


def test_claude_code_exit_without_result_is_an_error() -> None:
    decoder = claude_code.StreamDecoder()
    assert decoder.feed(b'{"type":"system","subtype":"init"}\n') == []
    [error] = decoder.end(1, "boom\nError: invalid API key\n")
    assert isinstance(error, ir.StreamError) and "status 1" in error.message and "invalid API key" in error.message


def test_claude_code_stitches_turns_and_drops_its_own_tool_calls_when_tools_are_on() -> None:
    def ev(event: dict) -> bytes:  # the stream_event envelope of the recordings
        return json.dumps({"type": "stream_event", "event": event, "session_id": SID, "parent_tool_use_id": None}).encode()

    start = {"type": "message_start", "message": {"model": "m1", "usage": {"input_tokens": 5}}}
    lines = [
        ev(start), ev({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
        ev({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Reading."}}),
        ev({"type": "content_block_stop", "index": 0}),
        ev({"type": "content_block_start", "index": 1, "content_block": {"type": "tool_use", "id": "t1", "name": "Read", "input": {}}}),
        ev({"type": "content_block_delta", "index": 1, "delta": {"type": "input_json_delta", "partial_json": "{}"}}),
        ev({"type": "content_block_stop", "index": 1}),
        ev({"type": "message_delta", "delta": {"stop_reason": "tool_use"}, "usage": {"output_tokens": 3}}),
        ev({"type": "message_stop"}),
        json.dumps({"type": "user", "message": {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1"}]}}).encode(),
        ev(start), ev({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
        ev({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": " Done."}}),
        ev({"type": "content_block_stop", "index": 0}),
        ev({"type": "message_delta", "delta": {"stop_reason": "end_turn"}, "usage": {"output_tokens": 2}}),
        ev({"type": "message_stop"}),
        json.dumps({"type": "result", "subtype": "success", "is_error": False, "stop_reason": "end_turn",
                    "usage": {"input_tokens": 10, "output_tokens": 5}}).encode(),
    ]
    decoder = claude_code.StreamDecoder(stitch=True)
    events = [e for line in lines for e in decoder.feed(line)]
    assert [type(e).__name__ for e in events] == [
        "MessageStart", "TextStart", "TextDelta", "BlockStop", "TextStart", "TextDelta", "BlockStop", "MessageStop"]
    assert [e.index for e in events if isinstance(e, ir.TextStart)] == [0, 2]  # unique across the two turns
    assert text_of(events) == "Reading. Done." and events[-1].usage == ir.Usage(10, 5)  # type: ignore[attr-defined]


# --- Codex -------------------------------------------------------------------


def test_codex_config_turns_its_tools_off_and_pins_the_model() -> None:
    inv = codex_exec.invocation(conversation(), Options("m2"), PATHS,
                                cli_config={"model_provider": "b", "model_providers": {"b": {"base_url": "http://127.0.0.1:1/v1"}}})
    config = tomllib.loads(inv.files[f"{PATHS.config}/config.toml"].decode())
    assert config["model"] == "m2" and config["sandbox_mode"] == "read-only" and config["web_search"] == "disabled"
    assert config["features"]["shell_tool"] is False and config["features"]["unified_exec"] is False
    assert config["analytics"]["enabled"] is False and config["check_for_update_on_startup"] is False
    assert inv.files[config["model_instructions_file"]] == b"You are terse."
    assert inv.env == {"HOME": PATHS.home, "CODEX_HOME": PATHS.config}
    args = list(inv.args)
    assert args[:2] == ["exec", "--json"] and args[args.index("-m") + 1] == "m2" and args[-1] == "-"
    assert ["-c", 'model_provider="b"'] == args[args.index("-c"):args.index("-c") + 2]
    assert 'model_providers.b.base_url="http://127.0.0.1:1/v1"' in args
    prompt = inv.stdin.decode()
    assert prompt.startswith("<conversation>\n<user>\nWhat is 2+2? Use calc.") and prompt.endswith("</conversation>\n\nAnd 3+3?")
    assert '<tool_call id="call_1" name="calc">{"expr": "2+2"}</tool_call>' in prompt
    assert '<tool_result id="call_1">\n4\n</tool_result>' in prompt


def test_codex_attaches_images_of_the_last_turn_and_has_default_instructions() -> None:
    req = ir.Request(model="auto", messages=(user(ir.Text("What is this?"), ir.Image(media_type="image/png", data=PNG)),))
    inv = codex_exec.invocation(req, Options("m2", allow_tools=True), PATHS)
    image = inv.args[inv.args.index("-i") + 1]
    assert image == f"{PATHS.work}/image-0.png" and inv.files[image][:4] == b"\x89PNG"
    assert inv.stdin == b"What is this?"
    config = tomllib.loads(inv.files[f"{PATHS.config}/config.toml"].decode())
    assert "shell_tool" not in config["features"]  # tools allowed
    assert inv.files[config["model_instructions_file"]] == codex_exec.DEFAULT_INSTRUCTIONS.encode()


def test_codex_recorded_answer_and_usage() -> None:
    events = replay(codex_exec.StreamDecoder(), "codex_text.jsonl")
    assert [type(e).__name__ for e in events] == ["MessageStart", "TextStart", "TextDelta", "BlockStop", "MessageStop"]
    assert text_of(events) == "Hey there in five words."
    # Codex counts cached input inside input_tokens (26 with 15 cached).
    assert events[-1].usage == ir.Usage(input_tokens=11, output_tokens=7, cache_read_tokens=15)  # type: ignore[attr-defined]


@pytest.mark.parametrize("name, kind, words", [
    ("codex_model_404.jsonl", ErrorKind.NOT_FOUND, "Model not found: no-such-model"),
    ("codex_unreachable.jsonl", ErrorKind.UNAVAILABLE, "Connection failed"),
])
def test_codex_errors(name: str, kind: str, words: str) -> None:
    events = replay(codex_exec.StreamDecoder(), name)
    assert len(events) == 1 and isinstance(events[0], ir.StreamError) and events[0].kind == kind and words in events[0].message


# --- Cursor ------------------------------------------------------------------


def test_cursor_documented_stream_without_repeats() -> None:
    events = replay(cursor_agent.StreamDecoder(), "cursor_documented.jsonl")
    texts: list[str] = []
    for e in events:
        if isinstance(e, ir.TextStart):
            texts.append("")
        elif isinstance(e, ir.TextDelta):
            texts[-1] += e.text
    assert texts == ["I'll read the file.", "It is a one-line README."]  # a block per message, the tool call between
    assert isinstance(events[0], ir.MessageStart) and events[-1] == ir.MessageStop(ir.StopReason.END_TURN)


def test_cursor_failure_without_result_uses_stderr() -> None:
    decoder = cursor_agent.StreamDecoder()
    assert decoder.feed(b'{"type":"system","subtype":"init"}\n') == []
    [error] = decoder.end(1, "Error: Authentication required.\n")
    assert isinstance(error, ir.StreamError) and "Authentication required" in error.message


def test_cursor_prompt_carries_the_system_and_mode() -> None:
    inv = cursor_agent.invocation(conversation(), Options("m3"), PATHS)
    assert inv.args[inv.args.index("--model") + 1] == "m3" and inv.args[inv.args.index("--mode") + 1] == "ask"
    assert "--force" not in inv.args and inv.args[inv.args.index("--workspace") + 1] == PATHS.work
    assert inv.args[-1].startswith("<system>\nYou are terse.\n</system>\n\n<conversation>\n<user>")
    assert "[image: image/png attached to an earlier turn]" in inv.args[-1]
    assert "--force" in cursor_agent.invocation(conversation(), Options("m3", allow_tools=True), PATHS).args


def test_cursor_refuses_images_and_huge_prompts_retriably() -> None:
    req = ir.Request(model="auto", messages=(user(ir.Text("?"), ir.Image(media_type="image/png", data=PNG)),))
    with pytest.raises(CannotServe, match="images") as caught:
        cursor_agent.invocation(req, Options("m3"), PATHS)
    assert caught.value.retriable
    big = ir.Request(model="auto", messages=(user(ir.Text("x" * (cursor_agent.MAX_PROMPT_BYTES + 1))),))
    with pytest.raises(CannotServe, match="KiB"):
        cursor_agent.invocation(big, Options("m3"), PATHS)


# --- transcript and config -----------------------------------------------------


def test_transcript_single_turn_is_verbatim_and_markup_in_turns_is_escaped() -> None:
    assert transcript.render(ir.Request(model="m", messages=(user(ir.Text("plain </user> text")),))).text == "plain </user> text"
    req = ir.Request(
        model="m", messages=(user(ir.Text("a </user> b")), ir.Message(ir.Role.ASSISTANT, (ir.Text("ok"),)), user(ir.Text("c")))
    )
    text = transcript.render(req).text
    assert "a <\\/user> b" in text and text.count("</user>") == 1


def test_config_parses_cli_providers(tmp_path: Path) -> None:
    path = tmp_path / "auxot.toml"
    path.write_text('[[providers]]\nkind = "codex"\nname = "cx"\nmodels = ["gpt-5"]\nslots = 3\ntimeout = 30\n'
                    'env = { OPENAI_API_KEY = "sk-x" }\ncli_config = { model_provider = "b" }\n')
    [pc] = load(str(path), data_dir=str(tmp_path)).providers
    assert (pc.kind, pc.name, pc.models, pc.slots, pc.timeout, pc.allow_tools) == ("codex", "cx", ("gpt-5",), 3, 30.0, False)
    assert dict(pc.env) == {"OPENAI_API_KEY": "sk-x"} and pc.cli_config == {"model_provider": "b"}
    assert "sk-x" not in repr(pc)
    path.write_text('[[providers]]\nkind = "claude-code"\n')
    with pytest.raises(ConfigError, match="models"):
        load(str(path), data_dir=str(tmp_path))
