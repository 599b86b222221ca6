"""A router with no GPU of its own and a remote worker (``python -m auxot worker``,
a real subprocess with the real llama-server and SmolLM2) connected over
WebSocket on loopback, driven by the real openai and anthropic SDKs."""

from __future__ import annotations

import json
import time
import urllib.request
from pathlib import Path

import anthropic
import openai
import pytest
import trio

from auxot.errors import WebSocketRejected
from auxot.http import websocket
from tests.support.router_process import RouterProcess, pid_alive
from tests.support.worker_process import (
    WORKER_LLAMA_KEY,
    WorkerProcess,
    create_worker_key,
    reap_all,
    start_worker,
    start_worker_router,
    wait_until,
    worker_health,
    ws_url,
)

MODEL = "SmolLM2-135M-Instruct"
NEVER_STOP = {"0": -100, "2": -100}  # SmolLM2's end tokens banned: generation runs to max_tokens


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    directory = tmp_path_factory.mktemp("fleet")
    router = start_worker_router(directory / "router")
    key = create_worker_key(directory / "router" / "data", "gpu-box")
    try:
        worker = start_worker(router, key, directory, "gpu-box")
        yield router, worker
        llama_pid, _ = worker.llama()
        stopped = worker.stop(), router.stop()
    finally:
        reap_all()
    assert stopped == (0, 0)  # SIGTERM: the worker stops its llama-server and exits cleanly
    assert not pid_alive(llama_pid), "llama-server outlived its worker"


@pytest.fixture
def router(fleet: tuple[RouterProcess, WorkerProcess]) -> RouterProcess:
    return fleet[0]


@pytest.fixture
def worker(fleet: tuple[RouterProcess, WorkerProcess]) -> WorkerProcess:
    return fleet[1]


def test_health_lists_the_worker(router: RouterProcess) -> None:
    health = router.health()
    assert health["status"] == "ok"
    (w,) = health["providers"]
    assert w["name"] == "gpu-box" and w["kind"] == "worker" and w["tier"] == "gpu" and w["state"] == "ready"
    assert w["models"] == [MODEL, "claude-*"] and w["slots_total"] == 2 and w["ctx_size"] == 65536
    assert w["address"].startswith("127.0.0.1:") and w["version"] and w["protocol"] == 1
    assert w["last_heartbeat_s"] < 10 and w["accelerator"]["kind"] in ("cpu", "cuda")
    assert w["facts"]["model_file"].endswith(".gguf") and w["facts"]["ctx_per_slot"]


def test_openai_sdk_through_the_worker(router: RouterProcess) -> None:
    client = openai.OpenAI(base_url=router.base_url + "/api/openai", api_key=router.key, max_retries=0, timeout=60)
    assert [m.id for m in client.models.list().data] == ["auto", MODEL]
    r = client.chat.completions.create(model="auto", messages=[{"role": "user", "content": "Hello"}], max_tokens=16)
    assert r.model == MODEL and r.choices[0].message.content
    assert r.usage is not None and 0 < r.usage.completion_tokens <= 16
    chunks = list(client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "Count to five."}], max_tokens=16, stream=True,
        stream_options={"include_usage": True},
    ))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text.strip() and chunks[-1].usage is not None and chunks[-1].usage.completion_tokens > 0
    # Token log probabilities cross the worker wire (the worker says it can give them).
    lp = client.chat.completions.create(model="auto", messages=[{"role": "user", "content": "Hi"}], max_tokens=4, logprobs=True,
                                        top_logprobs=1)
    tokens = lp.choices[0].logprobs.content
    assert tokens and "".join(t.token for t in tokens) == lp.choices[0].message.content and len(tokens[0].top_logprobs) == 1


def test_anthropic_sdk_through_the_worker(router: RouterProcess) -> None:
    client = anthropic.Anthropic(base_url=router.base_url + "/api/anthropic", api_key=router.key, max_retries=0, timeout=60)
    m = client.messages.create(model="auto", max_tokens=16, messages=[{"role": "user", "content": "Hello"}])
    assert m.model == MODEL and m.content[0].type == "text" and m.content[0].text
    assert m.stop_reason in ("end_turn", "max_tokens") and m.usage.output_tokens > 0
    with client.messages.stream(model=MODEL, max_tokens=16, messages=[{"role": "user", "content": "Hi"}]) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text and final.content[0].text == text


def test_count_tokens_is_counted_by_the_workers_llama_server(router: RouterProcess) -> None:
    client = anthropic.Anthropic(base_url=router.base_url + "/api/anthropic", api_key=router.key, max_retries=0, timeout=60)
    short = client.messages.count_tokens(model="auto", messages=[{"role": "user", "content": "Hi"}])
    longer = client.messages.count_tokens(model="auto", messages=[{"role": "user", "content": "Hi there, how are you today?"}])
    assert 0 < short.input_tokens < longer.input_tokens
    client.close()


def test_client_disconnect_cancels_the_job_on_the_worker(router: RouterProcess, worker: WorkerProcess) -> None:
    _, port = worker.llama()

    def processing() -> bool:
        slots = urllib.request.Request(f"http://127.0.0.1:{port}/slots", headers={"Authorization": f"Bearer {WORKER_LLAMA_KEY}"})
        with urllib.request.urlopen(slots, timeout=5) as resp:
            return any(s["is_processing"] for s in json.loads(resp.read()))

    client = openai.OpenAI(base_url=router.base_url + "/api/openai", api_key=router.key, max_retries=0, timeout=60)
    stream = client.chat.completions.create(model="auto", messages=[{"role": "user", "content": "Tell me a long story."}],
                                            max_tokens=2000, stream=True, logit_bias=NEVER_STOP)
    for seen, _ in enumerate(stream):
        if seen == 8:
            break
    assert processing(), "generation should still be running on the worker"
    stream.close()
    closed = time.monotonic()
    # Far less than the ~30 s the 2000 tokens would take; generous for a loaded machine.
    wait_until(lambda: not processing(), timeout=15)
    assert time.monotonic() - closed < 15
    assert wait_until(lambda: worker_health(router, "gpu-box")["slots_used"] == 0, timeout=15)


def test_a_worker_key_is_not_an_api_key(router: RouterProcess, worker: WorkerProcess) -> None:
    assert not any(str(a).startswith("worker.") for a in worker.process.args)  # the key went by environment, not argv
    wkey = create_worker_key(Path(_data_dir(router)), "probe")
    req = urllib.request.Request(router.base_url + "/v1/models", headers={"Authorization": f"Bearer {wkey}"})
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(req, timeout=10)
    assert caught.value.code == 401 and "worker key" in json.loads(caught.value.read())["error"]["message"]


def _data_dir(router: RouterProcess) -> str:
    args = router.process.args
    return args[args.index("--data-dir") + 1]  # type: ignore[no-any-return]


@pytest.mark.parametrize("auth, message", [
    (None, "Missing worker key"),
    ("Bearer user.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", "this is an API key"),
    ("Bearer worker.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", "no such key"),
    ("Basic abc", "Malformed Authorization header"),
])
async def test_the_upgrade_is_refused_without_a_valid_worker_key(router: RouterProcess, auth: str | None, message: str) -> None:
    with trio.fail_after(10):
        with pytest.raises(WebSocketRejected) as caught:
            await websocket.connect(ws_url(router), headers=[("Authorization", auth)] if auth else [])
    assert caught.value.status == 401 and message in json.loads(caught.value.body)["error"]["message"]
