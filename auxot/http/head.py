"""The upstream client's heads, without h11: a request's written, a response's read.

h11 took ~115 µs on the bench's machine to write a request and read its
answer's head (every header through its event classes and validators), once
per upstream request; this takes ~15.  What is refused follows h11's rules
(RFC 9112), and ``tests/http/test_head.py`` holds this module to h11 with
hypothesis: a head read here reads the same in h11, and what h11 refuses is
refused here.  Stricter than h11 (refused here, taken there): a header
continued on the next line (obs-fold), blank lines before the status line,
an HTTP version other than 1.0 and 1.1.  A response's body is ``body.py``'s.
"""

from __future__ import annotations

import re
from typing import NamedTuple

_TOKEN = rb"[-!#$%&'*+.^_`|~0-9A-Za-z]+"
_VALUE = rb"(?:[^\x00\s]+(?:[ \t]+[^\x00\s]+)*)?"  # visible characters, inner spaces
_FIELD_LINE = re.compile(rb"(" + _TOKEN + rb"):[ \t]*(" + _VALUE + rb")[ \t]*")
_STATUS_LINE = re.compile(rb"HTTP/(1\.[01]) ([0-9]{3})(?: [ \t\x21-\x7e\x80-\xff]*)?")
_HEAD_END = re.compile(rb"\n\r?\n")
_TOKEN_ONLY = re.compile(_TOKEN)
_TARGET = re.compile(rb"[\x21-\x7e]+")
_SAFE_VALUE = re.compile(_VALUE)
MAX_HEAD = 1024 * 1024
MAX_LENGTH_DIGITS = 20


class HeadError(ValueError):
    """A head that cannot be written, or a response head that is malformed."""


class ResponseHead(NamedTuple):
    status: int
    http_version: bytes  # b"1.0" or b"1.1"
    headers: list[tuple[bytes, bytes]]  # names lower-cased; one Content-Length at most


def field_lines(headers: list[tuple[str, str]]) -> bytes:
    """``name: value`` lines, each checked: a value cannot smuggle in a line of its own."""
    out = []
    for name, value in headers:
        raw_name, raw_value = name.encode("ascii"), value.encode("latin-1")
        if _TOKEN_ONLY.fullmatch(raw_name) is None or _SAFE_VALUE.fullmatch(raw_value) is None:
            raise HeadError(f"cannot send the header {name!r}: illegal name or value")
        out.append(b"%s: %s\r\n" % (raw_name, raw_value))
    return b"".join(out)


def request_head(method: str, target: str, fields: bytes) -> bytes:
    """The request line and its header ``fields`` (from :func:`field_lines`), ended."""
    raw_method, raw_target = method.encode("ascii"), target.encode("ascii")
    if _TOKEN_ONLY.fullmatch(raw_method) is None or _TARGET.fullmatch(raw_target) is None:
        raise HeadError(f"cannot send the request line {method!r} {target!r}")
    return b"%s %s HTTP/1.1\r\n%s\r\n" % (raw_method, raw_target, fields)


def read_head(buf: bytes) -> tuple[ResponseHead, int] | None:
    """The response head at the start of ``buf`` and the bytes it took; None if it is not complete yet."""
    end = _HEAD_END.search(buf)
    if end is None:
        if len(buf) > MAX_HEAD:
            raise HeadError(f"response head larger than {MAX_HEAD} bytes")
        return None
    if end.start() > MAX_HEAD:
        raise HeadError(f"response head larger than {MAX_HEAD} bytes")
    lines = buf[: end.start()].split(b"\n")
    lines = [line[:-1] if line[-1:] == b"\r" else line for line in lines]
    status = _STATUS_LINE.fullmatch(lines[0])
    if status is None:
        raise HeadError(f"illegal status line {lines[0][:80]!r}")
    headers: list[tuple[bytes, bytes]] = []
    length: bytes | None = None
    chunked = False
    for line in lines[1:]:
        field = _FIELD_LINE.fullmatch(line)
        if field is None:
            raise HeadError(f"illegal header line {line[:80]!r}")
        name, value = field[1].lower(), field[2]
        if name == b"content-length":
            lengths = {part.strip() for part in value.split(b",")}
            if len(lengths) != 1 or length not in (None, *lengths):
                raise HeadError("conflicting Content-Length headers")
            value = lengths.pop()
            if not value.isdigit() or not value.isascii() or len(value) > MAX_LENGTH_DIGITS:
                raise HeadError(f"bad Content-Length {value[:30]!r}")
            if length is not None:
                continue  # the same length again: kept once
            length = value
        elif name == b"transfer-encoding":
            if chunked:
                raise HeadError("multiple Transfer-Encoding headers")
            value = value.lower()
            if value != b"chunked":
                raise HeadError("only Transfer-Encoding: chunked is supported")
            chunked = True
        headers.append((name, value))
    return ResponseHead(int(status[2]), status[1], headers), end.end()
