"""Run ``python -m auxot worker`` as a real subprocess, and a router for it to
dial (``python -m auxot serve`` with no local provider and quick heartbeats)."""

from __future__ import annotations

import os
import random
import re
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from tests.support.router_process import RouterProcess, pid_alive, start_router

REFUSED = 3  # the worker's exit status when the router refuses its key
CANNOT_REACH_EXIT = 4  # ... when the router cannot be reached as asked (TLS does not verify, ws:// vs wss://)

# Heartbeats quick enough that a lost worker is noticed within seconds, slow
# enough that two llama-servers saturating a loaded 2-core machine cannot starve a
# healthy worker into a false timeout.  The frozen-worker test sets its own.
WORKER_ROUTER_CONFIG = """
[server]
embedded_default = false
graceful_timeout = {graceful_timeout}
[workers]
heartbeat_interval = {heartbeat_interval}
heartbeat_timeout = {heartbeat_timeout}
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


def start_worker_router(directory: Path, port: int = 0, *extra: str, graceful_timeout: float = 3.0,
                        heartbeat_interval: float = 1.0, heartbeat_timeout: float = 10.0) -> RouterProcess:
    directory.mkdir(parents=True, exist_ok=True)
    config = directory / "auxot.toml"
    config.write_text(WORKER_ROUTER_CONFIG.format(graceful_timeout=graceful_timeout, heartbeat_interval=heartbeat_interval,
                                                  heartbeat_timeout=heartbeat_timeout))
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
    reader: threading.Thread = field(init=False)

    def __post_init__(self) -> None:
        self.reader = threading.Thread(target=lambda: self.output.extend(self.process.stdout or ()), daemon=True)
        self.reader.start()

    def wait_for(self, pattern: str, timeout: float = 60, after: int = 0) -> re.Match[str]:
        """The first output line from index ``after`` on that matches."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in self.output[after:]:
                if m := re.search(pattern, line):
                    return m
            if self.process.poll() is not None:
                self.reader.join(10)  # it ends at EOF, with the last lines read
                if not any(re.search(pattern, l) for l in self.output[after:]):
                    raise RuntimeError(f"worker exited ({self.process.returncode}) before {pattern!r}:\n" + "".join(self.output))
            time.sleep(0.05)
        raise TimeoutError(f"worker: no {pattern!r} within {timeout}s:\n" + "".join(self.output))

    def llama(self) -> tuple[int, int]:
        """(pid, port) of its current llama-server, from its log."""
        found = [m for line in self.output if (m := re.search(r"llama-server ready on 127\.0\.0\.1:(\d+) \(pid (\d+)\)", line))]
        return int(found[-1].group(2)), int(found[-1].group(1))

    def kill(self) -> None:
        """SIGKILL, as a crash: the worker cannot stop its llama-server; the
        kernel does (a parent-death signal), within a moment."""
        pid, _ = self.llama()
        self.process.kill()
        self.process.wait(10)
        if not wait_until(lambda: not pid_alive(pid), timeout=5):
            os.kill(pid, signal.SIGKILL)
            raise AssertionError("llama-server outlived its SIGKILLed worker")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> int:
        if self.process.poll() is None:
            self.process.send_signal(sig)
        return self.process.wait(timeout=timeout)


# The workers' llama-server key (else a new secret per start, known only to the
# worker): the tests that look at a worker's llama-server directly need it.
WORKER_LLAMA_KEY = "worker-llama-" + secrets.token_urlsafe(12)


def start_worker(router: RouterProcess, key: str, directory: Path, name: str, *extra: str, wait: bool = True,
                 timeout: float = 120, url: str | None = None) -> WorkerProcess:
    process = subprocess.Popen(
        [sys.executable, "-m", "auxot", "worker", "--router-url", url or ws_url(router), "--name", name,
         "--data-dir", str(directory / name), "--parallel", "2", "--default-max-tokens", "200", "--drain-timeout", "1", *extra],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env=dict(os.environ, PYTHONUNBUFFERED="1", AUXOT_WORKER_KEY=key, AUXOT_LLAMA_API_KEY=WORKER_LLAMA_KEY),
    )
    _started.append(process)
    worker = WorkerProcess(process, name)
    if wait:
        worker.wait_for(r"registered with .* as ", timeout)
    return worker


def worker_health(router: RouterProcess, name: str) -> dict:
    return next(p for p in router.health()["providers"] if p["name"] == name)


def unused_port_outside_the_ephemeral_range() -> int:
    """A port for a router that restarts on the same port.  Below Linux's ephemeral
    range (32768-60999): no client socket (the worker dialling it while it is down)
    can be given it, so the port cannot be taken, nor self-connected, meanwhile."""
    for port in random.sample(range(20000, 32000), 200):
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port in 20000-32000")


def wait_until(predicate, timeout: float = 30, interval: float = 0.05):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := predicate():
            return value
        time.sleep(interval)
    raise TimeoutError(f"condition not met within {timeout}s")
