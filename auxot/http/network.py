"""Open a TCP (optionally TLS) stream to an origin.  The only module that opens
sockets; OSError and TLS failures become :class:`ConnectError` here, once."""

from __future__ import annotations

import ipaddress
import ssl

import trio

from ..errors import ConnectError


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


async def _connect_literal(host: str, port: int) -> trio.SocketStream:
    """One address, so none of open_tcp_stream's racing of several (a nursery and a
    resolver call per connection): a third of its CPU, for every upstream connection
    a stream opens to a loopback or LAN server."""
    sock = trio.socket.socket(trio.socket.AF_INET6 if ":" in host else trio.socket.AF_INET, trio.socket.SOCK_STREAM)
    try:
        await sock.connect((host, port))
    except BaseException:
        sock.close()
        raise
    return trio.SocketStream(sock)


async def open_stream(
    host: str, port: int, *, tls: ssl.SSLContext | None, connect_timeout: float, tls_timeout: float | None = None,
) -> trio.abc.Stream:
    try:
        with trio.fail_after(connect_timeout):
            tcp = await (_connect_literal(host, port) if _is_ip(host) else trio.open_tcp_stream(host, port))
    except trio.TooSlowError:
        raise ConnectError(f"connecting to {host}:{port} timed out after {connect_timeout:g}s") from None
    except OSError as exc:
        raise ConnectError(f"cannot connect to {host}:{port}: {exc}") from None
    tcp.setsockopt(trio.socket.IPPROTO_TCP, trio.socket.TCP_NODELAY, 1)
    if tls is None:
        return tcp
    stream = trio.SSLStream(tcp, tls, server_hostname=host, https_compatible=True)
    handshake = tls_timeout if tls_timeout is not None else connect_timeout
    try:
        with trio.fail_after(handshake):
            await stream.do_handshake()
        return stream
    except BaseException as exc:
        await trio.aclose_forcefully(tcp)
        if isinstance(exc, trio.TooSlowError):
            raise ConnectError(f"TLS handshake with {host}:{port} timed out after {handshake:g}s") from None
        if isinstance(exc, (OSError, trio.BrokenResourceError, ssl.SSLError)):
            cause = exc.__cause__ if isinstance(exc, trio.BrokenResourceError) and exc.__cause__ else exc
            raise ConnectError(f"TLS handshake with {host}:{port} failed: {cause}") from None
        raise
