"""A tool loop on the embedded model itself — no test double: ``serve`` with the
real llama-server and SmolLM2, a real ``tools-worker`` running the test MCP
server (the official ``mcp`` SDK's, over stdio), the official openai SDK.  The
small model cannot be relied on to *choose* a tool, so the client forces the
first round's call in the dialect's own shape (``tool_choice: {"type": "mcp"}``,
made real on llama-server by a grammar); the arguments are the model's own, the
result is the MCP server's, and the model's second round answers."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import openai

from tests.support.router_process import start_router
from tests.support.tools_worker import (
    create_key,
    start_tools_worker,
    wait_registered,
    worker_config,
)


def test_the_embedded_model_makes_a_forced_call_and_answers_with_the_result(tmp_path: Path) -> None:
    config = tmp_path / "auxot.toml"
    config.write_text('[[providers]]\nkind = "llamacpp"\nname = "local"\ndefault_max_tokens = 48\n\n[tools]\nmax_rounds = 2\n')
    data = tmp_path / "data"
    router = start_router(data, "--config", str(config))
    worker = start_tools_worker(router.base_url.replace("http", "ws") + "/ws", create_key(data, "--tools-worker", "--name", "tw"),
                                worker_config(tmp_path))
    try:
        wait_registered(router)
        client = openai.OpenAI(base_url=router.base_url + "/v1", api_key=create_key(data, "--name", "adder", "--tools", "test__add"),
                               max_retries=0, timeout=180)
        response = client.responses.create(
            model="auto", input="What is 20 + 22? Use the add tool.", max_output_tokens=48,
            tools=[{"type": "mcp", "server_label": "test", "allowed_tools": ["add"], "require_approval": "never"}],  # type: ignore[list-item]
            tool_choice={"type": "mcp", "server_label": "test", "name": "add"})
    finally:
        worker.terminate()
        worker.wait(30)
        assert router.stop() == 0

    kinds = [item.type for item in response.output]
    assert kinds[:2] == ["mcp_list_tools", "mcp_call"] and response.status in ("completed", "incomplete")
    call = response.output[1]
    arguments = json.loads(call.arguments)  # type: ignore[union-attr]  # the model's own, shaped by the tool's schema
    assert set(arguments) == {"a", "b"} and all(isinstance(v, int) for v in arguments.values())
    assert call.status == "completed" and call.output == str(arguments["a"] + arguments["b"])  # type: ignore[union-attr]
    # The second round (tool_choice auto, then none: max_rounds = 2) answered; the ledger counts the round and the call.
    assert kinds[-1] == "message" and response.usage and response.usage.output_tokens > 0
    rows = sqlite3.connect(data / "auxot.sqlite3").execute("SELECT tool_rounds, tool_calls, outcome FROM usage").fetchall()
    assert rows[-1][:2] == (1, 1)
