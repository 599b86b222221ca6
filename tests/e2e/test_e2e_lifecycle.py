"""The router's life as a process: first start, graceful shutdown, no orphans."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest

from tests.support.router_process import pid_alive, start_router

NEVER_STOP = {"0": -100, "2": -100}  # SmolLM2 end tokens: generation runs to max_tokens


def stream_in_thread(base_url: str, key: str, out: list[str]) -> threading.Thread:
    body = json.dumps({"model": "auto", "messages": [{"role": "user", "content": "Tell me a long story."}],
                       "max_tokens": 3000, "stream": True, "logit_bias": NEVER_STOP}).encode()

    def run() -> None:
        req = urllib.request.Request(base_url + "/v1/chat/completions", data=body, headers={"Authorization": f"Bearer {key}"})
        try:
            with urllib.request.urlopen(req, timeout=60) as resp:
                for line in resp:
                    out.append(line.decode())
        except Exception as exc:  # the test inspects what arrived
            out.append(f"EXC {exc!r}")

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_shutdown_mid_stream_ends_cleanly_without_orphans(tmp_path: Path, sig: int) -> None:
    config = tmp_path / "auxot.toml"
    config.write_text("[server]\ngraceful_timeout = 1.5\n")
    router = start_router(tmp_path / "data", "--config", str(config))
    assert router.key
    pids = router.llama_pids()
    out: list[str] = []
    thread = stream_in_thread(router.base_url, router.key, out)
    while sum(1 for line in out if line.startswith("data:")) < 5:
        time.sleep(0.05)
    started = time.monotonic()
    assert router.stop(sig) == 0
    took = time.monotonic() - started
    thread.join(10)
    data = [line[6:].strip() for line in out if line.startswith("data:")]
    # The grace period ran out before 3000 tokens: the stream ends with an error, never a fake stop.
    assert json.loads(data[-1])["error"]["message"].startswith("the router is shutting down")
    assert "[DONE]" not in data and not any('"finish_reason":"stop"' in d for d in data)
    assert took < 1.5 + 3 + 6  # grace + llama-server's SIGTERM grace + slack
    assert not any(pid_alive(p) for p in pids)


def test_first_start_prints_a_key_once_and_restarts_reuse_the_store(tmp_path: Path) -> None:
    first = start_router(tmp_path)
    assert first.key and first.key.startswith("user.")
    assert first.stop() == 0
    second = start_router(tmp_path)
    assert second.key is None  # never printed again
    req = urllib.request.Request(second.base_url + "/v1/models", headers={"Authorization": f"Bearer {first.key}"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        assert resp.status == 200
    assert second.stop() == 0
    assert not (tmp_path / "auxot.sqlite3").read_bytes().count(first.key.encode())


def test_llama_server_dies_with_a_killed_router(tmp_path: Path) -> None:
    """SIGKILL gives the router no chance to stop its children; the kernel does
    it for them (a parent-death signal), so nothing keeps generating unowned."""
    router = start_router(tmp_path)
    (child,) = router.llama_pids()
    router.stop(signal.SIGKILL)
    deadline = time.monotonic() + 5
    while pid_alive(child) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not pid_alive(child)
    again = start_router(tmp_path)  # and the next start on the data dir finds nothing to clean up
    again.key = router.key  # printed only on the first start
    (fresh,) = again.llama_pids()
    assert fresh != child and again.stop() == 0
    assert not pid_alive(fresh)


def test_data_dir_from_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AUXOT_DATA_DIR", str(tmp_path / "env-data"))
    from auxot.config_file import load

    assert load().data_dir == tmp_path / "env-data"
    assert load(data_dir=str(tmp_path / "flag")).data_dir == tmp_path / "flag"


def test_a_killed_llama_server_is_restarted_and_serves_again(tmp_path: Path) -> None:
    router = start_router(tmp_path)
    (first,) = router.llama_pids()
    os.kill(first, signal.SIGKILL)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        health = router.health()
        provider = health["providers"][0]
        if provider["state"] == "ready" and provider["pid"] not in (None, first):
            break
        time.sleep(0.1)
    assert provider["state"] == "ready" and provider["restarts"] == 1
    body = json.dumps({"model": "auto", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 5}).encode()
    req = urllib.request.Request(router.base_url + "/v1/chat/completions", data=body, headers={"Authorization": f"Bearer {router.key}"})
    with urllib.request.urlopen(req, timeout=30) as resp:
        assert json.loads(resp.read())["choices"][0]["message"]["content"] is not None
    assert router.stop() == 0
    assert not pid_alive(provider["pid"])


def serve_once(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "auxot", "serve", "--port", "0", *args],
                          capture_output=True, text=True, timeout=timeout)


def test_a_second_router_on_the_same_data_dir_exits_at_once_and_touches_nothing(tmp_path: Path) -> None:
    first = start_router(tmp_path)
    (llama,) = first.llama_pids()
    run_dir = sorted((p.name, p.read_bytes()) for p in (tmp_path / "run").iterdir())
    began = time.monotonic()
    second = serve_once("--data-dir", str(tmp_path))
    assert second.returncode == 2 and time.monotonic() - began < 10
    lines = [line for line in second.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and f"auxot serve (pid {first.process.pid} on {first.base_url}) is already running" in lines[0]
    assert pid_alive(llama) and first.llama_pids() == [llama]  # its llama-server was not taken for a leftover
    assert sorted((p.name, p.read_bytes()) for p in (tmp_path / "run").iterdir()) == run_dir
    req = urllib.request.Request(first.base_url + "/v1/models", headers={"Authorization": f"Bearer {first.key}"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        assert resp.status == 200
    assert first.stop() == 0


def test_a_model_file_that_does_not_exist_is_refused_before_ready(tmp_path: Path) -> None:
    config = tmp_path / "auxot.toml"
    config.write_text(f'[[providers]]\nkind = "llamacpp"\nname = "big"\nmodel = "{tmp_path}/qwen-72b.gguf"\n')
    done = serve_once("--data-dir", str(tmp_path / "data"), "--config", str(config))
    assert done.returncode == 2 and "ready in" not in done.stdout
    assert done.stderr.strip() == f"auxot: provider 'big': model {tmp_path}/qwen-72b.gguf is not a readable file"
