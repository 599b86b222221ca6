"""Run ``python -m auxot serve`` as a real subprocess, the way a user does,
and read the API key and the bound address from what it prints."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path


@dataclass
class RouterProcess:
    process: subprocess.Popen[str]
    base_url: str
    key: str | None
    output: list[str]
    data_dir: Path | None = None

    def health(self, *, detailed: bool = True) -> dict:
        """``/health``; with the router's key (the details: pids, ports…) unless
        ``detailed`` is false, as a load balancer without a key sees it."""
        request = urllib.request.Request(self.base_url + "/health")
        if detailed and self.key:
            request.add_header("Authorization", f"Bearer {self.key}")
        try:
            with urllib.request.urlopen(request, timeout=5) as resp:
                return json.loads(resp.read())
        except urllib.error.HTTPError as err:
            return json.loads(err.read())

    def llama_pids(self) -> list[int]:
        return [p["pid"] for p in self.health()["providers"] if p.get("pid")]

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> int:
        if self.process.poll() is None:
            self.process.send_signal(sig)
        return self.process.wait(timeout=timeout)


def start_router(data_dir: Path, *extra: str, timeout: float = 120) -> RouterProcess:
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    process = subprocess.Popen(
        [sys.executable, "-m", "auxot", "serve", "--port", "0", "--data-dir", str(data_dir), *extra],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
    )
    assert process.stdout is not None
    output: list[str] = []
    key = None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            raise RuntimeError("auxot serve exited during startup:\n" + "".join(output))
        output.append(line)
        if m := re.search(r"\b((?:user|team)\.[A-Za-z0-9_-]{43})\b", line):
            key = m.group(1)
        if m := re.search(r"ready in [\d.]+s on (https?://\S+)", line):
            import threading

            # Keep draining its output so the router never blocks on a full pipe.
            def drain() -> None:
                assert process.stdout is not None
                for rest in process.stdout:
                    output.append(rest)

            threading.Thread(target=drain, daemon=True).start()
            return RouterProcess(process, m.group(1), key, output, data_dir)
    process.kill()
    raise RuntimeError("auxot serve did not become ready:\n" + "".join(output))


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie is dead for our purposes
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0] != "Z"
    except OSError:
        return False


def group_members(pgid: int) -> list[int]:
    """Live (not zombie) processes in a process group, from /proc."""
    members = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(") ", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            members.append(int(stat.parent.name))
    return members
