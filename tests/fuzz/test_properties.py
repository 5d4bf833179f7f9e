"""Property tests of what reads hostile input: the client dialects, the SSE decoder and the V2
tensor parser. Each either accepts its input or refuses it with the error the client is meant
to see (``InvalidRequest`` / ``UpstreamError``); any other exception would be a 500.

Derandomized with bounded example counts, so CI runs the same cases every time in a few
seconds; run with ``--hypothesis-seed`` and a larger ``max_examples`` to search further.
"""

from __future__ import annotations

import contextlib
import os
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lockgate.dialects import anthropic as anthropic_dialect
from lockgate.dialects import openai as openai_dialect
from lockgate.dialects.anthropic import AnthropicDialect
from lockgate.dialects.base import Dialect
from lockgate.dialects.completions import CompletionsDialect
from lockgate.dialects.embeddings import parse_input
from lockgate.dialects.openai import OpenAIDialect
from lockgate.dialects.responses import ResponsesDialect
from lockgate.dialects.v2 import model_path, parse_infer, split_binary
from lockgate.errors import GatewayError, InvalidRequest, UpstreamError
from lockgate.providers.anthropic import encode_request
from lockgate.providers.openai import ChatCompletions
from lockgate.wire.sse import SSEDecoder
from lockgate.wire.v2 import request_from_json, request_json

# CI's bound; LOCKGATE_PROPERTY_EXAMPLES=2000 searches deeper (and at random) by hand.
_DEEPER = os.environ.get("LOCKGATE_PROPERTY_EXAMPLES")
BOUNDED = settings(derandomize=_DEEPER is None, max_examples=int(_DEEPER or 80), deadline=None,
                   database=None,
                   suppress_health_check=[HealthCheck.too_slow])

_SCALARS = (st.none() | st.booleans() | st.integers(-2**70, 2**70)
            | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=20))
JSON = st.recursive(_SCALARS, lambda inner: st.lists(inner, max_size=4)
                    | st.dictionaries(st.text(max_size=10), inner, max_size=4), max_leaves=15)


def near(required: dict[str, st.SearchStrategy[Any]],
         optional: dict[str, st.SearchStrategy[Any]]) -> st.SearchStrategy[dict[str, Any]]:
    """Bodies with the right keys holding right or wrong values: where parsers' bugs live."""
    return st.fixed_dictionaries({k: v | JSON for k, v in required.items()},
                                 optional={k: v | JSON for k, v in optional.items()})


_ROLE = st.sampled_from(["system", "developer", "user", "assistant", "tool", "function", "x"])
_BLOCK = near({"type": st.sampled_from(["text", "image_url", "image", "tool_use", "tool_result",
                                        "input_text", "document", "thinking"])},
              {"text": st.text(max_size=10), "id": st.text(max_size=5), "input": JSON,
               "content": JSON, "image_url": JSON, "source": JSON, "name": st.text(max_size=5)})
_CONTENT = st.text(max_size=20) | st.lists(_BLOCK, max_size=3)
_MESSAGE = near({"role": _ROLE, "content": _CONTENT},
                {"tool_calls": st.lists(JSON, max_size=2), "tool_call_id": st.text(max_size=5),
                 "name": st.text(max_size=5)})
_COMMON = {"stream": st.booleans(), "temperature": st.floats(-1, 3), "max_tokens": st.integers(-5, 10**6),
           "tools": st.lists(JSON, max_size=2), "tool_choice": JSON, "stop": JSON, "top_p": JSON,
           "response_format": JSON, "metadata": JSON, "n": st.integers(-1, 3), "user": JSON}

CHAT_BODIES = near({"model": st.text(max_size=10), "messages": st.lists(_MESSAGE, max_size=4)}, _COMMON)
ANTHROPIC_BODIES = near({"model": st.text(max_size=10), "max_tokens": st.integers(-5, 10**6),
                         "messages": st.lists(_MESSAGE, max_size=4)},
                        {**{k: v for k, v in _COMMON.items() if k != "max_tokens"},
                         "system": _CONTENT, "stop_sequences": JSON})
RESPONSES_BODIES = near({"model": st.text(max_size=10), "input": _CONTENT | st.lists(_MESSAGE, max_size=3)},
                        {**_COMMON, "instructions": JSON, "store": st.booleans(),
                         "max_output_tokens": st.integers(-5, 100), "text": JSON, "reasoning": JSON})
