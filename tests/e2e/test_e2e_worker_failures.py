"""Remote workers going wrong, with real processes on loopback: SIGKILL mid-stream
and between requests, SIGSTOP (missed heartbeats), a revoked key, a router
restart.  Every request ends — served, or with a clean error — and none hangs."""

from __future__ import annotations

import json
import os
import signal
import ssl
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import openai
import pytest

from tests.support.router_process import RouterProcess, pid_alive
from tests.support.worker_process import (
    CANNOT_REACH_EXIT,
    REFUSED,
    create_worker_key,
    reap_all,
    revoke_key,
    start_worker,
    start_worker_router,
    unused_port_outside_the_ephemeral_range,
    wait_until,
    worker_health,
    worker_key_id,
    ws_url,
)

NEVER_STOP = {"0": -100, "2": -100}
# One slot and one thread each: concurrent requests must spread over both workers
# (whatever the scheduler's policy), and two llama-servers spinning two threads each
# on a 2-core machine crawl.
ONE_THREAD = ("--parallel", "1", "--llama-arg=--threads", "--llama-arg=1")


@pytest.fixture(autouse=True)
def _no_process_left_behind():  # type: ignore[no-untyped-def]
    yield
    reap_all()


def stream_in_thread(router: RouterProcess, out: list[str], max_tokens: int = 2000) -> threading.Thread:
    body = json.dumps({"model": "auto", "messages": [{"role": "user", "content": "Tell me a long story."}],
                       "max_tokens": max_tokens, "stream": True, "logit_bias": NEVER_STOP}).encode()

    def run() -> None:
        req = urllib.request.Request(router.base_url + "/v1/chat/completions", data=body,
                                     headers={"Authorization": f"Bearer {router.key}"})
        try:
            with urllib.request.urlopen(req, timeout=60) as resp:
                for line in resp:
                    if line.startswith(b"data:"):
                        out.append(line[5:].decode().strip())
        except Exception as exc:  # the test looks at what arrived
            out.append(f"EXC {exc!r}")

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def assert_clean_in_stream_error(out: list[str], words: str) -> None:
    assert out and not out[-1].startswith("EXC"), out[-3:]
    assert words in json.loads(out[-1])["error"]["message"]
    assert "[DONE]" not in out and not any('"finish_reason":"stop"' in d or '"finish_reason":"length"' in d for d in out)


def ask(router: RouterProcess) -> str:
    client = openai.OpenAI(base_url=router.base_url + "/api/openai", api_key=router.key, max_retries=0, timeout=30)
    return client.chat.completions.create(model="auto", messages=[{"role": "user", "content": "Hi"}], max_tokens=8).model


def test_sigkill_mid_stream_and_between_requests_then_the_restarted_worker_registers_again(tmp_path: Path) -> None:
    router = start_worker_router(tmp_path / "router")
    key = create_worker_key(tmp_path / "router" / "data", "w1")
    worker = start_worker(router, key, tmp_path, "w1")
    out: list[str] = []
    thread = stream_in_thread(router, out)
    wait_until(lambda: len(out) >= 5)
    worker.kill()
    thread.join(10)
    assert not thread.is_alive(), "the stream hung after its worker died"
    assert_clean_in_stream_error(out, "worker 'w1' was lost")

    # Between requests: a clean 503 at once, naming the reason — not a hang, not a 404.
    began = time.monotonic()
    with pytest.raises(openai.APIStatusError) as caught:
        ask(router)
    assert caught.value.status_code == 503 and "disconnected" in caught.value.message
    assert time.monotonic() - began < 5
    lost = worker_health(router, "w1")
    assert lost["state"] == "unavailable" and not lost["connected"] and lost["jobs_lost"] == 1

    again = start_worker(router, key, tmp_path, "w1")
    (back,) = router.health()["providers"]  # it replaced its lingering entry
    assert back["name"] == "w1" and back["state"] == "ready" and back["address"] != lost["address"]
    assert ask(router) == "SmolLM2-135M-Instruct"
    assert again.stop() == 0 and router.stop() == 0


