"""The CLI tier end to end, with the whole chain real:

    SDK client ──▶ router A (under test: CLI providers only, no GPU tier)
                     └─ runs the real Claude Code / Codex CLI (npm), or the Cursor test double
                          └─ whose own upstream is router B ──▶ llama-server + SmolLM2

Router A has no llama.cpp provider at all, so ``model: "auto"`` can only be
served by the CLI tier; its first CLI provider is Claude Code.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Iterator

import anthropic
import openai
import pytest

from tests.support import TESTS
from tests.support.npm_cli import CLAUDE_CODE, CODEX, npm_cli
from tests.support.recording_proxy import RecordingProxy
from tests.support.router_process import RouterProcess, group_members, start_router

SMOL = "SmolLM2-135M-Instruct"
DOUBLE = TESTS / "support" / "cursor_agent_double.py"


def toml_str(value: str) -> str:
    return json.dumps(value)


@pytest.fixture(scope="module")
def router_b(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RouterProcess]:
    """The CLIs' own upstream: auxot on the real llama-server.  The ids the CLIs are
    pinned to are aliases of its one model.  Codex and the Cursor double can pass no
    token limit (nor a temperature), and Codex fails a turn its upstream cuts short:
    so 200 tokens at most when a request sets no limit, and greedy sampling when it
    sets no temperature, so SmolLM2's short answers stay short run after run."""
    d = tmp_path_factory.mktemp("router-b")
    (d / "auxot.toml").write_text('[[providers]]\nkind = "llamacpp"\nname = "local"\nparallel = 2\ndefault_max_tokens = 200\n'
                                  'aliases = ["codex-smol", "cursor-smol", "slow-story", "recorded"]\nextra_args = ["--temp", "0"]\n')
    router = start_router(d / "data", "--config", str(d / "auxot.toml"))
    yield router
    assert router.stop() == 0


@pytest.fixture(scope="module")
def proxy(router_b: RouterProcess) -> Iterator[RecordingProxy]:
    """Between router B and two CLIs (the "claude-recorded" provider's Claude Code, the "codex"
    provider's Codex): what each CLI sent its upstream."""
    with RecordingProxy(router_b.base_url) as recording:
        yield recording


@pytest.fixture(scope="module")
def router_a(router_b: RouterProcess, proxy: RecordingProxy, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RouterProcess]:
    claude = npm_cli(CLAUDE_CODE, "claude", "npm", "AUXOT_CLAUDE_BIN")
    codex = npm_cli(CODEX, "codex", "npm-codex", "AUXOT_CODEX_BIN")
    d = tmp_path_factory.mktemp("router-a")
    b, key = router_b.base_url, router_b.key or ""
    claude_env = f"env = {{ ANTHROPIC_BASE_URL = {toml_str(b + '/api/anthropic')}, ANTHROPIC_API_KEY = {toml_str(key)} }}\n"
    (d / "auxot.toml").write_text(
        f'[[providers]]\nkind = "claude-code"\nname = "claude"\nmodels = ["{SMOL}", "ghost-model"]\n'
        f"binary = {toml_str(str(claude))}\nslots = 2\ndefault_max_tokens = 48\n{claude_env}\n"
        f'[[providers]]\nkind = "claude-code"\nname = "claude-deadline"\nmodels = ["slow-story"]\n'
        f"binary = {toml_str(str(claude))}\ntimeout = 4.0\n{claude_env}\n"
        f'[[providers]]\nkind = "claude-code"\nname = "claude-recorded"\nmodels = ["recorded"]\n'
        f"binary = {toml_str(str(claude))}\ndefault_max_tokens = 16\n"
        f"env = {{ ANTHROPIC_BASE_URL = {toml_str(proxy.url + '/api/anthropic')}, ANTHROPIC_API_KEY = {toml_str(key)} }}\n\n"
        f'[[providers]]\nkind = "codex"\nname = "codex"\nmodels = ["codex-smol"]\nbinary = {toml_str(str(codex))}\n'
        f"env = {{ B_KEY = {toml_str(key)} }}\n"
        f'cli_config = {{ model_provider = "b", model_providers = {{ b = {{ name = "b", base_url = {toml_str(proxy.url + "/v1")}, '
        f'env_key = "B_KEY", wire_api = "responses", request_max_retries = 0, stream_max_retries = 0 }} }} }}\n\n'
        f'[[providers]]\nkind = "cursor"\nname = "cursor-double"\nmodels = ["cursor-smol"]\nbinary = {toml_str(str(DOUBLE))}\n'
        f"env = {{ CURSOR_API_KEY = {toml_str(key)}, CURSOR_DOUBLE_UPSTREAM = {toml_str(b + '/api/openai')}, "
        f"CURSOR_DOUBLE_LOG = {toml_str(str(d / 'cursor.log'))} }}\n\n"
        f'[[providers]]\nkind = "codex"\nname = "missing"\nmodels = ["missing-cli"]\nbinary = "/nonexistent/codex"\n'
    )
    router = start_router(d / "data", "--config", str(d / "auxot.toml"))
    yield router
    assert not [p for p in router.health()["providers"] if p["runs"]]
    assert router.stop() == 0


