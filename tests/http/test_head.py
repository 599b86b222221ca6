"""``auxot.http.head``, the client's heads written and read without h11, held
to h11 by hypothesis: a request head written here is the request h11 reads; a
response head read here reads the same in h11; and no head h11 refuses is
read here."""

from __future__ import annotations

import h11
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from auxot.http.head import HeadError, field_lines, read_head, request_head

Head = tuple[int, bytes, list[tuple[bytes, bytes]]]


def h11_reads(data: bytes) -> Head | None:
    """What h11, as a client that sent a GET, makes of a response head: None if it refuses it or wants more."""
    conn = h11.Connection(h11.CLIENT)
    conn.send(h11.Request(method="GET", target="/", headers=[("host", "x")]))
    conn.send(h11.EndOfMessage())
    conn.receive_data(data)
    try:
        event = conn.next_event()
    except h11.RemoteProtocolError:
        return None
    if not isinstance(event, (h11.Response, h11.InformationalResponse)):
        return None
    return event.status_code, event.http_version, [(name, value) for name, value in event.headers]


def ours(data: bytes) -> Head | None:
    try:
        found = read_head(data)
    except HeadError:
        return None
    if found is None:
        return None
    head, _ = found
    return head.status, head.http_version, head.headers


name = st.sampled_from([b"Content-Type", b"X-Thing", b"server", b"Connection", b"Content-Length", b"Transfer-Encoding",
                        b"a", b"X_Under.Score~"])
value = st.sampled_from([b"text/event-stream", b"", b"  padded  ", b"a b\tc", b"close", b"keep-alive", b"chunked",
                         b"Chunked", b"5", b"5, 5", b"5,6", b"007", b"x" * 30, b"\xe9t\xe9", b"gzip, chunked"])
status_line = st.sampled_from([b"HTTP/1.1 200 OK", b"HTTP/1.1 404 Not Found", b"HTTP/1.0 200 OK", b"HTTP/1.1 204",
                               b"HTTP/1.1 200 ", b"HTTP/1.1 100 Continue", b"HTTP/1.1 500 weird\treason"])
eol = st.sampled_from([b"\r\n", b"\n"])


@st.composite
def heads(draw: st.DrawFn) -> bytes:
    lines = [draw(status_line)] + [draw(name) + b":" + draw(st.sampled_from([b"", b" ", b"\t "])) + draw(value)
                                   for _ in range(draw(st.integers(0, 6)))]
    return b"".join(line + draw(eol) for line in lines) + draw(eol)


@settings(max_examples=400, deadline=None)
@given(heads(), st.binary(max_size=10))
def test_a_head_read_here_reads_the_same_in_h11(data: bytes, body: bytes) -> None:
    """These heads hold nothing this module is stricter about: both read each alike, or both refuse it."""
    mine = ours(data + body)
    assert mine == h11_reads(data + body)
    if mine is not None:
        head, size = read_head(data + body)  # type: ignore[misc]
        assert size == len(data)


@settings(max_examples=400, deadline=None)
@given(heads().flatmap(lambda h: st.tuples(st.just(h), st.integers(0, len(h)), st.binary(min_size=1, max_size=3))))
def test_no_head_h11_refuses_is_read_here(case: tuple[bytes, int, bytes]) -> None:
    data, at, slipped = case
    mutated = data[:at] + slipped + data[at:]
    mine = ours(mutated)
    if mine is not None:
        assert h11_reads(mutated) == mine


def test_the_usual_heads_are_read() -> None:
    data = b"HTTP/1.1 200 OK\r\nServer: nginx\r\nTransfer-Encoding: chunked\r\nContent-Length: 5, 5\r\n\r\nrest"
    head, size = read_head(data)  # type: ignore[misc]
    assert (head.status, head.http_version, head.headers) == (
        200, b"1.1", [(b"server", b"nginx"), (b"transfer-encoding", b"chunked"), (b"content-length", b"5")])
    assert data[size:] == b"rest"
    assert read_head(b"HTTP/1.1 200 OK\r\nServer: ngi") is None  # not complete yet


@pytest.mark.parametrize("data", [
    b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nBad Name: x\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nX: a\r\n continued\r\n\r\n",  # obs-fold: h11 unfolds it, this refuses it
    b"HTTP/2 200\r\n\r\n",
    b"\r\nHTTP/1.1 200 OK\r\n\r\n",
    b"SSH-2.0-OpenSSH\r\n\r\n",
])
def test_malformed_heads_are_refused(data: bytes) -> None:
    with pytest.raises(HeadError):
        read_head(data)


def test_a_head_that_never_ends_is_refused_once_too_large() -> None:
    with pytest.raises(HeadError, match="larger than"):
        read_head(b"HTTP/1.1 200 OK\r\nX: " + b"a" * (1024 * 1024 + 1))


header_text = st.text(alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7e), min_size=1, max_size=20)


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(["GET", "POST"]), st.sampled_from(["/", "/v1/chat/completions", "/a?b=c&d=%20"]),
       st.lists(st.tuples(st.from_regex(r"[A-Za-z][-A-Za-z0-9]{0,12}", fullmatch=True), header_text), max_size=5))
def test_a_request_head_written_here_is_the_request_h11_reads(method: str, target: str, headers: list[tuple[str, str]]) -> None:
    headers = [("Host", "example"), *((k, v) for k, v in headers if k.lower() not in ("host", "content-length", "transfer-encoding"))]
    server = h11.Connection(h11.SERVER)
    server.receive_data(request_head(method, target, field_lines(headers)))
    event = server.next_event()
    assert isinstance(event, h11.Request)
    assert (event.method, event.target) == (method.encode(), target.encode())
    assert [(k, v) for k, v in event.headers] == [(k.lower().encode(), v.encode()) for k, v in headers]


@pytest.mark.parametrize(("headers", "method", "target"), [
    ([("X-Smuggle", "a\r\nInjected: yes")], "POST", "/"),
    ([("X-Nul", "a\x00b")], "POST", "/"),
    ([("Bad Name", "x")], "POST", "/"),
    ([], "PO ST", "/"),
    ([], "POST", "/a b"),
    ([], "POST", "/a\r\nX: y"),
])
def test_a_head_that_would_smuggle_a_line_is_not_written(headers: list[tuple[str, str]], method: str, target: str) -> None:
    with pytest.raises(HeadError):
        request_head(method, target, field_lines(headers))
