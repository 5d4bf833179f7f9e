"""Logging bodies (``log_bodies``) through the gateway and the admin API: stored redacted and
sealed, unreadable in the database without the key, shown by ``/admin/logs``, erased with the
end user; a key's privacy settings given through the admin API take effect and are checked."""

from __future__ import annotations

import base64
import os
import sqlite3
import time
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import httpx2 as httpx
import openai
import pytest

from conftest import ANTHROPIC_KEY, OPENAI_KEY, GatewayFactory
from fakes import FakeAnthropic, FakeOpenAI, Reply
from gateway import GatewayServer, make_config
from lockgate.config import PrivacyConfig
from lockgate.privacy.logbook import BodyLog, RequestPrivacy, open_sealed
from lockgate.privacy.policy import Policies

EMAIL, CARD = "alice.smith@example.com", "4111 1111 1111 1111"
MASTER = "sk-lockgate-privacy-master-0123456789"
LOGGED = "sk-lockgate-privacy-logged-0123456789"  # log_bodies on, pii mode off
REDACTED = "sk-lockgate-privacy-redlog-0123456789"  # log_bodies on, pii mode redact
ENCRYPTION_KEY = base64.urlsafe_b64encode(os.urandom(32)).decode()
T = TypeVar("T")


@pytest.fixture(scope="module")
def gw(_openai_server: FakeOpenAI, _anthropic_server: FakeAnthropic,
       tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayServer]:
    folder = tmp_path_factory.mktemp("logbook")
    config = make_config({
        "storage": f"sqlite:///{folder}/lockgate.db",
        "server": {"master_key": MASTER, "encryption_key": ENCRYPTION_KEY,
                   "spill_dir": f"{folder}/spill"},
        "providers": {"oai": {"type": "openai", "api_key": OPENAI_KEY,
                              "base_url": _openai_server.base_url},
                      "claude": {"type": "anthropic", "api_key": ANTHROPIC_KEY,
                                 "base_url": _anthropic_server.base_url}},
        "models": {"gpt": {"targets": [{"provider": "oai", "model": "gpt-4o-mini"}]}},
        "keys": [{"name": "logged", "key": LOGGED, "privacy": {"log_bodies": True}},
                 {"name": "redacted", "key": REDACTED,
                  "privacy": {"log_bodies": True, "pii": {"mode": "redact"}}}],
    })
    with GatewayServer(config) as server:
        yield server


@pytest.fixture
def admin(gw: GatewayServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=f"{gw.url}/admin", timeout=10,
                      headers={"authorization": f"Bearer {MASTER}"}) as client:
        yield client


def eventually(probe: Callable[[], T], done: Callable[[T], bool], within: float = 5.0) -> T:
    deadline = time.monotonic() + within
    while True:
        value = probe()
        if done(value) or time.monotonic() > deadline:
            return value
        time.sleep(0.05)


def chat(gw: GatewayServer, key: str, text: str, **extra: Any) -> Any:
    client = openai.OpenAI(base_url=gw.openai_base_url, api_key=key, max_retries=0)
    return client.chat.completions.create(
        model="gpt", messages=[{"role": "user", "content": text}], **extra)


def logged(admin: httpx.Client, request_id: str) -> dict[str, Any]:
    response = eventually(lambda: admin.get(f"/logs/{request_id}"), lambda r: r.status_code == 200)
    assert response.status_code == 200, response.text
    entry: dict[str, Any] = response.json()
    return entry


def test_bodies_are_stored_redacted_even_with_pii_off(
        gw: GatewayServer, admin: httpx.Client, fake_openai: FakeOpenAI) -> None:
    fake_openai.enqueue(Reply(text=f"Your card {CARD} is noted"))  # the model's own PII too
    chat(gw, LOGGED, f"I am {EMAIL}", extra_headers={"x-request-id": "req-logged-1"})
    assert EMAIL in fake_openai.requests[-1].raw.decode()  # mode off: the upstream sees it
    body = logged(admin, "req-logged-1")["body"]
    assert body["request"]["messages"][0]["content"] == "I am <EMAIL_1>"
    assert body["response"]["choices"][0]["message"]["content"] == "Your card <CREDIT_CARD_1> is noted"
    assert body["truncated"] is False
    rows = admin.get("/logs", params={"key_id": "static/logged"}).json()["data"]
    assert rows[0]["body"] == body and EMAIL not in str(rows)


def test_a_streamed_answer_is_stored_and_restored_for_the_client(
        gw: GatewayServer, admin: httpx.Client, fake_openai: FakeOpenAI) -> None:
    fake_openai.enqueue(Reply(text="Hello <EMAIL_1>!"))
    stream = chat(gw, REDACTED, f"I am {EMAIL}", stream=True,
                  extra_headers={"x-request-id": "req-logged-2"})
    assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices) == f"Hello {EMAIL}!"
    body = logged(admin, "req-logged-2")["body"]
    assert "<EMAIL_1>" in body["response"] and EMAIL not in body["response"]
    assert body["request"]["messages"][0]["content"] == "I am <EMAIL_1>"


