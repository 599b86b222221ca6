"""A real ``python -m auxot tools-worker`` for the tests and the bench: its config
running the test MCP server (tests/support/mcp_server.py, over stdio), keys made
with the real CLI, and the worker as a process."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from tests.support import ROOT
from tests.support.router_process import RouterProcess


def create_key(data: Path, *args: str) -> str:
    """``python -m auxot keys create ARGS`` on ``data``; the key (its output's last line)."""
    out = subprocess.run([sys.executable, "-m", "auxot", "keys", "--data-dir", str(data), "create", *args],
                         capture_output=True, text=True, check=True).stdout
    return out.strip().splitlines()[-1]


def worker_config(directory: Path, *, before: str = "", after: str = "") -> Path:
    """``tools.toml`` with the test MCP server as ``test`` (``before``/``after``: more TOML around it)."""
    path = directory / "tools.toml"
    path.write_text(before + f'[[mcp]]\nname = "test"\ncommand = "{sys.executable}"\n'
                             f'args = ["-m", "tests.support.mcp_server", "stdio"]\ncwd = "{ROOT}"\n'
                             f'env = {{ PYTHONPATH = "{ROOT}" }}\n' + after)
    return path


def start_tools_worker(ws_url: str, key: str, config: Path, name: str = "tw") -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "auxot", "tools-worker", "--router-url", ws_url, "--config", str(config),
                             "--name", name], env={"PATH": "/usr/bin:/bin", "AUXOT_TOOLS_KEY": key, "PYTHONPATH": str(ROOT)},
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def wait_registered(router: RouterProcess, timeout: float = 60) -> None:
    """Until the router's /health lists a tools worker with tools."""
    deadline = time.monotonic() + timeout
    while not any(w["tools"] for w in router.health().get("tools_workers", [])):
        if time.monotonic() > deadline:
            raise RuntimeError("the tools worker never registered")
        time.sleep(0.1)
