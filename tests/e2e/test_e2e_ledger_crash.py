"""A router killed with SIGKILL under load: every request whose answer a client
saw end has its ledger row, rows of requests cut off are the only ones missing,
and after a restart on the same data dir the keys and the ledger are intact.
A real `python -m auxot serve` with the real llama-server and SmolLM2, four
client threads, `kill -9`."""

from __future__ import annotations

import http.client
import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

from auxot.accounts.store import Store
from tests.support.router_process import pid_alive, start_router

CLIENTS = 4


def cli(data: Path, *args: str) -> str:
    done = subprocess.run([sys.executable, "-m", "auxot", args[0], "--data-dir", str(data), *args[1:]],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout


def ask(base_url: str, key: str, stream: bool) -> bool:
    """One request; True if the whole answer arrived (for a stream: through [DONE])."""
    body = json.dumps({"model": "auto", "messages": [{"role": "user", "content": "Count to five."}], "max_tokens": 8,
                       "stream": stream}).encode()
    req = urllib.request.Request(base_url + "/v1/chat/completions", data=body,
                                 headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=120) as resp:
        raw = resp.read().decode()
    return raw.rstrip().endswith("data: [DONE]") if stream else bool(json.loads(raw)["choices"])


def test_kill_9_under_load_keeps_the_ledger_and_the_keys(tmp_path: Path) -> None:
    data = tmp_path / "data"
    config = tmp_path / "auxot.toml"
    config.write_text('[[providers]]\nkind = "llamacpp"\nname = "local"\nparallel = 2\n')
    out = cli(data, "keys", "create", "--name", "load", "--rpm", "10000")
    key, key_id = out.strip().splitlines()[-1], out.split()[1]
    router = start_router(data, "--config", str(config))
    assert router.key is None  # the store already had a key: serve mints none
    llama_pids = router.llama_pids()
    try:
        lock = threading.Lock()
        counts = {"started": 0, "completed": 0, "abandoned": 0, "refused": 0}
        stop = threading.Event()

        def client(n: int) -> None:
            i = 0
            while not stop.is_set():
                with lock:
                    counts["started"] += 1
                try:
                    done = ask(router.base_url, key, stream=(n + i) % 2 == 0)
                except TimeoutError:  # a machine this busy can be slow; the client gives up
                    with lock:
                        counts["abandoned"] += 1
                    continue
                except urllib.error.HTTPError:  # answered with an error status (a row, not "ok")
                    with lock:
                        counts["refused"] += 1
                    continue
                except (OSError, http.client.HTTPException, ValueError):
                    return  # the router is gone (a chunked body cut mid-way is IncompleteRead or ValueError)
                if done:
                    with lock:
                        counts["completed"] += 1
                i += 1

        threads = [threading.Thread(target=client, args=(n,), daemon=True) for n in range(CLIENTS)]
        for t in threads:
            t.start()
        deadline = time.monotonic() + 180
        while counts["completed"] < 8:
            assert time.monotonic() < deadline, f"too slow: {counts}"
            time.sleep(0.05)
        router.process.send_signal(signal.SIGKILL)  # mid-load: some requests are in flight
        assert router.process.wait(timeout=10) == -signal.SIGKILL
        stop.set()
        for t in threads:
            t.join(timeout=40)
        completed, started, abandoned = counts["completed"], counts["started"], counts["abandoned"] + counts["refused"]

        db = sqlite3.connect(str(data / "auxot.sqlite3"))
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        db.close()
        store = Store(data / "auxot.sqlite3")
        rows = store.usage_rows(key_id=key_id)
        store.close()
        # A row is committed before its answer's last byte is sent: every answer a client
        # saw end has a row; at most the CLIENTS requests in flight at the kill may have a
        # row without their client seeing the end, and none that never started has one.
        # (A request its client gave up on has a row too, as "disconnected".)
        ok = [r for r in rows if r["outcome"] == "ok"]
        assert completed <= len(ok) <= completed + CLIENTS, (completed, len(ok), counts)
        assert len(rows) - len(ok) <= abandoned and len(rows) <= started, (len(rows), counts)
        assert all(r["status"] == 200 and r["output_tokens"] for r in ok)

        again = start_router(data, "--config", str(config))
        try:
            assert again.key is None
            assert not any(pid_alive(p) for p in llama_pids), "the killed router's llama-server was not reaped"
            assert ask(again.base_url, key, stream=False)  # the key still works
            store = Store(data / "auxot.sqlite3")
            after = store.usage_rows(key_id=key_id)
            keys = store.list_keys()
            store.close()
            assert after[:len(rows)] == rows and len(after) == len(rows) + 1
            assert [(k.id, k.name, k.rpm, k.revoked_at) for k in keys] == [(key_id, "load", 10000, None)]
            summary = cli(data, "usage", "--key", key_id).splitlines()[-1].split()
            assert summary[:3] == ["total", str(len(rows) + 1), str(len(rows) - len(ok))]
        finally:
            assert again.stop() == 0
    finally:  # if an assertion failed early, the router or its orphaned llama-server is ours to end
        if router.process.poll() is None:
            router.process.kill()
            router.process.wait(timeout=10)
        for pid in llama_pids:
            if pid_alive(pid):
                os.kill(pid, signal.SIGKILL)
