"""Which addresses the router and its tools workers may reach on a client's or
a model's say-so: public ones, and the non-public ones (loopback, private,
link-local) their operator allowed by address or network.  A host is resolved
and every address it has is checked before anything connects."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

import trio

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class Refused(Exception):
    pass


def networks(allowed: Iterable[str]) -> tuple[Network, ...]:
    return tuple(ipaddress.ip_network(a, strict=False) for a in allowed)


async def check_host(host: str, port: int, allowed: tuple[Network, ...], how_to_allow: str) -> None:
    """Raise :class:`Refused` unless every address ``host`` resolves to is public or allowed."""
    try:
        infos = await trio.socket.getaddrinfo(host, port, type=trio.socket.SOCK_STREAM)
    except OSError as exc:
        raise Refused(f"cannot resolve {host!r}: {exc}") from None
    for info in infos:
        address = ipaddress.ip_address(info[4][0])
        if not address.is_global and not any(address in net for net in allowed):
            raise Refused(f"{host!r} resolves to {address}, a non-public address that may not be reached "
                          f"(allow it with {how_to_allow})")
