"""Nothing bypasses the router: llama-server answers only the router (a secret
per life, in its environment, never on its command line), and `/health`
without a key shows nothing that would lead around the router."""

from __future__ import annotations

import json
import secrets
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import trio

from auxot import ir, provision
from auxot.config import LlamaCppConfig
from auxot.endpoints.health import PUBLIC_PROVIDER_FIELDS
from auxot.providers.llamacpp import LlamaCppProvider
from tests.support.router_process import RouterProcess


def test_health_without_a_key_shows_state_and_slots_only(router: RouterProcess) -> None:
    public = router.health(detailed=False)
    assert set(public) == {"status", "queue_depth", "providers"} and public["status"] == "ok"
    assert [set(p) for p in public["providers"]] == [set(PUBLIC_PROVIDER_FIELDS)]
    assert public["providers"][0]["state"] == "ready" and public["providers"][0]["slots_total"] == 2
    detailed = router.health()
    assert detailed["providers"][0]["port"] and detailed["providers"][0]["pid"] and detailed["version"]
    with urllib.request.urlopen(router.base_url + "/vhealth", timeout=5) as resp:
        page = resp.read().decode()
    assert str(detailed["providers"][0]["pid"]) not in page and "model_file" not in page
    bad = urllib.request.Request(router.base_url + "/health", headers={"Authorization": "Bearer user." + "x" * 43})
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(bad, timeout=5)
    assert refused.value.code == 401


def post(port: int, key: str | None) -> int:
    headers = {"Content-Type": "application/json", **({"Authorization": f"Bearer {key}"} if key else {})}
    body = json.dumps({"messages": [{"role": "user", "content": "hi"}], "max_tokens": 3}).encode()
    request = urllib.request.Request(f"http://127.0.0.1:{port}/v1/chat/completions", data=body, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=30) as resp:
            return resp.status
    except urllib.error.HTTPError as err:
        return err.code


async def test_llama_server_answers_only_the_router(tmp_path: Path) -> None:
    binary, model = provision.find_llama_server(), provision.find_model()
    assert binary and model, "run `python -m auxot install` first"
    provider = LlamaCppProvider(LlamaCppConfig(name="local", parallel=1, ctx_size=1024), binary, model, lambda: secrets.token_hex(4))
    async with trio.open_nursery() as nursery:
        with trio.fail_after(120):
            await nursery.start(provider.run)
            assert provider.state == "ready" and provider.port and provider.pid
            port = provider.port
            assert await trio.to_thread.run_sync(post, port, None) == 401
            assert await trio.to_thread.run_sync(post, port, "guess") == 401
            cmdline = Path(f"/proc/{provider.pid}/cmdline").read_bytes()
            assert b"api-key" not in cmdline  # the secret is not for every local user to read
            request = ir.Request(model="auto", sampling=ir.Sampling(max_tokens=3),
                                 messages=(ir.Message(ir.Role.USER, (ir.Text("hi"),)),))
            events = [e async for e in provider.stream(request)]
            assert isinstance(events[-1], ir.MessageStop)  # the router holds the secret
            assert await provider.count_tokens(request) > 0
        nursery.cancel_scope.cancel()
