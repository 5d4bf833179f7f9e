"""``StreamRestorer`` on its own: streams in each dialect cut at every byte boundary, and deltas
cut at every character, come out with every placeholder restored and the events intact."""

from __future__ import annotations

import json
from typing import Any

import pytest

from lockgate.privacy.detect import BUILT_IN, Detector
from lockgate.privacy.redact import Redaction, Restorer
from lockgate.privacy.stream import StreamRestorer
from lockgate.wire.sse import SSEDecoder

EMAIL, PHONE = "bob@example.org", "+44 20 7946 0958"


def redaction() -> Redaction:
    r = Redaction(Detector(BUILT_IN))
    assert r.redact(f"{EMAIL} {PHONE}") == "<EMAIL_1> <PHONE_1>"
    return r


def sse(name: str | None, data: dict[str, Any]) -> bytes:
    return (f"event: {name}\n" if name else "").encode() + b"data: " + json.dumps(data).encode() + b"\n\n"


def openai_stream(*deltas: str) -> bytes:
    chunks = [sse(None, {"choices": [{"index": 0, "delta": {"content": d}}]}) for d in deltas]
    chunks.append(sse(None, {"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}))
    return b"".join(chunks) + b"data: [DONE]\n\n"


def anthropic_stream(*deltas: str) -> bytes:
    chunks = [sse("content_block_delta", {"type": "content_block_delta", "index": 0,
                                          "delta": {"type": "text_delta", "text": d}}) for d in deltas]
    chunks.append(sse("content_block_stop", {"type": "content_block_stop", "index": 0}))
    return b"".join(chunks)


def responses_stream(*deltas: str) -> bytes:
    chunks = [sse("response.output_text.delta", {"type": "response.output_text.delta",
                                                 "item_id": "msg_1", "content_index": 0, "delta": d})
              for d in deltas]
    chunks.append(sse("response.output_text.done", {"type": "response.output_text.done",
                                                    "text": "".join(deltas)}))
    return b"".join(chunks)


def text_of(raw: bytes, dialect: str) -> str:
    decoder = SSEDecoder()
    out = []
    for event in [*decoder.decode(raw), *decoder.flush()]:
        if event.data == "[DONE]":
            continue
        obj = json.loads(event.data)
        if dialect == "openai":
            out.append(obj["choices"][0]["delta"].get("content", ""))
        elif dialect == "anthropic" and obj["type"] == "content_block_delta":
            out.append(obj["delta"]["text"])
        elif dialect == "responses" and obj["type"].endswith(".delta"):
            out.append(obj["delta"])
        elif dialect == "responses":
            assert obj["text"] == f"Mail {EMAIL}, call {PHONE}."
    return "".join(out)


STREAMS = {"openai": openai_stream, "anthropic": anthropic_stream, "responses": responses_stream}


@pytest.mark.parametrize("dialect", list(STREAMS))
def test_every_byte_boundary(dialect: str) -> None:
    raw = STREAMS[dialect]("Mail <EMA", "IL_1>, call <", "PHONE_1>.")
    for cut in range(len(raw) + 1):
        restorer = StreamRestorer(redaction(), dialect)
        out = restorer.feed(raw[:cut]) + restorer.feed(raw[cut:]) + restorer.flush()
        assert text_of(out, dialect) == f"Mail {EMAIL}, call {PHONE}.", cut


def test_every_character_cut_of_a_delta() -> None:
    text = "Mail <EMAIL_1>, call <PHONE_1>. <NOT_A_PLACEHOLDER> a < b <EMAIL_9>"
    expected = f"Mail {EMAIL}, call {PHONE}. <NOT_A_PLACEHOLDER> a < b <EMAIL_9>"
    for cut in range(len(text) + 1):
        restorer = Restorer(redaction())
        assert restorer.feed(text[:cut]) + restorer.feed(text[cut:]) + restorer.flush() == expected


def test_an_event_without_placeholders_passes_as_it_came() -> None:
    raw = openai_stream("nothing ", "to see")
    assert StreamRestorer(redaction(), "openai").feed(raw) == raw


def test_held_text_goes_out_before_the_next_event() -> None:
    restorer = StreamRestorer(redaction(), "anthropic")
    first = restorer.feed(anthropic_stream("Mail <EMAIL_")[:-len(sse("content_block_stop", {
        "type": "content_block_stop", "index": 0}))])
    assert b"<EMAIL_" not in first  # held back: it may be a placeholder
    rest = restorer.feed(sse("content_block_stop", {"type": "content_block_stop", "index": 0}))
    assert rest.index(b"<EMAIL_") < rest.index(b"content_block_stop")  # released before the stop


def test_tool_call_arguments_are_restored_in_openai_and_anthropic_streams() -> None:
    def openai_call(arguments: str) -> bytes:
        call = {"index": 0, "function": {"arguments": arguments}}
        return sse(None, {"choices": [{"index": 0, "delta": {"tool_calls": [call]}}]})

    raw = openai_call('{"to": "<EMAI') + openai_call('L_1>"}') + sse(None, {"choices": [
        {"index": 0, "delta": {}, "finish_reason": "tool_calls"}]})
    decoder = SSEDecoder()
    events = decoder.decode(StreamRestorer(redaction(), "openai").feed(raw))
    arguments = "".join(json.loads(e.data)["choices"][0]["delta"].get("tool_calls", [{}])[0]
                        .get("function", {}).get("arguments", "") for e in events)
    assert json.loads(arguments) == {"to": EMAIL}

    raw = b"".join(sse("content_block_delta", {"type": "content_block_delta", "index": 1, "delta": {
        "type": "input_json_delta", "partial_json": part}}) for part in ('{"to": "<', 'EMAIL_1>"}'))
    restorer = StreamRestorer(redaction(), "anthropic")
    events = SSEDecoder().decode(restorer.feed(raw) + restorer.flush())
    assert json.loads("".join(json.loads(e.data)["delta"]["partial_json"] for e in events)) == {"to": EMAIL}
