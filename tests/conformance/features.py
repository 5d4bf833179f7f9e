"""The features every (client format, provider) cell is checked on, each written once.

A check scripts the fake upstream, asks through the client format's SDK, then asserts on what
the client saw and on what the upstream received (read by the provider case's reader). Both
sides matter: a right-looking answer to a request the upstream got wrong is still wrong.
"""

from __future__ import annotations

import base64
import functools
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import pytest

from fakes import Fail, FakeServer, FakeToolCall, Reply, Script, fake_vector
from fakes.base import RecordedRequest

from .case import Body, ProviderCase
from .clients import ClientFormat
from .scenario import Ask, Call, Image, JsonMode, ToolSpec, Turn

CHAT_MODEL = "conformance-chat"  # the names clients ask for; never the upstream's ids
EMBED_MODEL = "conformance-embed"
RETRIES = 1  # configured on both models: an upstream 429 is tried 1 + RETRIES times


@dataclass
class Cell:
    """One client format, bound to the gateway in front of one provider's fake."""

    client: ClientFormat
    case: ProviderCase
    fake: FakeServer

    def enqueue(self, *scripts: Script) -> None:
        self.fake.enqueue(*scripts)

    def chat_requests(self) -> list[RecordedRequest]:
        return [r for r in self.fake.requests if self.case.reader.is_chat(r)]

    def last_chat(self) -> RecordedRequest:
        requests = self.chat_requests()
        assert requests, "the upstream received no chat request"
        return requests[-1]

    def last_body(self) -> Body:
        return self.last_chat().json


Check = Callable[[Cell], None]


@dataclass(frozen=True)
class Feature:
    name: str
    title: str
    summary: str
    check: Check


FEATURES: dict[str, Feature] = {}


def feature(name: str, title: str, summary: str) -> Callable[[Check], Check]:
    """Registers a check as a feature; ``title`` heads its matrix column, ``summary`` says what
    it asserts."""
    def register(check: Check) -> Check:
        FEATURES[name] = Feature(name, title, summary, check)
        return check
    return register


# --- shared material ---------------------------------------------------------------------------

WEATHER = ToolSpec(
    name="get_weather",
    description="The current weather in a city.",
    parameters={
        "type": "object",
        "properties": {
            "city": {"type": "string", "description": "The city's name."},
            "unit": {"type": "string", "enum": ["c", "f"]},
        },
        "required": ["city"],
    },
)
IMAGE_URL = "https://example.com/images/cat.jpg"
# A 1x1 transparent PNG.
PNG_BASE64 = base64.b64encode(bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
    "1f15c4890000000d49444154789c6360000002000001e221bc330000000049454e44ae426082"
)).decode()
ANSWER_SCHEMA = {
    "type": "object",
    "properties": {"answer": {"type": "string"}},
    "required": ["answer"],
    "additionalProperties": False,
}


def assert_same_turns(got: Sequence[Turn], want: Sequence[Turn]) -> None:
    """Compares conversations as the upstream can carry them: ids only where its format has
    them (Gemini pairs a tool result with its call by the function's name)."""
    assert [t.role for t in got] == [t.role for t in want], got
    names = {c.id: c.name for t in want for c in t.calls}
    for g, w in zip(got, want, strict=True):
        assert (g.text, g.images) == (w.text, w.images), g
        assert [(c.name, c.arguments) for c in g.calls] == [(c.name, c.arguments) for c in w.calls]
        assert all(gc.id in (None, wc.id) for gc, wc in zip(g.calls, w.calls, strict=True)), g.calls
        if w.role == "tool":
            assert g.call_id == w.call_id or (g.call_id is None and g.name == names[w.call_id]), g


# --- features ----------------------------------------------------------------------------------


@feature("text", "text", "answer text, finish reason (`stop`, `length`), `model` is the name asked for; "
         "the upstream gets its own model id and the token limit")
def check_text(cell: Cell) -> None:
    cell.enqueue(Reply(text="A plain answer."), Reply(text="A cut", finish="length"))
    answer = cell.client.complete(Ask.say("Say something."), CHAT_MODEL)
    assert (answer.text, answer.finish, answer.model) == ("A plain answer.", "stop", CHAT_MODEL)
    truncated = cell.client.complete(Ask.say("Say more.", max_tokens=2), CHAT_MODEL)
    assert (truncated.text, truncated.finish) == ("A cut", "length")
    sent = cell.chat_requests()
    assert len(sent) == 2 and not any(cell.case.reader.is_stream(r) for r in sent)
    assert {cell.case.reader.model(r) for r in sent} == {cell.case.chat_model}
    assert cell.case.reader.max_tokens(sent[-1].json) == 2


