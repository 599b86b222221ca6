"""A real ``python -m auxot tools-worker`` process, running a real MCP server
(the official SDK's, over stdio and over Streamable HTTP), dialled in to an
in-process router: its tools listed, called through the router's registry,
a worker killed mid-call, a revoked key, a tools key where a GPU worker's
belongs and the other way round."""

from __future__ import annotations

import http.server
import json
import signal
import threading
import urllib.error
import urllib.request
from functools import partial
from pathlib import Path
from typing import AsyncIterator

import pytest
import trio
from hypercorn.config import Config as HypercornConfig
from hypercorn.trio import serve as hypercorn_serve

from auxot.accounts.store import Store
from auxot.app import App
from auxot.config import Config, WorkersConfig
from auxot.errors import WebSocketClosed, WebSocketRejected
from auxot.http import websocket
from auxot.scheduling.scheduler import Scheduler
from auxot.workers import wire as gpu_wire
from tests.support.tools_worker import start_tools_worker, worker_config
from tests.tools.test_mcp_client import http_server


@pytest.fixture
async def tools_router(tmp_path: Path) -> AsyncIterator[tuple[App, str, str, str]]:
    """(app, ws URL, a tools key, its id) for an in-process router."""
    store = Store(tmp_path / "db.sqlite3")
    record, key = store.create_worker_key("tools-test", "tools")
    config = Config(data_dir=tmp_path, workers=WorkersConfig(heartbeat_interval=0.3, heartbeat_timeout=5))
    app = App(config, Scheduler([]), store)
    hc = HypercornConfig()
    hc.bind = ["127.0.0.1:0"]
    hc.graceful_timeout = 1
    stop = trio.Event()
    async with trio.open_nursery() as nursery:
        binds = await nursery.start(partial(hypercorn_serve, app, hc, shutdown_trigger=stop.wait))  # type: ignore[arg-type]
        yield app, binds[0].replace("http://", "ws://") + "/ws", key, record.id
        stop.set()
    store.close()


async def wait_for_tools(app: App, count: int) -> None:
    with trio.fail_after(60):
        while len(app.tools.tools()) < count:
            await trio.sleep(0.05)


async def test_tools_are_listed_and_called_through_the_router(tools_router: tuple[App, str, str, str], tmp_path: Path) -> None:
    app, url, key, _ = tools_router
    async with http_server(json_mode=False) as http_url:
        worker = start_tools_worker(url, key, worker_config(tmp_path, after=f'\n[[mcp]]\nname = "remote"\nurl = "{http_url}"\n'))
        try:
            await wait_for_tools(app, 72)  # 36 from each server
            tools = app.tools.tools()
            assert {"test__echo", "test__add", "remote__add", "remote__pixel"} <= set(tools)
            assert tools["test__add"]["input_schema"]["required"] == ["a", "b"]
            assert tools["test__add"]["description"] == "Add two integers" and tools["test__add"]["server"] == "test"

            added = await app.tools.call("test__add", {"a": 20, "b": 22}, 10)
            assert added.content == ({"type": "text", "text": "42"},) and added.structured == {"result": 42}
            remote = await app.tools.call("remote__add", {"a": 1, "b": 2}, 10)
            assert remote.structured == {"result": 3} and not remote.is_error
            failed = await app.tools.call("test__fail", {"message": "no such file"}, 10)
            assert failed.is_error and "no such file" in failed.content[0]["text"]
            slow = await app.tools.call("test__slow", {"seconds": 30}, 0.5)
            assert slow.is_error and "did not finish within 0.5 s" in slow.content[0]["text"]
            unknown = await app.tools.call("test__nope", {}, 5)
            assert unknown.is_error and "no tools worker offers 'test__nope'" in unknown.content[0]["text"]

            # A server's new tool reaches the router without a reconnect.
            await app.tools.call("test__grow", {}, 10)
            with trio.fail_after(10):
                while "test__late" not in app.tools.tools():
                    await trio.sleep(0.05)

            _, api_key = app.store.create_key("health")
            health = await trio.to_thread.run_sync(_health, url, api_key)
            (listed,) = health["tools_workers"]
            assert listed["name"] == "tw" and listed["connected"] and listed["calls_done"] >= 4
            assert {s["name"]: s["state"] for s in listed["servers"]} == {"test": "ready", "remote": "ready", "auxot": "ready"}
        finally:
            worker.send_signal(signal.SIGTERM)
            out = worker.communicate(timeout=30)[0]
    assert worker.returncode == 0, out
    assert "registered with" in out


def _health(ws_url: str, api_key: str) -> dict:  # type: ignore[type-arg]
    """The detailed /health (an API key shows it); 503 while no model provider is up, as here."""
    req = urllib.request.Request(ws_url.replace("ws://", "http://").removesuffix("/ws") + "/health",
                                 headers={"Authorization": f"Bearer {api_key}"})
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            return json.loads(resp.read())  # type: ignore[no-any-return]
    except urllib.error.HTTPError as exc:
        return json.loads(exc.read())  # type: ignore[no-any-return]


