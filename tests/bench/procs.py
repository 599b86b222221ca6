"""The benchmark's server processes: auxot (``python -m auxot serve`` with a
config that points at nginx) and the ceiling app; RSS and CPU read from /proc,
of one process or of a process and its descendants (a peer that forks workers)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from auxot.child import parent_death_signal

ENV = dict(os.environ, PYTHONUNBUFFERED="1")


# Popen preexec_fn: the child gets SIGTERM if the harness dies first, so an interrupted
# run leaves no nginx or server behind (the harness forks from its main thread).
die_with_parent = parent_death_signal(signal.SIGTERM)


@dataclass
class Server:
    proc: subprocess.Popen[str]
    base_url: str
    key: str = ""

    @property
    def pid(self) -> int:
        return self.proc.pid

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def _drain(proc: subprocess.Popen[str]) -> None:
    # Keep reading its output so the server never blocks on a full pipe.
    assert proc.stdout is not None
    threading.Thread(target=lambda: [None for _ in proc.stdout], daemon=True).start()  # type: ignore[union-attr]


def start_auxot(workdir: Path, config_toml: str, timeout: float = 120) -> Server:
    config = workdir / "auxot.toml"
    config.write_text(config_toml)
    proc = subprocess.Popen(
        [sys.executable, "-m", "auxot", "serve", "--port", "0", "--data-dir", str(workdir / "data"), "--config", str(config)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, text=True, env=ENV,
        preexec_fn=die_with_parent,
    )
    assert proc.stdout is not None
    key = ""
    lines: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line)
        if m := re.search(r"\b((?:user|team)\.[A-Za-z0-9_-]{43})\b", line):
            key = m.group(1)
        if m := re.search(r"ready in [\d.]+s on (http://\S+)", line):
            _drain(proc)
            return Server(proc, m.group(1), key)
    proc.kill()
    proc.wait()
    raise RuntimeError("auxot serve did not become ready:\n" + "".join(lines[-30:]))


def start_announcing(args: list[str], what: str) -> Server:
    """``python ARGS``, a server that prints its base URL first thing once it listens."""
    proc = subprocess.Popen(
        [sys.executable, *args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, text=True, env=ENV,
        preexec_fn=die_with_parent,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline().strip()
    if not line.startswith("http://"):
        proc.kill()
        proc.wait()
        raise RuntimeError(f"{what} did not start: {line!r}")
    _drain(proc)
    return Server(proc, line)


def start_ceiling(hold_seconds: float, hold_chunks: int, upstream: str | None = None) -> Server:
    """The ceiling app; with ``upstream``, the floor (see :mod:`.ceiling`)."""
    extra = ["--upstream", upstream] if upstream else []
    return start_announcing(
        ["-m", "tests.bench.ceiling", "--hold-seconds", str(hold_seconds), "--hold-chunks", str(hold_chunks), *extra], "the ceiling app")


def rss_kb(pid: int) -> int:
    """Resident set size of a process, in KiB (VmRSS)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for pid {pid}")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used (its threads included)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def tree_pids(pid: int) -> list[int]:
    """``pid`` and every live descendant (read from /proc: each process's parent)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rpartition(")")[2].split()
        except OSError:  # gone since the listing
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo += children.get(p, [])
    return out


def _each(pids: list[int], read: Callable[[int], float]) -> float:
    total = 0.0
    for p in pids:
        try:
            total += read(p)
        except (OSError, RuntimeError):  # exited between the listing and the read
            pass
    return total


def tree_cpu_seconds(pid: int) -> float:
    """CPU time of a process and its live descendants."""
    return _each(tree_pids(pid), cpu_seconds)


def tree_rss_kb(pid: int) -> int:
    """RSS of a process and its live descendants (shared pages counted in each)."""
    return int(_each(tree_pids(pid), rss_kb))


def auxot_config(nginx_url: str, max_concurrent: int, paced_url: str | None = None) -> str:
    """Four openai-compatible providers on the same nginx, one per fixture, each
    serving its own model id (so the request's model picks the fixture); with
    ``paced_url``, a fourth (``bench-paced``) on a ceiling app that paces its stream."""
    blocks = []
    if paced_url:
        blocks.append(
            f'[[providers]]\nkind = "openai-compatible"\nname = "paced"\nbase_url = "{paced_url}/hold"\n'
            f'models = ["bench-paced"]\nmax_concurrent = 4\n'
        )
    for name in ("small", "relay", "hold", "stream200"):
        blocks.append(
            f'[[providers]]\nkind = "openai-compatible"\nname = "nginx-{name}"\nbase_url = "{nginx_url}/{name}"\n'
            f'models = ["bench-{name}"]\nmax_concurrent = {max_concurrent}\n'
        )
    return "[server]\ngraceful_timeout = 2.0\n\n" + "\n".join(blocks)
