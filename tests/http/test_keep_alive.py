"""Clients keep their connections open between requests (every SDK does).  An
idle keep-alive connection must not hold up the router's graceful stop, after
any kind of answer: hypercorn closes idle connections when it stops, provided
the answer's last message was not cut short by the relay's disconnect watcher
(hypercorn sends ``http.disconnect`` as soon as the answer is complete).

The upstream is the TEST DOUBLE of the paid cloud APIs (cloud_double.py)."""

from __future__ import annotations

import ssl
from functools import partial
from pathlib import Path
from typing import Any

import anthropic
import openai
import trio
from hypercorn.config import Config as HypercornConfig

from auxot.accounts.store import Store
from auxot.config import CloudConfig, Config
from auxot.http_server import Connections, serve_http
from auxot.providers.cloud import CloudProvider
from auxot.server import serve
from tests.support.certs import make_pki
from tests.support.cloud_double import API_KEY, CloudDouble
from tests.support.loopback_server import LoopbackServer

GRACE = 30.0  # what a stop would wait on a connection that hypercorn does not close


async def test_idle_keep_alive_clients_do_not_hold_up_a_graceful_stop(tmp_path: Path) -> None:
    pki = make_pki(tmp_path / "pki")
    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls.load_cert_chain(pki.cert_pem, pki.key_pem)
    store = Store(tmp_path / "db.sqlite3")
    _, key = store.create_key("test")
    async with trio.open_nursery() as outer:
        upstream = LoopbackServer(CloudDouble(), tls=tls)
        await outer.start(upstream.run)
        base = f"https://127.0.0.1:{upstream.port}"
        configs = (
            CloudConfig("anthropic-cloud", "anthropic", base, ("claude-haiku-4-5",), api_key=API_KEY, ca_bundle=str(pki.ca_pem)),
            CloudConfig("openai-cloud", "openai", base + "/v1", ("gpt-4o",), api_key=API_KEY, ca_bundle=str(pki.ca_pem)),
        )
        shutdown = trio.Event()
        stopped = trio.Event()

        async def router(task_status: trio.TaskStatus[list[str]]) -> None:
            await serve(Config(tmp_path, port=0, providers=configs, graceful_timeout=GRACE), store=store,
                        providers=[CloudProvider(c, lambda: "call_x") for c in configs], shutdown=shutdown,
                        handle_signals=False, task_status=task_status)
            stopped.set()

        (url,) = await outer.start(router)
        # Left open on purpose, each with its idle connection after the answers below.
        oai = openai.AsyncOpenAI(base_url=url + "/v1", api_key=key, max_retries=0)
        claude = anthropic.AsyncAnthropic(base_url=url + "/api/anthropic", api_key=key, max_retries=0)
        with trio.fail_after(30):
            answer = await oai.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "x"}])
            assert answer.choices
            stream = await oai.chat.completions.create(model="claude-haiku-4-5", stream=True, max_tokens=50,
                                                       messages=[{"role": "user", "content": "x"}])
            assert [c async for c in stream]
            message = await claude.messages.create(model="gpt-4o", max_tokens=50, messages=[{"role": "user", "content": "x"}])
            assert message.content
        began = trio.current_time()
        shutdown.set()
        with trio.fail_after(GRACE / 3):
            await stopped.wait()
        assert trio.current_time() - began < 2, trio.current_time() - began
        await oai.close()
        await claude.close()
        outer.cancel_scope.cancel()
    store.close()


async def _tiny_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Answers after ``?wait`` seconds (the query string), 200 "ok"."""
    if scope["type"] != "http":
        return
    await trio.sleep(float(scope["query_string"] or 0))
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})
    await send({"type": "http.response.body", "body": b"ok"})


async def _answer(stream: trio.SocketStream, wait: float = 0) -> bytes:
    await stream.send_all(f"GET /?{wait} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    got = b""
    while not got.endswith(b"ok"):
        got += await stream.receive_some(4096)
    return got


async def test_an_idle_connection_closes_after_the_keep_alive_timeout_and_a_busy_one_does_not() -> None:
    """The keep-alive timer is a deadline on the connection's read (http_server's
    _IdleDeadline), not hypercorn's task per request: it must still close an idle
    connection, one that never sent a request included, and never one whose
    request is being answered, however long that takes."""
    hc = HypercornConfig()
    hc.bind = ["127.0.0.1:0"]
    hc.keep_alive_timeout = 0.5
    shutdown = trio.Event()
    async with trio.open_nursery() as nursery:
        (url,) = await nursery.start(partial(serve_http, _tiny_app, hc, Connections(5.0), shutdown))
        port = int(url.rsplit(":", 1)[1])
        with trio.fail_after(10):
            silent = await trio.open_tcp_stream("127.0.0.1", port)
            used = await trio.open_tcp_stream("127.0.0.1", port)
            assert b" 200 " in await _answer(used)
            began = trio.current_time()
            assert await silent.receive_some(10) == b""  # closed, never having sent a request
            assert await used.receive_some(10) == b""  # closed after its answer, idle
            assert 0.4 < trio.current_time() - began < 2
            busy = await trio.open_tcp_stream("127.0.0.1", port)
            assert b" 200 " in await _answer(busy)
            assert b" 200 " in await _answer(busy, wait=1.2)  # answered across two keep-alive timeouts
            assert b" 200 " in await _answer(busy)  # and still open for the next one
        shutdown.set()
