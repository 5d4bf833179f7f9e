"""Who may call: keys in either header, per-key and per-team model lists, the master key, and
the open gateway. Driven through a real gateway with the official SDKs, as users call it."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import anthropic
import httpx2 as httpx
import openai
import pytest

from conftest import CLIENT_KEY, GatewayFactory
from gateway import GatewayServer, wait_for_records
from lockgate.pipeline.auth import digest
from lockgate.state.store import Store

OTHER_KEY = "lg-test-other-key-9876543210"
TEAM_KEY = "lg-test-team-key-5555555555"
MASTER_KEY = "lg-test-master-key-1111111111"

MODELS = {
    "gpt": {"targets": [{"provider": "oai", "model": "gpt-4o-mini"}]},
    "big": {"targets": [{"provider": "oai", "model": "gpt-4o"}]},
    "claude": {"targets": [{"provider": "claude", "model": "claude-sonnet-4-5"}]},
}
HI: list[openai.types.chat.ChatCompletionMessageParam] = [{"role": "user", "content": "Hi"}]
HI_CLAUDE: list[anthropic.types.MessageParam] = [{"role": "user", "content": "Hi"}]


@pytest.fixture
def gw(gateway: GatewayFactory) -> GatewayServer:
    return gateway(
        models=MODELS,
        server={"master_key": MASTER_KEY},
        teams=[{"name": "research", "models": ["gpt", "claude"]}],
        keys=[
            {"name": "everything", "key": CLIENT_KEY},
            {"name": "gpt-only", "key": OTHER_KEY, "models": ["gpt"]},
            {"name": "researcher", "key": TEAM_KEY, "team": "research"},
        ],
    )


def oai(gw: GatewayServer, key: str = CLIENT_KEY) -> openai.OpenAI:
    return openai.OpenAI(base_url=gw.openai_base_url, api_key=key, max_retries=0)


def claude(gw: GatewayServer, key: str = CLIENT_KEY) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=gw.url, api_key=key, max_retries=0)


def chat(gw: GatewayServer, key: str, model: str = "gpt") -> str | None:
    answer = oai(gw, key).chat.completions.create(model=model, messages=HI)
    return answer.choices[0].message.content


def post(gw: GatewayServer, path: str, body: dict[str, Any], headers: dict[str, str]) -> httpx.Response:
    return httpx.post(gw.url + path, json=body, headers=headers)


CHAT_BODY = {"model": "gpt", "messages": HI}
MESSAGES_BODY = {"model": "claude", "max_tokens": 50, "messages": HI}


# --- missing and wrong keys ------------------------------------------------------------------


def test_a_missing_key_is_401_in_the_openai_shape(gw: GatewayServer) -> None:
    response = post(gw, "/v1/chat/completions", CHAT_BODY, {})
    assert response.status_code == 401
    error = response.json()["error"]
    assert error["code"] == "invalid_api_key"
    assert error["type"] == "authentication_error"
    assert error["message"]


def test_a_missing_key_is_401_in_the_anthropic_shape_on_messages(gw: GatewayServer) -> None:
    response = post(gw, "/v1/messages", MESSAGES_BODY, {"anthropic-version": "2023-06-01"})
    assert response.status_code == 401
    body = response.json()
    assert body["type"] == "error"
    assert body["error"]["type"] == "authentication_error"
    assert body["error"]["message"]


def test_a_wrong_key_is_refused_by_the_openai_sdk(gw: GatewayServer, fake_openai: Any) -> None:
    with pytest.raises(openai.AuthenticationError) as caught:
        chat(gw, "lg-not-a-real-key-000000")
    assert caught.value.status_code == 401
    assert caught.value.code == "invalid_api_key"
    assert fake_openai.requests == []  # refused before any upstream call


def test_a_wrong_key_is_refused_by_the_anthropic_sdk(gw: GatewayServer) -> None:
    with pytest.raises(anthropic.AuthenticationError) as caught:
        claude(gw, "lg-not-a-real-key-000000").messages.create(
            model="claude", max_tokens=50, messages=HI_CLAUDE)
    assert caught.value.status_code == 401
    assert isinstance(caught.value.body, dict)  # the SDK types body as object
    assert caught.value.body["error"]["type"] == "authentication_error"


def test_the_refusal_is_recorded_without_a_key_id(gw: GatewayServer) -> None:
    post(gw, "/v1/chat/completions", CHAT_BODY, {"authorization": "Bearer lg-wrong-key-00000"})
    [record] = wait_for_records(gw, 1)
    assert (record.status, record.error_code, record.key_id) == (401, "invalid_api_key", None)


def test_the_error_never_echoes_the_presented_key(gw: GatewayServer) -> None:
    wrong = "lg-wrong-but-secret-key-4242"
    response = post(gw, "/v1/chat/completions", CHAT_BODY, {"authorization": f"Bearer {wrong}"})
    assert response.status_code == 401
    assert wrong not in response.text


# --- both headers ----------------------------------------------------------------------------


@pytest.mark.parametrize("headers", [
    {"authorization": f"Bearer {CLIENT_KEY}"},
    {"x-api-key": CLIENT_KEY},
], ids=["bearer", "x-api-key"])
@pytest.mark.parametrize(("path", "body"), [
    ("/v1/chat/completions", CHAT_BODY),
    ("/v1/messages", MESSAGES_BODY),
], ids=["chat", "messages"])
def test_either_header_carries_the_key(gw: GatewayServer, headers: dict[str, str], path: str,
                                       body: dict[str, Any]) -> None:
    response = post(gw, path, body, {**headers, "anthropic-version": "2023-06-01"})
    assert response.status_code == 200, response.text
    assert wait_for_records(gw, 1)[-1].key_id == "static/everything"


def test_both_sdks_authenticate_with_their_own_header(gw: GatewayServer) -> None:
    assert chat(gw, CLIENT_KEY) == "Hello from the fake!"
    message = claude(gw).messages.create(model="claude", max_tokens=50, messages=HI_CLAUDE)
    block = message.content[0]
    assert isinstance(block, anthropic.types.TextBlock)
    assert block.text == "Hello from the fake!"


# --- model lists -----------------------------------------------------------------------------


def test_a_key_limited_to_one_model_may_use_it(gw: GatewayServer) -> None:
    assert chat(gw, OTHER_KEY, "gpt") == "Hello from the fake!"


def test_a_key_may_not_use_a_model_outside_its_list(gw: GatewayServer, fake_openai: Any) -> None:
    with pytest.raises(openai.PermissionDeniedError) as caught:
        chat(gw, OTHER_KEY, "big")
    assert caught.value.status_code == 403
    assert caught.value.code == "model_not_allowed"
    assert fake_openai.requests == []
    [record] = wait_for_records(gw, 1)
    assert (record.status, record.error_code, record.key_id) == (403, "model_not_allowed", "static/gpt-only")


def test_a_forbidden_model_is_a_permission_error_on_messages(gw: GatewayServer) -> None:
    with pytest.raises(anthropic.PermissionDeniedError) as caught:
        claude(gw, OTHER_KEY).messages.create(model="claude", max_tokens=50, messages=HI_CLAUDE)
    assert isinstance(caught.value.body, dict)  # the SDK types body as object
    assert caught.value.body["error"]["type"] == "permission_error"


def test_the_team_model_list_applies_to_its_keys(gw: GatewayServer) -> None:
    assert chat(gw, TEAM_KEY, "gpt") == "Hello from the fake!"
    with pytest.raises(openai.PermissionDeniedError):
        chat(gw, TEAM_KEY, "big")
    assert [r.team_id for r in wait_for_records(gw, 2)] == ["static/research"] * 2


def test_the_master_key_may_call_any_model(gw: GatewayServer) -> None:
    assert chat(gw, MASTER_KEY, "big") == "Hello from the fake!"


def test_an_unknown_model_is_404_even_for_a_restricted_key(gw: GatewayServer) -> None:
    with pytest.raises(openai.NotFoundError):
        chat(gw, OTHER_KEY, "no-such-model")


# --- /v1/models ------------------------------------------------------------------------------


def model_ids(gw: GatewayServer, key: str) -> set[str]:
    return {m.id for m in oai(gw, key).models.list()}


def test_models_lists_only_what_the_key_may_use(gw: GatewayServer) -> None:
    assert model_ids(gw, CLIENT_KEY) == {"gpt", "big", "claude"}
    assert model_ids(gw, OTHER_KEY) == {"gpt"}
    assert model_ids(gw, TEAM_KEY) == {"gpt", "claude"}


def test_models_needs_a_key(gw: GatewayServer) -> None:
    with pytest.raises(openai.AuthenticationError):
        model_ids(gw, "lg-not-a-real-key-000000")


# --- open mode -------------------------------------------------------------------------------


def test_an_open_gateway_accepts_any_key_or_none(gateway: GatewayFactory) -> None:
    gw = gateway(models=MODELS)
    assert chat(gw, "anything-at-all") == "Hello from the fake!"
    response = post(gw, "/v1/chat/completions", CHAT_BODY, {})
    assert response.status_code == 200
    assert [r.key_id for r in wait_for_records(gw, 2)] == [None, None]
    assert model_ids(gw, "whatever") == {"gpt", "big", "claude"}


def test_a_master_key_alone_closes_the_gateway(gateway: GatewayFactory) -> None:
    gw = gateway(models=MODELS, server={"master_key": MASTER_KEY})
    assert post(gw, "/v1/chat/completions", CHAT_BODY, {}).status_code == 401
    assert chat(gw, MASTER_KEY) == "Hello from the fake!"


# --- open or keyed: decided once, at start-up -----------------------------------------------


def stored_keys(path: Path, *names: str) -> tuple[str, list[tuple[str, str]]]:
    """A SQLite storage holding a key per name: its URL and (id, secret) pairs."""
    url = f"sqlite:///{path}/keys.db"

    async def create() -> list[tuple[str, str]]:
        store = Store(url)
        await store.migrate()
        try:
            out = []
            for name in names:
                secret = f"lg-stored-{name}-0123456789"
                row = await store.create_key({"name": name}, digest(secret), secret[:8])
                out.append((row["id"], secret))
            return out
        finally:
            await store.close()

    return url, asyncio.run(create())


def revoke(url: str, key_id: str) -> None:
    async def run() -> None:
        store = Store(url)
        try:
            assert await store.revoke_key(key_id)
        finally:
            await store.close()

    asyncio.run(run())


def status_with(gw: GatewayServer, key: str | None) -> int:
    headers = {"authorization": f"Bearer {key}"} if key else {}
    return post(gw, "/v1/chat/completions", CHAT_BODY, headers).status_code


def test_revoking_the_last_stored_key_never_opens_the_gateway(
        gateway: GatewayFactory, tmp_path: Path) -> None:
    url, [(key_id, secret)] = stored_keys(tmp_path, "only")
    gw = gateway(models=MODELS, storage=url)  # no keys in the config, no master key
    assert status_with(gw, secret) == 200
    assert status_with(gw, None) == 401
    revoke(url, key_id)
    deadline = time.monotonic() + 3
    while status_with(gw, secret) != 401:  # every worker polls storage twice a second
        assert time.monotonic() < deadline, "the revoked key still works"
        time.sleep(0.05)
    assert status_with(gw, None) == 401
    assert status_with(gw, "lg-made-up-key-0000000000") == 401


def test_a_gateway_whose_storage_ever_had_a_key_starts_keyed(
        gateway: GatewayFactory, tmp_path: Path) -> None:
    url, [(key_id, _)] = stored_keys(tmp_path, "gone")
    revoke(url, key_id)
    gw = gateway(models=MODELS, storage=url)
    assert status_with(gw, None) == 401
    assert status_with(gw, "lg-made-up-key-0000000000") == 401

