"""Stored responses as clients use them: the official ``openai`` SDK (and the request bodies the
Vercel AI SDK sends, recorded in ``fixtures/``) against real gateways over the fake upstreams.
A response kept with ``store`` (the default) is continued with ``previous_response_id`` or
``item_reference`` items, read and deleted with ``GET`` / ``DELETE /v1/responses/{id}``, only by
the key that made it, until ``server.responses_ttl_s``; it is shared by every gateway on the
same storage or Redis, encrypted at rest with ``server.encryption_key``, and erased with the end
user's records."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import httpx2 as httpx
import openai
import pytest

from conformance.providers.anthropic import AnthropicReader
from conformance.providers.openai import OpenAIReader
from conformance.scenario import Turn
from conftest import GatewayFactory
from fakes import FakeServer, FakeToolCall, Reply
from gateway import GatewayServer, wait_for
from services import postgres_clean_url, redis_url  # noqa: F401  (fixtures)

KEY_A = "lg-test-key-a-0123456789"
KEY_B = "lg-test-key-b-0123456789"
KEYS = [{"name": "a", "key": KEY_A}, {"name": "b", "key": KEY_B}]
MODELS = {
    "gpt": {"targets": [{"provider": "oai", "model": "gpt-4o-mini"}]},
    "claude": {"targets": [{"provider": "claude", "model": "claude-sonnet-4-5"}]},
}
AI_SDK = json.loads((Path(__file__).parent / "fixtures" / "ai-sdk-openai-responses.json").read_text())
WEATHER: dict[str, Any] = {"type": "function", "name": "get_weather",
                           "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}


def start(gateway: GatewayFactory, **sections: Any) -> GatewayServer:
    return gateway(models=MODELS, keys=KEYS, **sections)


def sdk(gw: GatewayServer, key: str = KEY_A) -> openai.OpenAI:
    return openai.OpenAI(base_url=gw.openai_base_url, api_key=key, max_retries=0, timeout=10)


def filled(body: dict[str, Any], **ids: str) -> Any:
    """A recorded body with the ids of the first answer in place of its ``{{turn1.*}}`` marks."""
    text = json.dumps(body)
    for name, value in ids.items():
        text = text.replace("{{turn1." + name + "}}", value)
    assert "{{" not in text, "an id of the first answer was not filled in"
    return json.loads(text)


def stored_rows(gw: GatewayServer) -> dict[str, bytes]:
    """The ``responses`` table of a gateway's SQLite storage, read raw: id -> stored body."""
    path = gw.config.storage.removeprefix("sqlite:///")
    with sqlite3.connect(path) as db:
        return {row[0]: bytes(row[1]) for row in db.execute("SELECT id, body FROM responses")}


def fields(response: Any) -> dict[str, Any]:
    """A response object as the gateway sent it (the SDK's type leaves some fields out)."""
    out: dict[str, Any] = response.to_dict()
    return out


def item_id(response: Any, index: int = 0) -> str:
    value: str = fields(response)["output"][index]["id"]
    return value


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


# --- conversations ------------------------------------------------------------------------------


@pytest.mark.parametrize("model", ["gpt", "claude"])
@pytest.mark.parametrize("stream", [False, True], ids=["plain", "streamed"])
def test_the_ai_sdks_second_turn_refers_to_the_first_answer(
        gateway: GatewayFactory, fake_openai: FakeServer, fake_anthropic: FakeServer, model: str,
        stream: bool) -> None:
    fake, reader = {"gpt": (fake_openai, OpenAIReader()),
                    "claude": (fake_anthropic, AnthropicReader())}[model]
    client = sdk(start(gateway))
    fake.enqueue(Reply(text="Blue."))
    turn1 = {**AI_SDK["turn1"], "model": model}
    if stream:
        with client.responses.stream(**turn1) as events:
            first = events.get_final_response()
    else:
        first = client.responses.create(**turn1)
    assert (first.output_text, fields(first)["store"]) == ("Blue.", True)

    fake.enqueue(Reply(text="White."))
    second = client.responses.create(**{**filled(AI_SDK["turn2"], message_id=item_id(first)),
                                        "model": model})
    assert second.output_text == "White."
    body = [r for r in fake.requests if reader.is_chat(r)][-1].json
    assert reader.system(body) == "You answer in one short sentence."
    assert reader.turns(body) == [Turn("user", "Name a colour of the French flag."),
                                  Turn("assistant", "Blue."), Turn("user", "And another one?")]


def test_an_earlier_tool_call_is_referenced_by_its_item_id(gateway: GatewayFactory,
                                                           fake_openai: FakeServer) -> None:
    client = sdk(start(gateway))
    fake_openai.enqueue(Reply(text="", tool_calls=[FakeToolCall("call_7", "get_weather", {"city": "Paris"})]))
    first = client.responses.create(model="gpt", input="Weather in Paris?", tools=[WEATHER])  # type: ignore[list-item]
    [call] = first.output
    assert call.type == "function_call"
    fake_openai.enqueue(Reply(text="18 degrees."))
    client.responses.create(**filled(AI_SDK["turn2_tool_reference"], call_item_id=item_id(first),
                                     call_id=call.call_id), tools=[WEATHER])  # type: ignore[list-item]
    user, assistant, result = OpenAIReader().turns(fake_openai.requests[-1].json)
    assert user == Turn("user", "Weather in Paris?")
    assert [(c.name, c.arguments) for c in assistant.calls] == [("get_weather", {"city": "Paris"})]
    assert (result.role, result.text) == ("tool", '{"temperature":18}')


