"""nginx as the benchmark's upstream: fixed answers, configured in a temporary
directory on a free loopback port, one worker process, no logs.

Locations (auxot's cloud providers append ``/chat/completions`` to their base URL):

- ``/v1/chat/completions``: the non-streamed answer (``return 200`` with the
  JSON body) — what a client calling the upstream directly gets;
- ``/small/chat/completions``: the same answer as an SSE stream (``return 200``),
  what auxot asks for (its cloud providers always stream);
- ``/relay/chat/completions``: a long stream from a file;
- ``/stream200/chat/completions``: a stream of :data:`STREAM_CHUNKS` one-token
  chunks from a file, the size of a typical answer (the peers' stream figures);
- ``/hold/chat/completions``: a short stream from a file, paced by
  ``limit_rate`` so that it lasts about ``hold_seconds``.

nginx serves files only to GET; ``error_page 405 =200 $uri`` lets the POSTs in.
"""

from __future__ import annotations

import signal
import socket
import subprocess
import time
from pathlib import Path
from types import TracebackType
from typing import Any

from . import fixtures
from .procs import die_with_parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _nginx_string(text: str) -> str:
    """A single-quoted nginx string (nginx understands \\n and \\' inside)."""
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'").replace("\n", "\\n") + "'"


def wait_listening(port: int, timeout: float, proc: subprocess.Popen[Any] | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"the server exited with status {proc.returncode} before listening on {port}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port} after {timeout:g}s")


STREAM_CHUNKS = 200


class Nginx:
    def __init__(self, binary: str, workdir: Path, *, relay_chunks: int, hold_chunks: int, hold_seconds: float) -> None:
        self.binary = binary
        self.dir = workdir / "nginx"
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.relay_chunks = relay_chunks
        self._proc: subprocess.Popen[bytes] | None = None
        self.dir.mkdir(parents=True, exist_ok=True)
        relay = self.dir / "relay.sse"
        relay.write_text(fixtures.sse_tokens(fixtures.token_texts(relay_chunks)), encoding="utf-8")
        stream200 = self.dir / "stream200.sse"
        stream200.write_text(fixtures.sse_tokens(fixtures.token_texts(STREAM_CHUNKS)), encoding="utf-8")
        hold = self.dir / "hold.sse"
        hold.write_text(fixtures.sse_tokens(fixtures.token_texts(hold_chunks)), encoding="utf-8")
        # limit_rate sends about this many bytes per second, so the file lasts ~hold_seconds; the first
        # 512 bytes go at once (limit_rate_after), so the first whole SSE event does too: at a slow rate
        # nginx would otherwise send 58 bytes, then the rest of that event a second later, and a router
        # (which can only pass on whole events) would be charged that second at every stream's start.
        rate = max(1, int(hold.stat().st_size / max(hold_seconds, 0.1)))
        d = self.dir
        (d / "nginx.conf").write_text(f"""
daemon off;
master_process off;
worker_processes 1;
worker_rlimit_nofile 16384;
pid {d}/nginx.pid;
error_log {d}/error.log warn;
events {{ worker_connections 8192; }}
http {{
  access_log off;
  client_body_temp_path {d}/body;
  keepalive_requests 1000000;
  keepalive_timeout 75s;
  server {{
    listen 127.0.0.1:{self.port} backlog=4096;
    location = /v1/chat/completions {{ default_type application/json; return 200 {_nginx_string(fixtures.CHAT_JSON)}; }}
    location = /small/chat/completions {{ default_type text/event-stream; return 200 {_nginx_string(fixtures.sse_answer())}; }}
    location = /relay/chat/completions {{ default_type text/event-stream; error_page 405 =200 $uri; alias {relay}; }}
    location = /stream200/chat/completions {{ default_type text/event-stream; error_page 405 =200 $uri; alias {stream200}; }}
    location = /hold/chat/completions {{
      default_type text/event-stream; error_page 405 =200 $uri; alias {hold};
      limit_rate {rate}; limit_rate_after 512; sendfile off; output_buffers 1 256;
    }}
  }}
}}
""")

    def __enter__(self) -> Nginx:
        self._proc = subprocess.Popen(
            [self.binary, "-p", str(self.dir), "-c", str(self.dir / "nginx.conf"), "-e", str(self.dir / "error.log")],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, preexec_fn=die_with_parent,
        )
        try:
            wait_listening(self.port, 10, self._proc)
        except RuntimeError:
            err = self._proc.stderr.read().decode(errors="replace") if self._proc.stderr else ""
            self.__exit__(None, None, None)
            raise RuntimeError(f"nginx did not start: {err.strip()}") from None
        return self

    @property
    def pid(self) -> int:
        assert self._proc is not None
        return self._proc.pid

    def __exit__(self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None) -> None:
        if self._proc is None:
            return
        if self._proc.poll() is None:
            self._proc.send_signal(signal.SIGTERM)  # fast shutdown
            try:
                self._proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        self._proc = None
