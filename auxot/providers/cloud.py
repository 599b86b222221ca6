"""A cloud upstream as a provider: OpenAI, Anthropic, or any OpenAI-compatible
server, reached through the project's own HTTP client (``auxot.http``: trio + TLS).

The request is encoded in the upstream's dialect, the upstream always streams,
and its SSE body becomes IR events through :class:`UpstreamStream` — so any
client dialect reaches any upstream dialect.  Upstream failures are mapped
by the mapping every provider shares (``outcome.py``, mapping §errors): the
request's fault is a 400 with the upstream's reason; the provider's (refused
credentials — the router's own auth is separate and the provider's key is never
echoed —, 429 with the upstream's Retry-After, 5xx, timeouts and resets before
the first byte) fails over; after the first byte, an in-stream error event.
"""

from __future__ import annotations

import json
import logging
import ssl
from typing import AsyncGenerator, Callable

import trio

from .. import ir
from ..config import CloudConfig
from ..dialects import anthropic_upstream, openai_chat_upstream
from ..errors import (
    AuxotError,
    CannotServe,
    HTTPClientError,
    ProviderUnavailable,
    UpstreamError,
)
from ..http import Pool, Timeouts
from ..scheduling import routing
from . import outcome
from .base import ProviderBase, ProviderState
from .capabilities import Capabilities
from .exchange import stream_exchange

log = logging.getLogger("auxot.cloud")

# What Anthropic's count_tokens takes of a Messages request (it refuses the rest,
# max_tokens and stream included).
_COUNT_TOKENS_FIELDS = ("model", "messages", "system", "tools", "tool_choice", "thinking")


