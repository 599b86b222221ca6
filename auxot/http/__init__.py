"""The project's own outbound HTTP/1.1 client over a trio stream.

Layers, one file each (after httpcore): ``pool`` (keep-alive connections per
origin) → ``connection`` (one connection: send a request, stream a response)
→ ``network`` (the only module that opens sockets and TLS).  The wire format is
sans-IO, as in h11, and held to h11 by hypothesis tests: ``head`` (a request
head written, a response head read; for the server, ``auxot.http11``, a request
head read and a response head written) and ``body`` (chunked, Content-Length
or to-the-close bodies, a request's too).  ``deadlines``: one task for the run keeps the read
deadlines of plain sockets (no cancel scope per read, once per streamed token).
"""

from .connection import Response, Timeouts
from .pool import Pool

__all__ = ["Pool", "Response", "Timeouts"]
