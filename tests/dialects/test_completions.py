"""The legacy Completions dialect with plain values: a prompt in, one user message of a chat
request out; a chat answer in, a ``text_completion`` object or chunks out, as the OpenAI SDK's
own types read them."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from openai.types import Completion

from lockgate.core.chat import (
    ChatResponse,
    StreamFinish,
    StreamStart,
    TextDelta,
    ToolCallStart,
    Usage,
    UsageEvent,
)
from lockgate.dialects.base import RelayDialect
from lockgate.dialects.completions import CompletionsDialect, CompletionsStreamEncoder
from lockgate.errors import GatewayError, InvalidRequest
from lockgate.wire.sse import SSEDecoder

DIALECT = CompletionsDialect()


def test_the_prompt_becomes_one_user_message() -> None:
    request = DIALECT.parse_chat({
        "model": "m", "prompt": "Say this is a test", "max_tokens": 7, "temperature": 0.1,
        "top_p": 0.5, "stop": "\n", "seed": 3, "user": "u-1", "n": 1, "stream": True,
        "stream_options": {"include_usage": True}, "logprobs": 2, "logit_bias": {"50256": -100},
    })
    [message] = request.messages
    assert (message.role, message.text()) == ("user", "Say this is a test")
    assert request.system is None
    assert (request.model, request.max_tokens, request.temperature, request.top_p) == ("m", 7, 0.1, 0.5)
    assert (request.stop, request.seed, request.user, request.n) == (["\n"], 3, "u-1", 1)
    assert request.stream and request.include_usage


def test_a_prompt_in_an_array_of_one_is_the_prompt() -> None:
    assert DIALECT.parse_chat({"model": "m", "prompt": ["Hi"]}).messages[0].text() == "Hi"


def test_no_max_tokens_leaves_the_length_to_the_model() -> None:
    assert DIALECT.parse_chat({"model": "m", "prompt": "Hi"}).max_tokens is None


@pytest.mark.parametrize(("body", "field", "says"), [
    ({"model": "m"}, "prompt", "required"),
    ({"model": "m", "prompt": ""}, "prompt", "empty"),
    ({"model": "m", "prompt": ["a", "b"]}, "prompt", "one prompt per request"),
    ({"model": "m", "prompt": [1, 2, 3]}, "prompt", "token-id"),
    ({"model": "m", "prompt": [[1, 2]]}, "prompt", "token-id"),
    ({"model": "m", "prompt": 42}, "prompt", "string"),
    ({"model": "m", "prompt": "x", "suffix": "y"}, "suffix", "insertion"),
    ({"model": "m", "prompt": "x", "echo": True}, "echo", "not offered"),
    ({"model": "m", "prompt": "x", "best_of": 3}, "best_of", "must be 1"),
    ({"model": "m", "prompt": "x", "max_tokens": 0}, "max_tokens", "at least 1"),
    ({"model": "m", "prompt": "x", "stream": "yes"}, "stream", "true or false"),
    ({"prompt": "x"}, "model", "required"),
])
def test_what_a_chat_model_cannot_do_is_refused_naming_the_field(
        body: dict[str, Any], field: str, says: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        DIALECT.check(body)
    assert caught.value.message.startswith(f"{field}: ")
    assert says in caught.value.message


def test_harmless_legacy_fields_pass() -> None:
    DIALECT.check({"model": "m", "prompt": "x", "suffix": "", "echo": False, "best_of": 1})


def test_the_answer_is_a_text_completion_the_sdk_reads() -> None:
    response = ChatResponse(id="abc", model="up", content="This is a test.", finish_reason="length",
                            usage=Usage(5, 7), created=1_700_000_000)
    completion = Completion.model_validate(orjson.loads(DIALECT.render_chat(response, "mine")))
    assert completion.object == "text_completion"
    assert completion.id == "cmpl-abc"
    assert completion.model == "mine"
    assert completion.created == 1_700_000_000
    [choice] = completion.choices
    assert (choice.text, choice.index, choice.finish_reason, choice.logprobs) == (
        "This is a test.", 0, "length", None)
    assert completion.usage is not None
    assert (completion.usage.prompt_tokens, completion.usage.completion_tokens,
            completion.usage.total_tokens) == (5, 7, 12)


def chunks(encoder: CompletionsStreamEncoder, *events: Any) -> list[dict[str, Any]]:
    raw = b"".join(encoder.encode(e) for e in events) + encoder.finish()
    data = [e.data for e in SSEDecoder().decode(raw)]
    assert data[-1] == "[DONE]"
    return [orjson.loads(d) for d in data[:-1]]


EVENTS = (StreamStart(id="abc", model="up", created=1_700_000_000), TextDelta("Hel"),
          ToolCallStart(0, "call_1", "f"), TextDelta("lo"), StreamFinish("stop"),
          UsageEvent(Usage(3, 2)))


def test_a_stream_is_text_completion_chunks_then_done() -> None:
    """As OpenAI streams them: ``finish_reason`` null until the last chunk (the SDK reads
    chunks without validating them against ``Completion``, which wants it set)."""
    out = chunks(CompletionsStreamEncoder("mine", include_usage=False), *EVENTS)
    assert all(c["object"] == "text_completion" and c["model"] == "mine" and c["id"] == "cmpl-abc"
               and c["created"] == 1_700_000_000 for c in out)
    assert [c["choices"][0]["text"] for c in out] == ["Hel", "lo", ""]
    assert [c["choices"][0]["finish_reason"] for c in out] == [None, None, "stop"]


def test_the_usage_chunk_comes_when_asked_for() -> None:
    out = chunks(CompletionsStreamEncoder("mine", include_usage=True), *EVENTS)
    assert out[-1]["choices"] == []
    assert out[-1]["usage"] == {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}


def test_a_failed_stream_ends_with_an_openai_error_line() -> None:
    raw = CompletionsStreamEncoder("mine", include_usage=False).error(
        GatewayError("boom", status=502, code="upstream_error"))
    [event] = SSEDecoder().decode(raw)
    assert orjson.loads(event.data)["error"]["code"] == "upstream_error"


def test_it_is_never_relayed() -> None:
    """No provider speaks the legacy API natively: the dialect has no relay half at all."""
    assert not isinstance(DIALECT, RelayDialect)
