"""Stored responses in the Responses dialect: references resolved into a self-contained request,
and the answer of a ``store`` request kept with the ids and echo it was sent with."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson
import pytest

from lockgate.core.chat import ChatResponse, StreamFinish, StreamStart, TextDelta
from lockgate.dialects.responses_turn import (
    ResponsesTurn,
    StoredResponsesDialect,
    expand,
    referenced_responses,
    response_of_item,
)
from lockgate.errors import InvalidRequest

JSON = dict[str, Any]


@dataclass
class Entry:
    input: list[JSON]
    output: list[JSON]


@dataclass
class Memory:
    """The store, in a dict: what was kept, and what ``find`` was asked."""

    entries: dict[tuple[str | None, str], Entry] = field(default_factory=dict)
    kept: list[tuple[str | None, str | None, list[JSON], JSON]] = field(default_factory=list)
    asked: list[list[str]] = field(default_factory=list)

    def keep(self, owner: str | None, user: str | None, input_items: list[JSON], response: JSON) -> None:
        self.kept.append((owner, user, input_items, response))

    async def find(self, owner: str | None, ids: Iterable[str]) -> Mapping[str, Entry]:
        self.asked.append(list(ids))
        return {i: e for (o, i), e in self.entries.items() if o == owner and i in self.asked[-1]}


USER = {"role": "user", "content": "My name is Ada."}
ANSWER = {"id": "msg_abc_0", "type": "message", "role": "assistant", "status": "completed",
          "content": [{"type": "output_text", "text": "Hello Ada.", "annotations": []}]}
CALL = {"id": "fc_abc_1", "type": "function_call", "status": "completed", "call_id": "call_1",
        "name": "get_weather", "arguments": "{}"}
STORED = {"resp_abc": Entry([USER], [ANSWER, CALL])}


@pytest.mark.parametrize(("item_id", "response_id"), [
    ("msg_abc_0", "resp_abc"), ("fc_abc_12", "resp_abc"), ("msg_a_b_c_3", "resp_a_b_c"),
    ("msg_abc", None), ("rs_abc_0", None), ("msg__0", None), ("msg_abc_x", None), ("", None),
])
def test_an_item_id_names_its_response(item_id: str, response_id: str | None) -> None:
    assert response_of_item(item_id) == response_id


def test_the_responses_referred_to_are_listed_once() -> None:
    body = {"previous_response_id": "resp_p", "input": [
        {"type": "item_reference", "id": "msg_abc_0"}, {"type": "item_reference", "id": "fc_abc_1"},
        {"type": "item_reference", "id": "msg_def_0"}, {"type": "item_reference", "id": "rs_x"},
        {"type": "item_reference", "id": 7}, USER]}
    assert referenced_responses(body) == ["resp_p", "resp_abc", "resp_def"]
    assert referenced_responses({"input": "Hi"}) == []


def test_previous_response_id_puts_the_earlier_input_and_output_first() -> None:
    body = {"model": "m", "previous_response_id": "resp_abc", "input": "What is my name?",
            "instructions": "Be brief."}
    assert expand(body, STORED) == {"model": "m", "instructions": "Be brief.", "input": [
        USER, ANSWER, CALL, {"type": "message", "role": "user", "content": "What is my name?"}]}


def test_an_item_reference_becomes_the_stored_item() -> None:
    body = {"input": [USER, {"type": "item_reference", "id": "msg_abc_0"},
                      {"type": "item_reference", "id": "fc_abc_1"},
                      {"type": "function_call_output", "call_id": "call_1", "output": "18C"}]}
    assert expand(body, STORED)["input"] == [USER, ANSWER, CALL, body["input"][3]]


def test_a_body_without_references_is_left_as_it_is() -> None:
    body = {"input": [USER], "store": True}
    assert expand(body, {}) is body


@pytest.mark.parametrize(("body", "message"), [
    ({"previous_response_id": "resp_gone", "input": "Hi"},
     "previous_response_id: no stored response 'resp_gone'"),
    ({"input": [USER, {"type": "item_reference", "id": "msg_gone_0"}]},
     "input[1]: no stored item 'msg_gone_0'"),
    ({"input": [{"type": "item_reference", "id": "msg_abc_7"}]}, "input[0]: no stored item 'msg_abc_7'"),
    ({"input": [{"type": "item_reference", "id": "rs_abc"}]}, "input[0]: no stored item 'rs_abc'"),
    ({"input": [{"type": "item_reference"}]}, "input[0].id: an item_reference needs the id"),
])
def test_what_resolves_to_nothing_is_a_400_naming_it(body: JSON, message: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        expand(body, STORED)
    assert message in caught.value.message
    if "no stored" in message:
        assert "store: false" in caught.value.message


# --- the dialect -------------------------------------------------------------------------------


async def bound(memory: Memory, body: JSON, owner: str | None = "key_a") -> tuple[ResponsesTurn, JSON]:
    turn, expanded = await StoredResponsesDialect(memory).bind(body, owner, "alice")
    assert isinstance(turn, ResponsesTurn)
    return turn, expanded


async def test_bind_looks_up_once_for_the_key_and_expands() -> None:
    memory = Memory({("key_a", "resp_abc"): STORED["resp_abc"]})
    _, expanded = await bound(memory, {"model": "m", "previous_response_id": "resp_abc",
                                       "input": [{"type": "item_reference", "id": "msg_abc_0"}]})
    assert memory.asked == [["resp_abc"]]
    assert expanded["input"] == [USER, ANSWER, CALL, ANSWER]
    with pytest.raises(InvalidRequest, match="store: false"):
        await bound(memory, {"model": "m", "previous_response_id": "resp_abc", "input": "Hi"}, "key_b")


async def test_a_body_without_references_looks_nothing_up() -> None:
    memory = Memory()
    await bound(memory, {"model": "m", "input": "Hi"})
    assert memory.asked == []


@pytest.mark.parametrize(("change", "message"), [
    ({"store": "yes"}, "store: must be a boolean"),
    ({"previous_response_id": 3}, "previous_response_id: must be a response id"),
    ({"previous_response_id": ""}, "previous_response_id: must be a response id"),
])
async def test_store_fields_are_checked(change: JSON, message: str) -> None:
    with pytest.raises(InvalidRequest, match=message):
        await bound(Memory(), {"model": "m", "input": "Hi", **change})


ANSWERED = ChatResponse(id="chatcmpl-1", model="up", content="Hello Ada.", finish_reason="stop")


async def test_a_stored_answer_is_kept_with_the_ids_and_echo_it_was_sent_with() -> None:
    memory = Memory({("key_a", "resp_abc"): STORED["resp_abc"]})
    turn, expanded = await bound(memory, {"model": "m", "input": "And?", "previous_response_id": "resp_abc"})
    turn.parse_chat(expanded)
    sent = orjson.loads(turn.render_chat(ANSWERED, "m"))
    [(owner, user, input_items, kept)] = memory.kept
    assert (owner, user, kept) == ("key_a", "alice", sent)
    assert input_items == expanded["input"]
    assert (sent["store"], sent["previous_response_id"]) == (True, "resp_abc")
    assert sent["id"].startswith("resp_") and sent["id"] != "resp_1"  # the gateway's own id
    assert response_of_item(sent["output"][0]["id"]) == sent["id"]


async def test_store_false_keeps_nothing_and_says_so() -> None:
    memory = Memory()
    turn, expanded = await bound(memory, {"model": "m", "input": "Hi", "store": False})
    turn.parse_chat(expanded)
    assert orjson.loads(turn.render_chat(ANSWERED, "m"))["store"] is False
    assert memory.kept == []


async def test_a_stream_is_kept_once_it_ended_well() -> None:
    memory = Memory()
    turn, expanded = await bound(memory, {"model": "m", "input": "Hi", "stream": True})
    encoder = turn.stream_encoder(turn.parse_chat(expanded), "m")
    encoder.encode(StreamStart(id="chatcmpl-1", model="up"))
    encoder.encode(TextDelta("Hel"))
    encoder.encode(TextDelta("lo."))
    assert memory.kept == []
    encoder.encode(StreamFinish("stop"))
    encoder.finish()
    [(_, _, input_items, kept)] = memory.kept
    assert input_items == [{"type": "message", "role": "user", "content": "Hi"}]
    text = kept["output"][0]["content"][0]["text"]
    assert (kept["status"], text, kept["store"]) == ("completed", "Hello.", True)
    assert response_of_item(kept["output"][0]["id"]) == kept["id"]


async def test_every_request_gets_ids_of_its_own() -> None:
    ids = set()
    for _ in range(3):
        turn, expanded = await bound(Memory(), {"model": "m", "input": "Hi"})
        turn.parse_chat(expanded)
        ids.add(orjson.loads(turn.render_chat(ANSWERED, "m"))["id"])
    assert len(ids) == 3
