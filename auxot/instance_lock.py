"""One data dir, one running instance.

Two routers on one data dir fight over everything in it: each took the other's
llama-server for a leftover of a killed run and stopped it, they overwrote each
other's pid files, and the second died on the busy port.  So ``serve`` and
``worker`` take an exclusive lock (``flock``) on ``DATA_DIR/instance.lock``
before they touch anything there; a second instance exits at once with one line
naming the first.  The kernel drops the lock when its holder dies, however it
dies, so a stale lock cannot keep a restart out.
"""

from __future__ import annotations

import fcntl
import json
import os
import time
from pathlib import Path


class InstanceRunning(Exception):
    """Another instance holds the data dir."""


class InstanceLock:
    def __init__(self, data_dir: Path, what: str) -> None:
        self.path = data_dir / "instance.lock"
        self.what = what  # "auxot serve", "auxot worker"
        self._fd: int | None = None

    def acquire(self) -> None:
        """Take the lock, or raise InstanceRunning naming who holds it."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _describe(os.read(fd, 4096))
            os.close(fd)
            raise InstanceRunning(f"{holder} is already running on data dir {self.path.parent}; "
                                  "stop it first, or give this one another --data-dir") from None
        self._fd = fd
        self.note()

    def note(self, **facts: object) -> None:
        """Record who holds the lock (pid, and what a second instance should be told)."""
        if self._fd is None:
            return
        payload = json.dumps({"what": self.what, "pid": os.getpid(), "since": time.time(), **facts}).encode()
        os.ftruncate(self._fd, 0)
        os.pwrite(self._fd, payload, 0)

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def _describe(raw: bytes) -> str:
    try:
        facts = json.loads(raw)
        where = f" on {facts['address']}" if facts.get("address") else ""
        return f"{facts.get('what', 'another auxot')} (pid {facts['pid']}{where})"
    except (ValueError, KeyError, TypeError):
        return "another auxot"