async def test_a_worker_killed_mid_call_fails_the_call_at_once(tools_router: tuple[App, str, str, str], tmp_path: Path) -> None:
    app, url, key, _ = tools_router
    worker = start_tools_worker(url, key, worker_config(tmp_path))
    try:
        await wait_for_tools(app, 36)

        async def kill_soon() -> None:
            await trio.sleep(0.5)
            worker.kill()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(kill_soon)
            started = trio.current_time()
            result = await app.tools.call("test__slow", {"seconds": 60}, 60)
        assert result.is_error and "went away mid-call" in result.content[0]["text"]
        assert trio.current_time() - started < 10
        with trio.fail_after(10):
            while app.tools.tools():
                await trio.sleep(0.05)
    finally:
        worker.kill()
        worker.wait(10)


async def test_a_revoked_key_drops_the_worker_and_it_stops(tools_router: tuple[App, str, str, str], tmp_path: Path) -> None:
    app, url, key, key_id = tools_router
    worker = start_tools_worker(url, key, worker_config(tmp_path))
    try:
        await wait_for_tools(app, 36)
        assert app.store.revoke_worker_key(key_id)
        with trio.fail_after(20):
            while app.tools.tools():
                await trio.sleep(0.05)
        out = (await trio.to_thread.run_sync(partial(worker.communicate, timeout=30)))[0]
        assert worker.returncode == 3, out  # refused: it does not retry a revoked key
        assert "revoked" in out
    finally:
        worker.kill()
        worker.wait(10)


async def test_keys_keep_to_their_roles(tools_router: tuple[App, str, str, str], tmp_path: Path) -> None:
    app, url, key, _ = tools_router
    # A tools key is no API key...
    def models() -> tuple[int, str]:  # in a thread, body and all: the router runs on this test's event loop
        req = urllib.request.Request(url.replace("ws://", "http://").removesuffix("/ws") + "/v1/models",
                                     headers={"Authorization": f"Bearer {key}"})
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:
                return resp.status, resp.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode()

    status, body = await trio.to_thread.run_sync(models)
    assert status == 401 and "tools worker key" in body
    # ...and a GPU worker's hello under a tools key is a protocol error, not a GPU worker.
    ws = await websocket.connect(url, headers=[("Authorization", f"Bearer {key}")])
    try:
        await ws.send_text(gpu_wire.hello(name="gpu", instance="i", version="0", models=["m"], slots=1, ctx_size=None,
                                          state="ready", facts={}))
        with pytest.raises(WebSocketClosed) as closed:
            await ws.receive_text()
    finally:
        await ws.aclose()
    assert closed.value.code == 1002 and "a tools. key is for tools workers" in closed.value.reason
    assert not app.providers and not app.tools.workers
    # An unknown key never upgrades.
    with pytest.raises(WebSocketRejected):
        await websocket.connect(url, headers=[("Authorization", "Bearer tools." + "x" * 43)])


class Pages(http.server.BaseHTTPRequestHandler):
    """A web server on loopback for web_fetch: /small, /big (3 KB), /moved (redirects to /small)."""

    def log_message(self, *args: object) -> None:
        pass

    def do_GET(self) -> None:  # noqa: N802
        if self.path == "/moved":
            self.send_response(302)
            self.send_header("Location", "/small")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        body = b"hello from loopback" if self.path == "/small" else b"x" * 3000
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


async def test_web_fetch_reads_pages_within_its_limits_and_only_where_allowed(
    tools_router: tuple[App, str, str, str], tmp_path: Path,
) -> None:
    app, url, key, _ = tools_router
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Pages)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    site = f"http://127.0.0.1:{server.server_address[1]}"
    allowed = worker_config(tmp_path, before='[auxot]\nallow_private = ["127.0.0.1"]\nmax_bytes = 1000\n\n')
    worker = start_tools_worker(url, key, allowed)
    try:
        await wait_for_tools(app, 37)
        assert "auxot__web_fetch" in app.tools.tools()
        page = await app.tools.call("auxot__web_fetch", {"url": site + "/small"}, 10)
        assert not page.is_error and page.content[0]["text"] == "HTTP 200 (text/plain; charset=utf-8)\n\nhello from loopback"
        moved = await app.tools.call("auxot__web_fetch", {"url": site + "/moved"}, 10)
        assert moved.content[0]["text"].endswith("hello from loopback")
        big = await app.tools.call("auxot__web_fetch", {"url": site + "/big"}, 10)
        assert big.content[0]["text"].endswith("x" * 1000 + "\n[auxot: cut at 1000 bytes]")
        local = await app.tools.call("auxot__web_fetch", {"url": "file:///etc/passwd"}, 10)
        assert local.is_error and "only http:// and https://" in local.content[0]["text"]
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(30)
    # The same worker without the allowance: loopback is refused, and says how to allow it.
    (tmp_path / "strict").mkdir()
    worker = start_tools_worker(url, key, worker_config(tmp_path / "strict"), name="strict")
    try:
        with trio.fail_after(60):
            while not (strict := app.tools.workers.get("strict")) or "auxot__web_fetch" not in strict.tools:
                await trio.sleep(0.05)
        refused = await app.tools.call("auxot__web_fetch", {"url": site + "/small"}, 10)
        assert refused.is_error and "127.0.0.1, a non-public address" in refused.content[0]["text"]
        assert "allow_private" in refused.content[0]["text"]
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(30)
        server.shutdown()
        server.server_close()
