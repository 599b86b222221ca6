"""A worker's side of ``/ws``, GPU or tools: dial out to the router, serve one
connection, and when it ends reconnect with capped exponential backoff and
jitter (a router restart must not meet every worker at the same instant).
Give up only when retrying cannot help: the router refuses the key (HTTP
401/403 at the upgrade, or close code 1008 when it is revoked while connected),
or the router cannot be reached the way it was asked (a TLS certificate that
does not verify, ws:// against a TLS port or the other way round)."""

from __future__ import annotations

import json
import logging
import random
import ssl
from typing import Awaitable, Callable
from urllib.parse import urlsplit

import trio

from ..errors import ConnectError, WebSocketClosed, WebSocketRejected
from ..http import websocket
from ..http.network import open_stream
from ..http.websocket import WebSocket
from . import wire

log = logging.getLogger("auxot.worker")

BACKOFF_START = 0.5
BACKOFF_CAP = 30.0
STABLE_AFTER = 30.0  # a session that lasted this long resets the backoff


class WorkerRefused(Exception):
    """The router will not take this worker (bad or revoked key): do not retry."""


class CannotReach(Exception):
    """Retrying cannot help: the router's TLS certificate does not verify, or the
    URL's scheme does not match what the port speaks.  Said after a few
    attempts (a router mid-restart fails once or twice, never three times so)."""


HOPELESS_AFTER = 3  # attempts failing the same hopeless way before the worker gives up


async def _hopeless(url: str, exc: ConnectError, tls: ssl.SSLContext | None) -> str | None:
    """Why this failure will not go away by retrying, or None."""
    text = str(exc)
    if "CERTIFICATE_VERIFY_FAILED" in text:
        return "the router's TLS certificate does not verify: give --ca-bundle the CA that signed it"
    if "WRONG_VERSION_NUMBER" in text or "wrong version number" in text:
        return "the router does not speak TLS on this port: use ws:// instead of wss://"
    if tls is None and "closed the connection during the WebSocket handshake" in text:
        parts = urlsplit(url)
        probe = ssl.create_default_context()
        probe.check_hostname, probe.verify_mode = False, ssl.CERT_NONE  # only: does it speak TLS at all?
        try:
            stream = await open_stream(parts.hostname or "", parts.port or 80, tls=probe, connect_timeout=5)
        except ConnectError:
            return None
        await trio.aclose_forcefully(stream)
        return "the router speaks TLS on this port: use wss:// instead of ws://"
    return None


class Backoff:
    """Capped exponential backoff with "equal jitter": each delay is between half
    and all of ``min(cap, start * 2**attempt)``, so a crowd of workers spreads
    out after a router restart yet none waits much longer than it must."""

    def __init__(self, start: float = BACKOFF_START, cap: float = BACKOFF_CAP, rng: Callable[[], float] = random.random) -> None:
        self.start, self.cap, self._rng = start, cap, rng
        self.attempt = 0

    def next(self) -> float:
        ceiling = min(self.cap, self.start * 2 ** min(self.attempt, 62))
        self.attempt += 1
        return ceiling / 2 + self._rng() * ceiling / 2

    def reset(self) -> None:
        self.attempt = 0


ServeOne = Callable[[WebSocket], Awaitable[WebSocketClosed]]  # one connection, until it ends; says why (and closes it)


async def dial(router_url: str, key: str, ca_bundle: str | None, who: str, serve_one: ServeOne) -> None:
    """Connect, ``serve_one``, and reconnect with backoff — until the key is refused
    (:class:`WorkerRefused`) or the router cannot be reached as asked (:class:`CannotReach`).
    ``who``: "worker" or "tools worker", in messages and the User-Agent."""
    backoff = Backoff()
    hopeless = 0  # consecutive attempts that failed in a way retrying cannot mend
    tls = ssl.create_default_context(cafile=ca_bundle) if router_url.startswith("wss:") else None
    headers = [("Authorization", f"Bearer {key}"), ("User-Agent", f"auxot-{who.replace(' ', '-')}")]
    while True:
        began = trio.current_time()
        try:
            ws = await websocket.connect(router_url, headers=headers, tls=tls)
        except WebSocketRejected as exc:
            if exc.status in (401, 403):
                raise WorkerRefused(f"the router refused this {who}'s key: {_reason(exc.body)}") from None
            why = str(exc)
        except ConnectError as exc:
            why = str(exc)
            verdict = await _hopeless(router_url, exc, tls)
            hopeless = hopeless + 1 if verdict else 0
            if verdict and hopeless >= HOPELESS_AFTER:
                raise CannotReach(f"cannot reach the router at {router_url}: {verdict} ({why})") from None
        else:
            hopeless = 0
            ended = await serve_one(ws)
            if ended.code == wire.CLOSE_POLICY:
                raise WorkerRefused(f"the router closed the connection: {ended.reason}")
            why = f"connection ended ({ended.code}): {ended.reason}"
            if trio.current_time() - began >= STABLE_AFTER:
                backoff.reset()
        delay = backoff.next()
        log.warning("router %s: %s; reconnecting in %.1fs", router_url, why, delay)
        await trio.sleep(delay)


def _reason(body: bytes) -> str:
    try:
        return str(json.loads(body)["error"]["message"])
    except (ValueError, KeyError, TypeError):
        return body[:300].decode("utf-8", "replace") or "no reason given"