@feature("stream", "stream", "streamed text assembled from several events; finish; `model` in every event")
def check_stream(cell: Cell) -> None:
    text = "Streaming arrives in several small pieces."
    cell.enqueue(Reply(text=text))
    answer = cell.client.stream(Ask.say("Stream, please."), CHAT_MODEL)
    assert (answer.text, answer.finish) == (text, "stop")
    assert answer.text_events >= 3, "the answer did not arrive in pieces"
    assert answer.models_seen == {CHAT_MODEL}
    if not cell.client.stream_usage_always:
        assert answer.usage is None, "a usage chunk the client did not ask for"
    assert cell.case.reader.is_stream(cell.last_chat())


@feature("tools", "tools", "tool call name and JSON arguments; the tool definition reaches the upstream")
def check_tools(cell: Cell) -> None:
    arguments = {"city": "Paris", "unit": "c"}
    cell.enqueue(Reply(text="", tool_calls=[FakeToolCall("", WEATHER.name, arguments)]))
    answer = cell.client.complete(Ask.say("What's the weather in Paris?", tools=(WEATHER,)), CHAT_MODEL)
    assert answer.finish == "tool_calls"
    assert [(c.name, c.arguments) for c in answer.calls] == [(WEATHER.name, arguments)]
    assert answer.calls[0].id, "a tool call without an id cannot be answered"
    assert cell.case.reader.tools(cell.last_body()) == [WEATHER]


@feature("stream_tools", "stream tools", "tool call arguments assembled from streamed deltas")
def check_stream_tools(cell: Cell) -> None:
    arguments = {"city": "Paris", "unit": "c", "days": [1, 2, 3], "detail": {"wind": True}}
    cell.enqueue(Reply(text="Let me check.", tool_calls=[FakeToolCall("", WEATHER.name, arguments)]))
    answer = cell.client.stream(Ask.say("Forecast for Paris?", tools=(WEATHER,)), CHAT_MODEL)
    assert (answer.text, answer.finish) == ("Let me check.", "tool_calls")
    assert [(c.name, c.arguments) for c in answer.calls] == [(WEATHER.name, arguments)]
    assert answer.calls[0].id
    assert cell.case.reader.tools(cell.last_body()) == [WEATHER]


@feature("tool_result", "tool result",
         "an assistant tool call and its result reach the upstream in its format")
def check_tool_result(cell: Cell) -> None:
    conversation = (
        Turn("user", "What's the weather in Paris?"),
        Turn("assistant", calls=(Call("call_conformance_1", WEATHER.name, {"city": "Paris"}),)),
        Turn("tool", "18C and sunny", call_id="call_conformance_1"),
    )
    cell.enqueue(Reply(text="It is 18C and sunny in Paris."))
    answer = cell.client.complete(Ask(turns=conversation, tools=(WEATHER,)), CHAT_MODEL)
    assert (answer.text, answer.finish) == ("It is 18C and sunny in Paris.", "stop")
    assert_same_turns(cell.case.reader.turns(cell.last_body()), conversation)


@feature("images", "images", "URL and base64 image parts reach the upstream in its format")
def check_images(cell: Cell) -> None:
    images = (Image(url=IMAGE_URL), Image(data=PNG_BASE64, media_type="image/png"))
    turn = Turn("user", "Describe both images.", images=images)
    cell.enqueue(Reply(text="A cat, and a transparent pixel."))
    answer = cell.client.complete(Ask(turns=(turn,)), CHAT_MODEL)
    assert answer.text == "A cat, and a transparent pixel."
    assert_same_turns(cell.case.reader.turns(cell.last_body()), [turn])


@feature("system", "system", "the system prompt reaches the upstream's system field")
def check_system(cell: Cell) -> None:
    cell.enqueue(Reply(text="Hi."))
    cell.client.complete(Ask.say("Hello!", system="You are terse. Answer in one word."), CHAT_MODEL)
    body = cell.last_body()
    assert cell.case.reader.system(body) == "You are terse. Answer in one word."
    assert_same_turns(cell.case.reader.turns(body), [Turn("user", "Hello!")])


@feature("usage", "usage", "the upstream's token counts in the client's usage fields, streams included")
def check_usage(cell: Cell) -> None:
    counts = Reply(prompt_tokens=123, completion_tokens=45)
    cell.enqueue(counts, counts)
    assert cell.client.complete(Ask.say("Count me."), CHAT_MODEL).usage == (123, 45)
    streamed = cell.client.stream(Ask.say("Count me.", include_usage=True), CHAT_MODEL)
    assert streamed.usage == (123, 45)


