"""Server-Sent Events: an encoder and an incremental decoder.

Sans-IO, in the manner of h11: feed bytes in with :meth:`Decoder.feed`, take
complete :class:`Event` values out.  Follows the WHATWG HTML "event stream
interpretation" (section 9.2.6): lines end in CRLF, LF or CR; a line starting
with ':' is a comment; ``data`` lines of one event are joined with LF; an empty
line dispatches the event; a field without a colon has an empty value; one
leading space after the colon is dropped.
"""

from __future__ import annotations

import json
from typing import Any, NamedTuple


class Event(NamedTuple):
    # A NamedTuple rather than a frozen dataclass: one is made per streamed chunk,
    # and a frozen dataclass's __init__ costs several times more.
    data: str
    event: str | None = None
    id: str | None = None
    retry: int | None = None


def encode(data: str, event: str | None = None) -> bytes:
    """One event as bytes.  ``data`` may contain newlines; each line becomes a
    ``data:`` field so the receiver joins them back."""
    head = f"event: {event}\n" if event is not None else ""
    if "\n" in data or "\r" in data:
        body = "".join(f"data: {line}\n" for line in data.splitlines())
    else:
        body = f"data: {data}\n"
    return (head + body + "\n").encode()


class Decoder:
    """Incremental SSE parser.  Memory is bounded by ``max_event_bytes``: an
    event larger than that raises ValueError rather than growing forever."""

    def __init__(self, max_event_bytes: int = 64 * 1024 * 1024) -> None:
        self._buffer = bytearray()
        self._data: list[str] = []
        self._event: str | None = None
        self._id: str | None = None
        self._retry: int | None = None
        self._pending_cr = False
        self._size = 0
        self._max = max_event_bytes

    def feed(self, chunk: bytes) -> list[Event]:
        buf = self._buffer
        if (not buf and not self._data and chunk[:6] == b"data: " and chunk[-2:] == b"\n\n" and chunk.count(b"\n") == 2
                and b"\r" not in chunk and len(chunk) <= self._max):
            # The usual read of a stream: one whole event of one data line, nothing else.
            self._pending_cr = False
            one = Event(chunk[6:-2].decode("utf-8", "replace"), self._event, self._id, self._retry)
            self._event = self._retry = None
            return [one]
        if self._pending_cr and chunk[:1] == b"\n":
            chunk = chunk[1:]  # the LF of a CRLF split across chunks
        self._pending_cr = False
        buf += chunk
        if b"\r" in buf:
            return self._feed_any_line_ending()
        # The common case, LF only: decode every complete line at once and split.
        # (UTF-8 never uses 0x0A inside a character, so this decodes exactly as
        # line by line would, replacement characters included.)
        end = buf.rfind(b"\n")
        if end < 0:
            if len(buf) + self._size > self._max:
                raise ValueError(f"SSE event larger than {self._max} bytes")
            return []
        text = buf[:end].decode("utf-8", "replace")
        del buf[: end + 1]
        events: list[Event] = []
        for line in text.split("\n"):
            if line.startswith("data: "):  # the usual field, parsed inline
                self._data.append(line[6:])
                self._size += len(line) - 6
                if self._size > self._max:
                    raise ValueError(f"SSE event larger than {self._max} bytes")
            elif (event := self._line(line)) is not None:
                events.append(event)
        if len(buf) + self._size > self._max:
            raise ValueError(f"SSE event larger than {self._max} bytes")
        return events

    def _feed_any_line_ending(self) -> list[Event]:
        events: list[Event] = []
        buf = self._buffer
        start = 0
        n = len(buf)
        while start < n:
            lf = buf.find(b"\n", start)
            cr = buf.find(b"\r", start, lf if lf >= 0 else n)
            if cr >= 0:
                end, nxt = cr, cr + 1
                if nxt < n and buf[nxt] == 0x0A:
                    nxt += 1
                elif nxt == n:
                    self._pending_cr = True
            elif lf >= 0:
                end, nxt = lf, lf + 1
            else:
                break
            line = buf[start:end].decode("utf-8", "replace")
            start = nxt
            event = self._line(line)
            if event is not None:
                events.append(event)
        del buf[:start]
        if len(buf) + self._size > self._max:
            raise ValueError(f"SSE event larger than {self._max} bytes")
        return events

    def _line(self, line: str) -> Event | None:
        if not line:
            if not self._data and self._event is None:
                return None
            event = Event("\n".join(self._data), self._event, self._id, self._retry)
            self._data, self._event, self._retry, self._size = [], None, None, 0
            return event
        if line[0] == ":":
            return None
        name, colon, value = line.partition(":")
        if colon and value[:1] == " ":
            value = value[1:]
        if name == "data":
            self._data.append(value)
            self._size += len(value)
            if self._size > self._max:
                raise ValueError(f"SSE event larger than {self._max} bytes")
        elif name == "event":
            self._event = value
        elif name == "id":
            if "\0" not in value:
                self._id = value
        elif name == "retry":
            if value.isdigit():
                self._retry = int(value)
        return None


# One encoder for the process: json.dumps with non-default options builds a new
# JSONEncoder on every call, and this runs once per streamed chunk.
_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))


def dumps(obj: Any) -> str:
    """Compact JSON, as every dialect's event data carries it."""
    return _ENCODER.encode(obj)