class CloudProvider(ProviderBase):
    def __init__(self, config: CloudConfig, id_factory: Callable[[], str]) -> None:
        self.config = config
        self.tier = config.tier
        self.order = config.order
        self.slots_total = config.max_concurrent
        self.name = config.name
        self.kind = config.kind
        self.models = config.models
        self.state = ProviderState.READY if config.models else ProviderState.STARTING  # discovery pending
        # An OpenAI-compatible upstream may itself be a llama-server: the operator says so.
        self.capabilities = Capabilities(images=config.images, context=config.context,
                                         llama_extensions=config.llama_extensions,
                                         logprobs=False if config.kind == "anthropic" else None)
        self._new_id = id_factory
        tls = ssl.create_default_context(cafile=config.ca_bundle) if config.ca_bundle else None
        self._pool = Pool(
            config.base_url, tls=tls, max_connections=config.max_concurrent,
            timeouts=Timeouts(connect=config.connect_timeout, tls_handshake=config.tls_timeout, first_byte=config.first_byte_timeout,
                              idle=config.idle_timeout, total=config.total_timeout),
        )

    @property
    def _who(self) -> str:
        return f"{self.name}: the upstream"

    def served_model(self, requested: str) -> str:
        served = routing.listed(self)
        return requested if routing.serves(self, requested) and not routing.is_pattern(requested) or not served else served[0]

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Owns the connection pool until cancelled; discovers models first if asked."""
        try:
            if self.config.discover_models:
                await self.discover_models()
            task_status.started()
            await trio.sleep_forever()
        finally:
            await self._pool.aclose()

    async def discover_models(self) -> None:
        """Add what the upstream's models endpoint lists (OpenAI ``GET /models``,
        Anthropic ``GET /v1/models``; both answer ``{"data": [{"id": ...}]}``)."""
        path = "/v1/models" if self.config.dialect == "anthropic" else "/models"
        headers = self._auth_headers()
        try:
            with trio.fail_after(self.config.first_byte_timeout):
                async with self._pool.request("GET", path, headers=headers) as resp:
                    raw = await resp.read(16 * 1024 * 1024)
            if resp.status != 200:
                raise outcome.from_status(self._who, resp.status, raw, secret=self.config.api_key)
            found = [m["id"] for m in json.loads(raw)["data"] if isinstance(m, dict) and isinstance(m.get("id"), str)]
        except (HTTPClientError, AuxotError, trio.TooSlowError, ValueError, KeyError, TypeError) as exc:
            log.warning("%s: model discovery failed: %s", self.name, getattr(exc, "message", exc))
            found = []
        self.models = tuple(dict.fromkeys((*self.config.models, *found)))
        self.state = ProviderState.READY if self.models else ProviderState.UNAVAILABLE
        log.info("%s: serving %d models", self.name, len(self.models))

    def _auth_headers(self) -> list[tuple[str, str]]:
        headers: list[tuple[str, str]] = []
        if self.config.dialect == "anthropic":
            headers.append(("anthropic-version", self.config.anthropic_version))
            if self.config.api_key:
                headers.append(("x-api-key", self.config.api_key))
        elif self.config.api_key:
            headers.append(("Authorization", f"Bearer {self.config.api_key}"))
        return [*headers, *self.config.headers]

    def health(self) -> dict[str, object]:
        return {
            "name": self.name, "kind": self.kind, "tier": self.tier, "state": self.state, "models": list(self.models),
            "base_url": self.config.base_url,
        }

    def _request(self, req: ir.Request) -> tuple[str, list[tuple[str, str]], bytes]:
        model = self.served_model(req.model)
        headers = [("Content-Type", "application/json"), ("Accept", "text/event-stream"), *self._auth_headers()]
        if self.config.dialect == "anthropic":
            body, path = anthropic_upstream.encode_request(req, model), "/v1/messages"
        else:
            body, path = openai_chat_upstream.encode_request(req, model), "/chat/completions"
        return path, headers, json.dumps(body, ensure_ascii=False).encode()

    async def stream(self, req: ir.Request) -> AsyncGenerator[ir.Event, None]:
        if self.state != ProviderState.READY:
            raise ProviderUnavailable(f"{self.name}: no models known yet (discovery {self.state})")
        path, headers, body = self._request(req)
        async for event in stream_exchange(
            self._pool, path, headers, body, dialect=self.config.dialect, id_factory=self._new_id,
            who=self._who, secret=self.config.api_key,
        ):
            yield event

    async def count_tokens(self, req: ir.Request) -> int:
        """Exact prompt tokens from an Anthropic upstream (``POST
        /v1/messages/count_tokens``).  OpenAI's API has no such endpoint, and an
        estimate passed off as a count would be a fake answer: that is an error."""
        if self.state != ProviderState.READY:
            raise ProviderUnavailable(f"{self.name}: no models known yet (discovery {self.state})")
        if self.config.dialect != "anthropic":
            raise CannotServe(f"provider {self.name!r} cannot count tokens: its upstream ({self.config.dialect}) has no "
                              "token-counting endpoint")
        full = anthropic_upstream.encode_request(req, self.served_model(req.model))
        body = {k: v for k, v in full.items() if k in _COUNT_TOKENS_FIELDS}
        headers = [("Content-Type", "application/json"), *self._auth_headers()]
        try:
            with trio.fail_after(self.config.first_byte_timeout):
                async with self._pool.request("POST", "/v1/messages/count_tokens", headers=headers,
                                              body=json.dumps(body, ensure_ascii=False).encode()) as resp:
                    raw = await resp.read(1024 * 1024)
        except trio.TooSlowError:
            raise UpstreamError(f"{self.name}: the upstream did not count tokens within {self.config.first_byte_timeout:g}s",
                                status=504, retriable=True) from None
        except HTTPClientError as exc:
            raise UpstreamError(f"{self.name}: the upstream: {exc}", status=502, retriable=True) from None
        if resp.status != 200:
            raise outcome.from_status(self._who, resp.status, raw, resp.header("retry-after"), secret=self.config.api_key)
        try:
            tokens = json.loads(raw)["input_tokens"]
        except (ValueError, KeyError, TypeError):
            tokens = None
        if not isinstance(tokens, int) or isinstance(tokens, bool) or tokens < 0:
            raise UpstreamError(f"{self.name}: the upstream's token count was not a count: {raw[:200]!r}", status=502)
        return tokens
