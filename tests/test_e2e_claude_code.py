"""The real Claude Code CLI (npm ``@anthropic-ai/claude-code``), offline, with
``ANTHROPIC_BASE_URL`` pointed at auxot, gets its answer from the llama-server
provider.  The CLI is installed from npm into the auxot cache on first use."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
from npm_cli import npm_cli
from router_process import RouterProcess

CLAUDE_CODE = "@anthropic-ai/claude-code@2.1.197"


@pytest.fixture(scope="session")
def claude_bin() -> Path:
    return npm_cli(CLAUDE_CODE, "claude", "npm", "AUXOT_CLAUDE_BIN")


def test_claude_code_print_mode_is_served_by_llama_server(router: RouterProcess, claude_bin: Path, tmp_path: Path) -> None:
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(tmp_path),  # its own config directory, nothing from the host
        "ANTHROPIC_BASE_URL": router.base_url + "/api/anthropic",
        "ANTHROPIC_API_KEY": router.key or "",
        "DISABLE_TELEMETRY": "1",
        "DISABLE_AUTOUPDATER": "1",
        "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
        # SmolLM2 at Claude Code's temperature 1 can ramble for the whole context; bound it.
        "CLAUDE_CODE_MAX_OUTPUT_TOKENS": "64",
    }
    proc = subprocess.run(
        [str(claude_bin), "-p", "--model", "SmolLM2-135M-Instruct", "--system-prompt", "You are terse.",
         "--tools", "", "--output-format", "json"],
        input="Say hello", capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120,
    )
    result = json.loads(proc.stdout)
    assert result["type"] == "result"
    assert list(result["modelUsage"]) == ["SmolLM2-135M-Instruct"], result
    assert result["usage"]["output_tokens"] > 0 and result["usage"]["input_tokens"] > 0
    if result["is_error"]:
        # The only acceptable failure: the model used the whole 64-token budget, which
        # Claude Code reports as an error when it sees stop_reason "max_tokens".
        assert "64 output token maximum" in result["result"], result
    else:
        assert proc.returncode == 0 and result["stop_reason"] == "end_turn" and result["result"].strip()
