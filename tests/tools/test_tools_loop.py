"""Server-side tools end to end: ``python -m auxot serve`` and ``python -m auxot
tools-worker`` as real processes, the MCP server the official SDK's (stdio),
the clients the official openai and anthropic SDKs.  The model's decisions come
from a TEST DOUBLE upstream (tests/support/scripted_upstream.py: SmolLM2 cannot
be relied on to call a tool): it calls ``test__add`` first, then answers with
what the tool returned."""

from __future__ import annotations

import json
import socket
import sqlite3
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any, Iterator

import anthropic
import openai
import pytest
import trio

from auxot.http.websocket import connect
from tests.support.router_process import RouterProcess, start_router
from tests.support.scripted_upstream import ScriptedUpstream
from tests.support.tools_worker import (
    create_key,
    start_tools_worker,
    wait_registered,
    worker_config,
)

Setup = tuple[RouterProcess, ScriptedUpstream, str, Path, "subprocess.Popen[str]"]


def decide(body: dict[str, Any]) -> str | list[tuple[str, dict[str, Any]]]:
    """Call the add tool if it is offered and not yet called; then say what it returned."""
    results = [m for m in body["messages"] if m["role"] == "tool"]
    if results:
        return f"The sum is {results[-1]['content']}"
    names = [t["function"]["name"] for t in body.get("tools", [])]
    if "test__add" in names:
        return [("test__add", {"a": 20, "b": 22})]
    return "No tools here."


@pytest.fixture
def setup(tmp_path: Path) -> Iterator[Setup]:
    with ScriptedUpstream(decide) as upstream:
        config = tmp_path / "auxot.toml"
        config.write_text(f'[[providers]]\nkind = "openai-compatible"\nname = "cloud"\nbase_url = "{upstream.url}"\n'
                          f'models = ["m"]\n\n[tools]\ncall_timeout = 10.0\nkeepalive = 0.3\n')
        data = tmp_path / "data"
        router = start_router(data, "--config", str(config))
        tools_key = create_key(data, "--tools-worker", "--name", "tw")
        api_key = create_key(data, "--name", "with-tools", "--tools", "test__add,test__echo")
        worker = start_tools_worker(router.base_url.replace("http", "ws") + "/ws", tools_key, worker_config(tmp_path))
        try:
            wait_registered(router)
            yield router, upstream, api_key, data, worker
        finally:
            worker.terminate()
            worker.wait(30)
            assert router.stop() == 0


def test_a_two_round_loop_in_every_dialect(setup: Setup) -> None:
    router, upstream, api_key, data, _ = setup
    chat = openai.OpenAI(base_url=router.base_url + "/v1", api_key=api_key, max_retries=0, timeout=60)
    claude = anthropic.Anthropic(base_url=router.base_url + "/api/anthropic", api_key=api_key, max_retries=0, timeout=60)
    ask = [{"role": "user", "content": "What is 20 + 22?"}]

    answer = chat.chat.completions.create(model="m", messages=ask)  # type: ignore[arg-type]
    assert answer.choices[0].message.content.strip() == "The sum is 42"  # type: ignore[union-attr]
    assert answer.choices[0].finish_reason == "stop" and not answer.choices[0].message.tool_calls
    first, second = upstream.requests[-2:]
    assert [t["function"]["name"] for t in first["tools"]] == ["test__add", "test__echo"]  # the key's, not all 36
    assert second["messages"][-1] == {"role": "tool", "tool_call_id": "call_1_0", "content": "42"}
    assert second["messages"][-2]["tool_calls"][0]["function"] == {"name": "test__add", "arguments": '{"a": 20, "b": 22}'}
    # Usage is both rounds' (the double reports len(json.dumps(body)) // 4 prompt tokens per request).
    assert answer.usage is not None
    assert answer.usage.prompt_tokens == len(json.dumps(first)) // 4 + len(json.dumps(second)) // 4
    assert answer.usage.completion_tokens == 2 + len("The sum is 42".split(" "))

    chunks = list(chat.chat.completions.create(model="m", messages=ask, stream=True))  # type: ignore[arg-type]
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text.strip() == "The sum is 42"
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == ["stop"]
    assert not any(c.choices[0].delta.tool_calls for c in chunks if c.choices)

    message = claude.messages.create(model="m", max_tokens=100, messages=ask)  # type: ignore[arg-type]
    assert [b.type for b in message.content] == ["text"] and message.content[0].text.strip() == "The sum is 42"  # type: ignore[union-attr]
    assert message.stop_reason == "end_turn"
    with claude.messages.stream(model="m", max_tokens=100, messages=ask) as stream:  # type: ignore[arg-type]
        streamed = stream.get_final_message()
    assert streamed.content[0].text.strip() == "The sum is 42" and streamed.stop_reason == "end_turn"  # type: ignore[union-attr]

    response = chat.responses.create(model="m", input="What is 20 + 22?")
    assert response.output_text.strip() == "The sum is 42" and response.status == "completed"

    # The ledger: every request two rounds, one call each.
    rows = sqlite3.connect(data / "auxot.sqlite3").execute(
        "SELECT endpoint, tool_rounds, tool_calls, outcome FROM usage ORDER BY id").fetchall()
    assert rows[-5:] == [("openai.chat_completions", 1, 1, "ok")] * 2 + [("anthropic.messages", 1, 1, "ok")] * 2 + [
        ("responses.create", 1, 1, "ok")]


