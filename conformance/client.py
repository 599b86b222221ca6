"""The suite's own small HTTP client (standard library only; curl not required)."""

from __future__ import annotations

import http.client
import json
import ssl
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def send(base_url: str, method: str, path: str, headers: list[tuple[str, str]], body: bytes | None,
         timeout: float = 120.0, insecure: bool = False) -> Answer:
    parts = urlsplit(base_url)
    host = parts.hostname or "127.0.0.1"
    if parts.scheme == "https":
        context = ssl._create_unverified_context() if insecure else ssl.create_default_context()
        conn: http.client.HTTPConnection = http.client.HTTPSConnection(host, parts.port, timeout=timeout, context=context)
    else:
        conn = http.client.HTTPConnection(host, parts.port, timeout=timeout)
    try:
        conn.request(method, parts.path.rstrip("/") + path, body=body, headers=dict(headers))
        resp = conn.getresponse()
        return Answer(resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read())
    finally:
        conn.close()
