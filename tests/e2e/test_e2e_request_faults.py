"""A request's fault is never a provider's: against `auxot serve` and the real
llama-server (no vision projector, 32,768 tokens per slot), requests that cannot
be served get a 400 in the client's dialect saying why, and the model stays in
service for everyone else — no back-off, no failover, no queueing."""

from __future__ import annotations

import secrets
import time

import anthropic
import openai
import pytest
import trio

from auxot import ir, provision
from auxot.config import LlamaCppConfig
from auxot.errors import RequestRejected
from auxot.providers import capabilities
from auxot.providers.llamacpp import LlamaCppProvider
from auxot.scheduling.scheduler import Scheduler
from tests.support.router_process import RouterProcess

PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="


def local(router: RouterProcess) -> dict:
    (provider,) = [p for p in router.health()["providers"] if p["name"] == "local"]
    return provider


def assert_in_service(router: RouterProcess) -> None:
    health = router.health()
    provider = local(router)
    assert health["status"] == "ok" and provider["state"] == "ready" and provider["healthy"], provider
    assert provider["consecutive_failures"] == 0 and provider["sitting_out_s"] == 0, provider


def test_image_requests_are_400s_and_take_nobody_offline(router: RouterProcess) -> None:
    client = openai.OpenAI(base_url=router.base_url + "/api/openai", api_key=router.key, max_retries=0, timeout=60)
    claude = anthropic.Anthropic(base_url=router.base_url + "/api/anthropic", api_key=router.key, max_retries=0, timeout=60)
    assert local(router)["capabilities"] == {"images": False, "tools": True, "context": 32768, "llama_extensions": True,
                                                   "logprobs": True}
    for _ in range(3):
        with pytest.raises(openai.BadRequestError) as caught:
            client.chat.completions.create(model="auto", max_tokens=5, messages=[{"role": "user", "content": [
                {"type": "text", "text": "What is this?"},
                {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}}]}])
        assert "image input" in caught.value.message
    with pytest.raises(anthropic.BadRequestError) as refused:
        claude.messages.create(model="auto", max_tokens=5, messages=[{"role": "user", "content": [
            {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}},
            {"type": "text", "text": "What is this?"}]}])
    assert refused.value.body["error"]["type"] == "invalid_request_error" and "image input" in refused.value.message
    assert_in_service(router)
    began = time.monotonic()
    answer = client.chat.completions.create(model="auto", max_tokens=5, messages=[{"role": "user", "content": "Hi"}])
    assert answer.choices[0].message.content and time.monotonic() - began < 15


def test_a_schema_llama_server_refuses_is_the_request_s_fault(router: RouterProcess) -> None:
    """Not caught before the call: llama-server itself refuses the schema; its
    reason reaches the client as a 400, and the provider is not held to blame."""
    client = openai.OpenAI(base_url=router.base_url + "/api/openai", api_key=router.key, max_retries=0, timeout=60)
    for _ in range(3):
        with pytest.raises(openai.BadRequestError) as caught:
            client.chat.completions.create(model="auto", max_tokens=5, messages=[{"role": "user", "content": "Hi"}],
                                           response_format={"type": "json_schema", "json_schema": {
                                               "name": "s", "schema": {"type": "object", "properties": {"a": {"type": "frob"}}}}})
        assert "unrecognized type frob" in caught.value.message and "cannot serve this request" in caught.value.message
    assert_in_service(router)


def test_a_prompt_longer_than_every_context_is_refused_before_any_call(router: RouterProcess) -> None:
    client = openai.OpenAI(base_url=router.base_url + "/api/openai", api_key=router.key, max_retries=0, timeout=60)
    served = local(router)["served"]
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model="auto", max_tokens=5, messages=[{"role": "user", "content": "word " * 40000}])
    assert "longest context of the providers for model 'auto' is 32,768 tokens" in caught.value.message
    assert local(router)["served"] == served  # no generation was asked for
    assert_in_service(router)


async def test_llama_server_s_own_refusal_of_an_image_is_not_held_against_it() -> None:
    """The same image, to a llama-server whose capabilities the router does not
    know: llama-server answers 500 "image input is not supported"; the client
    gets that reason as a 400, nothing is retried, and the provider serves the
    next request at once."""
    binary, model = provision.find_llama_server(), provision.find_model()
    assert binary and model, "run `python -m auxot install` first"
    provider = LlamaCppProvider(LlamaCppConfig(name="local", parallel=1, ctx_size=2048), binary, model, lambda: secrets.token_hex(4))
    scheduler = Scheduler([provider])
    image = ir.Request(model="auto", sampling=ir.Sampling(max_tokens=5), messages=(ir.Message(ir.Role.USER, (
        ir.Text("What is this?"), ir.Image(media_type="image/png", data=PNG))),))
    text = ir.Request(model="auto", sampling=ir.Sampling(max_tokens=5), messages=(ir.Message(ir.Role.USER, (ir.Text("Hi"),)),))
    async with trio.open_nursery() as nursery:
        with trio.fail_after(120):
            await nursery.start(scheduler.run)
            assert provider.state == "ready" and provider.capabilities.images is False
            provider.capabilities = capabilities.UNKNOWN  # as an older worker, or an unknown upstream, would be
            for _ in range(3):
                with pytest.raises(RequestRejected, match="image input is not supported"):
                    async for _ in scheduler.stream(image):
                        pass
            (seat,) = scheduler.seats
            assert seat.failures == 0 and seat.healthy(trio.current_time()) and seat.in_use == 0
            began = trio.current_time()
            events = [e async for e in scheduler.stream(text)]
            assert isinstance(events[-1], ir.MessageStop) and trio.current_time() - began < 10
        nursery.cancel_scope.cancel()
