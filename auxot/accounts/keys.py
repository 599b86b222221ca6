"""API keys: ``user.<secret>`` and ``team.<secret>``; worker keys: ``worker.<secret>``
(GPU workers) and ``tools.<secret>`` (tools workers).

The secret is 256 random bits, URL-safe base64.  Only a SHA-256 of the whole key
is stored; since the secret is high-entropy, a fast hash is enough (nothing to
brute-force), and lookup is one indexed query on the hash.  Pure: no I/O.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

PREFIXES = ("user", "team")
WORKER_PREFIX = "worker"  # for GPU workers dialling in at /ws; never valid for the API (nor API keys there)
TOOLS_PREFIX = "tools"  # for tools workers dialling in at /ws (python -m auxot tools-worker); never valid for the API


def generate(prefix: str = "user") -> str:
    if prefix not in (*PREFIXES, WORKER_PREFIX, TOOLS_PREFIX):
        raise ValueError(f"key prefix must be one of {PREFIXES}")
    return f"{prefix}.{secrets.token_urlsafe(32)}"


def digest(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8", "surrogateescape")).hexdigest()


def new_id(prefix: str = "key_") -> str:
    return prefix + secrets.token_hex(6)


def matches(key: str, stored_digest: str) -> bool:
    """Constant-time comparison of a presented key against a stored digest."""
    return hmac.compare_digest(digest(key), stored_digest)


def shape_problem(key: str) -> str | None:
    """Why a presented string cannot be a key at all, or None.  The message
    never contains the key itself."""
    prefix, dot, secret = key.partition(".")
    if prefix == WORKER_PREFIX:
        return "this is a worker key, for `python -m auxot worker`; API calls take a 'user.' or 'team.' key"
    if prefix == TOOLS_PREFIX:
        return "this is a tools worker key, for `python -m auxot tools-worker`; API calls take a 'user.' or 'team.' key"
    if not dot or prefix not in PREFIXES:
        return "API keys start with 'user.' or 'team.'; the key presented has an unknown prefix"
    if len(secret) < 32:
        return "the key presented is too short to be an auxot key; was it truncated?"
    return None


def worker_shape_problem(key: str) -> str | None:
    """Why a string presented at /ws cannot be a worker key, or None."""
    prefix, dot, secret = key.partition(".")
    if prefix in PREFIXES:
        return "this is an API key; workers connect with a 'worker.' key (python -m auxot keys create --worker)"
    if prefix not in (WORKER_PREFIX, TOOLS_PREFIX) or not dot:
        return "worker keys start with 'worker.' (or 'tools.' for tools workers); the key presented has an unknown prefix"
    if len(secret) < 32:
        return "the key presented is too short to be a worker key; was it truncated?"
    return None
