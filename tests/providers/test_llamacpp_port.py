"""llama-server is started on a port auxot found free; another process can
take that port before the child binds it.  That lost race is retried at once
on a fresh port: it is neither a failed start nor a restart with backoff; and
the other process answering the health probe is not taken for our child."""

from __future__ import annotations

import http.server
import secrets
import threading
from pathlib import Path

import pytest
import trio

from auxot import provision
from auxot.config import LlamaCppConfig
from auxot.providers import llamacpp
from auxot.providers.llamacpp import LlamaCppProvider


async def test_a_port_taken_before_llama_server_binds_it_is_retried_at_once(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    binary, model = provision.find_llama_server(), provision.find_model()
    assert binary and model, "run `python -m auxot install` first"
    # Another process's HTTP server, healthy by any probe's account.
    squatter = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Healthy)
    threading.Thread(target=squatter.serve_forever, daemon=True).start()
    taken = squatter.server_port
    handed: list[int] = []
    real = llamacpp.free_port

    def racy_free_port() -> int:
        # The first two ports handed out are already someone else's.
        port = taken if len(handed) < 2 else real()
        handed.append(port)
        return port

    monkeypatch.setattr(llamacpp, "free_port", racy_free_port)
    provider = LlamaCppProvider(LlamaCppConfig(name="port-race"), binary, model, lambda: secrets.token_hex(4))
    try:
        async with trio.open_nursery() as nursery:
            with trio.fail_after(120):
                await nursery.start(provider.run)
            assert provider.state == "ready", list(provider.stderr_tail)[-5:]
            assert handed[:2] == [taken, taken] and provider.port == handed[2] != taken
            assert provider.restarts == 0 and provider.lives == 1
            nursery.cancel_scope.cancel()
    finally:
        squatter.shutdown()
        squatter.server_close()


class Healthy(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, *args: object) -> None:
        pass
