"""HTTP/1.1 heads without h11, both ways: the upstream client writes requests
and reads responses; the server (``auxot.http11``) reads requests and writes
responses.

h11 took ~115 µs on the bench's machine to write a request and read its
answer's head (every header through its event classes and validators), and
~125 µs to read a request and write its answer; this takes a fraction of
that.  What is refused follows h11's rules (RFC 9112), and
``tests/http/test_head.py`` (the client's side) and ``test_server_head.py``
(the server's) hold this module to h11 with hypothesis: a head read here reads
the same in h11, what h11 refuses is refused here, and a response head written
here is byte for byte the one h11 writes.

Stricter than h11 (refused here, taken there):

- a header continued on the next line (obs-fold);
- blank lines before the status line;
- an HTTP version other than 1.0 and 1.1 (a request gets 505);
- a request with both ``Content-Length`` and ``Transfer-Encoding`` (RFC 9112
  §6.1 lets a server refuse it: it is how requests are smuggled past proxies);
- a request head larger than the limit even when it arrived in one read (h11
  counts only what is buffered while the head is incomplete).

Bodies are ``body.py``'s.
"""

from __future__ import annotations

import re
from typing import NamedTuple

_TOKEN = rb"[-!#$%&'*+.^_`|~0-9A-Za-z]+"
_VALUE = rb"(?:[^\x00\s]+(?:[ \t]+[^\x00\s]+)*)?"  # visible characters, inner spaces
_FIELD_LINE = re.compile(rb"(" + _TOKEN + rb"):[ \t]*(" + _VALUE + rb")[ \t]*")
_REQUEST_LINE = re.compile(rb"(" + _TOKEN + rb") ([\x21-\x7e]+) HTTP/([0-9]\.[0-9])")
_STATUS_LINE = re.compile(rb"HTTP/(1\.[01]) ([0-9]{3})(?: [ \t\x21-\x7e\x80-\xff]*)?")
HEAD_END = re.compile(rb"\n\r?\n")  # the blank line that ends a head (CRLF or bare LF)
_TOKEN_ONLY = re.compile(_TOKEN)
_TARGET = re.compile(rb"[\x21-\x7e]+")
_SAFE_VALUE = re.compile(_VALUE)
MAX_HEAD = 1024 * 1024
MAX_LENGTH_DIGITS = 20


class HeadError(ValueError):
    """A head that cannot be written, or a head read that is malformed;
    ``status`` is the answer a server gives a request head refused so."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


class RequestHead(NamedTuple):
    method: bytes
    target: bytes
    http_version: bytes  # b"1.0" or b"1.1"
    headers: list[tuple[bytes, bytes]]  # names lower-cased; one Content-Length at most
    length: int  # the body's Content-Length; 0 when it has none (a chunked body has none)
    chunked: bool
    keep_alive: bool  # the client does not ask the connection to close after the answer
    expect_continue: bool  # the client waits for 100 Continue before it sends the body


class ResponseHead(NamedTuple):
    status: int
    http_version: bytes  # b"1.0" or b"1.1"
    headers: list[tuple[bytes, bytes]]  # names lower-cased; one Content-Length at most


class _BodyFields:
    """A head's Content-Length and Transfer-Encoding, checked as h11 checks
    them: one length (a repeat of it, or a list of it, is kept once), and no
    coding but one ``chunked``.  ``coding_status``: the answer to a request
    with another coding (501)."""

    __slots__ = ("length", "chunked", "coding_status")

    def __init__(self, coding_status: int = 400) -> None:
        self.length: bytes | None = None
        self.chunked = False
        self.coding_status = coding_status

    def take(self, name: bytes, value: bytes) -> bytes | None:
        """The value to keep for the header ``name`` (lower-cased); None to drop it (a repeated length)."""
        if name == b"content-length":
            lengths = {part.strip() for part in value.split(b",")}
            if len(lengths) != 1 or self.length not in (None, *lengths):
                raise HeadError("conflicting Content-Length headers")
            value = lengths.pop()
            if not value.isdigit() or not value.isascii() or len(value) > MAX_LENGTH_DIGITS:
                raise HeadError(f"bad Content-Length {value[:30]!r}")
            if self.length is not None:
                return None
            self.length = value
        elif name == b"transfer-encoding":
            if self.chunked:
                raise HeadError("multiple Transfer-Encoding headers", self.coding_status)
            value = value.lower()
            if value != b"chunked":
                raise HeadError("only Transfer-Encoding: chunked is supported", self.coding_status)
            self.chunked = True
        return value


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
    end = HEAD_END.search(buf)
    if end is None:
        if len(buf) > MAX_HEAD:
            raise HeadError(f"response head larger than {MAX_HEAD} bytes")
        return None
    if end.start() > MAX_HEAD:
        raise HeadError(f"response head larger than {MAX_HEAD} bytes")
    lines = _lines(buf, end.start())
    status = _STATUS_LINE.fullmatch(lines[0])
    if status is None:
        raise HeadError(f"illegal status line {lines[0][:80]!r}")
    headers: list[tuple[bytes, bytes]] = []
    fields = _BodyFields()
    for line in lines[1:]:
        field = _FIELD_LINE.fullmatch(line)
        if field is None:
            raise HeadError(f"illegal header line {line[:80]!r}")
        name = field[1].lower()
        if (value := fields.take(name, field[2])) is not None:
            headers.append((name, value))
    return ResponseHead(int(status[2]), status[1], headers), end.end()


def _lines(buf: bytes, end: int) -> list[bytes]:
    """The head's lines, each without its CRLF (or bare LF)."""
    lines = buf[:end].split(b"\n")
    return [line[:-1] if line[-1:] == b"\r" else line for line in lines]