def test_previous_response_id_prepends_the_earlier_input_and_output(gateway: GatewayFactory,
                                                                    fake_openai: FakeServer) -> None:
    client = sdk(start(gateway))
    fake_openai.enqueue(Reply(text="Hello Ada."))
    first = client.responses.create(model="gpt", input="My name is Ada.", instructions="Be brief.")
    fake_openai.enqueue(Reply(text="Ada."))
    second = client.responses.create(model="gpt", input="What is my name?", previous_response_id=first.id)
    assert (second.output_text, second.previous_response_id) == ("Ada.", first.id)
    reader = OpenAIReader()
    body = fake_openai.requests[-1].json
    assert reader.system(body) is None  # instructions are not carried over, as at OpenAI
    assert reader.turns(body) == [Turn("user", "My name is Ada."), Turn("assistant", "Hello Ada."),
                                  Turn("user", "What is my name?")]

    fake_openai.enqueue(Reply(text="Goodbye."))
    client.responses.create(model="gpt", input="Bye.", previous_response_id=second.id)
    assert [t.text for t in reader.turns(fake_openai.requests[-1].json)] == [
        "My name is Ada.", "Hello Ada.", "What is my name?", "Ada.", "Bye."]


def test_a_miss_is_a_400_that_mentions_store_false(gateway: GatewayFactory, fake_openai: FakeServer) -> None:
    client = sdk(start(gateway))
    for change in ({"previous_response_id": "resp_nothing"},
                   {"input": [{"type": "item_reference", "id": "msg_nothing_0"}]}):
        with pytest.raises(openai.BadRequestError) as caught:
            client.responses.create(model="gpt", **{"input": "Hi", **change})  # type: ignore[call-overload]
        assert caught.value.code == "invalid_request"
        assert "store: false" in caught.value.message
    assert fake_openai.requests == []


# --- GET and DELETE ----------------------------------------------------------------------------


def test_retrieve_and_delete_with_the_sdk(gateway: GatewayFactory, fake_openai: FakeServer) -> None:
    gw = start(gateway)
    client = sdk(gw)
    fake_openai.enqueue(Reply(text="Kept."))
    made = client.responses.create(model="gpt", input="Keep this.")
    got = client.responses.retrieve(made.id)
    assert (got.id, got.output_text, fields(got)["store"], got.model) == (made.id, "Kept.", True, "gpt")
    assert item_id(got) == item_id(made)

    client.responses.delete(made.id)
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(made.id)
    with pytest.raises(openai.NotFoundError):
        client.responses.delete(made.id)
    with pytest.raises(openai.BadRequestError, match="store: false"):
        client.responses.create(model="gpt", input="And?", previous_response_id=made.id)
    assert {r.endpoint for r in gw.records} >= {"/v1/responses", "/v1/responses/{id}"}


def test_other_paths_under_a_response_are_not_served(gateway: GatewayFactory) -> None:
    gw = start(gateway)
    auth = {"authorization": f"Bearer {KEY_A}"}
    assert httpx.get(f"{gw.openai_base_url}/responses/resp_x/input_items", headers=auth).status_code == 404
    assert httpx.post(f"{gw.openai_base_url}/responses/resp_x", headers=auth).status_code == 405
    assert httpx.get(f"{gw.openai_base_url}/responses/resp_x").status_code == 401


def test_another_key_can_neither_read_nor_use_it(gateway: GatewayFactory, fake_openai: FakeServer) -> None:
    gw = start(gateway)
    fake_openai.enqueue(Reply(text="Mine."))
    made = sdk(gw, KEY_A).responses.create(model="gpt", input="Secret.")
    other = sdk(gw, KEY_B)
    with pytest.raises(openai.NotFoundError):
        other.responses.retrieve(made.id)
    with pytest.raises(openai.NotFoundError):
        other.responses.delete(made.id)
    with pytest.raises(openai.BadRequestError, match="store: false"):
        other.responses.create(model="gpt", input="Go on.", previous_response_id=made.id)
    with pytest.raises(openai.BadRequestError, match="store: false"):
        other.responses.create(model="gpt", input=[{"type": "item_reference", "id": item_id(made)}])
    assert sdk(gw, KEY_A).responses.retrieve(made.id).output_text == "Mine."


