"""The real Codex CLI (npm ``@openai/codex``), offline, with a ``config.toml`` model
provider whose ``base_url`` points at auxot and ``wire_api = "responses"``, completes a
turn against the llama-server tier.  Codex's prompt (~4.5k tokens of instructions and
tools) needs a bigger context than the default, so this router gets its own config."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from npm_cli import npm_cli
from router_process import start_router

CODEX = "@openai/codex@0.169.0"


@pytest.fixture(scope="session")
def codex_bin() -> Path:
    return npm_cli(CODEX, "codex", "npm-codex", "AUXOT_CODEX_BIN")


def test_codex_exec_completes_a_turn_through_the_responses_api(codex_bin: Path, tmp_path: Path) -> None:
    config = tmp_path / "auxot.toml"
    config.write_text('[[providers]]\nkind = "llamacpp"\nname = "local"\nparallel = 1\nctx_size = 32768\ndefault_max_tokens = 200\n')
    router = start_router(tmp_path / "data", "--config", str(config))
    try:
        home = tmp_path / "codex-home"
        home.mkdir()
        (home / "config.toml").write_text(
            'model = "SmolLM2-135M-Instruct"\nmodel_provider = "auxot"\n\n[model_providers.auxot]\nname = "auxot"\n'
            f'base_url = "{router.base_url}/v1"\nenv_key = "AUXOT_API_KEY"\nwire_api = "responses"\n'
        )
        work = tmp_path / "work"
        work.mkdir()
        env = {"PATH": os.environ["PATH"], "HOME": str(home), "CODEX_HOME": str(home), "AUXOT_API_KEY": router.key or ""}
        proc = subprocess.run([str(codex_bin), "exec", "--skip-git-repo-check", "Say hello"],
                              capture_output=True, text=True, env=env, cwd=work, timeout=240, stdin=subprocess.DEVNULL)
        assert "provider: auxot" in proc.stderr and "tokens used" in proc.stderr, proc.stderr[-2000:]
        if proc.returncode == 0:
            assert proc.stdout.strip(), "codex printed no answer"
            assert "ERROR" not in proc.stderr
        else:
            # The only acceptable failure: SmolLM2 (sampling at Codex's default temperature) ran
            # past the provider's 200-token cap; auxot ended the stream with response.incomplete,
            # reason max_output_tokens, and Codex reports exactly that.
            errors = [line for line in proc.stderr.splitlines() if line.startswith("ERROR")]
            assert errors and all("Incomplete response returned, reason: max_output_tokens" in e for e in errors), proc.stderr[-2000:]
    finally:
        assert router.stop() == 0
