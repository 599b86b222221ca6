"""CLIs the end-to-end tests drive (Claude Code, Codex), installed from npm once into the auxot cache."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from auxot.config import user_cache_dir

CLAUDE_CODE = "@anthropic-ai/claude-code@2.1.197"
CODEX = "@openai/codex@0.169.0"
EVERYTHING = "@modelcontextprotocol/server-everything@2026.8.31"  # the MCP reference server that exercises every feature
FILESYSTEM = "@modelcontextprotocol/server-filesystem@2026.8.31"  # the MCP reference server for files under given roots


def npm_cli(package: str, binary: str, prefix_name: str, override_env: str) -> Path:
    """A CLI from npm, installed once into the auxot cache (``$override_env`` points at one
    already installed elsewhere)."""
    if configured := os.environ.get(override_env):
        return Path(configured)
    prefix = user_cache_dir() / prefix_name
    path = prefix / "node_modules" / ".bin" / binary
    if not path.exists():
        npm = shutil.which("npm")
        assert npm, f"npm is needed to install {package} for this test (Debian: apt-get install npm)"
        subprocess.run([npm, "install", "--prefix", str(prefix), "--no-audit", "--no-fund", package],
                       check=True, capture_output=True, timeout=300)
    return path
