"""The built-in tools server, ``auxot``, inside every tools worker: ``web_fetch``.

GET or POST a URL, return its text.  Bounded: at most ``max_bytes`` of the body
(the rest cut, with a note), ``timeout`` seconds in all, five redirects.
Private, loopback, link-local and other non-public addresses are refused —
every address the name resolves to, at every redirect — unless the worker's
config allows them (``[auxot] allow_private = ["127.0.0.1", "10.0.0.0/8"]``).
The check resolves the name just before connecting; a name that resolves
differently a moment later (DNS rebinding) is not caught.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import urljoin, urlsplit

import trio

from ..errors import HTTPClientError
from ..http import Pool
from ..http.connection import Timeouts
from .addresses import Refused, check_host, networks
from .mcp import CallResult, Tool

NAME = "auxot"
MAX_REDIRECTS = 5

WEB_FETCH = Tool("web_fetch", "Fetch a web page or API over HTTP(S) and return its text (GET, or POST with a body).", {
    "type": "object",
    "properties": {
        "url": {"type": "string", "description": "http:// or https:// URL"},
        "method": {"type": "string", "enum": ["GET", "POST"], "default": "GET"},
        "body": {"type": "string", "description": "request body, for POST"},
        "content_type": {"type": "string", "description": "the body's content type, for POST"},
    },
    "required": ["url"],
})


@dataclass(frozen=True)
class BuiltinConfig:
    web_fetch: bool = True
    allow_private: tuple[str, ...] = ()  # addresses or networks a fetch may reach though not public
    max_bytes: int = 1024 * 1024
    timeout: float = 20.0


class Builtin:
    def __init__(self, config: BuiltinConfig) -> None:
        self.config = config
        self.tools: tuple[Tool, ...] = (WEB_FETCH,) if config.web_fetch else ()
        self._allowed = networks(config.allow_private)

    async def call(self, name: str, arguments: dict[str, Any], timeout: float) -> CallResult:
        started = trio.current_time()
        if name != "web_fetch" or not self.config.web_fetch:
            return _text(f"no tool {name!r} on the built-in server", error=True)
        try:
            with trio.fail_after(min(timeout, self.config.timeout)):
                text = await self._fetch(arguments)
        except trio.TooSlowError:
            return _text(f"web_fetch: no complete answer within {min(timeout, self.config.timeout):g} s", error=True)
        except (Refused, HTTPClientError) as exc:
            return _text(f"web_fetch: {exc}", error=True, took=trio.current_time() - started)
        return _text(text, took=trio.current_time() - started)

    async def _fetch(self, arguments: dict[str, Any]) -> str:
        url, method = arguments.get("url"), str(arguments.get("method") or "GET").upper()
        body = arguments.get("body")
        if not isinstance(url, str) or method not in ("GET", "POST") or (body is not None and not isinstance(body, str)):
            raise Refused("give url (a string), method GET or POST, and body (a string) for POST")
        data = body.encode() if method == "POST" and body is not None else b""
        for _ in range(MAX_REDIRECTS + 1):
            parts = urlsplit(url)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise Refused(f"only http:// and https:// URLs; got {url[:200]!r}")
            await check_host(parts.hostname, parts.port or (443 if parts.scheme == "https" else 80), self._allowed,
                             "[auxot] allow_private in the tools worker's config")
            headers = [("User-Agent", "auxot-web-fetch"), ("Accept", "text/*, application/json, application/xml;q=0.9, */*;q=0.5")]
            if data:
                headers.append(("Content-Type", str(arguments.get("content_type") or "application/octet-stream")))
            pool = Pool(f"{parts.scheme}://{parts.netloc}", timeouts=Timeouts(first_byte=self.config.timeout, idle=self.config.timeout))
            try:
                target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
                async with pool.request(method, target, headers=headers, body=data) as resp:
                    if resp.status in (301, 302, 303, 307, 308) and resp.header("location"):
                        await resp.read(64 * 1024)
                        url = urljoin(url, resp.header("location") or "")
                        if resp.status == 303:
                            method, data = "GET", b""
                        continue
                    raw = bytearray()
                    cut = False
                    async for chunk in resp.iter_bytes():
                        raw += chunk
                        if len(raw) > self.config.max_bytes:
                            cut = True
                            break
                    return _describe(resp.status, resp.header("content-type") or "", bytes(raw[: self.config.max_bytes]), cut,
                                     self.config.max_bytes)
            finally:
                await pool.aclose()
        raise Refused(f"more than {MAX_REDIRECTS} redirects")

def _describe(status: int, content_type: str, raw: bytes, cut: bool, limit: int) -> str:
    head = f"HTTP {status}" + (f" ({content_type})" if content_type else "")
    textual = not content_type or content_type.startswith("text/") or any(
        t in content_type for t in ("json", "xml", "javascript", "x-www-form-urlencoded"))
    if not textual:
        return f"{head}: {len(raw)}{'+' if cut else ''} bytes of binary content, not shown"
    text = raw.decode("utf-8", "replace")
    return f"{head}\n\n{text}" + (f"\n[auxot: cut at {limit} bytes]" if cut else "")


def _text(text: str, *, error: bool = False, took: float = 0.0) -> CallResult:
    return CallResult(({"type": "text", "text": text},), is_error=error, duration_s=took)