def _tokens(value: bytes) -> list[bytes]:
    """A comma-separated header's values, lower-cased (h11's get_comma_header)."""
    return [token for token in (part.strip() for part in value.lower().split(b",")) if token]


def read_request_head(buf: bytes, max_size: int) -> tuple[RequestHead, int] | None:
    """The request head at the start of ``buf`` and the bytes it took; None if it
    is not complete yet.  A head over ``max_size`` bytes is refused (431)."""
    end = HEAD_END.search(buf)
    if end is None:
        if len(buf) > max_size:
            raise HeadError(f"request head larger than {max_size} bytes", 431)
        return None
    if end.end() > max_size:
        raise HeadError(f"request head larger than {max_size} bytes", 431)
    lines = _lines(buf, end.start())
    request = _REQUEST_LINE.fullmatch(lines[0])
    if request is None:
        raise HeadError(f"illegal request line {lines[0][:80]!r}")
    version = request[3]
    headers: list[tuple[bytes, bytes]] = []
    fields = _BodyFields(coding_status=501)
    close = expect = False
    hosts = 0
    for line in lines[1:]:
        field = _FIELD_LINE.fullmatch(line)
        if field is None:
            raise HeadError(f"illegal header line {line[:80]!r}")
        name = field[1].lower()
        if (value := fields.take(name, field[2])) is None:
            continue
        if name == b"host":
            hosts += 1
        elif name == b"connection":
            close = close or b"close" in _tokens(value)
        elif name == b"expect":
            expect = expect or b"100-continue" in _tokens(value)
        headers.append((name, value))
    if hosts > 1 or (hosts == 0 and version == b"1.1"):
        raise HeadError("a request needs one Host header" if hosts == 0 else "multiple Host headers")
    if version not in (b"1.0", b"1.1"):
        raise HeadError(f"HTTP/{version.decode()} is not supported", 505)
    if fields.chunked and fields.length is not None:
        raise HeadError("both Content-Length and Transfer-Encoding")
    modern = version == b"1.1"
    return RequestHead(request[1], request[2], version, headers, int(fields.length or 0), fields.chunked,
                       modern and not close, modern and expect), end.end()


class Framing(NamedTuple):
    """How an answer's body goes out, chosen by :func:`response_head`."""

    length: int | None  # exactly this many bytes (0: no body at all); None: chunked, or until the close
    chunked: bool
    keep_alive: bool  # the connection may serve another request after this answer


def response_head(status: int, headers: list[tuple[bytes, bytes]], *, method: bytes, http_version: bytes,
                  keep_alive: bool) -> tuple[bytes, Framing]:
    """The head of a ``status`` answer with the app's ``headers`` to a ``method``
    request from an ``http_version`` client that asked for ``keep_alive``, framed
    and written as h11 frames and writes it (RFC 9112 §6): its Content-Length if
    it has one; else chunked for HTTP/1.1 and to the close for HTTP/1.0 (without
    Transfer-Encoding or Content-Length); no body for HEAD, 204 and 304;
    ``Connection: close`` when the connection is not to be kept.  Headers are
    checked as h11 checks them: a value cannot smuggle in a line."""
    if not 200 <= status <= 999:
        raise HeadError(f"cannot send the status {status}")
    out: list[tuple[bytes, bytes]] = []
    fields = _BodyFields()
    close = False
    for raw_name, raw_value in headers:
        if _TOKEN_ONLY.fullmatch(raw_name) is None or _SAFE_VALUE.fullmatch(raw_value) is None:
            raise HeadError(f"cannot send the header {raw_name[:40]!r}: illegal name or value")
        name = raw_name.lower()
        if (value := fields.take(name, raw_value)) is None:
            continue
        if name == b"connection":
            close = close or b"close" in _tokens(value)
        out.append((raw_name, value))
    length, chunked = fields.length, fields.chunked
    modern = http_version == b"1.1"
    need_close = False
    unknown = status not in (204, 304) and (chunked or length is None)  # for HEAD: as a GET would be answered
    if unknown:  # chunked for HTTP/1.1, to the close for HTTP/1.0
        out = [(n, v) for n, v in out if n.lower() not in (b"content-length", b"transfer-encoding")]
        if modern:
            out.append((b"Transfer-Encoding", b"chunked"))
        elif method != b"HEAD":
            need_close = True
    keep = keep_alive and modern and not close and not need_close
    if not keep_alive or not modern or need_close:  # (an app's own "Connection: close" is left as it is)
        tokens = {t for n, v in out if n.lower() == b"connection" for t in _tokens(v)} - {b"keep-alive"} | {b"close"}
        out = [(n, v) for n, v in out if n.lower() != b"connection"] + [(b"Connection", t) for t in sorted(tokens)]
    head = b"HTTP/1.1 %d \r\n%s\r\n" % (status, b"".join(b"%s: %s\r\n" % field for field in out))
    if status in (204, 304) or method == b"HEAD":
        return head, Framing(0, False, keep)
    if unknown:
        return head, Framing(None, modern, keep)
    return head, Framing(int(length or 0), False, keep)