COMPLETION_BODIES = near({"model": st.text(max_size=10), "prompt": st.text() | st.lists(st.text())},
                         {**_COMMON, "echo": JSON, "suffix": JSON, "logprobs": JSON, "best_of": JSON})


def refuses_cleanly(dialect: Dialect, body: Any) -> None:
    """The frame's order: ``check`` every body, then ``parse_chat``."""
    if not isinstance(body, dict):
        return  # the frame refuses a body that is not an object before any dialect sees it
    try:
        dialect.check(body)
        dialect.parse_chat(body)
    except GatewayError as err:  # InvalidRequest, or another 4xx the client is meant to see
        assert 400 <= err.status < 500, err


@pytest.mark.parametrize(("dialect", "bodies"), [
    (OpenAIDialect(), CHAT_BODIES),
    (AnthropicDialect(), ANTHROPIC_BODIES),
    (ResponsesDialect(), RESPONSES_BODIES),
    (CompletionsDialect(), COMPLETION_BODIES),
], ids=["openai", "anthropic", "responses", "completions"])
def test_a_dialect_accepts_or_refuses_any_body_with_a_client_error(
        dialect: Dialect, bodies: st.SearchStrategy[dict[str, Any]]) -> None:
    @BOUNDED
    @given(body=bodies | JSON)
    def run(body: Any) -> None:
        refuses_cleanly(dialect, body)

    run()


@BOUNDED
@given(raw=JSON)
def test_embeddings_input_is_parsed_or_refused(raw: Any) -> None:
    with contextlib.suppress(InvalidRequest):
        parse_input(raw)


# --- translations -----------------------------------------------------------------------------

_TEXT_MESSAGE = st.fixed_dictionaries({"role": st.sampled_from(["user", "assistant"]),
                                       "content": st.text(min_size=1, max_size=20)})


@BOUNDED
@given(messages=st.lists(_TEXT_MESSAGE, min_size=1, max_size=5),
       system=st.none() | st.text(min_size=1, max_size=10),
       temperature=st.none() | st.floats(0, 1), max_tokens=st.integers(1, 4096))
def test_openai_to_core_to_openai_round_trips(messages: list[dict[str, Any]], system: str | None,
                                              temperature: float | None, max_tokens: int) -> None:
    head = [{"role": "system", "content": system}] if system else []
    body: dict[str, Any] = {"model": "m", "max_tokens": max_tokens, "messages": head + messages}
    if temperature is not None:
        body["temperature"] = temperature
    request = openai_dialect.parse_request(body)
    again = openai_dialect.parse_request(ChatCompletions().build_request(request, stream=False))
    assert again == request


@BOUNDED
@given(texts=st.lists(st.text(min_size=1, max_size=20), min_size=1, max_size=5),
       system=st.none() | st.text(min_size=1, max_size=10), max_tokens=st.integers(1, 4096))
def test_anthropic_to_core_to_anthropic_round_trips(texts: list[str], system: str | None,
                                                    max_tokens: int) -> None:
    # Turns alternate, user first, as the Messages API requires (the encoder merges
    # consecutive turns of one role, which would not round-trip by design).
    messages = [{"role": ("user", "assistant")[i % 2], "content": t} for i, t in enumerate(texts)]
    body: dict[str, Any] = {"model": "m", "max_tokens": max_tokens, "messages": messages}
    if system:
        body["system"] = system
    request = anthropic_dialect.parse_request(body)
    again = anthropic_dialect.parse_request(encode_request(request, stream=False))
    assert again == request


# --- the SSE decoder ---------------------------------------------------------------------------

_LINE_TEXT = st.text(st.characters(blacklist_categories=["Cs"], blacklist_characters="\r\n"), max_size=12)
_EVENTS = st.lists(st.tuples(st.none() | _LINE_TEXT, st.lists(_LINE_TEXT, min_size=1, max_size=3)),
                   min_size=1, max_size=6)


def encode(events: list[tuple[str | None, list[str]]], end: str) -> bytes:
    lines: list[str] = []
    for name, data in events:
        if name is not None:
            lines.append(f"event: {name}")
        lines.extend(f"data: {d}" for d in data)
        lines.append("")
    return "".join(line + end for line in lines).encode()