def test_store_false_is_not_kept(gateway: GatewayFactory, fake_openai: FakeServer) -> None:
    gw = start(gateway)
    client = sdk(gw)
    fake_openai.enqueue(Reply(text="Forget me."))
    fake_openai.enqueue(Reply(text="Keep me."))
    forgotten = client.responses.create(model="gpt", input="Hi", store=False)
    kept = client.responses.create(model="gpt", input="Hi")
    assert (fields(forgotten)["store"], fields(kept)["store"]) == (False, True)
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(forgotten.id)
    with pytest.raises(openai.BadRequestError, match="store: false"):
        client.responses.create(model="gpt", input="And?", previous_response_id=forgotten.id)
    wait_for(lambda: kept.id in stored_rows(gw), 5, "the stored response to be written")
    assert forgotten.id not in stored_rows(gw)


def test_a_response_expires_after_the_ttl(gateway: GatewayFactory, fake_openai: FakeServer) -> None:
    gw = start(gateway, server={"responses_ttl_s": 60})
    clock = Clock(1_800_000_000.0)
    gw.app.responses.clock = clock
    client = sdk(gw)
    fake_openai.enqueue(Reply(text="Brief."))
    made = client.responses.create(model="gpt", input="Hi")
    clock.now += 59
    assert client.responses.retrieve(made.id).id == made.id
    clock.now += 2
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(made.id)
    with pytest.raises(openai.BadRequestError, match="store: false"):
        client.responses.create(model="gpt", input="And?", previous_response_id=made.id)


# --- at rest ----------------------------------------------------------------------------------


@pytest.mark.parametrize("encrypted", [True, False], ids=["with-key", "without-key"])
def test_stored_rows_are_encrypted_when_a_key_is_set(gateway: GatewayFactory, fake_openai: FakeServer,
                                                      encrypted: bool) -> None:
    server = {"encryption_key": "Q0FGRUJBQkUtdGVzdC1rZXktMzItYnl0ZXMtbG9uZyE="} if encrypted else {}
    gw = start(gateway, server=server)
    client = sdk(gw)
    fake_openai.enqueue(Reply(text="The answer is tangerine."))
    made = client.responses.create(model="gpt", input="My secret is marmalade.")
    wait_for(lambda: made.id in stored_rows(gw), 5, "the stored response to be written")
    raw = stored_rows(gw)[made.id]
    plaintext = [b"marmalade", b"tangerine", item_id(made).encode()]
    if encrypted:
        assert not any(text in raw for text in plaintext)
        assert raw[:1] == b"\x01"
    else:  # the check above would see them
        assert all(text in raw for text in plaintext)
    assert client.responses.retrieve(made.id).output_text == "The answer is tangerine."


def test_erased_with_the_end_users_records(gateway: GatewayFactory, fake_openai: FakeServer) -> None:
    gw = start(gateway, server={"master_key": "lg-test-master-0123456789"})
    client = sdk(gw)
    fake_openai.enqueue(Reply(text="For Alice."))
    fake_openai.enqueue(Reply(text="For Bob."))
    alice = client.responses.create(model="gpt", input="Hi", user="alice")
    bob = client.responses.create(model="gpt", input="Hi", extra_headers={"x-lockgate-user": "bob"})
    erased = httpx.delete(f"{gw.url}/admin/logs", params={"user": "alice"},
                          headers={"authorization": "Bearer lg-test-master-0123456789"})
    assert erased.status_code == 200, erased.text
    assert erased.json()["stored_responses"] == 1
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(alice.id)
    assert client.responses.retrieve(bob.id).output_text == "For Bob."
    wait_for(lambda: bob.id in stored_rows(gw), 5, "the stored response to be written")
    assert alice.id not in stored_rows(gw)


# --- shared by every gateway -------------------------------------------------------------------


def continue_elsewhere(first: GatewayServer, second: GatewayServer, fake: FakeServer) -> None:
    """A response made on ``first`` is continued at once, read and deleted on ``second``."""
    fake.enqueue(Reply(text="Made on the first."))
    made = sdk(first).responses.create(model="gpt", input="Start here.")
    fake.enqueue(Reply(text="Continued on the second."))
    then = sdk(second).responses.create(model="gpt", previous_response_id=made.id, input="Go on.")
    assert then.output_text == "Continued on the second."
    assert [t.text for t in OpenAIReader().turns(fake.requests[-1].json)] == [
        "Start here.", "Made on the first.", "Go on."]
    assert sdk(second).responses.retrieve(made.id).output_text == "Made on the first."
    sdk(second).responses.delete(made.id)
    with pytest.raises(openai.NotFoundError):
        sdk(first).responses.retrieve(made.id)
    sdk(first).responses.delete(then.id)
    with pytest.raises(openai.NotFoundError):
        sdk(second).responses.retrieve(then.id)


def test_shared_by_gateways_on_one_postgresql(gateway: GatewayFactory, fake_openai: FakeServer,
                                              postgres_clean_url: str) -> None:  # noqa: F811
    first, second = (start(gateway, storage=postgres_clean_url) for _ in range(2))
    continue_elsewhere(first, second, fake_openai)


def test_shared_by_gateways_on_one_redis(gateway: GatewayFactory, fake_openai: FakeServer,
                                         redis_url: str) -> None:  # noqa: F811
    # Each has its own SQLite storage: only Redis is shared.
    first, second = (start(gateway, redis=redis_url) for _ in range(2))
    continue_elsewhere(first, second, fake_openai)
