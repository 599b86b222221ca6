"""Fault injection: N concurrent clients while llama-server children are killed.

    python -m tests.bench faults [--clients 16] [--duration 60] [--kill-every 4] [--providers 2]

Starts ``python -m auxot serve`` on a free port with ``--providers`` llama-server
providers (the embedded SmolLM2, ``parallel = 2`` each), runs ``--clients``
client threads that send a mix of OpenAI and Anthropic requests, streaming and
not, and SIGKILLs a random llama-server child every ``--kill-every`` seconds.
Every request is classified:

- served: a complete answer (a JSON body with content, or a stream that ended
  with ``[DONE]`` / ``message_stop``);
- failed over: served, after at least one provider failed before the first byte
  (the router says so in ``x-auxot-attempts``);
- clean error: an error in the client's dialect — a JSON error with status
  429/502/503/504, or a stream that ended with the dialect's error event;
- lost: anything else — a hang past the client's deadline, a connection cut
  without an error, a stream that stopped without either ending, a 500, a
  body that is not the dialect's shape.  The router's promise is lost = 0.

At the end the router is stopped with SIGTERM; it must exit 0 and leave no
llama-server behind.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import random
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

CLIENT_DEADLINE = 90.0


def start_router(config: Path, data_dir: Path) -> tuple[subprocess.Popen[str], str, str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "auxot", "serve", "--port", "0", "--data-dir", str(data_dir), "--config", str(config)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=dict(os.environ, PYTHONUNBUFFERED="1"),
    )
    assert proc.stdout is not None
    key = url = ""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not url:
        line = proc.stdout.readline()
        if not line:
            raise SystemExit("auxot serve exited during startup")
        if m := re.search(r"\b(user\.[A-Za-z0-9_-]{43})\b", line):
            key = m.group(1)
        if m := re.search(r"ready in [\d.]+s on (http://\S+)", line):
            url = m.group(1)
    threading.Thread(target=lambda: [None for _ in proc.stdout], daemon=True).start()  # type: ignore[union-attr]
    return proc, url, key


def health(url: str, key: str) -> dict[str, Any]:
    """With the key: the details (llama-server pids) are not public."""
    request = urllib.request.Request(url + "/health", headers={"Authorization": f"Bearer {key}"})
    try:
        with urllib.request.urlopen(request, timeout=5) as resp:
            return json.loads(resp.read())  # type: ignore[no-any-return]
    except urllib.error.HTTPError as err:
        return json.loads(err.read())  # type: ignore[no-any-return]


def one_request(url: str, key: str, rng: random.Random) -> tuple[str, str]:
    """Returns (class, detail)."""
    dialect = rng.choice(["openai", "anthropic"])
    stream = rng.random() < 0.5
    prompt = rng.choice(["Say hello.", "Name three colours.", "Count to five.", "What is 2+2?"])
    if dialect == "openai":
        path = "/v1/chat/completions"
        body: dict[str, Any] = {"model": "auto", "messages": [{"role": "user", "content": prompt}], "max_tokens": 40, "stream": stream}
    else:
        path = "/api/anthropic/v1/messages"
        body = {"model": "auto", "max_tokens": 40, "messages": [{"role": "user", "content": prompt}], "stream": stream}
    req = urllib.request.Request(url + path, data=json.dumps(body).encode(),
                                 headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=CLIENT_DEADLINE) as resp:
            attempts = int(resp.headers.get("x-auxot-attempts") or 1)
            raw = resp.read()
    except urllib.error.HTTPError as err:
        raw = err.read()
        try:
            parsed = json.loads(raw)
        except ValueError:
            return "lost", f"HTTP {err.code} with a body that is not JSON"
        shaped = isinstance(parsed.get("error"), dict) and isinstance(parsed["error"].get("message"), str)
        if err.code in (429, 502, 503, 504) and shaped:
            return "clean error", f"HTTP {err.code}: {parsed['error']['message'][:80]}"
        return "lost", f"HTTP {err.code}: {raw[:120]!r}"
    except Exception as exc:  # timeouts, resets: the client got nothing it can act on
        return "lost", f"{type(exc).__name__}: {exc}"
    served = "failed over" if attempts > 1 else "served"
    if not stream:
        try:
            parsed = json.loads(raw)
        except ValueError:
            return "lost", "200 with a body that is not JSON"
        ok = bool(parsed.get("choices")) if dialect == "openai" else parsed.get("type") == "message"
        return (served, "") if ok else ("lost", f"200 but not a {dialect} answer: {raw[:120]!r}")
    text = raw.decode("utf-8", "replace")
    if dialect == "openai":
        datas = [line[6:] for line in text.splitlines() if line.startswith("data: ")]
        if datas and datas[-1] == "[DONE]":
            return served, ""
        if datas and '"error"' in datas[-1]:
            return "clean error", "in-stream error: " + json.loads(datas[-1])["error"]["message"][:80]
        return "lost", "stream ended without [DONE] or an error event"
    events = re.findall(r"^event: (\S+)", text, re.M)
    if events and events[-1] == "message_stop":
        return served, ""
    if events and events[-1] == "error":
        return "clean error", "in-stream error event"
    return "lost", f"stream ended after {events[-3:]}"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tests.bench faults", description=__doc__.split("\n\n")[0])
    p.add_argument("--clients", type=int, default=16)
    p.add_argument("--duration", type=float, default=60.0)
    p.add_argument("--kill-every", type=float, default=4.0)
    p.add_argument("--providers", type=int, default=2)
    p.add_argument("--seed", type=int, default=1)
    args = p.parse_args(argv)

    work = Path(tempfile.mkdtemp(prefix="auxot-faults-"))
    config = work / "auxot.toml"
    config.write_text("".join(
        f'[[providers]]\nkind = "llamacpp"\nname = "local-{i}"\nparallel = 2\norder = {i}\n' for i in range(args.providers)
    ) + "[scheduler]\nqueue_timeout = 30.0\n")
    proc, url, key = start_router(config, work / "data")
    print(f"router {url}: {args.providers} llama-server providers, {args.clients} clients, {args.duration:g}s, "
          f"SIGKILL every {args.kill_every:g}s")
    counts: collections.Counter[str] = collections.Counter()
    details: collections.Counter[str] = collections.Counter()
    lock = threading.Lock()
    stop = time.monotonic() + args.duration
    seen_pids: set[int] = set()
    kills = 0

    def client(i: int) -> None:
        rng = random.Random(args.seed * 1000 + i)
        while time.monotonic() < stop:
            kind, detail = one_request(url, key, rng)
            with lock:
                counts[kind] += 1
                if detail and kind != "served":
                    details[f"{kind}: {re.sub(r'[0-9]+', 'N', detail)[:110]}"] += 1

    threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(args.clients)]
    for t in threads:
        t.start()
    rng = random.Random(args.seed)
    while time.monotonic() < stop:
        time.sleep(min(args.kill_every, max(0.0, stop - time.monotonic())))
        pids = [pr["pid"] for pr in health(url, key)["providers"] if pr.get("pid")]
        seen_pids.update(pids)
        if pids and time.monotonic() < stop:
            victim = rng.choice(pids)
            try:
                os.kill(victim, signal.SIGKILL)
                kills += 1
            except ProcessLookupError:
                pass
    for t in threads:
        t.join(CLIENT_DEADLINE + 10)
    hung = sum(t.is_alive() for t in threads)
    counts["lost"] += hung
    final = health(url, key)
    seen_pids.update(pr["pid"] for pr in final["providers"] if pr.get("pid"))
    proc.send_signal(signal.SIGTERM)
    code = proc.wait(60)
    time.sleep(0.5)
    orphans = [pid for pid in seen_pids if Path(f"/proc/{pid}").exists()
               and Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0] != "Z"]
    total = sum(counts.values())
    print(f"\n{'outcome':<14} {'requests':>9}")
    for kind in ("served", "failed over", "clean error", "lost"):
        print(f"{kind:<14} {counts[kind]:>9}")
    print(f"{'total':<14} {total:>9}")
    print(f"\nSIGKILLs: {kills}; restarts reported: {sum(pr.get('restarts', 0) for pr in final['providers'])}; "
          f"providers ready at the end: {sum(pr['state'] == 'ready' for pr in final['providers'])}/{len(final['providers'])}")
    print(f"router exit status: {code}; orphan llama-server processes: {len(orphans)}; client threads hung: {hung}")
    if details:
        print("\nnot plainly served, by reason:")
        for reason, n in details.most_common(12):
            print(f"  {n:>5}  {reason}")
    return 0 if counts["lost"] == 0 and code == 0 and not orphans else 1


if __name__ == "__main__":
    raise SystemExit(main())
