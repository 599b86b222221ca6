"""Claude Code and Codex as their users run them: default flags, default tools,
two turns, through `auxot serve`.

The answers come from a scripted upstream (tests/support/scripted_upstream.py, a TEST
DOUBLE for the decisions SmolLM2 cannot make: given Claude Code's default
prompt it only continues the prompt's text).  Everything else is real: the CLIs
from npm, their real requests (Claude Code's mid-conversation system turns, its
64k max_tokens, adaptive thinking, its two dozen tools; Codex's Responses
requests), auxot's decoding, routing (`[routing] unknown_model = "auto"`: the
CLIs ask for their own model names) and translation to the upstream's dialect.
What the embedded model does with the same requests is in test_e2e_embedded_agents.py.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any, Iterator

import pytest

from tests.support.npm_cli import CLAUDE_CODE, CODEX, npm_cli
from tests.support.router_process import RouterProcess, start_router
from tests.support.scripted_upstream import ScriptedUpstream, user_texts

FIRST = "Hello from the scripted upstream."
SECOND = "You first asked me to say hello."


def answer(body: dict[str, Any]) -> str:
    """The first turn is greeted; a later one is answered only if the first
    exchange came along with it."""
    earlier = [m for m in body.get("messages", []) if m.get("role") == "assistant" and FIRST.strip() in str(m.get("content"))]
    return SECOND if earlier and any("say hello" in t.lower() for t in user_texts(body)) else FIRST


@pytest.fixture
def scripted(tmp_path: Path) -> Iterator[tuple[RouterProcess, ScriptedUpstream]]:
    with ScriptedUpstream(answer) as upstream:
        config = tmp_path / "auxot.toml"
        config.write_text(f'[routing]\nunknown_model = "auto"\n\n[[providers]]\nkind = "openai-compatible"\nname = "scripted"\n'
                          f'base_url = "{upstream.url}"\nmodels = ["scripted-model"]\n')
        router = start_router(tmp_path / "data", "--config", str(config))
        try:
            yield router, upstream
        finally:
            assert router.stop() == 0


def main_turns(upstream: ScriptedUpstream) -> list[dict[str, Any]]:
    """The requests that carried the conversation (a CLI also makes small side requests)."""
    return [b for b in upstream.requests if b.get("tools")]


def test_claude_code_with_its_default_flags_and_tools_for_two_turns(
        scripted: tuple[RouterProcess, ScriptedUpstream], tmp_path: Path) -> None:
    router, upstream = scripted
    claude = npm_cli(CLAUDE_CODE, "claude", "npm", "AUXOT_CLAUDE_BIN")
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path), "ANTHROPIC_BASE_URL": router.base_url + "/api/anthropic",
           "ANTHROPIC_API_KEY": router.key or "", "DISABLE_TELEMETRY": "1", "DISABLE_AUTOUPDATER": "1",
           "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1"}
    work = tmp_path / "work"
    work.mkdir()
    first = subprocess.run([str(claude), "-p", "Say hello"], capture_output=True, text=True, env=env, cwd=work, timeout=180)
    assert first.returncode == 0 and first.stdout.strip() == FIRST.strip(), first.stdout + first.stderr
    second = subprocess.run([str(claude), "-p", "--continue", "What did I ask you first?"], capture_output=True, text=True,
                            env=env, cwd=work, timeout=180)
    assert second.returncode == 0 and second.stdout.strip() == SECOND, second.stdout + second.stderr
    turns = main_turns(upstream)
    assert len(turns) >= 2 and len(turns[0]["tools"]) >= 10  # its default tools reached the model's upstream
    assert turns[-1]["messages"][0]["role"] == "system"


def test_codex_with_its_default_flags_and_tools_for_two_turns(
        scripted: tuple[RouterProcess, ScriptedUpstream], tmp_path: Path) -> None:
    router, upstream = scripted
    codex = npm_cli(CODEX, "codex", "npm-codex", "AUXOT_CODEX_BIN")
    home = tmp_path / "codex-home"
    home.mkdir()
    (home / "config.toml").write_text(
        'model_provider = "auxot"\n\n[model_providers.auxot]\nname = "auxot"\n'
        f'base_url = "{router.base_url}/v1"\nenv_key = "AUXOT_API_KEY"\nwire_api = "responses"\n')
    work = tmp_path / "work"
    work.mkdir()
    env = {"PATH": os.environ["PATH"], "HOME": str(home), "CODEX_HOME": str(home), "AUXOT_API_KEY": router.key or ""}
    first = subprocess.run([str(codex), "exec", "--skip-git-repo-check", "Say hello"], capture_output=True, text=True,
                           env=env, cwd=work, timeout=180, stdin=subprocess.DEVNULL)
    assert first.returncode == 0 and first.stdout.strip() == FIRST.strip(), first.stdout + first.stderr[-3000:]
    second = subprocess.run([str(codex), "exec", "--skip-git-repo-check", "resume", "--last", "What did I ask you first?"],
                            capture_output=True, text=True, env=env, cwd=work, timeout=180, stdin=subprocess.DEVNULL)
    assert second.returncode == 0 and second.stdout.strip() == SECOND, second.stdout + second.stderr[-3000:]
    turns = main_turns(upstream)
    assert len(turns) >= 2 and len(turns[0]["tools"]) >= 3
