"""``auxot.http.head`` on the server's side, held to h11 by hypothesis: a
request head read here reads the same in h11 (method, target, version,
headers, body framing, keep-alive, 100-continue); no request head h11
refuses is read here; and an answer's head written here is byte for byte
the head h11 writes, with the same framing, or refused where h11 refuses it.

The fake each rejects: a reader that takes what h11 refuses, or reads a
request differently (another length, keep-alive where h11 closes); a writer
that frames an answer otherwise (chunked to an HTTP/1.0 client, a body after
HEAD) or lets a header value carry a line of its own."""

from __future__ import annotations

from typing import Any

import h11
import pytest
from h11._connection import _body_framing, _keep_alive
from h11._writers import ChunkedWriter, ContentLengthWriter, Http10Writer
from hypothesis import given, settings
from hypothesis import strategies as st

from auxot.http.head import HeadError, read_request_head, response_head

LIMIT = 16 * 1024


def h11_reads(data: bytes) -> tuple[Any, ...] | None:
    """What h11's server makes of a request head: None if it refuses it or wants more."""
    conn = h11.Connection(h11.SERVER)
    conn.receive_data(data)
    try:
        event = conn.next_event()
    except h11.RemoteProtocolError:
        return None
    if not isinstance(event, h11.Request):
        return None
    kind, args = _body_framing(event.method, event)
    return (event.method, event.target, event.http_version, [(n, v) for n, v in event.headers],
            args[0] if kind == "content-length" else 0, kind == "chunked", _keep_alive(event),
            conn.they_are_waiting_for_100_continue)


def ours(data: bytes) -> tuple[Any, ...] | None:
    try:
        found = read_request_head(data, LIMIT)
    except HeadError:
        return None
    return None if found is None else tuple(found[0])


method = st.sampled_from([b"GET", b"POST", b"HEAD", b"get", b"OPTIONS", b"X-CUSTOM"])
target = st.sampled_from([b"/", b"/v1/chat/completions", b"/a?b=c&d=%20", b"*", b"http://x/y", b"/~!$&'()*+,;="])
version = st.sampled_from([b"1.1", b"1.0"])
name = st.sampled_from([b"Content-Type", b"X-Thing", b"Connection", b"Content-Length", b"Transfer-Encoding", b"Expect",
                        b"a", b"X_Under.Score~", b"authorization"])
value = st.sampled_from([b"application/json", b"", b"  padded  ", b"a b\tc", b"close", b"keep-alive", b"Keep-Alive, Close",
                         b"upgrade", b"chunked", b"Chunked", b"5", b"5, 5", b"5,6", b"007", b"100-continue",
                         b"100-Continue, x", b"x" * 30, b"\xe9t\xe9", b"gzip, chunked", b"a\x01b"])
eol = st.sampled_from([b"\r\n", b"\n"])


@st.composite
def heads(draw: st.DrawFn) -> bytes:
    fields = [(draw(name), draw(value)) for _ in range(draw(st.integers(0, 6)))]
    names = [n.lower() for n, _ in fields]
    if b"content-length" in names and b"transfer-encoding" in names:  # refused here, taken by h11 (the module says why)
        fields = [(n, v) for n, v in fields if n.lower() != b"content-length"]
    host = [(b"Host", b"example")] * draw(st.sampled_from([1, 1, 1, 1, 1, 1, 1, 1, 0, 2]))  # none or two: refused by both
    lines = [draw(method) + b" " + draw(target) + b" HTTP/" + draw(version)]
    lines += [n + b":" + draw(st.sampled_from([b"", b" ", b"\t "])) + v for n, v in [*host, *fields]]
    return b"".join(line + draw(eol) for line in lines) + draw(eol)


@settings(max_examples=500, deadline=None)
@given(heads(), st.binary(max_size=10))
def test_a_request_head_read_here_reads_the_same_in_h11(data: bytes, body: bytes) -> None:
    """These heads hold nothing this module is stricter about: both read each alike, or both refuse it."""
    mine = ours(data + body)
    assert mine == h11_reads(data + body)
    if mine is not None:
        assert read_request_head(data + body, LIMIT)[1] == len(data)  # type: ignore[index]