def test_stored_bodies_cannot_be_read_without_the_key(gw: GatewayServer, admin: httpx.Client) -> None:
    chat(gw, LOGGED, f"secret {EMAIL}", extra_headers={"x-request-id": "req-logged-3"})
    record_id = logged(admin, "req-logged-3")
    database = gw.config.storage.removeprefix("sqlite:///")
    with sqlite3.connect(database) as db:
        rows = db.execute("SELECT r.id, b.body FROM requests r JOIN request_bodies b ON b.id = r.id "
                          "WHERE r.request_id = 'req-logged-3'").fetchall()
    assert record_id and len(rows) == 1
    sealed = bytes(rows[0][1])
    assert sealed[:1] == b"\x01"  # AES-GCM, not the plaintext format
    for plain in (b"secret", b"EMAIL", b"request", b"messages", EMAIL.encode()):
        assert plain not in sealed


def test_erasure_removes_stored_bodies(gw: GatewayServer, admin: httpx.Client) -> None:
    chat(gw, LOGGED, "hello", user="erase-me", extra_headers={"x-request-id": "req-erase"})
    logged(admin, "req-erase")
    erased = admin.delete("/logs", params={"user": "erase-me"}).json()
    assert erased["deleted"] == 1 and erased["stored_bodies"] == 1
    assert admin.get("/logs/req-erase").status_code == 404
    database = gw.config.storage.removeprefix("sqlite:///")
    with sqlite3.connect(database) as db:
        left = db.execute("SELECT count(*) FROM request_bodies WHERE end_user = 'erase-me'").fetchone()
    assert left == (0,)


def test_a_keys_privacy_from_the_admin_api_takes_effect(
        gw: GatewayServer, admin: httpx.Client, fake_openai: FakeOpenAI) -> None:
    created = admin.post("/keys", json={"name": "clinic", "privacy": {"pii": {"mode": "block"}}})
    assert created.status_code == 201, created.text
    key = created.json()
    assert key["privacy"] == {"pii": {"mode": "block"}}
    with pytest.raises(openai.BadRequestError) as refused:
        chat(gw, key["key"], f"mail {EMAIL}")
    assert refused.value.code == "pii_detected" and fake_openai.requests == []
    # changed to redact: the next requests are redacted instead (within the key refresh)
    assert admin.patch(f"/keys/{key['id']}", json={"privacy": {"pii": {"mode": "redact"}}}).status_code == 200

    def attempt() -> int:
        try:
            chat(gw, key["key"], f"mail {EMAIL}")
        except openai.BadRequestError:
            return 400
        return 200

    assert eventually(attempt, lambda status: status == 200) == 200
    assert "<EMAIL_1>" in fake_openai.requests[-1].raw.decode()


@pytest.mark.parametrize(("privacy", "message"), [
    ({"pii": {"mode": "sometimes"}}, "privacy: pii.mode"),
    ({"pii": {"entities": ["emails"]}}, "unknown entity 'emails'"),
    ({"log_body": True}, "log_body: unknown field"),
    ({"retention_days": 0}, "retention_days"),
])
def test_a_bad_privacy_setting_is_refused_by_the_admin_api(
        admin: httpx.Client, privacy: dict[str, Any], message: str) -> None:
    response = admin.post("/keys", json={"name": "bad", "privacy": privacy})
    assert response.status_code == 400
    assert message in response.json()["error"]["message"]


def test_logging_bodies_without_an_encryption_key_is_refused(gateway: GatewayFactory) -> None:
    unkeyed = gateway(server={"master_key": MASTER})
    response = httpx.post(f"{unkeyed.url}/admin/keys", json={"name": "k", "privacy": {"log_bodies": True}},
                          headers={"authorization": f"Bearer {MASTER}"}, timeout=10)
    assert response.status_code == 400
    assert "server.encryption_key" in response.json()["error"]["message"]


def test_logged_bodies_are_cut_at_max_body_bytes() -> None:
    policies = Policies(PrivacyConfig(log_bodies=True))
    log = BodyLog(ENCRYPTION_KEY, max_body_bytes=100)
    state = RequestPrivacy(policies.default, log)
    state.keep_request({"messages": [{"role": "user", "content": "x" * 500}]})
    for _ in range(10):
        state.keep_answer(b"data: " + b"y" * 50 + b"\n\n")
    sealed = state.stored_body("rec-1")
    assert sealed is not None
    assert log.sealer is not None
    body = open_sealed(log.sealer, base64.b64decode(sealed), "rec-1")
    assert body["truncated"] is True
    assert len(body["request"]) <= 100 and len(body["response"]) <= 100