def test_two_workers_share_the_load_and_one_crash_loses_nothing(tmp_path: Path) -> None:
    router = start_worker_router(tmp_path / "router")
    data = tmp_path / "router" / "data"
    a = start_worker(router, create_worker_key(data, "a"), tmp_path, "a", *ONE_THREAD)
    b = start_worker(router, create_worker_key(data, "b"), tmp_path, "b", *ONE_THREAD)
    outs: list[list[str]] = [[] for _ in range(4)]
    threads = [stream_in_thread(router, out, max_tokens=24) for out in outs]
    for t in threads:
        t.join(60)
    assert all(out[-1] == "[DONE]" for out in outs), [out[-2:] for out in outs]
    started = {name: worker_health(router, name)["jobs_started"] for name in ("a", "b")}
    assert started["a"] >= 1 and started["b"] >= 1 and sum(started.values()) == 4, started

    a.kill()  # between requests: the other worker serves, nobody sees an error
    wait_until(lambda: not worker_health(router, "a")["connected"], timeout=5)
    for _ in range(3):
        assert ask(router) == "SmolLM2-135M-Instruct"

    a = start_worker(router, create_worker_key(data, "a2"), tmp_path, "a", *ONE_THREAD)
    long_outs: list[list[str]] = [[], []]
    threads = [stream_in_thread(router, out) for out in long_outs]
    wait_until(lambda: all(len(out) >= 5 for out in long_outs))
    assert {worker_health(router, n)["slots_used"] for n in ("a", "b")} == {1}
    b.kill()  # mid-stream: b's stream ends with a clean error; a's goes on
    wait_until(lambda: any(o and o[-1].startswith("{\"error\"") for o in long_outs), timeout=10)
    on_b, on_a = sorted(long_outs, key=lambda o: not o[-1].startswith("{\"error\""))
    assert_clean_in_stream_error(on_b, "worker 'b' was lost")
    count = len(on_a)
    wait_until(lambda: len(on_a) > count + 5)  # still streaming from a
    assert a.stop() == 0  # a drains for its --drain-timeout of 1 s, then its long stream is cut too; nothing hangs
    for t in threads:
        t.join(15)
        assert not t.is_alive()
    assert on_a[-1].startswith("{\"error\"") and "[DONE]" not in on_a
    assert router.stop() == 0


def test_a_drained_worker_and_a_crashed_one_are_told_apart_and_a_crash_takes_its_llama_server(tmp_path: Path) -> None:
    router = start_worker_router(tmp_path / "router")
    data = tmp_path / "router" / "data"
    polite = start_worker(router, create_worker_key(data, "polite"), tmp_path, "polite")
    crashing = start_worker(router, create_worker_key(data, "crashing"), tmp_path, "crashing")
    crashing_llama, _ = crashing.llama()
    assert polite.stop() == 0
    assert wait_until(lambda: not worker_health(router, "polite")["connected"], timeout=10)
    assert worker_health(router, "polite")["disconnect_reason"].startswith("drained")
    crashing.process.kill()
    assert wait_until(lambda: not worker_health(router, "crashing")["connected"], timeout=20)
    assert worker_health(router, "crashing")["disconnect_reason"].startswith("lost")
    assert wait_until(lambda: not pid_alive(crashing_llama), timeout=5), "llama-server outlived its SIGKILLed worker"
    with pytest.raises(openai.APIStatusError) as caught:
        ask(router)
    assert caught.value.status_code == 503 and caught.value.response.headers["retry-after"] == "5"
    assert router.stop() == 0