@settings(max_examples=500, deadline=None)
@given(heads().flatmap(lambda h: st.tuples(st.just(h), st.integers(0, len(h)), st.binary(min_size=1, max_size=3))))
def test_no_request_head_h11_refuses_is_read_here(case: tuple[bytes, int, bytes]) -> None:
    data, at, slipped = case
    mutated = data[:at] + slipped + data[at:]
    mine = ours(mutated)
    if mine is not None:
        assert h11_reads(mutated) == mine


@pytest.mark.parametrize(("data", "status"), [
    (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n", 400),  # smuggling
    (b"GET / HTTP/1.1\r\nHost: x\r\nX: a\r\n folded\r\n\r\n", 400),  # obs-fold
    (b"\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n", 400),
    (b"GET / HTTP/1.1\r\n\r\n", 400),  # no Host
    (b"GET / HTTP/1.1\r\nHost: x\r\nHost: y\r\n\r\n", 400),
    (b"GET / HTTP/2.0\r\nHost: x\r\n\r\n", 505),
    (b"GET / HTTP/1.2\r\nHost: x\r\n\r\n", 505),
    (b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n", 501),
    (b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n", 501),
    (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n", 400),
    (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: +5\r\n\r\n", 400),
    (b"GET /\xff HTTP/1.1\r\nHost: x\r\n\r\n", 400),
    (b"GET / HTTP/1.1\r\nHost: x\r\nX: " + b"a" * LIMIT + b"\r\n\r\n", 431),  # complete, but too large
    (b"GET / HTTP/1.1\r\nHost: x\r\nX: " + b"a" * LIMIT, 431),  # never ends
])
def test_malformed_request_heads_are_refused_with_their_status(data: bytes, status: int) -> None:
    with pytest.raises(HeadError) as refused:
        read_request_head(data, LIMIT)
    assert refused.value.status == status


def test_an_incomplete_request_head_waits_for_more() -> None:
    assert read_request_head(b"GET / HTTP/1.1\r\nHost: x\r\n", LIMIT) is None


answer_name = st.sampled_from([b"content-type", b"Content-Length", b"content-length", b"transfer-encoding",
                               b"Transfer-Encoding", b"connection", b"x-auxot-provider", b"date", b"X_Y"])
answer_value = st.sampled_from([b"application/json", b"", b"close", b"keep-alive", b"Keep-Alive, upgrade", b"chunked",
                                b"Chunked", b"gzip", b"12", b"12, 12", b"3,4", b"0", b"x y", b"\xe9", b"a\r\nInjected: 1",
                                b" lead", b"a\x00"])


@settings(max_examples=600, deadline=None)
@given(st.sampled_from([200, 201, 204, 304, 400, 404, 500, 599, 999, 100, 1000]),
       st.lists(st.tuples(answer_name, answer_value), max_size=5), st.sampled_from([b"GET", b"HEAD", b"POST"]),
       st.sampled_from([b"1.1", b"1.0"]), st.booleans())
def test_an_answer_head_written_here_is_the_one_h11_writes(status: int, headers: list[tuple[bytes, bytes]], method: bytes,
                                                           http_version: bytes, close: bool) -> None:
    conn = h11.Connection(h11.SERVER)
    asked = [(b"Host", b"x")] if http_version == b"1.1" else []
    conn.receive_data(b"%s / HTTP/%s\r\n%s\r\n" % (method, http_version, b"".join(
        b"%s: %s\r\n" % field for field in [*asked, *([(b"Connection", b"close")] if close else [])])))
    request = conn.next_event()
    assert isinstance(request, h11.Request)
    try:
        expected = conn.send(h11.Response(status_code=status, headers=headers))
    except h11.LocalProtocolError:
        expected = None
    try:
        head, framing = response_head(status, headers, method=method, http_version=http_version,
                                      keep_alive=_keep_alive(request))
    except HeadError:
        assert expected is None
        return
    assert head == expected
    writer = conn._writer
    if isinstance(writer, ContentLengthWriter):
        assert (framing.length, framing.chunked) == (writer._length, False)
    elif isinstance(writer, ChunkedWriter):
        assert (framing.length, framing.chunked) == (None, True)
    else:
        assert isinstance(writer, Http10Writer) and (framing.length, framing.chunked) == (None, False)
    assert framing.keep_alive == conn._cstate.keep_alive
