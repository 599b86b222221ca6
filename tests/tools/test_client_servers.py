"""A client's own MCP server, reached by the router where its operator allows
the URL (``[tools] client_servers``): ``python -m auxot serve`` as a real
process with no tools worker at all, the MCP server the official SDK's over
Streamable HTTP (tests/support/mcp_server.py, with ``whoami`` to show which
credentials each call came with), the clients the official openai and
anthropic SDKs.  The model's decisions come from a TEST DOUBLE upstream
(tests/support/scripted_upstream.py): it calls ``mine__add`` and
``mine__whoami`` in one round, then answers with what they returned."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Iterator

import anthropic
import openai
import pytest
import trio

from auxot.http.websocket import connect
from tests.bench.nginx import free_port, wait_listening
from tests.support import ROOT
from tests.support.recording_proxy import RecordingProxy
from tests.support.router_process import RouterProcess, start_router
from tests.support.scripted_upstream import ScriptedUpstream

Setup = tuple[RouterProcess, ScriptedUpstream, str, int, int]  # …, the server's port, a closed port


def decide(body: dict[str, Any]) -> str | list[tuple[str, dict[str, Any]]]:
    results = [m for m in body["messages"] if m["role"] == "tool"]
    if results:
        return " | ".join(m["content"] for m in results)
    names = [t["function"]["name"] for t in body.get("tools", [])]
    if "mine__add" in names:
        return [("mine__add", {"a": 20, "b": 22}), ("mine__whoami", {})]
    return "No tools here."


@pytest.fixture
def setup(tmp_path: Path) -> Iterator[Setup]:
    port, closed = free_port(), free_port()
    server = subprocess.Popen([sys.executable, "-m", "tests.support.mcp_server", "http", str(port), "--whoami"], cwd=ROOT,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_listening(port, 30, server)
        with ScriptedUpstream(decide) as upstream:
            config = tmp_path / "auxot.toml"
            config.write_text(
                f'[[providers]]\nkind = "openai-compatible"\nname = "cloud"\nbase_url = "{upstream.url}"\nmodels = ["m"]\n\n'
                f'[tools]\ncall_timeout = 10.0\nkeepalive = 0.3\n'
                f'client_servers = ["http://127.0.0.1:*/mcp", "http://127.0.0.2:*"]\n'
                f'client_servers_private = ["127.0.0.1"]\n')
            router = start_router(tmp_path / "data", "--config", str(config))
            try:
                assert router.key is not None  # a key with no --tools: the operator's list is what allows these servers
                yield router, upstream, router.key, port, closed
            finally:
                assert router.stop() == 0
    finally:
        server.terminate()
        server.wait(10)


def _mcp(port: int, token: str) -> dict[str, Any]:
    return {"type": "mcp", "server_label": "mine", "server_url": f"http://127.0.0.1:{port}/mcp", "authorization": token,
            "headers": {"X-Trace": "t-1"}, "require_approval": "never", "allowed_tools": ["add", "whoami"]}


def test_responses_reaches_the_clients_own_server_with_its_credentials(setup: Setup) -> None:
    router, upstream, key, port, closed = setup
    client = openai.OpenAI(base_url=router.base_url + "/v1", api_key=key, max_retries=0, timeout=60)

    response = client.responses.create(model="m", input="What is 20 + 22, and who am I?", tools=[_mcp(port, "secret-1")])  # type: ignore[list-item]
    assert [item.type for item in response.output] == ["mcp_list_tools", "mcp_call", "mcp_call", "message"]
    listing, add, whoami = response.output[:3]
    assert listing.server_label == "mine" and [t.name for t in listing.tools] == ["add", "whoami"]  # type: ignore[union-attr]
    assert (add.server_label, add.name, add.arguments, add.output) == ("mine", "add", '{"a": 20, "b": 22}', "42")  # type: ignore[union-attr]
    assert (whoami.name, whoami.output) == ("whoami", "Bearer secret-1")  # type: ignore[union-attr]  # the server saw the token
    assert response.output_text.strip() == "42 | Bearer secret-1"
    first, second = upstream.requests[-2:]
    assert [t["function"]["name"] for t in first["tools"]] == ["mine__add", "mine__whoami"]  # allowed_tools, of 37
    assert [m["content"] for m in second["messages"] if m["role"] == "tool"] == ["42", "Bearer secret-1"]

    with client.responses.stream(model="m", input="Again", tools=[_mcp(port, "secret-2")]) as stream:  # type: ignore[list-item]
        events = [event.type for event in stream]
        streamed = stream.get_final_response()
    assert "response.mcp_call.completed" in events and "response.mcp_list_tools.completed" in events
    assert [item.type for item in streamed.output] == ["mcp_list_tools", "mcp_call", "mcp_call", "message"]
    assert streamed.output_text.strip() == "42 | Bearer secret-2"

    chat = client.chat.completions.create(model="m", messages=[{"role": "user", "content": "Sum?"}],
                                          tools=[_mcp(port, "secret-3")])  # type: ignore[list-item]
    assert chat.choices[0].message.content.strip() == "42 | Bearer secret-3"  # type: ignore[union-attr]

    async def over_websocket() -> dict[str, Any]:  # Responses WebSocket mode: the same, and a refusal as an error frame
        ws = await connect(router.base_url.replace("http", "ws") + "/v1/responses", headers=[("Authorization", f"Bearer {key}")])
        frames = []
        for tools in ([{**_mcp(port, "x"), "server_url": "https://example.com/mcp"}], [_mcp(port, "secret-ws")]):
            await ws.send_text(json.dumps({"type": "response.create", "model": "m", "input": "Sum?", "tools": tools}))
            frames.append(json.loads(await ws.receive_text()))
            while frames[-1]["type"] not in ("response.completed", "response.failed", "error"):
                frames.append(json.loads(await ws.receive_text()))
        await ws.aclose()
        return {"refused": next(f for f in frames if f["type"] == "error"), "answer": frames[-1]["response"]}

    ws = trio.run(over_websocket)
    assert ws["refused"]["status"] == 400 and ws["refused"]["error"]["param"] == "tools[0].server_url"
    assert [i["type"] for i in ws["answer"]["output"]] == ["mcp_list_tools", "mcp_call", "mcp_call", "message"]
    assert ws["answer"]["output"][2]["output"] == "Bearer secret-ws"

    # One session per request, ended when the answer is out: initialize … the calls, then DELETE.
    with RecordingProxy(f"http://127.0.0.1:{port}") as proxy:
        via = client.responses.create(model="m", input="Once more", tools=[{**_mcp(port, "secret-4"),  # type: ignore[list-item]
                                                                            "server_url": proxy.url + "/mcp"}])
        assert via.output_text.strip() == "42 | Bearer secret-4"
        deadline = time.monotonic() + 10
        while "DELETE" not in proxy.methods and time.monotonic() < deadline:
            time.sleep(0.05)
    calls = [body.get("method") for _, body in proxy.requests if isinstance(body, dict)]
    assert calls[:3] == ["initialize", "notifications/initialized", "tools/list"]
    assert sorted(calls[3:]) == ["tools/call", "tools/call"] and proxy.methods[-1] == "DELETE"

    # The credentials went to that server and nowhere else: not to the model (but for whoami's answers, which
    # are the tool's own results), the log or the database.
    assert not any("secret-" in json.dumps({**body, "messages": [m for m in body["messages"] if m["role"] != "tool"]})
                   for body in upstream.requests)
    assert not any("secret-" in line for line in router.output)
    assert router.data_dir is not None
    assert not any(b"secret-" in p.read_bytes() for p in router.data_dir.rglob("*") if p.is_file())


def test_anthropic_mcp_servers_with_a_url_and_token(setup: Setup) -> None:
    router, upstream, key, port, closed = setup
    claude = anthropic.Anthropic(base_url=router.base_url + "/api/anthropic", api_key=key, max_retries=0, timeout=60)
    servers: Any = [{"type": "url", "name": "mine", "url": f"http://127.0.0.1:{port}/mcp", "authorization_token": "tok-4",
                     "tool_configuration": {"allowed_tools": ["add", "whoami"]}}]
    message = claude.beta.messages.create(model="m", max_tokens=100, mcp_servers=servers,
                                          messages=[{"role": "user", "content": "Sum, and who?"}])
    assert [b.type for b in message.content] == ["mcp_tool_use"] * 2 + ["mcp_tool_result"] * 2 + ["text"]
    results = [b for b in message.content if b.type == "mcp_tool_result"]
    assert [r.content[0].text for r in results] == ["42", "Bearer tok-4"]  # type: ignore[union-attr]
    assert message.content[-1].text.strip() == "42 | Bearer tok-4"  # type: ignore[union-attr]


def test_what_the_operator_did_not_allow_or_cannot_be_reached_is_the_requests_fault(setup: Setup) -> None:
    router, upstream, key, port, closed = setup
    client = openai.OpenAI(base_url=router.base_url + "/v1", api_key=key, max_retries=0, timeout=60)
    mcp = _mcp(port, "secret-5")

    with pytest.raises(openai.BadRequestError) as elsewhere:  # not in [tools] client_servers
        client.responses.create(model="m", input="hi", tools=[{**mcp, "server_url": f"http://127.0.0.1:{port}/other"}])  # type: ignore[list-item]
    assert elsewhere.value.body["param"] == "tools[0].server_url"  # type: ignore[index]
    assert "does not allow" in elsewhere.value.message

    with pytest.raises(openai.BadRequestError) as private:  # allowed by pattern, but 127.0.0.2 is not a public address
        client.responses.create(model="m", input="hi", tools=[{**mcp, "server_url": f"http://127.0.0.2:{port}/mcp"}])  # type: ignore[list-item]
    assert "non-public" in private.value.message and "client_servers_private" in private.value.message

    with pytest.raises(openai.APIStatusError) as down:  # allowed, and nothing listens there
        client.responses.create(model="m", input="hi", tools=[{**mcp, "server_url": f"http://127.0.0.1:{closed}/mcp"}])  # type: ignore[list-item]
    assert down.value.status_code == 424 and down.value.body["param"] == "tools[0].server_url"  # type: ignore[index]

    with pytest.raises(openai.BadRequestError) as taken:
        client.responses.create(model="m", input="hi", tools=[mcp, {**mcp, "allowed_tools": ["add"]}])  # type: ignore[list-item]
    assert "taken" in taken.value.message and taken.value.body["param"] == "tools[1].server_url"  # type: ignore[index]

    claude = anthropic.Anthropic(base_url=router.base_url + "/api/anthropic", api_key=key, max_retries=0, timeout=60)
    with pytest.raises(anthropic.APIStatusError) as refused:
        claude.beta.messages.create(model="m", max_tokens=10, messages=[{"role": "user", "content": "hi"}],
                                    mcp_servers=[{"type": "url", "name": "x", "url": "https://example.com/mcp"}])
    assert refused.value.status_code == 400 and "mcp_servers[0].url" in refused.value.message

    # None of that held against the provider: the next request is answered.
    assert len(upstream.requests) == 0
    answer = client.chat.completions.create(model="m", messages=[{"role": "user", "content": "hi"}])
    assert answer.choices[0].message.content.strip() == "No tools here."  # type: ignore[union-attr]
    assert [p["state"] for p in router.health()["providers"]] == ["ready"]

