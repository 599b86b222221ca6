"""The MCP project's ``@modelcontextprotocol/server-filesystem`` (from npm, installed
once into the auxot cache) behind a real ``tools-worker`` and ``serve``, for the
official anthropic SDK: the model's calls (from a TEST DOUBLE upstream,
tests/support/scripted_upstream.py — SmolLM2 cannot be relied on to pick them)
write and read real files under the server's root, a read outside it comes back
as the server's own error, and the client, having named the server, sees every
call and result as ``mcp_tool_use`` / ``mcp_tool_result`` blocks."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import anthropic

from tests.support.npm_cli import FILESYSTEM, npm_cli
from tests.support.router_process import start_router
from tests.support.scripted_upstream import ScriptedUpstream
from tests.support.tools_worker import create_key, start_tools_worker, wait_registered


def test_files_are_written_and_read_by_the_reference_filesystem_server(tmp_path: Path) -> None:
    binary = npm_cli(FILESYSTEM, "mcp-server-filesystem", "npm-mcp-filesystem", "AUXOT_MCP_FILESYSTEM")
    root = (tmp_path / "root").resolve()
    root.mkdir()
    notes = root / "notes.txt"

    def decide(body: dict[str, Any]) -> str | list[tuple[str, dict[str, Any]]]:
        results = [m["content"] for m in body["messages"] if m["role"] == "tool"]
        if not results:  # round 1: two calls in parallel
            return [("fs__write_file", {"path": str(notes), "content": "auxot was here"}), ("fs__list_allowed_directories", {})]
        if len(results) == 2:  # round 2: read it back, and try outside the root
            return [("fs__read_text_file", {"path": str(notes)}), ("fs__read_text_file", {"path": "/etc/hostname"})]
        return "results: " + " | ".join(results[2:])

    with ScriptedUpstream(decide) as upstream:
        config = tmp_path / "auxot.toml"
        config.write_text(f'[[providers]]\nkind = "openai-compatible"\nname = "cloud"\nbase_url = "{upstream.url}"\n'
                          'models = ["m"]\n\n[tools]\ncall_timeout = 20.0\n')
        tools = tmp_path / "tools.toml"
        node_dir = str(Path(shutil.which("node") or "/usr/bin/node").parent)
        tools.write_text(f'[[mcp]]\nname = "fs"\ncommand = "{binary}"\nargs = ["{root}"]\nenv = {{ PATH = "{node_dir}:/usr/bin:/bin" }}\n')
        data = tmp_path / "data"
        router = start_router(data, "--config", str(config))
        worker = start_tools_worker(router.base_url.replace("http", "ws") + "/ws", create_key(data, "--tools-worker", "--name", "tw"),
                                    tools)
        try:
            wait_registered(router)
            api_key = create_key(data, "--name", "files", "--tools", "fs__*")
            claude = anthropic.Anthropic(base_url=router.base_url + "/api/anthropic", api_key=api_key, max_retries=0, timeout=60)
            servers: Any = [{"type": "url", "name": "fs"}]
            message = claude.beta.messages.create(model="m", max_tokens=100, mcp_servers=servers,  # type: ignore[arg-type]
                                                  messages=[{"role": "user", "content": "Leave a note and read it back."}])
        finally:
            worker.terminate()
            worker.wait(30)
            assert router.stop() == 0

    assert notes.read_text() == "auxot was here"  # written by the real server, on the model's call
    blocks = message.content
    assert [b.type for b in blocks] == ["mcp_tool_use"] * 2 + ["mcp_tool_result"] * 2 + ["mcp_tool_use"] * 2 + [
        "mcp_tool_result"] * 2 + ["text"]
    assert [(b.server_name, b.name) for b in blocks if b.type == "mcp_tool_use"] == [  # type: ignore[union-attr]
        ("fs", "write_file"), ("fs", "list_allowed_directories"), ("fs", "read_text_file"), ("fs", "read_text_file")]
    results = [b for b in blocks if b.type == "mcp_tool_result"]
    assert [r.is_error for r in results] == [False, False, False, True]  # type: ignore[union-attr]
    assert str(root) in results[1].content[0].text  # type: ignore[union-attr]  # the allowed directories, as the server lists them
    assert results[2].content[0].text == "auxot was here"  # type: ignore[union-attr]
    assert "outside allowed directories" in results[3].content[0].text  # type: ignore[union-attr]
    assert blocks[-1].text.startswith("results: auxot was here | ")  # type: ignore[union-attr]  # the model was given both
    assert "outside allowed directories" in blocks[-1].text  # type: ignore[union-attr]