def test_a_key_without_tools_gets_none_and_a_clash_is_a_400(setup: Setup) -> None:
    router, upstream, api_key, data, _ = setup
    plain = openai.OpenAI(base_url=router.base_url + "/v1", api_key=router.key, max_retries=0, timeout=60)
    answer = plain.chat.completions.create(model="m", messages=[{"role": "user", "content": "What is 20 + 22?"}])
    assert answer.choices[0].message.content.strip() == "No tools here."  # type: ignore[union-attr]
    assert "tools" not in upstream.requests[-1]

    chat = openai.OpenAI(base_url=router.base_url + "/v1", api_key=api_key, max_retries=0, timeout=60)
    with pytest.raises(openai.BadRequestError) as clash:
        chat.chat.completions.create(model="m", messages=[{"role": "user", "content": "hi"}], tools=[
            {"type": "function", "function": {"name": "test__add", "parameters": {"type": "object"}}}])
    assert "test__add" in str(clash.value) and "server-side" in str(clash.value)


def test_a_team_limit_cuts_its_keys_tools_at_once(setup: Setup) -> None:
    router, upstream, _, data, _ = setup
    blue = openai.OpenAI(base_url=router.base_url + "/v1", max_retries=0, timeout=60,
                         api_key=create_key(data, "--name", "blue key", "--team", "blue", "--tools", "test__*"))
    ask: Any = [{"role": "user", "content": "What is 20 + 22?"}]

    def team_tools(*args: str) -> str:
        return subprocess.run([sys.executable, "-m", "auxot", "keys", "--data-dir", str(data), "team-tools", *args],
                              capture_output=True, text=True, check=True).stdout

    assert "cut to test__echo" in team_tools("blue", "--tools", "test__echo")
    assert team_tools() == "blue: test__echo\n"
    answer = blue.chat.completions.create(model="m", messages=ask)  # the running router sees the change (the key epoch)
    assert answer.choices[0].message.content.strip() == "No tools here."  # type: ignore[union-attr]
    assert [t["function"]["name"] for t in upstream.requests[-1]["tools"]] == ["test__echo"]  # the key's test__*, cut to the team's

    team_tools("blue", "--clear")
    answer = blue.chat.completions.create(model="m", messages=ask)
    assert answer.choices[0].message.content.strip() == "The sum is 42"  # type: ignore[union-attr]


