"""The conformance suite: its parsing; that it can say no (its self-test against
canned and lying controls); that auxot passes every case conclusively; and what a
bare llama-server fails, by behaviour."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Iterator

import pytest

from conformance import checks
from conformance.__main__ import accepted_models
from conformance.cases import load
from conformance.curl import parse, path_of
from conformance.json_prefix import json_prefix
from conformance.runner import Result, Runner
from conformance.selftest import run_against, self_test
from tests.support import ROOT
from tests.support.router_process import RouterProcess


def test_every_spec_case_parses_with_its_source() -> None:
    cases = load()
    assert len(cases) >= 20 and len({c.id for c in cases}) == len(cases)
    seeds = {c.source.split(" ")[0] for c in cases}
    assert seeds == {"000_2af61d05c906f212.txt", "001_3ca65da7fb75a17e.txt", "002_d518beb9a20222d8.txt",
                     "003_bcec3c2113b85d51.txt", "004_3b5121f558ce096b.txt"}
    for c in cases:
        assert path_of(c.curl.url).startswith("/") and c.expect


def test_curl_parsing_of_documented_forms() -> None:
    cmd = parse('curl -sS "https://H/api/openai/chat/completions" \\\n-H "Authorization: Bearer k" -d \'{"a": 1}\' | jq .x')
    assert (cmd.method, cmd.url, cmd.headers, cmd.data) == (
        "POST", "https://H/api/openai/chat/completions", [("Authorization", "Bearer k")], '{"a": 1}',
    )
    assert path_of("$AUXOT_BASE_URL/api/openai/models") == "/api/openai/models"
    assert parse("curl -X POST http://localhost:8080/v1/responses").method == "POST"


def test_sse_framing_helper() -> None:
    assert checks.sse_events(b"event: a\r\ndata: 1\r\n\r\n: c\n\ndata: x\ndata: y\n\n") == [("a", "1"), (None, "x\ny")]


def run_all(base_url: str, key: str, models: dict[str, str] | None = None, **options: object) -> dict[str, Result]:
    # One documented case asks for 1,024 tokens, answered whole: on a loaded 2-core
    # machine SmolLM2 can take minutes for that.
    runner = Runner(base_url, key, models, timeout=600, seed=1, **options)  # type: ignore[arg-type]
    return {c.id: runner.run(c) for c in load()}


def test_auxot_passes_every_case_conclusively(router: RouterProcess) -> None:
    """Including both tool round trips: the embedded default's chat template
    carries tools, and a forced tool_choice yields a real call."""
    results = run_all(router.base_url, router.key or "", {"*": "auto"})
    assert {case: f"{r.status}: {r.reason}" for case, r in results.items() if not r.passed} == {}


def test_the_documents_model_ids_are_sent_as_written(router: RouterProcess) -> None:
    runner = Runner(router.base_url, router.key or "", timeout=600, seed=1)
    results = [runner.run(c) for c in load() if c.id in ("router-chat-completions", "responses-create", "openai-minimal-curl")]
    report = accepted_models(results)
    # The embedded default answers claude-* (Claude Code's names) and auto; gpt-4o is
    # no model of this deployment, and the default for an unknown model is 404.
    assert report == "auto → 200, claude-sonnet-4-20250514 → 200, gpt-4o → 404", report
    assert [r.status for r in results] == ["pass", "fail", "pass"]


def test_the_self_test_holds() -> None:
    """The canned server fails ≥ 90% of the cases, each lying server every case
    that checks its lie, the honest simulator none, and no case passes every
    control (conformance/selftest.py)."""
    assert self_test(load(), out=False) == 0


def test_the_suite_fails_a_control_that_lies_about_usage() -> None:
    """The self-test's own teeth: a case known to check usage, against the lie."""
    case = next(c for c in load() if c.id == "responses-create")
    (result,) = run_against("usage", [case])
    assert result.status == "fail" and "max_output_tokens" in result.reason