def provider(router: RouterProcess, name: str) -> dict:
    return next(p for p in router.health()["providers"] if p["name"] == name)


def wait_gone(pgid: int, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while group_members(pgid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not group_members(pgid), f"process group {pgid} outlived its request: {group_members(pgid)}"


def wait_no_runs(router: RouterProcess, name: str, timeout: float = 15) -> None:
    """The provider has reaped its run (a leader already dead is a zombie until then)."""
    deadline = time.monotonic() + timeout
    while provider(router, name)["runs"] and time.monotonic() < deadline:
        time.sleep(0.05)
    assert provider(router, name)["runs"] == []


@pytest.fixture
def oai(router_a: RouterProcess) -> Iterator[openai.OpenAI]:
    # Closed after each test, as a tidy client would (an idle one no longer holds up a stop: test_keep_alive.py).
    with openai.OpenAI(base_url=router_a.base_url + "/api/openai", api_key=router_a.key, timeout=180, max_retries=0) as client:
        yield client


@pytest.fixture
def claude_sdk(router_a: RouterProcess) -> Iterator[anthropic.Anthropic]:
    with anthropic.Anthropic(base_url=router_a.base_url + "/api/anthropic", api_key=router_a.key, timeout=180, max_retries=0) as client:
        yield client


def test_health_reports_each_cli_with_its_version(router_a: RouterProcess, oai: openai.OpenAI) -> None:
    health = router_a.health()
    assert health["status"] == "ok"
    assert [p["tier"] for p in health["providers"]] == ["cli"] * 6  # no GPU tier on this router
    assert provider(router_a, "claude")["version"] == CLAUDE_CODE.rsplit("@", 1)[1] + " (Claude Code)"
    assert provider(router_a, "codex")["version"] == "codex-cli " + CODEX.rsplit("@", 1)[1]
    assert "test-double" in provider(router_a, "cursor-double")["version"]
    missing = provider(router_a, "missing")
    assert missing["state"] == "unavailable" and missing["available"] is False and "/nonexistent/codex" in missing["reason"]
    with pytest.raises(openai.APIStatusError) as caught:
        oai.chat.completions.create(model="missing-cli", messages=[{"role": "user", "content": "hi"}])
    assert caught.value.status_code == 503 and "unavailable" in caught.value.message


def test_auto_streams_from_claude_code_through_the_openai_endpoint(router_a: RouterProcess, oai: openai.OpenAI) -> None:
    stream = oai.chat.completions.create(
        # Claude Code samples at temperature 1: a prompt whose answer is long at any
        # sampling, so there are always several deltas to see arrive.
        model="auto", stream=True, stream_options={"include_usage": True}, max_tokens=32,
        messages=[{"role": "user", "content": "Write a short poem about the sea."}],
    )
    arrivals, text, usage, models = [], [], None, set()
    for chunk in stream:
        models.add(chunk.model)
        if chunk.choices and chunk.choices[0].delta.content:
            arrivals.append(time.monotonic())
            text.append(chunk.choices[0].delta.content)
        if chunk.usage:
            usage = chunk.usage
    assert models == {SMOL}
    assert len(text) >= 3 and "".join(text).strip()
    assert arrivals[-1] - arrivals[0] > 0.005  # deltas arrive as they are made, not as one block at the end
    assert usage is not None and usage.completion_tokens > 0 and usage.prompt_tokens > 0


def test_auto_streams_from_claude_code_through_the_anthropic_endpoint(router_a: RouterProcess, claude_sdk: anthropic.Anthropic) -> None:
    arrivals = []
    with claude_sdk.messages.stream(
        model="auto", max_tokens=40, messages=[{"role": "user", "content": "Write a short poem about the sea."}],
    ) as stream:
        for delta in stream.text_stream:
            if delta:
                arrivals.append(time.monotonic())
        final = stream.get_final_message()
    assert final.model == SMOL and final.stop_reason in ("end_turn", "max_tokens")
    assert len(arrivals) >= 3 and arrivals[-1] - arrivals[0] > 0.005
    assert final.usage.output_tokens > 0 and final.usage.input_tokens > 0


def test_the_whole_conversation_reaches_the_cli_upstream_as_sent(
    router_a: RouterProcess, proxy: RecordingProxy, claude_sdk: anthropic.Anthropic
) -> None:
    """System, prior turns, a tool call and its result go through Claude Code's
    session file and reach its upstream as the content blocks the client sent."""
    history = [
        {"role": "user", "content": [{"type": "text", "text": "What is the capital of France? Use the lookup tool."}]},
        {"role": "assistant", "content": [{"type": "text", "text": "Looking it up."},
                                          {"type": "tool_use", "id": "toolu_01", "name": "lookup", "input": {"q": "capital of France"}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_01", "content": [{"type": "text", "text": "Paris."}]},
                                     {"type": "text", "text": "Thanks."}]},
        {"role": "assistant", "content": [{"type": "text", "text": "The capital of France is Paris."}]},
        {"role": "user", "content": [{"type": "text", "text": "What did the tool say?"}]},
    ]
    before = len(proxy.requests)
    answer = claude_sdk.messages.create(model="recorded", max_tokens=16, system="You are terse.", messages=history)  # type: ignore[arg-type]
    assert answer.content and answer.model == "recorded"
    [body] = [b for path, b in proxy.requests[before:] if path.startswith("/api/anthropic/v1/messages")]
    assert body["model"] == "recorded" and body["max_tokens"] == 16
    assert [b["text"] for b in body["system"]][-1] == "You are terse."  # after Claude Code's one identity line
    sent = [{"role": m["role"], "content": [{k: v for k, v in b.items() if k != "cache_control"} for b in m["content"]]}
            for m in body["messages"]]
    # Claude Code puts a date reminder before the first user turn; all else is as the client sent it.
    assert sent[0]["content"][0]["text"].startswith("<system-reminder>")
    sent[0]["content"] = sent[0]["content"][1:]
    assert sent == history


def test_cli_error_is_a_clean_error(router_a: RouterProcess, oai: openai.OpenAI, claude_sdk: anthropic.Anthropic) -> None:
    # Claude Code pinned to a model its upstream does not serve: it reports is_error
    # with api_error_status 404, which the client sees as a provider failure, before any byte.
    with pytest.raises(openai.APIStatusError) as caught:
        oai.chat.completions.create(model="ghost-model", messages=[{"role": "user", "content": "hi"}])
    assert caught.value.status_code == 502 and "ghost-model" in caught.value.message
    with pytest.raises(anthropic.APIStatusError) as streamed:
        with claude_sdk.messages.stream(model="ghost-model", max_tokens=10, messages=[{"role": "user", "content": "hi"}]) as s:
            list(s.text_stream)
    assert streamed.value.status_code == 502 and streamed.value.body["error"]["type"] == "api_error"  # type: ignore[index]
    assert provider(router_a, "claude")["runs"] == []


def test_client_disconnect_kills_the_cli_process_group(router_a: RouterProcess, oai: openai.OpenAI) -> None:
    # By its model id: the previous test's failure has the claude provider sitting out
    # briefly, and "auto" would (rightly) go to another CLI provider meanwhile.
    stream = oai.chat.completions.create(
        model=SMOL, stream=True, max_tokens=1500,
        messages=[{"role": "user", "content": "Write a very long story about a lighthouse keeper and the sea."}],
    )
    for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            break
    [run] = provider(router_a, "claude")["runs"]
    assert group_members(run["pid"])  # the CLI is running, in its own group
    stream.close()  # the client goes away mid-answer
    wait_gone(run["pid"])
    wait_no_runs(router_a, "claude")


def test_deadline_stops_the_run(router_a: RouterProcess, oai: openai.OpenAI) -> None:
    began = time.monotonic()
    with pytest.raises(openai.APIError, match=r"within 4s") as caught:
        stream = oai.chat.completions.create(
            model="slow-story", stream=True, max_tokens=3000,
            messages=[{"role": "user", "content": "Write a very long story about a lighthouse keeper and the sea."}],
        )
        for _ in stream:
            pass
    assert time.monotonic() - began < 30, caught.value
    # The run is being stopped (SIGTERM, grace, SIGKILL) as the client reads the error.
    pids = [r["pid"] for r in provider(router_a, "claude-deadline")["runs"]]
    for pid in pids:
        wait_gone(pid)
    wait_no_runs(router_a, "claude-deadline")


def test_codex_answers_without_and_with_streaming(
    router_a: RouterProcess, proxy: RecordingProxy, oai: openai.OpenAI, claude_sdk: anthropic.Anthropic,
) -> None:
    before = len(proxy.requests)
    messages = [{"role": "system", "content": "Answer with one word."}, {"role": "user", "content": "My name is Zed."},
                {"role": "assistant", "content": "Hi Zed."}, {"role": "user", "content": "Say hello."}]
    answer = oai.chat.completions.create(model="codex-smol", messages=messages)  # type: ignore[arg-type]
    assert answer.model == "codex-smol" and answer.choices[0].message.content
    assert answer.choices[0].finish_reason == "stop" and answer.usage and answer.usage.completion_tokens > 0
    # What Codex sent its upstream: the system prompt in place of its own instructions,
    # the conversation as the transcript, and no tool of its own but the one it always offers.
    [body] = [b for path, b in proxy.requests[before:] if path == "/v1/responses"]
    assert body["model"] == "codex-smol"
    assert [(item["role"], [c["text"] for c in item["content"]]) for item in body["input"]] == [
        ("developer", ["Answer with one word."]),
        ("user", ["<conversation>\n<user>\nMy name is Zed.\n</user>\n<assistant>\nHi Zed.\n</assistant>\n</conversation>\n\nSay hello."]),
    ]
    assert [t.get("name") for t in body.get("tools", [])] == ["request_user_input"]
    with claude_sdk.messages.stream(model="codex-smol", max_tokens=50, system="Answer with one word.",
                                    messages=[{"role": "user", "content": "Say hello."}]) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text.strip() and final.model == "codex-smol" and final.usage.output_tokens > 0


def test_cursor_double_streams_and_runs_isolated(router_a: RouterProcess, oai: openai.OpenAI) -> None:
    # Cursor takes no token limit: router B's own cap applies, so the prompt asks for little.
    stream = oai.chat.completions.create(
        model="cursor-smol", stream=True,
        messages=[{"role": "system", "content": "Answer with the numbers only."}, {"role": "user", "content": "Count from one to five."}],
    )
    deltas = [c.choices[0].delta.content for c in stream if c.choices and c.choices[0].delta.content]
    assert len(deltas) >= 3
    runs = [json.loads(line) for line in (Path(router_a_dir(router_a)) / "cursor.log").read_text().splitlines()]
    argv = runs[-1]["argv"]
    assert argv[argv.index("--model") + 1] == "cursor-smol" and argv[argv.index("--mode") + 1] == "ask"
    assert argv[-1] == "<system>\nAnswer with the numbers only.\n</system>\n\nCount from one to five."
    work, home = Path(runs[-1]["cwd"]), Path(runs[-1]["home"])
    assert work.name == "work" and home == work.parent / "home" and work.parent.name.startswith("auxot-cli-")
    wait_no_runs(router_a, "cursor-double")  # [DONE] reaches the client before the run is stopped
    assert not work.parent.exists()  # the run's directory is gone with the run


def router_a_dir(router: RouterProcess) -> str:
    config = router.process.args[router.process.args.index("--config") + 1]  # type: ignore[union-attr]
    return str(Path(config).parent)


if sys.platform != "linux":  # /proc and process groups as Linux has them
    pytestmark = pytest.mark.skip("Linux only")
