"""TLS for the router itself: `serve --tls-self-signed` makes a certificate with
`cryptography` on first start and reuses it; clients that pin it get answers."""

from __future__ import annotations

import json
import ssl
import stat
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.support.router_process import start_router


def test_self_signed_certificate_is_made_once_and_served(tmp_path: Path) -> None:
    router = start_router(tmp_path, "--tls-self-signed")
    cert, key = tmp_path / "tls" / "cert.pem", tmp_path / "tls" / "key.pem"
    try:
        assert router.base_url.startswith("https://127.0.0.1:")
        assert stat.S_IMODE(key.stat().st_mode) == 0o600
        pinned = ssl.create_default_context(cafile=str(cert))
        body = json.dumps({"model": "auto", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 5}).encode()
        req = urllib.request.Request(router.base_url + "/v1/chat/completions", data=body,
                                     headers={"Authorization": f"Bearer {router.key}", "Content-Type": "application/json"})
        with urllib.request.urlopen(req, context=pinned, timeout=30) as resp:
            assert json.loads(resp.read())["choices"][0]["message"]["role"] == "assistant"
        with pytest.raises(urllib.error.URLError, match="CERTIFICATE_VERIFY_FAILED"):
            urllib.request.urlopen(router.base_url + "/health", context=ssl.create_default_context(), timeout=10)
    finally:
        assert router.stop() == 0
    first = cert.read_bytes()
    again = start_router(tmp_path, "--tls-self-signed")
    try:
        assert cert.read_bytes() == first  # reused, not regenerated
        with urllib.request.urlopen(again.base_url + "/health", context=ssl.create_default_context(cafile=str(cert)), timeout=10) as resp:
            assert resp.status == 200
    finally:
        assert again.stop() == 0