@pytest.fixture
def bare_llama() -> Iterator[str]:
    """A bare llama-server with the same model, started as an operator would
    (`--api-key`, `--jinja`), with a cap on tokens per answer: several documented
    requests set none, and it has no router to cap them."""
    from auxot import provision
    from auxot.providers.llama_host import free_port

    binary, model = provision.find_llama_server(None), provision.find_model(None)
    assert binary is not None and model is not None
    port = free_port()
    proc = subprocess.Popen([str(binary), "-m", str(model), "--host", "127.0.0.1", "--port", str(port), "--api-key", BARE_KEY,
                             "--jinja", "-c", "8192", "-np", "2", "-n", "256"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as resp:
                    if resp.status == 200:
                        break
            except OSError:
                time.sleep(0.2)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(timeout=30)


BARE_KEY = "sk-bare-" + "0" * 16


@pytest.mark.slow
def test_bare_llama_server_fails_on_behaviour(bare_llama: str) -> None:
    """Its paths rewritten to its own, so what fails is behaviour, not 404s."""
    results = run_all(bare_llama, BARE_KEY, {"*": "auto"}, path_map=BARE_PATHS)
    for case in ("router-chat-completions", "router-chat-streaming", "openai-prove-streaming", "anthropic-streaming"):
        assert results[case].passed, (case, results[case].reason)
    assert "expected HTTP 400, got 200" in results["error-no-model"].reason  # it accepts a request with no model
    assert "expected HTTP 404, got 200" in results["error-unknown-model"].reason  # and any model name
    assert "a model not in the list" in results["models-list"].reason
    assert "response lacks 'previous_response_id'" in results["responses-create"].reason
    assert "not 0, 1, 2" in results["responses-streaming"].reason
    assert "not the Anthropic error shape" in results["anthropic-error-bad-key"].reason


BARE_PATHS = {"/api/openai": "/v1", "/api/anthropic/v1": "/v1", "/api/chat": "/v1/chat"}


def test_command_line_report_and_exit_status(router: RouterProcess, tmp_path: Path) -> None:
    report = tmp_path / "report.json"
    proc = subprocess.run(
        [sys.executable, "-m", "conformance", "--base-url", router.base_url, "--api-key", router.key or "",
         "--only", "error-*", "--report", str(report)],
        capture_output=True, text=True, timeout=120, cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "case" in proc.stdout and "PASS" in proc.stdout
    data = json.loads(report.read_text())
    assert {r["case"] for r in data["results"]} == {"error-bad-key", "error-no-model", "error-empty-messages", "error-unknown-model"}
    failing = subprocess.run(
        [sys.executable, "-m", "conformance", "--base-url", router.base_url, "--api-key", "user." + "B" * 43,
         "--only", "openai-minimal-curl", "--report", str(tmp_path / "r.xml")],
        capture_output=True, text=True, timeout=120, cwd=ROOT,
    )
    assert failing.returncode == 1 and "FAIL" in failing.stdout and "expected HTTP 200, got 401" in failing.stdout
    assert (tmp_path / "r.xml").read_text().count("<failure") == 1


def test_truncated_responses_conform_but_failed_ones_do_not() -> None:
    from conformance.client import Answer

    def answer(body: dict) -> Answer:
        return Answer(200, {"content-type": "application/json"}, json.dumps(body).encode())

    assert checks.responses(answer({"object": "response", "output": [], "status": "incomplete",
                                    "incomplete_details": {"reason": "max_output_tokens"}})) is None
    assert "without incomplete_details" in (checks.responses(answer({"object": "response", "output": [], "status": "incomplete"})) or "")
    assert "not 'completed'" in (checks.responses(answer({"object": "response", "output": [], "status": "failed"})) or "")


@pytest.mark.parametrize(("text", "prefix"), [
    ('{"a": "ab', True), ('{"a": ', True), ('{"a', True), ('[1, 2,', True), ('{"a": tr', True), ('{"a": 1.', True),
    ('{"a": [1, {"b": "c"}, ', True), ('{"a":1}', True), ("Sure! Here", False), ('{"a": 1]', False), ("", False),
])
def test_a_cut_json_answer_must_still_be_the_start_of_json(text: str, prefix: bool) -> None:
    assert json_prefix(text) is prefix
