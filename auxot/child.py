"""A child process that dies with this one.

A router or worker killed with SIGKILL cannot stop its children, and a
llama-server left behind keeps generating (and holding its memory) until the
next start on the same data dir finds it.  Linux can do it for us: a child that
asks ``prctl(PR_SET_PDEATHSIG, SIGKILL)`` is killed the moment the thread that
forked it ends.

That "thread" is why this is not ``trio.lowlevel.open_process``: trio forks in a
worker thread of its cache, which ends after ten idle seconds — and the child
with it.  Here the fork happens in the calling thread, trio's own, which lives
as long as the process; it blocks the event loop for the fork itself (about a
millisecond, once per llama-server start).  Waiting is by pidfd, so nothing polls.

Elsewhere than Linux, the child is started the same way without the tie.
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
from typing import Any, Sequence

import trio

PR_SET_PDEATHSIG = 1


def parent_death_signal(sig: int) -> Any:
    """A ``preexec_fn`` that has the child sent ``sig`` when the forking thread
    ends (None where the platform cannot)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]

    def on_parent_death() -> None:  # runs in the child between fork and exec: no allocation, no imports
        prctl(PR_SET_PDEATHSIG, sig, 0, 0, 0)

    return on_parent_death


_DIE_WITH_PARENT = parent_death_signal(signal.SIGKILL)


class Child:
    """The subset of ``trio.Process`` the supervisors use: ``pid``,
    ``returncode``, ``stdin`` / ``stdout`` / ``stderr`` (trio streams when piped),
    ``wait()``, ``send_signal()``, ``kill()``."""

    def __init__(self, popen: subprocess.Popen[bytes]) -> None:
        self._popen = popen
        self.pid = popen.pid
        self.stdin = _stream(popen.stdin)
        self.stdout = _stream(popen.stdout)
        self.stderr = _stream(popen.stderr)
        self._pidfd: int | None
        try:
            self._pidfd = os.pidfd_open(popen.pid)
        except (AttributeError, OSError):
            self._pidfd = None

    @classmethod
    def start(cls, argv: Sequence[str], *, env: dict[str, str] | None = None, stdout: int = subprocess.DEVNULL,
              stderr: int = subprocess.PIPE, start_new_session: bool = True, stdin: int = subprocess.DEVNULL,
              cwd: str | None = None) -> Child:
        """Start ``argv`` now (synchronously, in this thread), tied to this process's life."""
        popen = subprocess.Popen(
            list(argv), stdin=stdin, stdout=stdout, stderr=stderr, env=env, cwd=cwd,
            start_new_session=start_new_session, preexec_fn=_DIE_WITH_PARENT,
        )
        return cls(popen)

    @property
    def returncode(self) -> int | None:
        return self._popen.poll() if self._popen.returncode is None else self._popen.returncode

    async def wait(self) -> int:
        """Until the child exits; reaps it and returns its status."""
        while self._popen.poll() is None:
            if self._pidfd is not None:
                await trio.lowlevel.wait_readable(self._pidfd)
            else:
                await trio.sleep(0.05)
        self._close_pidfd()
        return self._popen.returncode

    def send_signal(self, sig: int) -> None:
        if self._popen.poll() is None:
            self._popen.send_signal(sig)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)

    async def aclose(self) -> None:
        """Close the pipes (the child itself is stopped by its supervisor)."""
        for stream in (self.stdin, self.stdout, self.stderr):
            if stream is not None:
                await stream.aclose()

    def _close_pidfd(self) -> None:
        if self._pidfd is not None:
            trio.lowlevel.notify_closing(self._pidfd)
            os.close(self._pidfd)
            self._pidfd = None


def _stream(pipe: Any) -> trio.lowlevel.FdStream | None:
    if pipe is None:
        return None
    stream = trio.lowlevel.FdStream(os.dup(pipe.fileno()))
    pipe.close()
    return stream