def test_a_client_tool_goes_back_to_the_client(setup: Setup) -> None:
    router, upstream, api_key, data, _ = setup

    def client_tool_first(body: dict[str, Any]) -> str | list[tuple[str, dict[str, Any]]]:
        return [("lookup", {"q": "x"})]

    upstream.answer = client_tool_first
    chat = openai.OpenAI(base_url=router.base_url + "/v1", api_key=api_key, max_retries=0, timeout=60)
    answer = chat.chat.completions.create(model="m", messages=[{"role": "user", "content": "look it up"}], tools=[
        {"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}}])
    (call,) = answer.choices[0].message.tool_calls or []
    assert call.function.name == "lookup" and json.loads(call.function.arguments) == {"q": "x"}
    assert answer.choices[0].finish_reason == "tool_calls"


def test_the_loop_is_bounded_by_max_rounds(setup: Setup) -> None:
    router, upstream, api_key, data, _ = setup

    def always_a_tool(body: dict[str, Any]) -> str | list[tuple[str, dict[str, Any]]]:
        if body.get("tool_choice") == "none":
            return "I will stop here."
        return [("test__echo", {"text": "again"}), ("test__echo", {"text": "and again"})]

    upstream.answer = always_a_tool
    before = len(upstream.requests)
    chat = openai.OpenAI(base_url=router.base_url + "/v1", api_key=api_key, max_retries=0, timeout=60)
    answer = chat.chat.completions.create(model="m", messages=[{"role": "user", "content": "loop forever"}])
    assert answer.choices[0].message.content.strip() == "I will stop here."  # type: ignore[union-attr]
    asked = upstream.requests[before:]
    assert len(asked) == 8  # [tools] max_rounds
    assert [r.get("tool_choice") for r in asked] == [None] * 7 + ["none"]
    assert sum(m["role"] == "tool" for m in asked[-1]["messages"]) == 14  # two calls in each of seven rounds
    assert {m["content"] for m in asked[-1]["messages"] if m["role"] == "tool"} == {"again", "and again"}

    # A forced call is the first round's: later rounds may answer (else every round would call again).
    before = len(upstream.requests)
    forced = chat.chat.completions.create(model="m", messages=[{"role": "user", "content": "loop forever"}],
                                          tool_choice={"type": "function", "function": {"name": "test__echo"}})
    assert forced.choices[0].message.content.strip() == "I will stop here."  # type: ignore[union-attr]
    assert [r.get("tool_choice") for r in upstream.requests[before:]] == [
        {"type": "function", "function": {"name": "test__echo"}}] + ["auto"] * 6 + ["none"]


def test_a_tools_worker_killed_mid_call_gives_the_model_an_error_result(setup: Setup) -> None:
    router, upstream, _, data, worker = setup
    api_key = create_key(data, "--name", "slow", "--tools", "test__slow")

    def slow_tool(body: dict[str, Any]) -> str | list[tuple[str, dict[str, Any]]]:
        results = [m for m in body["messages"] if m["role"] == "tool"]
        return f"The tool said: {results[-1]['content']}" if results else [("test__slow", {"seconds": 60})]

    upstream.answer = slow_tool
    chat = openai.OpenAI(base_url=router.base_url + "/v1", api_key=api_key, max_retries=0, timeout=60)
    killer = threading.Timer(1.5, worker.kill)
    killer.start()
    started = time.monotonic()
    answer = chat.chat.completions.create(model="m", messages=[{"role": "user", "content": "take your time"}])
    killer.join()
    text = answer.choices[0].message.content or ""
    assert "[tool error]" in text and "went away mid-call" in text, text
    assert time.monotonic() - started < 15  # not the tool's 60 s, nor the call timeout
    assert answer.choices[0].finish_reason == "stop"


def raw_stream(router: RouterProcess, path: str, api_key: str, body: dict[str, Any]) -> bytes:
    """A streaming request's whole body, bytes as sent (keep-alive comments included)."""
    request = urllib.request.Request(router.base_url + path, data=json.dumps(body).encode(), method="POST",
                                     headers={"Authorization": f"Bearer {api_key}", "Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=60) as resp:
        return resp.read()


def streamed_text(raw: bytes) -> str:
    """The text of a Chat or Anthropic SSE stream (content deltas, text deltas), joined."""
    out = []
    for line in raw.decode().splitlines():
        if line.startswith("data: {"):
            data = json.loads(line[6:])
            for choice in data.get("choices", []):
                out.append(choice.get("delta", {}).get("content") or "")
            out.append(data.get("delta", {}).get("text", "") if data.get("type") == "content_block_delta" else "")
    return "".join(out)


def test_streams_stay_alive_while_tools_run(setup: Setup) -> None:
    router, upstream, _, data, _ = setup
    api_key = create_key(data, "--name", "slow", "--tools", "test__slow")

    def slow_tool(body: dict[str, Any]) -> str | list[tuple[str, dict[str, Any]]]:
        results = [m for m in body["messages"] if m["role"] == "tool"]
        return f"The tool said: {results[-1]['content']}" if results else [("test__slow", {"seconds": 1.5})]

    upstream.answer = slow_tool
    ask = [{"role": "user", "content": "take your time"}]
    chat = raw_stream(router, "/v1/chat/completions", api_key, {"model": "m", "messages": ask, "stream": True})
    assert chat.count(b": keep-alive\n\n") >= 3  # [tools] keepalive = 0.3 s, the tool takes 1.5 s
    assert "slept 1.5" in streamed_text(chat) and chat.rstrip().endswith(b"data: [DONE]")
    messages = raw_stream(router, "/v1/messages", api_key, {"model": "m", "messages": ask, "stream": True, "max_tokens": 50})
    assert messages.count(b"event: ping") >= 4  # one after message_start, then the keep-alives
    assert "slept 1.5" in streamed_text(messages) and b"event: message_stop" in messages


def test_a_client_that_leaves_mid_call_cancels_the_call(setup: Setup) -> None:
    router, upstream, _, data, _ = setup
    api_key = create_key(data, "--name", "leaver", "--tools", "test__slow")
    upstream.answer = lambda body: [("test__slow", {"seconds": 60})]
    host, port = router.base_url.removeprefix("http://").split(":")
    body = json.dumps({"model": "m", "messages": [{"role": "user", "content": "wait"}], "stream": True}).encode()
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     + f"Authorization: Bearer {api_key}\r\nContent-Length: {len(body)}\r\n\r\n".encode() + body)
        seen = b""
        while b": keep-alive" not in seen:  # the call is running on the worker now
            seen += sock.recv(65536)
        assert next(w for w in router.health()["tools_workers"])["calls_in_flight"] == 1
    started = time.monotonic()
    while next(w for w in router.health()["tools_workers"])["calls_in_flight"]:
        assert time.monotonic() - started < 5, "the call kept running after its client left"
        time.sleep(0.05)


def test_a_mixed_round_runs_the_server_s_call_and_keeps_it_for_the_follow_up(setup: Setup) -> None:
    router, upstream, api_key, _, _ = setup

    def both(body: dict[str, Any]) -> str | list[tuple[str, dict[str, Any]]]:
        tool_messages = [m for m in body["messages"] if m["role"] == "tool"]
        if tool_messages:
            return "results: " + " and ".join(m["content"] for m in tool_messages)
        return [("lookup", {"q": "x"}), ("test__add", {"a": 1, "b": 2})]

    upstream.answer = both
    chat = openai.OpenAI(base_url=router.base_url + "/v1", api_key=api_key, max_retries=0, timeout=60)
    lookup = {"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}}
    ask: list[Any] = [{"role": "user", "content": "look it up and add"}]
    first = chat.chat.completions.create(model="m", messages=ask, tools=[lookup])  # type: ignore[list-item]
    (call,) = first.choices[0].message.tool_calls or []  # only the client's own call
    assert call.function.name == "lookup" and first.choices[0].finish_reason == "tool_calls"

    follow_up = [*ask, first.choices[0].message.model_dump(exclude_none=True),
                 {"role": "tool", "tool_call_id": call.id, "content": "found x"}]
    second = chat.chat.completions.create(model="m", messages=follow_up, tools=[lookup])  # type: ignore[arg-type]
    assert second.choices[0].message.content.strip() == "results: 3 and found x"  # type: ignore[union-attr]
    sent = upstream.requests[-1]["messages"]
    assert [c["function"]["name"] for c in sent[1]["tool_calls"]] == ["lookup", "test__add"]  # the model sees both calls


def test_each_dialect_s_own_mcp_shape_names_the_server(setup: Setup) -> None:
    router, upstream, _, data, _ = setup
    api_key = create_key(data, "--name", "explicit", "--tools", "test__*")  # may use all 36; the requests name one
    chat = openai.OpenAI(base_url=router.base_url + "/v1", api_key=api_key, max_retries=0, timeout=60)
    claude = anthropic.Anthropic(base_url=router.base_url + "/api/anthropic", api_key=api_key, max_retries=0, timeout=60)
    mcp = {"type": "mcp", "server_label": "test", "require_approval": "never", "allowed_tools": ["add"]}

    response = chat.responses.create(model="m", input="What is 20 + 22?", tools=[mcp])  # type: ignore[list-item]
    assert response.output_text.strip() == "The sum is 42"
    assert "test__add" in [t["function"]["name"] for t in upstream.requests[-2]["tools"]]

    answer = chat.chat.completions.create(model="m", messages=[{"role": "user", "content": "What is 20 + 22?"}],
                                          tools=[mcp])  # type: ignore[list-item]
    assert answer.choices[0].message.content.strip() == "The sum is 42"  # type: ignore[union-attr]

    message = claude.messages.create(model="m", max_tokens=100, messages=[{"role": "user", "content": "What is 20 + 22?"}],
                                     extra_body={"mcp_servers": [{"type": "url", "name": "test"}]})
    assert message.content[-1].text.strip() == "The sum is 42"  # type: ignore[union-attr]

    with pytest.raises(openai.BadRequestError) as refused:
        chat.responses.create(model="m", input="hi", tools=[{**mcp, "server_url": "https://example.com/mcp"}])  # type: ignore[list-item]
    assert "server_url" in str(refused.value)
    with pytest.raises(openai.BadRequestError) as unknown:
        chat.responses.create(model="m", input="hi", tools=[{**mcp, "server_label": "nowhere"}])  # type: ignore[list-item]
    assert "no MCP server 'nowhere'" in str(unknown.value)


def test_a_client_that_names_the_server_sees_each_call_in_its_dialect_and_sends_it_back(setup: Setup) -> None:
    """Responses: ``mcp_list_tools`` and ``mcp_call`` items (JSON, SSE and WebSocket mode), sent back as input or
    by previous_response_id; Anthropic: ``mcp_tool_use`` + ``mcp_tool_result`` blocks (JSON and SSE, through the
    SDK's beta client), sent back in the assistant turn.  The model's next request holds its call and the result."""
    router, upstream, _, data, _ = setup
    api_key = create_key(data, "--name", "shown", "--tools", "test__*")
    chat = openai.OpenAI(base_url=router.base_url + "/v1", api_key=api_key, max_retries=0, timeout=60)
    claude = anthropic.Anthropic(base_url=router.base_url + "/api/anthropic", api_key=api_key, max_retries=0, timeout=60)
    mcp: Any = {"type": "mcp", "server_label": "test", "require_approval": "never", "allowed_tools": ["add", "echo"]}

    def saw_its_call(messages: list[dict[str, Any]]) -> None:
        calls = [c["function"] for m in messages for c in m.get("tool_calls") or []]
        assert {"name": "test__add", "arguments": '{"a": 20, "b": 22}'} in calls
        assert any(m["role"] == "tool" and m["content"] == "42" for m in messages)

    response = chat.responses.create(model="m", input="What is 20 + 22?", tools=[mcp])
    assert [item.type for item in response.output] == ["mcp_list_tools", "mcp_call", "message"]
    listing, call, _ = response.output
    offered = [t["function"]["name"] for t in upstream.requests[-2]["tools"]]  # inject = "policy": all the key's tools
    assert listing.server_label == "test" and {"add", "echo"} <= {t.name for t in listing.tools}  # type: ignore[union-attr]
    assert ["test__" + t.name for t in listing.tools] == offered  # type: ignore[union-attr]  # what the model was offered
    assert (call.name, call.server_label, call.output, call.status) == ("add", "test", "42", "completed")  # type: ignore[union-attr]
    assert json.loads(call.arguments) == {"a": 20, "b": 22}  # type: ignore[union-attr]
    assert response.output_text.strip() == "The sum is 42"

    again = chat.responses.create(model="m", tools=[mcp], input=[
        {"role": "user", "content": "What is 20 + 22?"}, *[item.model_dump(exclude_none=True) for item in response.output],
        {"role": "user", "content": "Say it again."}])
    assert again.output_text.strip() == "The sum is 42"
    saw_its_call(upstream.requests[-1]["messages"])
    chained = chat.responses.create(model="m", tools=[mcp], previous_response_id=response.id, input="Say it again.")
    assert chained.output_text.strip() == "The sum is 42"
    saw_its_call(upstream.requests[-1]["messages"])

    kinds = [event.type for event in chat.responses.create(model="m", input="What is 20 + 22?", tools=[mcp], stream=True)]
    assert kinds.index("response.mcp_list_tools.completed") < kinds.index("response.mcp_call.in_progress") \
        < kinds.index("response.mcp_call.completed") < kinds.index("response.output_text.delta")
    assert kinds[-1] == "response.completed"

    async def over_websocket() -> list[dict[str, Any]]:
        ws = await connect(router.base_url.replace("http", "ws") + "/v1/responses", headers=[("Authorization", f"Bearer {api_key}")])
        await ws.send_text(json.dumps({"type": "response.create", "model": "m", "input": "What is 20 + 22?", "tools": [mcp]}))
        frames = [json.loads(await ws.receive_text())]
        while frames[-1]["type"] not in ("response.completed", "response.failed", "error"):
            frames.append(json.loads(await ws.receive_text()))
        await ws.aclose()
        return frames

    frames = trio.run(over_websocket)
    assert [i["type"] for i in frames[-1]["response"]["output"]] == ["mcp_list_tools", "mcp_call", "message"]
    assert frames[-1]["response"]["output"][1]["output"] == "42"

    ask = [{"role": "user", "content": "What is 20 + 22?"}]
    servers: Any = [{"type": "url", "name": "test"}]
    message = claude.beta.messages.create(model="m", max_tokens=100, messages=ask, mcp_servers=servers)  # type: ignore[arg-type]
    assert [b.type for b in message.content] == ["mcp_tool_use", "mcp_tool_result", "text"]
    use, result, text = message.content
    assert (use.name, use.server_name, use.input) == ("add", "test", {"a": 20, "b": 22})  # type: ignore[union-attr]
    assert result.tool_use_id == use.id and result.content[0].text == "42" and not result.is_error  # type: ignore[union-attr]
    assert text.text.strip() == "The sum is 42"  # type: ignore[union-attr]
    with claude.beta.messages.stream(model="m", max_tokens=100, messages=ask, mcp_servers=servers) as stream:  # type: ignore[arg-type]
        streamed = stream.get_final_message()
    def blocks(m: Any) -> list[dict[str, Any]]:  # the call ids are the upstream's, new each request
        return [{k: v for k, v in b.model_dump().items() if k not in ("id", "tool_use_id")} for b in m.content]

    assert blocks(streamed) == blocks(message) and streamed.content[1].tool_use_id == streamed.content[0].id  # type: ignore[union-attr]

    follow_up = [*ask, {"role": "assistant", "content": [b.model_dump(exclude_none=True) for b in message.content]},
                 {"role": "user", "content": "Say it again."}]
    second = claude.beta.messages.create(model="m", max_tokens=100, messages=follow_up, mcp_servers=servers)  # type: ignore[arg-type]
    assert second.content[-1].text.strip() == "The sum is 42"  # type: ignore[union-attr]
    saw_its_call(upstream.requests[-1]["messages"])