def test_llama_args_as_written_and_a_share_of_the_cores_beside_another_llama_server(tmp_path: Path) -> None:
    router = start_worker_router(tmp_path / "router")
    data = tmp_path / "router" / "data"
    first = start_worker(router, create_worker_key(data, "first"), tmp_path, "first", "--llama-arg", "--threads 1")
    assert threads_of(first.llama()[0]) == "1"  # one argument, split as a shell would
    second = start_worker(router, create_worker_key(data, "second"), tmp_path, "second")
    assert threads_of(second.llama()[0]) == str(max(1, (os.cpu_count() or 1) // 2))
    assert ask(router) == "SmolLM2-135M-Instruct"
    assert first.stop() == 0 and second.stop() == 0 and router.stop() == 0


def threads_of(pid: int) -> str | None:
    argv = Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")
    return argv[argv.index("--threads") + 1] if "--threads" in argv else None


def test_sigterm_drains_the_worker_running_jobs_finish_new_ones_go_elsewhere(tmp_path: Path) -> None:
    router = start_worker_router(tmp_path / "router")
    worker = start_worker(router, create_worker_key(tmp_path / "router" / "data", "polite"), tmp_path, "polite",
                          "--drain-timeout", "60")
    out: list[str] = []
    # Long enough (about 5 s here) to be still running when the asserts below are done.
    thread = stream_in_thread(router, out, max_tokens=300)
    wait_until(lambda: len(out) >= 5)
    worker.process.send_signal(signal.SIGTERM)
    assert wait_until(lambda: worker_health(router, "polite")["state"] == "stopping", timeout=10)
    with pytest.raises(openai.APIStatusError) as caught:  # no new job for a worker that is leaving
        ask(router)
    assert caught.value.status_code == 503 and "stopping" in caught.value.message
    thread.join(60)
    assert out[-1] == "[DONE]" and not any(d.startswith('{"error"') for d in out), "".join(worker.output)  # the running job finished
    assert worker.process.wait(10) == 0
    assert router.stop() == 0


def test_a_revoked_key_drops_the_connected_worker_and_is_refused_after(tmp_path: Path) -> None:
    router = start_worker_router(tmp_path / "router")
    data = tmp_path / "router" / "data"
    key = create_worker_key(data, "doomed")
    worker = start_worker(router, key, tmp_path, "doomed")
    llama_pid, _ = worker.llama()
    revoke_key(data, worker_key_id(data, "doomed"))
    assert worker.process.wait(10) == REFUSED
    worker.wait_for("the router closed the connection: worker key revoked")
    assert worker_health(router, "doomed")["disconnect_reason"] == "worker key revoked"
    assert not pid_alive(llama_pid)  # a refused worker stops its llama-server on the way out

    again = start_worker(router, key, tmp_path, "doomed", wait=False)
    assert again.process.wait(60) == REFUSED
    again.wait_for("refused this worker's key: Invalid worker key: this key has been revoked")
    assert router.stop() == 0


def test_a_frozen_worker_misses_heartbeats_is_dropped_and_comes_back(tmp_path: Path) -> None:
    router = start_worker_router(tmp_path / "router", heartbeat_interval=0.5, heartbeat_timeout=2.5)
    worker = start_worker(router, create_worker_key(tmp_path / "router" / "data", "sleepy"), tmp_path, "sleepy")
    out: list[str] = []
    thread = stream_in_thread(router, out)
    wait_until(lambda: len(out) >= 5)
    worker.process.send_signal(signal.SIGSTOP)  # the TCP connection stays open: only heartbeats can tell
    llama_pid, _ = worker.llama()
    os.kill(llama_pid, signal.SIGSTOP)
    try:
        began = time.monotonic()
        thread.join(10)
        assert not thread.is_alive()
        assert time.monotonic() - began < 2.5 + 0.5 + 3  # timeout + one interval + slack
        assert_clean_in_stream_error(out, "heartbeat timeout")
    finally:
        os.kill(llama_pid, signal.SIGCONT)
        worker.process.send_signal(signal.SIGCONT)
    mark = len(worker.output)
    worker.wait_for(r"registered with .* as sleepy", timeout=30, after=mark)
    assert wait_until(lambda: worker_health(router, "sleepy")["state"] == "ready", timeout=5)
    assert ask(router) == "SmolLM2-135M-Instruct"
    assert worker.stop() == 0 and router.stop() == 0


def test_router_restart_the_worker_reconnects_and_shutdown_does_not_wait_on_it(tmp_path: Path) -> None:
    port = unused_port_outside_the_ephemeral_range()
    router = start_worker_router(tmp_path / "router", port, graceful_timeout=30)
    worker = start_worker(router, create_worker_key(tmp_path / "router" / "data", "loyal"), tmp_path, "loyal")
    began = time.monotonic()
    assert router.stop() == 0
    assert time.monotonic() - began < 15, "an idle worker connection must not hold shutdown for graceful_timeout"
    mark = len(worker.output)
    worker.wait_for("reconnecting in", timeout=10, after=mark)
    api_key = router.key
    router = start_worker_router(tmp_path / "router", port, graceful_timeout=30)
    router.key = api_key  # printed on the first start only
    worker.wait_for(r"registered with .* as loyal", timeout=30, after=mark)
    assert ask(router) == "SmolLM2-135M-Instruct"
    llama_pid, _ = worker.llama()
    assert worker.stop() == 0 and not pid_alive(llama_pid)
    assert router.stop() == 0


def test_wss_with_the_routers_self_signed_certificate(tmp_path: Path) -> None:
    router = start_worker_router(tmp_path / "router", 0, "--tls-self-signed")
    assert router.base_url.startswith("https://")
    key = create_worker_key(tmp_path / "router" / "data", "tls")
    # Retrying cannot mend these: a few attempts, then one clear line and an exit status.
    untrusting = start_worker(router, key, tmp_path, "untrusting", wait=False)
    assert untrusting.process.wait(60) == CANNOT_REACH_EXIT
    untrusting.wait_for(r"TLS certificate does not verify: give --ca-bundle .*CERTIFICATE_VERIFY_FAILED")
    plain = start_worker(router, key, tmp_path, "plain", wait=False, url=ws_url(router).replace("wss://", "ws://"))
    assert plain.process.wait(60) == CANNOT_REACH_EXIT
    plain.wait_for("the router speaks TLS on this port: use wss:// instead of ws://")
    cert = tmp_path / "router" / "data" / "tls" / "cert.pem"
    worker = start_worker(router, key, tmp_path, "tls", "--ca-bundle", str(cert))
    assert worker.wait_for(r"registered with (wss://\S+)").group(1).startswith("wss://127.0.0.1:")
    pinned = ssl.create_default_context(cafile=str(cert))
    body = json.dumps({"model": "auto", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 8}).encode()
    req = urllib.request.Request(router.base_url + "/v1/chat/completions", data=body,
                                 headers={"Authorization": f"Bearer {router.key}"})
    with urllib.request.urlopen(req, context=pinned, timeout=30) as resp:
        assert json.loads(resp.read())["model"] == "SmolLM2-135M-Instruct"
    assert worker.stop() == 0 and router.stop() == 0