def decode_all(chunks: list[bytes]) -> list[tuple[str | None, str]]:
    decoder = SSEDecoder()
    found = [e for chunk in chunks for e in decoder.decode(chunk)] + decoder.flush()
    return [(e.event, e.data) for e in found]


@BOUNDED
@given(events=_EVENTS, end=st.sampled_from(["\n", "\r\n", "\r"]),
       cuts=st.lists(st.integers(0, 10_000), max_size=12))
def test_sse_decoder_gives_the_same_events_however_the_bytes_are_split(
        events: list[tuple[str | None, list[str]]], end: str, cuts: list[int]) -> None:
    # One line end per stream, as servers send: "\r" then "\n" would be one "\r\n".
    raw = encode(events, end)
    points = sorted({c % (len(raw) + 1) for c in cuts})
    chunks = [raw[a:b] for a, b in zip([0, *points], [*points, len(raw)], strict=True)]
    expected = [(name, "\n".join(data)) for name, data in events]
    assert decode_all([raw]) == expected
    assert decode_all(chunks) == expected


@BOUNDED
@given(chunks=st.lists(st.binary(max_size=40), max_size=8))
def test_sse_decoder_on_arbitrary_bytes_gives_events_or_an_upstream_error(chunks: list[bytes]) -> None:
    decoder = SSEDecoder(max_event_bytes=64)
    try:
        for chunk in chunks:
            decoder.decode(chunk)
        decoder.flush()
    except UpstreamError:
        pass


# --- V2 tensors --------------------------------------------------------------------------------

_DATATYPE = st.sampled_from(["BOOL", "UINT8", "INT32", "INT64", "FP16", "FP32", "FP64", "BYTES", "X"])
_TENSOR = near({"name": st.text(max_size=5), "datatype": _DATATYPE,
                "shape": st.lists(st.integers(-1, 4), max_size=3), "data": JSON},
               {"parameters": st.fixed_dictionaries({}, optional={"binary_data_size": st.integers(-1, 40)})
                | JSON})
INFER_BODIES = near({"inputs": st.lists(_TENSOR, max_size=3)},
                    {"outputs": JSON, "id": JSON, "parameters": JSON})


@BOUNDED
@given(body=INFER_BODIES | JSON, binary=st.binary(max_size=40))
def test_v2_infer_body_is_parsed_or_refused(body: Any, binary: bytes) -> None:
    if not isinstance(body, dict):
        return
    with contextlib.suppress(InvalidRequest):
        parse_infer(body, "m", binary)


@BOUNDED
@given(raw=st.binary(max_size=60), header=st.none() | st.binary(max_size=6))
def test_v2_binary_split_is_exact_or_refused(raw: bytes, header: bytes | None) -> None:
    try:
        head, rest = split_binary(raw, header)
    except InvalidRequest:
        return
    assert head + rest == raw


@BOUNDED
@given(path=st.text(max_size=40).map(lambda p: "/v2/models/" + p))
def test_v2_model_path_is_read_or_not_found(path: str) -> None:
    try:
        found = model_path(path)
    except GatewayError as err:
        assert err.status == 404
    else:
        assert found.name


_VALID_TENSOR = st.integers(0, 4).flatmap(lambda n: st.fixed_dictionaries({
    "name": st.text(min_size=1, max_size=5), "datatype": st.just("INT64"), "shape": st.just([n]),
    "data": st.lists(st.integers(-2**63, 2**63 - 1), min_size=n, max_size=n)}))


@BOUNDED
@given(tensors=st.lists(_VALID_TENSOR, min_size=1, max_size=3, unique_by=lambda t: t["name"]))
def test_v2_request_round_trips_through_json(tensors: list[dict[str, Any]]) -> None:
    request = request_from_json({"inputs": tensors}, "m")
    assert request_from_json(request_json(request), "m") == request


@pytest.mark.parametrize("dialect", [OpenAIDialect(), AnthropicDialect()], ids=["openai", "anthropic"])
@pytest.mark.parametrize("role", [{}, [], {"a": 1}])
def test_a_role_that_is_not_a_string_is_a_client_error(dialect: Dialect, role: Any) -> None:
    # Found by the API fuzzer: an object as a role was looked up in a set (TypeError, a 500).
    body = {"model": "m", "max_tokens": 5, "messages": [{"role": role, "content": "hi"}]}
    with pytest.raises(InvalidRequest, match="role"):
        dialect.check(body)
