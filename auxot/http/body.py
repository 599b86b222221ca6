"""A body's framing, read without h11 (sans-IO, like h11 itself): an upstream
answer's for the client (``reader_for``), a request's for the server
(``auxot.http11``: ``Chunked`` or ``Length``, as ``head.read_request_head`` says).

A streamed answer arrives as one read per token, and h11's event machinery
costs about 10 µs a read on the bench's machine, where this costs about 1 µs.
An answer's framing is the one h11 would choose (RFC 9112 §6.3): chunked when
the answer says ``Transfer-Encoding`` (h11 accepts only ``chunked``), else its
``Content-Length``, else to the close of the connection.

Each reader's :meth:`feed` takes the bytes read and returns the body bytes they
complete, all in one piece (a read that carried several chunks gives one
piece); ``done`` says the body has ended; :meth:`eof` is told the connection
closed, and raises :class:`BodyError` if the body was cut short.  Bytes past the
end of a body are kept in ``extra``: a peer that sends them cannot keep its
connection.
"""

from __future__ import annotations

import re

# A chunk's size line: hex digits (h11 allows 20), optional whitespace, optional extensions.
_SIZE_LINE = re.compile(rb"([0-9A-Fa-f]{1,20})(?:;[^\r\n]*)?[ \t]*")
# A trailer is a header field (h11's rule): a token, a colon, a value of visible characters.
_TRAILER = re.compile(rb"[-!#$%&'*+.^_`|~0-9A-Za-z]+:[ \t]*(?:[^\x00\s]+(?:[ \t]+[^\x00\s]+)*)?[ \t]*")
MAX_LINE = 64 * 1024  # a size line or a trailer line longer than this is refused
MAX_TRAILERS = 64 * 1024


class BodyError(ValueError):
    """The body's framing is broken, or the connection closed before its end."""


class _Reader:
    done = False
    extra = b""

    def feed(self, data: bytes) -> bytes:
        raise NotImplementedError

    def eof(self) -> None:
        if not self.done:
            raise BodyError("the connection closed before the end of the body")


class Length(_Reader):
    def __init__(self, length: int) -> None:
        self._left = length
        self.done = length == 0

    def feed(self, data: bytes) -> bytes:
        if self.done:
            self.extra += data
            return b""
        if len(data) < self._left:
            self._left -= len(data)
            return data
        body, self.extra = data[: self._left], data[self._left:]
        self._left, self.done = 0, True
        return body


class UntilClose(_Reader):
    def feed(self, data: bytes) -> bytes:
        return data

    def eof(self) -> None:
        self.done = True


_SIZE, _DATA, _DATA_END, _TRAILER_LINE = range(4)  # where a chunked body's reader is


class Chunked(_Reader):
    """``size CRLF data CRLF`` ... ``0 CRLF`` trailers ``CRLF``.  Lines end in
    CRLF only (a bare LF is refused, as h11 does)."""

    def __init__(self) -> None:
        self._buffer = b""
        self._left = 0  # bytes of the current chunk's data still to come
        self._state = _SIZE
        self._trailers = 0

    def feed(self, data: bytes) -> bytes:
        if self.done:
            self.extra += data
            return b""
        buf = self._buffer + data if self._buffer else data
        if self._state == _SIZE and (one := self._whole_chunk(buf)) is not None:
            return one  # the usual read of a stream: one whole chunk, nothing else
        self._buffer = buf
        out: list[bytes] = []
        while self._buffer and not self.done and self._step(out):
            pass
        if self.done:
            self.extra, self._buffer = self._buffer, b""
        return out[0] if len(out) == 1 else b"".join(out)

    def _whole_chunk(self, buf: bytes) -> bytes | None:
        """``buf`` is exactly one complete non-empty chunk: its data (else None; the steps read it)."""
        end = buf.find(b"\r\n", 0, MAX_LINE)
        if end < 0 or (match := _SIZE_LINE.fullmatch(buf, 0, end)) is None:
            return None
        size = int(match[1], 16)
        start = end + 2
        if size == 0 or len(buf) != start + size + 2 or buf[-2:] != b"\r\n":
            return None
        self._buffer = b""
        return buf[start:-2]

    def _step(self, out: list[bytes]) -> bool:
        """Reads what is buffered in the current state; says whether it made progress."""
        state = self._state
        if state == _SIZE:
            line = self._line()
            if line is None:
                return False
            match = _SIZE_LINE.fullmatch(line)
            if match is None:
                raise BodyError(f"malformed chunk size line {line[:40]!r}")
            self._left = int(match[1], 16)
            self._state = _DATA if self._left else _TRAILER_LINE
        elif state == _DATA:
            buf = self._buffer
            if len(buf) <= self._left:
                out.append(buf)
                self._left -= len(buf)
                self._buffer = b""
                return False
            out.append(buf[: self._left])
            self._buffer, self._left, self._state = buf[self._left:], 0, _DATA_END
        elif state == _DATA_END:
            if self._buffer[:2] != b"\r\n"[: len(self._buffer)]:
                raise BodyError("chunk data not followed by CRLF")
            if len(self._buffer) < 2:
                return False
            self._buffer, self._state = self._buffer[2:], _SIZE
        else:
            line = self._line()
            if line is None:
                return False
            self._trailers += len(line) + 2
            if self._trailers > MAX_TRAILERS:
                raise BodyError("the chunked body's trailers are too long")
            if not line:
                self.done = True
            elif _TRAILER.fullmatch(line) is None:
                raise BodyError(f"malformed trailer line {line[:40]!r}")
        return True

    def _line(self) -> bytes | None:
        end = self._buffer.find(b"\r\n")
        if end < 0:
            if len(self._buffer) > MAX_LINE or b"\n" in self._buffer:
                raise BodyError("a chunk line is too long, or not ended by CRLF")
            return None
        line, self._buffer = self._buffer[:end], self._buffer[end + 2:]
        if b"\n" in line or len(line) > MAX_LINE:
            raise BodyError("a chunk line is too long, or not ended by CRLF")
        return line


def reader_for(status: int, headers: list[tuple[bytes, bytes]], method: str) -> Chunked | Length | UntilClose:
    """The body's framing, from a response head ``head.read_head`` has already validated
    (lower-cased names; one valid Content-Length; Transfer-Encoding only ``chunked``)."""
    if method == "HEAD" or status in (204, 304) or 100 <= status < 200:
        return Length(0)
    length = None
    for name, value in headers:
        if name == b"transfer-encoding":
            return Chunked()
        if name == b"content-length":
            length = int(value)
    return UntilClose() if length is None else Length(length)
