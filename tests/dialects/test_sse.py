import random
import re

from hypothesis import given
from hypothesis import strategies as st

from auxot import sse


def feed_in_pieces(data: bytes, seed: int) -> list[sse.Event]:
    rng = random.Random(seed)
    decoder = sse.Decoder()
    events: list[sse.Event] = []
    i = 0
    while i < len(data):
        n = rng.randint(1, 7)
        events += decoder.feed(data[i : i + n])
        i += n
    return events


def test_fields_comments_and_multiline_data() -> None:
    raw = b": comment\r\nevent: message_start\r\ndata: {\"a\":\r\ndata:  1}\r\n\r\nid: 7\nretry: 30\ndata:x\n\n"
    for seed in range(20):
        events = feed_in_pieces(raw, seed)
        assert events == [sse.Event('{"a":\n 1}', "message_start"), sse.Event("x", None, "7", 30)]


def test_cr_only_line_endings_split_across_chunks() -> None:
    decoder = sse.Decoder()
    assert decoder.feed(b"data: a\r") == []
    assert decoder.feed(b"\n\r\n") == [sse.Event("a")]
    assert decoder.feed(b"data: b\r\r") == [sse.Event("b")]


def test_oversized_event_is_refused() -> None:
    decoder = sse.Decoder(max_event_bytes=100)
    try:
        decoder.feed(b"data: " + b"x" * 200)
    except ValueError as exc:
        assert "larger than 100" in str(exc)
    else:
        raise AssertionError("an oversized event must raise")


@given(
    st.lists(st.text(alphabet=st.characters(blacklist_characters="\r\n", blacklist_categories=("Cs",))), min_size=1, max_size=5),
    st.integers(0, 1000),
)
def test_encode_then_decode_is_identity(payloads: list[str], seed: int) -> None:
    raw = b"".join(sse.encode(p, event="e") for p in payloads)
    assert [e.data for e in feed_in_pieces(raw, seed)] == payloads


def test_multiline_payload_survives() -> None:
    assert feed_in_pieces(sse.encode("a\nb\n\nc"), 1) == [sse.Event("a\nb\n\nc")]


_FIELD = st.sampled_from(["data", "data:", "data: ", "event: ", "id: ", "retry: ", ": ", "x: ", "data:  "])
_LINE = st.builds(
    lambda f, v: f + v, _FIELD, st.text(alphabet=st.characters(blacklist_characters="\r\n", blacklist_categories=("Cs",)), max_size=8)
)


@given(st.lists(st.one_of(_LINE, st.just("")), max_size=30), st.integers(0, 1000))
def test_lf_fast_path_decodes_as_the_general_path(lines: list[str], seed: int) -> None:
    """LF-only input takes the fast path; the same lines with CRLF take the
    general one.  Both must give the same events, fed in any pieces."""
    text = "".join(line + "\n" for line in lines)
    assert feed_in_pieces(text.encode(), seed) == feed_in_pieces(text.replace("\n", "\r\n").encode(), seed)


def test_oversized_event_is_refused_on_the_fast_path_too() -> None:
    decoder = sse.Decoder(max_event_bytes=100)
    decoder.feed(b"data: " + b"x" * 60 + b"\n")
    try:
        decoder.feed(b"data: " + b"y" * 60 + b"\n")
    except ValueError as exc:
        assert "larger than 100" in str(exc)
    else:
        raise AssertionError("an oversized event must raise")


@given(st.lists(st.one_of(_LINE, st.just("")), max_size=30))
def test_a_read_of_one_whole_event_decodes_as_the_general_path(lines: list[str]) -> None:
    """A stream read per event (one token each) takes the one-event shortcut where it
    can; fed event by event, the same bytes give what they give a byte at a time."""
    text = "".join(line + "\n" for line in lines) + "\n"
    data = text.encode()
    pieces = re.findall(rb"(?s).*?\n\n|.+", data)  # each up to the blank line that ends an event
    assert b"".join(pieces) == data
    decoder = sse.Decoder()
    by_event = [event for piece in pieces for event in decoder.feed(piece)]
    decoder = sse.Decoder()
    assert by_event == [event for i in range(len(data)) for event in decoder.feed(data[i:i + 1])]
