"""``auxot.http.body``, the response body's framing read without h11, with h11
as the oracle: valid bodies in arbitrary pieces read the same as h11 reads them,
and no bytes are accepted as a whole body that h11 would refuse or read
differently."""

from __future__ import annotations

import h11
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from auxot.http.body import BodyError, Chunked, Length, UntilClose, reader_for

HEAD = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"


def h11_reads(body: bytes) -> tuple[bytes, bool]:
    """What h11 makes of a chunked body: its data, and whether it ended (False: it refused it or wants more)."""
    conn = h11.Connection(h11.CLIENT)
    conn.send(h11.Request(method="GET", target="/", headers=[("host", "x")]))
    conn.send(h11.EndOfMessage())
    conn.receive_data(HEAD + body)
    data = b""
    try:
        while True:
            event = conn.next_event()
            if isinstance(event, h11.Data):
                data += bytes(event.data)
            elif isinstance(event, h11.EndOfMessage):
                return data, True
            elif event is h11.NEED_DATA or event is h11.PAUSED:
                return data, False
    except h11.RemoteProtocolError:
        return data, False


def ours(reader: Chunked | Length | UntilClose, pieces: list[bytes]) -> bytes:
    return b"".join(reader.feed(piece) for piece in pieces)


def cut(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    return [data[a:b] for a, b in zip([0, *points], [*points, len(data)]) if b > a]


chunk_data = st.binary(min_size=1, max_size=300)
extension = st.sampled_from([b"", b";name", b";name=value", b'; a="q"', b" \t"])
trailer = st.sampled_from([b"", b"X-Checksum: abc\r\n", b"A: 1\r\nB: 2\r\n"])


@st.composite
def chunked_bodies(draw: st.DrawFn) -> tuple[bytes, bytes]:
    pieces = draw(st.lists(chunk_data, max_size=8))
    wire = b"".join(b"%s%s\r\n%s\r\n" % (draw(st.sampled_from([b"%x", b"%X", b"%04x"])) % len(p), draw(extension), p)
                    for p in pieces)
    return wire + b"0" + draw(extension) + b"\r\n" + draw(trailer) + b"\r\n", b"".join(pieces)


@settings(max_examples=300, deadline=None)
@given(chunked_bodies(), st.lists(st.integers(min_value=0, max_value=5000), max_size=12), st.binary(max_size=20))
def test_a_valid_chunked_body_in_any_pieces_reads_as_h11_reads_it(body: tuple[bytes, bytes], cuts: list[int], after: bytes) -> None:
    wire, data = body
    assert h11_reads(wire) == (data, True)
    reader = Chunked()
    assert ours(reader, cut(wire + after, cuts)) == data
    assert reader.done and reader.extra == after


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(chunk_data, extension), min_size=1, max_size=6))
def test_a_stream_read_a_whole_chunk_at_a_time_reads_the_same(chunks: list[tuple[bytes, bytes]]) -> None:
    """The reader's shortcut for a read that is exactly one chunk (the usual read of a
    stream, one token each) gives what its steps give a byte at a time."""
    whole, by_byte = Chunked(), Chunked()
    for data, ext in chunks:
        wire = b"%x%s\r\n%s\r\n" % (len(data), ext, data)
        assert whole.feed(wire) == data == ours(by_byte, [wire[i:i + 1] for i in range(len(wire))])
    assert whole.feed(b"0\r\n\r\n") == b"" and whole.done and not whole.extra


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=12), st.binary(max_size=40), st.binary(max_size=3))
def test_anything_shaped_like_one_chunk_reads_as_the_steps_read_it(line: bytes, data: bytes, end: bytes) -> None:
    wire = line + b"\r\n" + data + end

    def outcome(pieces: list[bytes]) -> tuple[bytes, bool, bytes] | str:
        reader = Chunked()
        try:
            return ours(reader, pieces), reader.done, reader.extra
        except BodyError:
            return "refused"

    assert outcome([wire]) == outcome([wire[i:i + 1] for i in range(len(wire))])


@settings(max_examples=500, deadline=None)
@given(st.one_of(
    st.binary(max_size=60),
    chunked_bodies().flatmap(lambda b: st.tuples(st.just(b[0]), st.integers(0, len(b[0])), st.binary(max_size=4)))
    .map(lambda t: t[0][: t[1]] + t[2] + t[0][t[1]:]),  # a valid body with a few bytes slipped in
), st.lists(st.integers(min_value=0, max_value=400), max_size=6))
def test_no_bytes_h11_refuses_are_read_as_a_whole_body(wire: bytes, cuts: list[int]) -> None:
    reader = Chunked()
    try:
        data = ours(reader, cut(wire, cuts))
    except BodyError:
        return  # refused: whatever h11 says, nothing was passed on as a complete answer
    if reader.done:
        h11_data, h11_done = h11_reads(wire[: len(wire) - len(reader.extra)])
        assert h11_done and h11_data == data


@pytest.mark.parametrize("wire", [
    b"5\nhello\r\n0\r\n\r\n",  # a bare LF ends the size line
    b"5\r\nhelloXX0\r\n\r\n",  # the data is not followed by CRLF
    b"0x5\r\nhello\r\n0\r\n\r\n",  # int() would take these; HTTP does not
    b"+5\r\nhello\r\n0\r\n\r\n",
    b"5_0\r\nhello\r\n0\r\n\r\n",
    b"0\r\nno colon here\r\n\r\n",
    b"f" * 21 + b"\r\n",  # wider than h11 allows
])
def test_malformed_framing_is_refused(wire: bytes) -> None:
    with pytest.raises(BodyError):
        ours(Chunked(), [wire])


def test_a_size_line_that_never_ends_is_refused_once_too_long() -> None:
    reader = Chunked()
    with pytest.raises(BodyError, match="too long"):
        for _ in range(100):
            reader.feed(b"1" * 1024)


def test_a_cut_short_body_is_an_error_at_the_close_but_a_close_delimited_one_ends_there() -> None:
    for reader in (Chunked(), Length(10)):
        reader.feed(b"5\r\nhel" if isinstance(reader, Chunked) else b"hel")
        with pytest.raises(BodyError, match="closed before the end"):
            reader.eof()
    until = UntilClose()
    assert until.feed(b"anything") == b"anything" and not until.done
    until.eof()
    assert until.done


def test_a_length_body_ends_at_its_length_and_keeps_what_follows() -> None:
    reader = Length(5)
    assert reader.feed(b"hel") == b"hel" and not reader.done
    assert reader.feed(b"loEXTRA") == b"lo" and reader.done and reader.extra == b"EXTRA"


@pytest.mark.parametrize(("status", "headers", "method", "kind"), [
    (200, [(b"transfer-encoding", b"chunked"), (b"content-length", b"5")], "POST", Chunked),  # TE wins, as RFC 9112 says
    (200, [(b"content-length", b"5")], "POST", Length),
    (200, [], "POST", UntilClose),
    (204, [], "POST", Length),
    (304, [(b"content-length", b"5")], "GET", Length),
    (200, [(b"content-length", b"5")], "HEAD", Length),
])
def test_the_framing_is_chosen_as_h11_chooses_it(status: int, headers: list[tuple[bytes, bytes]], method: str, kind: type) -> None:
    reader = reader_for(status, headers, method)
    assert type(reader) is kind
    if status in (204, 304) or method == "HEAD":
        assert reader.done
