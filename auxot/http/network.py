"""Open a TCP (optionally TLS) stream to an origin.  The only module that opens
sockets; OSError and TLS failures become :class:`ConnectError` here, once."""

from __future__ import annotations

import ssl

import trio

from ..errors import ConnectError


async def open_stream(
    host: str, port: int, *, tls: ssl.SSLContext | None, connect_timeout: float
) -> trio.abc.Stream:
    try:
        with trio.fail_after(connect_timeout):
            tcp = await trio.open_tcp_stream(host, port)
            tcp.setsockopt(trio.socket.IPPROTO_TCP, trio.socket.TCP_NODELAY, 1)
            if tls is None:
                return tcp
            stream = trio.SSLStream(tcp, tls, server_hostname=host, https_compatible=True)
            try:
                await stream.do_handshake()
            except BaseException:
                await trio.aclose_forcefully(tcp)
                raise
            return stream
    except trio.TooSlowError:
        raise ConnectError(f"connecting to {host}:{port} timed out after {connect_timeout:g}s") from None
    except (OSError, trio.BrokenResourceError, ssl.SSLError) as exc:
        cause = exc.__cause__ if isinstance(exc, trio.BrokenResourceError) and exc.__cause__ else exc
        raise ConnectError(f"cannot connect to {host}:{port}: {cause}") from None
