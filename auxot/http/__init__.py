"""The project's own outbound HTTP/1.1 client: h11 driven over a trio stream.

Layers, one file each (after httpcore): ``pool`` (keep-alive connections per
origin) → ``connection`` (one h11 connection: send a request, stream a response)
→ ``network`` (the only module that opens sockets and TLS).
"""

from .connection import Response, Timeouts
from .pool import Pool

__all__ = ["Pool", "Response", "Timeouts"]
