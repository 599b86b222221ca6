"""The scheduler with real processes: `python -m auxot serve` supervising real
llama-server children (SmolLM2), killed with SIGKILL between and during
requests; a broken upstream failing over to the next tier; the queue's
deadline; lazy start and idle unload; /health, /vhealth and /metrics."""

from __future__ import annotations

import http.server
import json
import os
import signal
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Iterator

import pytest

from tests.support.router_process import RouterProcess, pid_alive, start_router

NEVER_STOP = {"0": -100, "2": -100}  # SmolLM2's end tokens: generation runs to max_tokens


def llama(name: str, **extra: Any) -> str:
    lines = ["[[providers]]", 'kind = "llamacpp"', f'name = "{name}"', "parallel = 1", "default_max_tokens = 32"]
    lines += [f"{k} = {json.dumps(v)}" for k, v in extra.items()]
    return "\n".join(lines) + "\n"


def router_with(tmp_path: Path, toml: str) -> RouterProcess:
    config = tmp_path / "auxot.toml"
    config.write_text(toml)
    return start_router(tmp_path / "data", "--config", str(config))


def post(router: RouterProcess, body: dict[str, Any], timeout: float = 60) -> tuple[int, dict[str, str], bytes]:
    req = urllib.request.Request(router.base_url + "/v1/chat/completions", data=json.dumps(body).encode(),
                                 headers={"Authorization": f"Bearer {router.key}", "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, {k.lower(): v for k, v in resp.headers.items()}, resp.read()
    except urllib.error.HTTPError as err:
        return err.code, {k.lower(): v for k, v in err.headers.items()}, err.read()


def hello(max_tokens: int = 5, **extra: Any) -> dict[str, Any]:
    return {"model": "auto", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": max_tokens, **extra}


def provider(router: RouterProcess, name: str) -> dict[str, Any]:
    return next(p for p in router.health()["providers"] if p["name"] == name)


def wait_for(predicate: Any, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError("condition not reached in time")


@pytest.fixture
def two_llamas(tmp_path: Path) -> Iterator[RouterProcess]:
    router = router_with(tmp_path, llama("local-a", order=0) + llama("local-b", order=1))
    seen: set[int] = set()
    yield router
    seen.update(p["pid"] for p in router.health()["providers"] if p.get("pid"))
    assert router.stop() == 0
    assert not any(pid_alive(pid) for pid in seen), "a llama-server outlived the router"


def test_two_local_llama_servers_share_the_cores(two_llamas: RouterProcess) -> None:
    """Each would take every core by default, and their spinning threads starve
    each other: each gets its share instead."""
    share = str(max(1, (os.cpu_count() or 1) // 2))
    for p in two_llamas.health()["providers"]:
        argv = Path(f"/proc/{p['pid']}/cmdline").read_bytes().decode().split("\0")
        assert argv[argv.index("--threads") + 1] == share


def test_sigkill_between_requests_is_invisible_to_clients(two_llamas: RouterProcess) -> None:
    router = two_llamas
    victim = provider(router, "local-a")["pid"]
    os.kill(victim, signal.SIGKILL)
    for _ in range(4):
        status, headers, body = post(router, hello())
        assert status == 200, body
        assert json.loads(body)["choices"][0]["message"]["content"] is not None
    wait_for(lambda: provider(router, "local-a")["state"] == "ready" and provider(router, "local-a")["pid"] != victim)
    assert provider(router, "local-a")["restarts"] == 1 and not pid_alive(victim)
    status, headers, _ = post(router, hello())
    assert status == 200 and headers["x-auxot-provider"] == "local-a"  # back in first place


def test_sigkill_mid_stream_ends_that_stream_with_an_error_and_others_carry_on(two_llamas: RouterProcess) -> None:
    router = two_llamas
    req = urllib.request.Request(router.base_url + "/v1/chat/completions",
                                 data=json.dumps(hello(3000, stream=True, logit_bias=NEVER_STOP)).encode(),
                                 headers={"Authorization": f"Bearer {router.key}", "Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=60) as resp:
        serving = resp.headers["x-auxot-provider"]
        lines = [resp.readline() for _ in range(6)]
        assert all(line.startswith(b"data: {") or line == b"\n" for line in lines)
        os.kill(provider(router, serving)["pid"], signal.SIGKILL)
        rest = resp.read().decode()
    events = [line[6:] for line in rest.splitlines() if line.startswith("data: ")]
    assert "[DONE]" not in events, "a cut stream must not end like a finished one"
    last = json.loads(events[-1])
    assert "error" in last and "mid-stream" in last["error"]["message"]
    assert not any(json.loads(e)["choices"][0].get("finish_reason") for e in events[:-1] if '"choices"' in e)
    status, headers, _ = post(router, hello())  # the other provider serves meanwhile
    assert status == 200
    wait_for(lambda: provider(router, serving)["state"] == "ready")


class BrokenUpstream(http.server.BaseHTTPRequestHandler):
    """TEST DOUBLE of a cloud upstream that fails: every request gets HTTP 500."""

    def do_POST(self) -> None:  # noqa: N802
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        body = b'{"error":{"message":"upstream exploded"}}'
        self.send_response(500)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


def test_a_provider_answering_500_fails_over_to_the_next_tier(tmp_path: Path) -> None:
    upstream = http.server.ThreadingHTTPServer(("127.0.0.1", 0), BrokenUpstream)
    threading.Thread(target=upstream.serve_forever, daemon=True).start()
    try:
        broken = (f'[[providers]]\nkind = "openai-compatible"\nname = "broken"\ntier = "gpu"\n'
                  f'base_url = "http://127.0.0.1:{upstream.server_port}/v1"\nmodels = ["shared-model"]\n')
        router = router_with(tmp_path, broken + llama("local", tier="cloud", aliases=["shared-model"])
                             + "[scheduler]\nfailure_backoff = 60.0\n")
        try:
            status, headers, body = post(router, {**hello(), "model": "shared-model"})
            assert status == 200 and headers["x-auxot-provider"] == "local" and headers["x-auxot-attempts"] == "2"
            facts = provider(router, "broken")
            assert not facts["healthy"] and facts["failed_over"] == 1 and "upstream exploded" in facts["recent_errors"][0]["message"]
            status, headers, _ = post(router, hello())  # broken sits out: straight to local
            assert status == 200 and "x-auxot-attempts" not in headers
        finally:
            assert router.stop() == 0
    finally:
        upstream.shutdown()
        upstream.server_close()


def test_all_slots_busy_waits_then_503_and_a_full_queue_429(tmp_path: Path) -> None:
    router = router_with(tmp_path, llama("local") + "[scheduler]\nqueue_timeout = 8.0\nqueue_size = 1\n")
    try:
        holder = urllib.request.urlopen(urllib.request.Request(
            router.base_url + "/v1/chat/completions", data=json.dumps(hello(3000, stream=True, logit_bias=NEVER_STOP)).encode(),
            headers={"Authorization": f"Bearer {router.key}"}), timeout=60)
        holder.readline()  # the only slot is taken
        outcome: dict[str, Any] = {}

        def waiter() -> None:
            began = time.monotonic()
            outcome["answer"] = post(router, hello())
            outcome["waited"] = time.monotonic() - began

        thread = threading.Thread(target=waiter)
        thread.start()
        wait_for(lambda: router.health()["queue_depth"] == 1, timeout=7)  # well within its 8 s wait
        status, headers, body = post(router, hello())  # the queue (size 1) is full
        assert status == 429 and int(headers["retry-after"]) >= 1
        assert "already waiting" in json.loads(body)["error"]["message"]
        thread.join(30)
        status, headers, body = outcome["answer"]
        assert status == 503 and int(headers["retry-after"]) >= 1 and 7.8 <= outcome["waited"] < 20
        assert "waited 8s for a slot" in json.loads(body)["error"]["message"]
        holder.close()
        wait_for(lambda: provider(router, "local")["slots_used"] == 0)
        assert post(router, hello())[0] == 200
    finally:
        assert router.stop() == 0


def test_lazy_start_and_idle_unload(tmp_path: Path) -> None:
    router = router_with(tmp_path, llama("lazy", lazy=True, idle_ttl=6.0))
    try:
        facts = provider(router, "lazy")
        assert facts["state"] == "stopped" and facts["pid"] is None and router.health()["status"] == "ok"
        status, headers, _ = post(router, hello())
        assert status == 200 and headers["x-auxot-provider"] == "lazy"
        pid = provider(router, "lazy")["pid"]
        assert pid and pid_alive(pid)
        wait_for(lambda: provider(router, "lazy")["state"] == "stopped", timeout=20)
        assert not pid_alive(pid)
        assert post(router, hello())[0] == 200  # started again on demand
    finally:
        assert router.stop() == 0


def test_health_vhealth_and_metrics(tmp_path: Path) -> None:
    router = router_with(tmp_path, llama("local"))
    try:
        assert post(router, hello())[0] == 200
        assert post(router, {**hello(), "model": "nope"})[0] == 404
        health = router.health()
        assert health["status"] == "ok" and health["queue_depth"] == 0
        (p,) = health["providers"]
        assert (p["tier"], p["state"], p["slots_used"], p["slots_total"], p["served"]) == ("gpu", "ready", 0, 1, 1)
        assert p["accelerator"]["kind"] in ("cpu", "cuda")
        # Which build runs, and what it offloaded by its own log (a CPU build offloads nothing, and says nothing).
        assert p["binary"]["build"] == ("cuda" if p["accelerator"]["kind"] == "cuda" else "cpu")
        assert p["layers_offloaded"] == "0" or p["accelerator"]["kind"] == "cuda"
        with urllib.request.urlopen(router.base_url + "/vhealth", timeout=5) as resp:
            page = resp.read().decode()
            assert resp.headers["Content-Type"].startswith("text/html")
        assert "auxot is serving" in page and "local" in page and "SmolLM2-135M-Instruct" not in page  # details need a key
        detailed = urllib.request.Request(router.base_url + "/vhealth", headers={"Authorization": f"Bearer {router.key}"})
        with urllib.request.urlopen(detailed, timeout=5) as resp:
            assert "SmolLM2-135M-Instruct" in resp.read().decode()
        with urllib.request.urlopen(router.base_url + "/metrics", timeout=5) as resp:
            metrics = resp.read().decode()
        assert 'auxot_requests_total{endpoint="openai.chat_completions",status="200",provider="local"} 1' in metrics
        assert 'auxot_requests_total{endpoint="openai.chat_completions",status="404",provider="none"} 1' in metrics
        assert 'auxot_time_to_first_token_seconds_count{endpoint="openai.chat_completions",provider="local"} 1' in metrics
        assert 'auxot_tokens_total{direction="out",provider="local"}' in metrics
        assert 'auxot_provider_slots{provider="local",state="total"} 1' in metrics and "auxot_queue_depth 0" in metrics
    finally:
        assert router.stop() == 0
