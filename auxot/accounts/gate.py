"""Who may ask for what, and the ledger row each metered request leaves.

    authenticate(scope)          → the key's record, or 401 with a hint naming the
                                   likely mistake (never the key); repeated failures
                                   from one client address are answered ever later
    admit(scope, key, request)   → the request, or 403 (model not allowed for the
                                   key) or 429 with Retry-After (over rpm / tpm)
    start / metered / finish     → one usage row per request record, committed
                                   before the last byte of the answer is sent

Database calls run in a worker thread (``trio.to_thread``), or on the event loop
only where they cannot wait (the key cache's version check, a ledger commit
when nobody else holds the write lock): the event loop never waits on SQLite.
The rate limiter and the failure back-off are pure (``limits.py``) and read
trio's clock, so tests can drive them with the autojump clock.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import time
from datetime import datetime, timezone
from typing import Any, Callable, Sequence

import trio

from .. import ir
from ..asgi import Scope, Send, header
from ..errors import AuthenticationFailed, PermissionDenied, RateLimited
from ..providers.base import ProviderState
from ..request import Record
from ..scheduling import routing
from .group_commit import GroupCommit
from .key_cache import KeyCache
from .keys import shape_problem
from .limits import FailureBackoff, RateLimiter, retry_after_header
from .store import KeyRecord, Store

log = logging.getLogger("auxot.auth")


def client_address(scope: Scope) -> str:
    client = scope.get("client")
    return str(client[0]) if client else "unknown"


def permitted_model(allowed: Sequence[str], model: str, providers: Sequence[Any]) -> str:
    """The model id a request goes to under a key limited to ``allowed``.

    A concrete id must be in the list (else 403).  ``"auto"`` stays the router's
    choice, among the allowed models only: the first allowed model (in the key's
    order) served by the provider ``auto`` would pick — ready before not ready,
    then the scheduler's own ranking (``routing.rank``) — among providers serving any of them."""
    if model != "auto":
        if model in allowed:
            return model
        raise PermissionDenied(f"This API key may not use model {model!r}; it may use: {', '.join(allowed)}", param="model")
    ranked = sorted(enumerate(providers), key=lambda ip: (ip[1].state != ProviderState.READY, routing.rank(ip[1], ip[0])))
    for _, provider in ranked:
        for candidate in allowed:
            if candidate in provider.models:
                return candidate
    raise PermissionDenied(
        f"This API key may use only {', '.join(allowed)}, and no provider on this router serves any of them", param="model"
    )


class Gate:
    def __init__(self, store: Store, *, wall_clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.ledger: GroupCommit[dict[str, Any]] = GroupCommit(
            store.record_usage_many, functools.partial(store.record_usage_many, wait=False))
        self.keys = KeyCache(store)  # authentication without a thread hop per request
        self.wall_clock = wall_clock  # for expiry and the ledger's timestamps
        self.limiter = RateLimiter(trio.current_time)
        self.failures = FailureBackoff(trio.current_time)

    # --- authentication ------------------------------------------------------

    async def authenticate(self, scope: Scope, *, x_api_key: bool = False) -> KeyRecord:
        """The record of a valid key in ``Authorization: Bearer`` (or, on Anthropic
        paths, ``x-api-key``); raises AuthenticationFailed with a hint otherwise."""
        try:
            key = await self._identify(scope, x_api_key)
        except AuthenticationFailed:
            # Only this failing answer waits (a sleep in its own task): other
            # requests, from this address or any other, go on meanwhile.
            delay = self.failures.failed(client_address(scope))
            if delay > 0:
                await trio.sleep(delay)
            raise
        return key

    async def _identify(self, scope: Scope, x_api_key: bool) -> KeyRecord:
        value = header(scope, b"authorization")
        key = header(scope, b"x-api-key") if x_api_key else None
        if key is not None and value is None:
            key = key.strip()
        elif value is None:
            where = "'x-api-key: <key>' or 'Authorization: Bearer <key>'" if x_api_key else "'Authorization: Bearer <key>'"
            raise AuthenticationFailed(f"Missing API key: send it as {where}")
        else:
            scheme, _, key = value.strip().partition(" ")
            key = key.strip()
            if scheme.lower() != "bearer" or not key:
                raise AuthenticationFailed("Malformed Authorization header: expected 'Authorization: Bearer <key>'")
        if not key:
            raise AuthenticationFailed("Missing API key: the x-api-key header is empty")
        if problem := shape_problem(key):
            raise AuthenticationFailed(f"Invalid API key: {problem}")
        found = await self.keys.find(key)  # from memory while the key table is unchanged
        if found is None:
            raise AuthenticationFailed("Invalid API key: no such key on this router")
        if found.rotated_away:
            raise AuthenticationFailed("Invalid API key: this key was rotated; use the new key it was given")
        record = found.record
        if record.revoked_at is not None:
            raise AuthenticationFailed("Invalid API key: this key has been revoked")
        if record.expires_at is not None and record.expires_at <= self.wall_clock():
            when = datetime.fromtimestamp(record.expires_at, timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
            raise AuthenticationFailed(f"Invalid API key: this key expired at {when}")
        return record

    # --- permission and limits -----------------------------------------------

    def admit(self, key: KeyRecord, request: ir.Request, providers: Sequence[Any]) -> ir.Request:
        """The request as it will be served (``auto`` narrowed to the key's models),
        or PermissionDenied / RateLimited.  An admitted request counts against rpm."""
        if key.models:
            model = permitted_model(key.models, request.model, providers)
            if model != request.model:
                request = dataclasses.replace(request, model=model)
        refusal = self.limiter.admit(key.id, key.rpm, key.tpm)
        if refusal is not None:
            seconds = retry_after_header(refusal.retry_after)
            raise RateLimited(f"Rate limited: this key's {refusal.reason}; retry in {seconds} s", retry_after=seconds)
        return request

    # --- the usage ledger ----------------------------------------------------

    def start(self, endpoint: str) -> Record:
        return Record(endpoint, self.wall_clock(), trio.current_time())

    def metered(self, record: Record, send: Send) -> Send:
        """``send``, noting the status, and writing the ledger row just before the
        last body message: a client that saw its answer end has its row."""

        async def send_metered(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                record.status = message["status"]
            elif message["type"] == "http.response.body" and not message.get("more_body", False):
                await self.finish(record)
            await send(message)

        return send_metered

    async def finish(self, record: Record) -> None:
        """Once per record: charge the key's tokens and commit its ledger row.
        Requests that never authenticated leave no row (they are in the log)."""
        if record.ended is not None:
            return
        record.ended = trio.current_time()
        if record.key_id is None:
            return
        self.limiter.charge(record.key_id, record.charged_tokens())
        row = record.row()
        # Shielded: a request cancelled by its client or by shutdown still leaves
        # its row.  SQLite's busy timeout (10 s) bounds the wait.
        with trio.CancelScope(shield=True):
            try:
                await self.ledger.write(row)
            except Exception:
                log.exception("could not write the usage row of a %s request", record.endpoint)
