"""Run ``python -m auxot worker`` as a real subprocess, and a router for it to
dial (``python -m auxot serve`` with no local provider and quick heartbeats)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from router_process import RouterProcess, pid_alive, start_router

REFUSED = 3  # the worker's exit status when the router refuses its key

# Quick heartbeats so a lost worker is noticed within a couple of seconds.
WORKER_ROUTER_CONFIG = """
[server]
embedded_default = false
graceful_timeout = 3.0
[workers]
heartbeat_interval = 0.5
heartbeat_timeout = 2.5
window = 16
"""


# Every process these helpers start, so a failing test leaves none behind (reap_all).
_started: list[subprocess.Popen[str]] = []


def reap_all() -> None:
    """SIGTERM (a worker then stops its llama-server), SIGKILL if that does not do."""
    for process in reversed(_started):
        if process.poll() is None:
            process.send_signal(signal.SIGCONT)  # a test may have frozen it
            process.terminate()
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(5)
    _started.clear()


def start_worker_router(directory: Path, port: int = 0, *extra: str) -> RouterProcess:
    directory.mkdir(parents=True, exist_ok=True)
    config = directory / "auxot.toml"
    config.write_text(WORKER_ROUTER_CONFIG)
    router = start_router(directory / "data", "--config", str(config), *(["--port", str(port)] if port else []), *extra)
    _started.append(router.process)
    return router


def ws_url(router: RouterProcess) -> str:
    return router.base_url.replace("https://", "wss://").replace("http://", "ws://") + "/ws"


def create_worker_key(router_data: Path, name: str) -> str:
    """Through the real CLI, as an operator would."""
    out = subprocess.run([sys.executable, "-m", "auxot", "keys", "--data-dir", str(router_data), "create", "--worker",
                          "--name", name],
                         capture_output=True, text=True, check=True).stdout
    return out.strip().splitlines()[-1]


def worker_key_id(router_data: Path, name: str) -> str:
    out = subprocess.run([sys.executable, "-m", "auxot", "keys", "--data-dir", str(router_data), "list"],
                         capture_output=True, text=True, check=True).stdout
    return next(line.split()[0] for line in out.splitlines() if line.split()[1:3] == ["worker", name])


def revoke_key(router_data: Path, key_id: str) -> None:
    subprocess.run([sys.executable, "-m", "auxot", "keys", "--data-dir", str(router_data), "revoke", key_id],
                   capture_output=True, text=True, check=True)


@dataclass
class WorkerProcess:
    process: subprocess.Popen[str]
    name: str
    output: list[str] = field(default_factory=list)

    def wait_for(self, pattern: str, timeout: float = 60, after: int = 0) -> re.Match[str]:
        """The first output line from index ``after`` on that matches."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in self.output[after:]:
                if m := re.search(pattern, line):
                    return m
            if self.process.poll() is not None and not any(re.search(pattern, l) for l in self.output[after:]):
                time.sleep(0.2)  # let the reader thread catch the last lines
                if not any(re.search(pattern, l) for l in self.output[after:]):
                    raise RuntimeError(f"worker exited ({self.process.returncode}) before {pattern!r}:\n" + "".join(self.output))
            time.sleep(0.05)
        raise TimeoutError(f"worker: no {pattern!r} within {timeout}s:\n" + "".join(self.output))

    def llama(self) -> tuple[int, int]:
        """(pid, port) of its current llama-server, from its log."""
        found = [m for line in self.output if (m := re.search(r"llama-server ready on 127\.0\.0\.1:(\d+) \(pid (\d+)\)", line))]
        return int(found[-1].group(2)), int(found[-1].group(1))

    def kill(self) -> None:
        """SIGKILL, as a crash: the worker cannot stop its llama-server, so the
        test does (the next worker start on this data dir would, too)."""
        pid, _ = self.llama()
        self.process.kill()
        self.process.wait(10)
        if pid_alive(pid):
            os.kill(pid, signal.SIGKILL)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> int:
        if self.process.poll() is None:
            self.process.send_signal(sig)
        return self.process.wait(timeout=timeout)


def start_worker(router: RouterProcess, key: str, directory: Path, name: str, *extra: str, wait: bool = True,
                 timeout: float = 120) -> WorkerProcess:
    process = subprocess.Popen(
        [sys.executable, "-m", "auxot", "worker", "--router-url", ws_url(router), "--name", name,
         "--data-dir", str(directory / name), "--parallel", "2", "--default-max-tokens", "200", "--drain-timeout", "1", *extra],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env=dict(os.environ, PYTHONUNBUFFERED="1", AUXOT_WORKER_KEY=key),
    )
    _started.append(process)
    worker = WorkerProcess(process, name)
    assert process.stdout is not None
    threading.Thread(target=lambda: worker.output.extend(process.stdout or ()), daemon=True).start()
    if wait:
        worker.wait_for(r"registered with .* as ", timeout)
    return worker


def worker_health(router: RouterProcess, name: str) -> dict:
    return next(p for p in router.health()["providers"] if p["name"] == name)


def wait_until(predicate, timeout: float = 30, interval: float = 0.05):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := predicate():
            return value
        time.sleep(interval)
    raise TimeoutError(f"condition not met within {timeout}s")
