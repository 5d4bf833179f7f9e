"""``dialects.sse``: the incremental SSE decoder on its own — every way a stream can be cut into
chunks, every line ending, the size cap, bytes that are not UTF-8, and linear work."""

from __future__ import annotations

import sys
from collections.abc import Callable

import pytest

from lockgate.errors import UpstreamError
from lockgate.wire.sse import SSEDecoder, SSEEvent

# One stream with everything an upstream may send: \r\n, \r and \n line ends, a comment, a
# named event, a multi-line data field, a field without a space, an empty data line and a
# character of several bytes.
STREAM = (
    b": keep-alive\r\n\r\n"
    b"event: message_start\r\ndata: {\"a\":1}\r\n\r\n"
    b"data: line one\r\ndata: line two\r\n\r\n"
    b"data:no-space\r\rdata: caf\xc3\xa9\n\n"
    b"data:\n\n"
    b"data: [DONE]\n\n"
)
EXPECTED = [
    ("message_start", '{"a":1}'),
    (None, "line one\nline two"),
    (None, "no-space"),
    (None, "caf\u00e9"),
    (None, ""),
    (None, "[DONE]"),
]


def decode_all(chunks: list[bytes], decoder: SSEDecoder | None = None) -> list[SSEEvent]:
    decoder = decoder or SSEDecoder()
    events = [event for chunk in chunks for event in decoder.decode(chunk)]
    return events + decoder.flush()


def pairs(events: list[SSEEvent]) -> list[tuple[str | None, str]]:
    return [(e.event, e.data) for e in events]


def test_a_whole_stream_decodes_to_its_events() -> None:
    assert pairs(decode_all([STREAM])) == EXPECTED


@pytest.mark.parametrize("cut", range(1, len(STREAM)))
def test_a_stream_cut_in_two_at_any_byte_gives_the_same_events(cut: int) -> None:
    assert pairs(decode_all([STREAM[:cut], STREAM[cut:]])) == EXPECTED


def test_a_stream_fed_one_byte_at_a_time_gives_the_same_events() -> None:
    assert pairs(decode_all([STREAM[i:i + 1] for i in range(len(STREAM))])) == EXPECTED


def test_a_crlf_split_between_chunks_ends_one_line_not_two() -> None:
    """The \\r closes one chunk and its \\n opens the next: one line end, so one event whose
    data has two lines — not two events."""
    events = decode_all([b"data: a\r", b"\ndata: b\r\n\r\n"])
    assert pairs(events) == [(None, "a\nb")]


def test_a_lone_cr_at_a_chunk_end_followed_by_a_line_is_still_a_line_end() -> None:
    assert pairs(decode_all([b"data: a\r", b"data: b\r\r"])) == [(None, "a\nb")]


def test_the_raw_bytes_of_an_event_end_with_a_blank_line_in_lf_form() -> None:
    [event] = SSEDecoder().decode(b"event: x\r\ndata: y\r\n\r\n")
    assert event.raw == b"event: x\ndata: y\n\n"


def test_a_last_event_without_its_blank_line_is_returned_by_flush() -> None:
    decoder = SSEDecoder()
    assert decoder.decode(b"data: tail") == []
    assert pairs(decoder.flush()) == [(None, "tail")]
    assert decoder.flush() == []


def test_an_unfinished_event_over_the_cap_is_an_upstream_failure() -> None:
    decoder = SSEDecoder(max_event_bytes=100)
    decoder.decode(b"data: " + b"x" * 90)
    with pytest.raises(UpstreamError, match="max_event_bytes") as caught:
        decoder.decode(b"x" * 20)
    assert caught.value.status == 502


def test_a_whole_event_over_the_cap_in_one_chunk_is_an_upstream_failure() -> None:
    with pytest.raises(UpstreamError, match="over 100 bytes"):
        SSEDecoder(max_event_bytes=100).decode(b"data: " + b"x" * 200 + b"\n\ndata: ok\n\n")


def test_an_event_at_the_cap_is_decoded() -> None:
    event = b"data: " + b"x" * 94  # 100 bytes before its blank line
    [decoded] = SSEDecoder(max_event_bytes=100).decode(event + b"\n\n")
    assert decoded.data == "x" * 94


def test_many_events_under_the_cap_pass_whatever_their_total() -> None:
    decoder = SSEDecoder(max_event_bytes=64)
    events = [e for _ in range(1000) for e in decoder.decode(b"data: " + b"y" * 50 + b"\n\n")]
    assert len(events) == 1000


def test_bytes_without_a_blank_line_fail_once_past_the_cap_instead_of_growing() -> None:
    decoder = SSEDecoder(max_event_bytes=10_000)
    with pytest.raises(UpstreamError):
        for _ in range(10_000):
            decoder.decode(b"data: more\n")  # lines, never a blank one


@pytest.mark.parametrize("raw", [b"data: \xff\xfe\n\n", b"event: \xc3\ndata: x\n\n",
                                 b"data: a\ndata: \x80\n\n"])
def test_an_event_that_is_not_utf8_is_an_upstream_failure(raw: bytes) -> None:
    with pytest.raises(UpstreamError, match="UTF-8"):
        SSEDecoder().decode(raw)


def searched_bytes(work: Callable[[], object]) -> int:
    """The bytes ``work`` hands to ``bytes.find`` / ``bytearray.find`` as haystacks: measured
    (a profile hook sees every call of a built-in method and the object it is bound to), not
    counted by the decoder itself."""
    total = 0

    def hook(frame: object, event: str, arg: object) -> None:
        nonlocal total
        if event == "c_call" and getattr(arg, "__name__", "") == "find":
            haystack = getattr(arg, "__self__", None)
            if isinstance(haystack, bytes | bytearray):
                total += len(haystack)

    sys.setprofile(hook)
    try:
        work()
    finally:
        sys.setprofile(None)
    return total


def test_a_large_event_in_small_chunks_is_searched_once_not_once_per_chunk() -> None:
    """Linear by construction: each read is searched on its own, never the held bytes again.
    The old decoder searched its whole buffer on every read: about chunks^2 / 2 * 10 bytes
    here (5e9), where the stream has 1e6."""
    chunks, piece = 100_000, b"x" * 10
    decoder = SSEDecoder(max_event_bytes=2_000_000)
    events: list[SSEEvent] = []

    def feed() -> None:
        decoder.decode(b"data: ")
        for _ in range(chunks):
            events.extend(decoder.decode(piece))
        events.extend(decoder.decode(b"\n\n"))

    searched = searched_bytes(feed)
    [event] = events
    assert len(event.data) == chunks * len(piece)
    total = 6 + chunks * len(piece) + 2
    assert searched <= 2 * total


def test_many_small_events_are_searched_linearly_too() -> None:
    stream = b"".join(b"data: %d\n\n" % i for i in range(20_000))
    decoder = SSEDecoder()
    pieces = [stream[i:i + 7] for i in range(0, len(stream), 7)]
    searched = searched_bytes(lambda: [decoder.decode(p) for p in pieces])
    assert searched <= 3 * len(stream)


def test_events_before_a_broken_one_in_the_same_chunk_come_out_first() -> None:
    decoder = SSEDecoder(max_event_bytes=100)
    [event] = decoder.decode(b"data: ok\n\ndata: " + b"x" * 200)
    assert event.data == "ok"
    with pytest.raises(UpstreamError, match="max_event_bytes"):
        decoder.decode(b"data: more\n\n")
    with pytest.raises(UpstreamError, match="max_event_bytes"):
        decoder.flush()