@feature("errors", "errors", "upstream 400 → the SDK's BadRequestError with the upstream's message, "
         "credentials scrubbed (plain and stream); 429 after retries → RateLimitError with `retry-after`")
def check_errors(cell: Cell) -> None:
    message = "conformance: the upstream rejects this request"
    ask = Ask.say("Fail, please.")
    for call in (cell.client.complete, cell.client.stream):
        before = len(cell.chat_requests())
        cell.enqueue(Fail(400, message=f"{message} (key {cell.case.api_key})"))
        failure = cell.client.failure(functools.partial(call, ask, CHAT_MODEL))
        assert (failure.kind, failure.status) == ("BadRequestError", 400)
        assert message in failure.message
        assert cell.case.api_key not in failure.message, "the provider's key reached the client"
        assert len(cell.chat_requests()) == before + 1, "a 400 must not be retried"
    before = len(cell.chat_requests())
    cell.enqueue(*[Fail(429, message="conformance: slow down", retry_after=0)] * (1 + RETRIES))
    failure = cell.client.failure(lambda: cell.client.complete(Ask.say("Again."), CHAT_MODEL))
    assert (failure.kind, failure.status) == ("RateLimitError", 429)
    assert "retry-after" in failure.headers
    assert len(cell.chat_requests()) == before + 1 + RETRIES, "a 429 is retried"


@feature("midstream", "mid-stream failure", "a stream that fails after it started (error event, or "
         "connection cut): the SDK raises; the raw stream ends with one error event in the client's "
         "format, credentials scrubbed, and no normal end")
def check_midstream(cell: Cell) -> None:
    message = "conformance: the upstream broke mid-stream"
    long_text = "This answer is long enough to be cut somewhere in the middle of it."
    # Three events in: past the first byte (no more retries) and before the upstream's end.
    failed = Fail(500, message=f"{message} (key {cell.case.api_key})", after_events=3)
    for script in (failed, Reply(text=long_text, cut_after=3)):
        cell.enqueue(script)
        failure = cell.client.failure(lambda: cell.client.stream(Ask.say("Go on."), CHAT_MODEL))
        if script is failed:
            assert message in failure.message
        cell.enqueue(script)
        raw = cell.client.raw_stream(Ask.say("Go on."), CHAT_MODEL)
        ending = cell.client.ending(raw)
        assert ending.events_before_error >= 1, "the stream had not started"
        assert ending.error is not None and ending.error.get("message"), "no error event at the end"
        assert ending.error_events == 1, "one error event, the last"
        assert not ending.normal_end, "a failed stream must not end normally"
        assert cell.case.api_key.encode() not in raw, "the provider's key reached the client"


@feature("stop_sequences", "stop sequences", "stop sequences reach the upstream")
def check_stop_sequences(cell: Cell) -> None:
    cell.enqueue(Reply(text="one two"))
    answer = cell.client.complete(Ask.say("Count.", stop=("three", "END")), CHAT_MODEL)
    assert (answer.text, answer.finish) == ("one two", "stop")
    assert cell.case.reader.stop(cell.last_body()) == ["three", "END"]


@feature("json_mode", "JSON mode",
         "JSON output (any JSON, and by schema) reaches the upstream in its form; a schema by the "
         "provider's path (below)")
def check_json_mode(cell: Cell) -> None:
    modes = [JsonMode(schema=ANSWER_SCHEMA)]
    if cell.client.json_without_schema:
        modes.insert(0, JsonMode())
    for mode in modes:
        cell.enqueue(Reply(text='{"answer": "42"}'))
        answer = cell.client.complete(Ask.say("Answer in JSON.", json_mode=mode), CHAT_MODEL)
        assert json.loads(answer.text) == {"answer": "42"}
        assert cell.case.reader.json_mode(cell.last_body()) == mode
        if mode.schema is not None:
            assert cell.case.reader.json_path(cell.last_body()) == cell.case.json_path


@feature("embeddings", "embeddings", "vectors for each input, in order; `model` is the name asked for")
def check_embeddings(cell: Cell) -> None:
    inputs = ["the first text", "the second text"]
    model, vectors = cell.client.embed(EMBED_MODEL, inputs)
    assert model == EMBED_MODEL
    assert vectors == [pytest.approx(fake_vector(text), abs=1e-6) for text in inputs]


def gateway_models(case: ProviderCase) -> dict[str, Any]:
    """The ``models:`` config section of the gateway in front of ``case``."""
    def model(upstream: str) -> dict[str, Any]:
        return {"targets": [{"provider": case.type, "model": upstream}], "retries": RETRIES}
    return {CHAT_MODEL: model(case.chat_model), EMBED_MODEL: model(case.embedding_model or case.chat_model)}
