"""The PII guard through the gateway, as clients see it: what reaches a fake upstream that records
everything (every dialect, relayed and translated), placeholders restored in answers and streams
(split across SSE events and TCP reads, parsed by the official SDKs), block mode's error in each
client's format, detect mode's counts on the record, per-key overrides, and a failing detector."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import anthropic
import httpx2 as httpx
import openai
import pytest

from conftest import ANTHROPIC_KEY, OPENAI_KEY
from fakes import FakeAnthropic, FakeOpenAI, Raw, Reply
from gateway import GatewayServer, make_config, wait_for_records
from lockgate.privacy.detect import Detector

EMAIL, PHONE, CARD = "alice.smith@example.com", "+1 415 555 2671", "4111 1111 1111 1111"
SECRETS = (EMAIL, PHONE, CARD, "GB82 WEST 1234 5698 7654 32", "078-05-1120", "192.168.1.20")
REDACT = "sk-lockgate-privacy-redact-0123456789"
BLOCK = "sk-lockgate-privacy-block-0123456789"
DETECT = "sk-lockgate-privacy-detect-0123456789"
PLAIN = "sk-lockgate-privacy-plain-0123456789"
EMAILS_ONLY = "sk-lockgate-privacy-emails-0123456789"  # redact emails only, no restore
MODELS = {
    "gpt": {"targets": [{"provider": "oai", "model": "gpt-4o-mini"}]},
    "claude": {"targets": [{"provider": "claude", "model": "claude-haiku-4-5"}]},
}
KEYS = [
    {"name": "redact", "key": REDACT, "privacy": {"pii": {"mode": "redact"}}},
    {"name": "block", "key": BLOCK, "privacy": {"pii": {"mode": "block"}}},
    {"name": "detect", "key": DETECT, "privacy": {"pii": {"mode": "detect"}}},
    {"name": "plain", "key": PLAIN},
    {"name": "emails-only", "key": EMAILS_ONLY,
     "privacy": {"pii": {"mode": "redact", "entities": ["email"], "restore": False}}},
]


@pytest.fixture(scope="module")
def gw(_openai_server: FakeOpenAI, _anthropic_server: FakeAnthropic) -> Iterator[GatewayServer]:
    """One gateway for the module (each test still gets the fakes reset: ``fake_openai``)."""
    providers = {
        "oai": {"type": "openai", "api_key": OPENAI_KEY, "base_url": _openai_server.base_url},
        "claude": {"type": "anthropic", "api_key": ANTHROPIC_KEY,
                   "base_url": _anthropic_server.base_url},
    }
    server = GatewayServer(make_config({"providers": providers, "models": MODELS, "keys": KEYS}))
    with server:
        yield server


def personal(prefix: str = "") -> str:
    return (f"{prefix}Mail {EMAIL} or call {PHONE}; card {CARD}, IBAN {SECRETS[3]}, "
            f"SSN {SECRETS[4]}, from {SECRETS[5]}. Again: {EMAIL}.")


def _openai_chat(model: str) -> dict[str, Any]:
    call = {"id": "call_1", "type": "function",
            "function": {"name": "lookup", "arguments": json.dumps({"email": EMAIL})}}
    return {"model": model, "messages": [
        {"role": "system", "content": personal("System: ")},
        {"role": "user", "content": [{"type": "text", "text": personal()}]},
        {"role": "assistant", "content": None, "tool_calls": [call]},
        {"role": "tool", "tool_call_id": "call_1", "content": f"found {PHONE}"},
        {"role": "user", "content": "thanks"}]}


def _anthropic(model: str) -> dict[str, Any]:
    return {"model": model, "max_tokens": 100, "system": personal("System: "), "messages": [
        {"role": "user", "content": personal()},
        {"role": "assistant", "content": [
            {"type": "tool_use", "id": "toolu_1", "name": "lookup", "input": {"email": EMAIL}}]},
        {"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": "toolu_1", "content": f"found {PHONE}"}]}]}


def _responses(model: str) -> dict[str, Any]:
    return {"model": model, "instructions": personal("System: "), "store": False,
            "input": [{"role": "user", "content": personal()},
                      {"type": "function_call", "call_id": "c1", "name": "lookup",
                       "arguments": json.dumps({"email": EMAIL})},
                      {"type": "function_call_output", "call_id": "c1", "output": f"found {PHONE}"}]}


def _completions(model: str) -> dict[str, Any]:
    return {"model": model, "prompt": personal(), "max_tokens": 20}


CASES = [  # (endpoint, body, model): relayed where the upstream speaks the client's dialect
    ("/v1/chat/completions", _openai_chat, "gpt"),  # relayed
    ("/v1/chat/completions", _openai_chat, "claude"),  # translated
    ("/v1/messages", _anthropic, "claude"),  # relayed
    ("/v1/messages", _anthropic, "gpt"),  # translated
    ("/v1/responses", _responses, "gpt"),
    ("/v1/responses", _responses, "claude"),
    ("/v1/completions", _completions, "gpt"),
]


def post(gw: GatewayServer, path: str, key: str, body: dict[str, Any]) -> httpx.Response:
    return httpx.post(gw.url + path, json=body, headers={"authorization": f"Bearer {key}"},
                      timeout=10)


@pytest.mark.parametrize(("path", "body", "model"), CASES,
                         ids=[f"{p.removeprefix('/v1/')}->{m}" for p, _, m in CASES])
@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
def test_personal_data_never_reaches_the_upstream(
        gw: GatewayServer, fake_openai: FakeOpenAI, fake_anthropic: FakeAnthropic,
        path: str, body: Any, model: str, stream: bool) -> None:
    fake = fake_openai if model == "gpt" else fake_anthropic
    response = post(gw, path, REDACT, {**body(model), "stream": stream})
    assert response.status_code == 200, response.text
    sent = fake.requests[-1].raw.decode()
    for value in SECRETS:
        assert value not in sent and json.dumps(value)[1:-1] not in sent
    assert "<EMAIL_1>" in sent and "<EMAIL_2>" not in sent  # the same value, the same placeholder
    assert "<PHONE_1>" in sent and "<CREDIT_CARD_1>" in sent


def test_a_key_without_a_policy_is_left_alone(gw: GatewayServer, fake_openai: FakeOpenAI) -> None:
    assert post(gw, "/v1/chat/completions", PLAIN, _openai_chat("gpt")).status_code == 200
    assert EMAIL in fake_openai.requests[-1].raw.decode()


def test_placeholders_in_a_whole_answer_are_restored(
        gw: GatewayServer, fake_openai: FakeOpenAI, fake_anthropic: FakeAnthropic) -> None:
    fake_openai.enqueue(Reply(text="I wrote to <EMAIL_1> and <PHONE_1>."))
    client = openai.OpenAI(base_url=gw.openai_base_url, api_key=REDACT, max_retries=0)
    answer = client.chat.completions.create(
        model="gpt", messages=[{"role": "user", "content": f"write to {EMAIL}, {PHONE}"}])
    assert answer.choices[0].message.content == f"I wrote to {EMAIL} and {PHONE}."
    fake_anthropic.enqueue(Reply(text="Done: <EMAIL_1>"))
    claude = anthropic.Anthropic(base_url=gw.url, api_key=REDACT, max_retries=0)
    message = claude.messages.create(model="claude", max_tokens=50,
                                     messages=[{"role": "user", "content": f"mail {EMAIL}"}])
    assert message.content[0].text == f"Done: {EMAIL}"  # type: ignore[union-attr]


def _openai_events(*deltas: str) -> list[bytes]:
    head = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": "gpt-4o-mini"}
    events = [{**head, "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""},
                                    "finish_reason": None}]}]
    events += [{**head, "choices": [{"index": 0, "delta": {"content": d}, "finish_reason": None}]}
               for d in deltas]
    events.append({**head, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
    events.append({**head, "choices": [], "usage": {"prompt_tokens": 5, "completion_tokens": 5,
                                                   "total_tokens": 10}})
    return [b"data: " + json.dumps(e).encode() + b"\n\n" for e in events] + [b"data: [DONE]\n\n"]


def _split_bytes(events: list[bytes], inside: bytes) -> tuple[bytes, ...]:
    """The events as TCP reads, one read boundary falling inside ``inside``."""
    whole = b"".join(events)
    cut = whole.index(inside) + len(inside) // 2
    return whole[:cut], whole[cut:]


@pytest.mark.parametrize("split", ["events", "reads"])
def test_a_placeholder_split_in_a_stream_is_restored_for_the_openai_sdk(
        gw: GatewayServer, fake_openai: FakeOpenAI, split: str) -> None:
    if split == "events":  # "<EMA" + "IL_1> and <PHONE_" + "1>." in three SSE events
        pieces: tuple[bytes, ...] = tuple(_openai_events("Mail <EMA", "IL_1> and <PHONE_", "1>."))
    else:  # a placeholder cut by a TCP read, inside one event
        pieces = _split_bytes(_openai_events("Mail <EMAIL_1> and <PHONE_1>."), b"<EMAIL_1>")
    fake_openai.enqueue(Raw(pieces, gap_s=0.02))
    client = openai.OpenAI(base_url=gw.openai_base_url, api_key=REDACT, max_retries=0)
    stream = client.chat.completions.create(
        model="gpt", stream=True, messages=[{"role": "user", "content": f"{EMAIL} {PHONE}"}])
    text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    assert text == f"Mail {EMAIL} and {PHONE}."


def _anthropic_events(*deltas: str) -> list[bytes]:
    def event(name: str, data: dict[str, Any]) -> bytes:
        return f"event: {name}\ndata: {json.dumps(data)}\n\n".encode()
    usage = {"input_tokens": 5, "output_tokens": 1}
    events = [event("message_start", {"type": "message_start", "message": {
        "id": "msg_1", "type": "message", "role": "assistant", "model": "claude-haiku-4-5",
        "content": [], "stop_reason": None, "stop_sequence": None, "usage": usage}}),
        event("content_block_start", {"type": "content_block_start", "index": 0,
                                      "content_block": {"type": "text", "text": ""}})]
    events += [event("content_block_delta", {"type": "content_block_delta", "index": 0,
                                             "delta": {"type": "text_delta", "text": d}})
               for d in deltas]
    events += [event("content_block_stop", {"type": "content_block_stop", "index": 0}),
               event("message_delta", {"type": "message_delta", "delta": {
                   "stop_reason": "end_turn", "stop_sequence": None}, "usage": usage}),
               event("message_stop", {"type": "message_stop"})]
    return events


@pytest.mark.parametrize("split", ["events", "reads"])
def test_a_placeholder_split_in_a_stream_is_restored_for_the_anthropic_sdk(
        gw: GatewayServer, fake_anthropic: FakeAnthropic, split: str) -> None:
    if split == "events":
        pieces: tuple[bytes, ...] = tuple(_anthropic_events("Mail <", "EMAIL_1", "> now <EMAIL_"))
        expected = f"Mail {EMAIL} now <EMAIL_"  # a tail that never became a placeholder
    else:
        pieces = _split_bytes(_anthropic_events("Mail <EMAIL_1> now"), b"<EMAIL_1>")
        expected = f"Mail {EMAIL} now"
    fake_anthropic.enqueue(Raw(pieces, gap_s=0.02))
    claude = anthropic.Anthropic(base_url=gw.url, api_key=REDACT, max_retries=0)
    with claude.messages.stream(model="claude", max_tokens=50,
                                messages=[{"role": "user", "content": f"mail {EMAIL}"}]) as stream:
        text = "".join(stream.text_stream)
    assert text == expected


def test_a_translated_stream_is_restored(gw: GatewayServer, fake_anthropic: FakeAnthropic) -> None:
    fake_anthropic.enqueue(Reply(text="Mail <EMAIL_1> please"))
    client = openai.OpenAI(base_url=gw.openai_base_url, api_key=REDACT, max_retries=0)
    stream = client.chat.completions.create(
        model="claude", stream=True, messages=[{"role": "user", "content": f"to {EMAIL}"}])
    assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices) == \
        f"Mail {EMAIL} please"


def test_block_mode_refuses_in_the_clients_format(
        gw: GatewayServer, fake_openai: FakeOpenAI, fake_anthropic: FakeAnthropic) -> None:
    client = openai.OpenAI(base_url=gw.openai_base_url, api_key=BLOCK, max_retries=0)
    with pytest.raises(openai.BadRequestError) as refused:
        client.chat.completions.create(model="gpt", messages=[{"role": "user", "content": personal()}])
    error = refused.value.body
    assert isinstance(error, dict) and error["code"] == "pii_detected"
    assert EMAIL not in str(error) and "email" in error["message"]
    claude = anthropic.Anthropic(base_url=gw.url, api_key=BLOCK, max_retries=0)
    with pytest.raises(anthropic.BadRequestError) as refused_too:
        claude.messages.create(model="claude", max_tokens=10,
                               messages=[{"role": "user", "content": f"mail {EMAIL}"}])
    assert refused_too.value.body["error"]["type"] == "invalid_request_error"  # type: ignore[index]
    assert fake_openai.requests == [] and fake_anthropic.requests == []
    # nothing personal in it: served as usual
    assert client.chat.completions.create(
        model="gpt", messages=[{"role": "user", "content": "order 1234567890"}]).choices


def test_detect_mode_records_kinds_and_counts_only(gw: GatewayServer, fake_openai: FakeOpenAI) -> None:
    before = len(gw.records)
    assert post(gw, "/v1/chat/completions", DETECT, _openai_chat("gpt")).status_code == 200
    assert EMAIL in fake_openai.requests[-1].raw.decode()  # detect changes nothing
    record = wait_for_records(gw, before + 1)[-1]
    assert record.pii == {"email": 5, "phone": 3, "credit_card": 2, "iban": 2, "ssn": 2,
                          "ip_address": 2}
    assert EMAIL not in repr(record)


def test_a_failing_detector_refuses_the_request(
        gw: GatewayServer, fake_openai: FakeOpenAI, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(self: Detector, text: str) -> list[Any]:
        raise RuntimeError(f"boom on {text}")

    monkeypatch.setattr(Detector, "find", broken)
    response = post(gw, "/v1/chat/completions", REDACT, _openai_chat("gpt"))
    assert response.status_code == 500
    assert response.json()["error"]["code"] == "privacy_guard_failed"
    assert EMAIL not in response.text and fake_openai.requests == []
    claude = post(gw, "/v1/messages", REDACT, _anthropic("claude"))
    assert claude.status_code == 500 and claude.json()["type"] == "error"


def test_embeddings_inputs_are_redacted(gw: GatewayServer, fake_openai: FakeOpenAI,
                                        fake_anthropic: FakeAnthropic) -> None:
    client = openai.OpenAI(base_url=gw.openai_base_url, api_key=REDACT, max_retries=0)
    client.embeddings.create(model="gpt", input=[f"mail {EMAIL}", "nothing here"])
    assert fake_openai.requests[-1].json["input"] == ["mail <EMAIL_1>", "nothing here"]
    tokens = post(gw, "/v1/messages/count_tokens", REDACT,
                  {"model": "claude", "messages": [{"role": "user", "content": f"mail {EMAIL}"}]})
    assert tokens.status_code == 200 and EMAIL not in fake_anthropic.requests[-1].raw.decode()


def test_entities_and_restore_are_the_keys_own(gw: GatewayServer, fake_openai: FakeOpenAI) -> None:
    fake_openai.enqueue(Reply(text="Wrote to <EMAIL_1>."))
    client = openai.OpenAI(base_url=gw.openai_base_url, api_key=EMAILS_ONLY, max_retries=0)
    answer = client.chat.completions.create(
        model="gpt", messages=[{"role": "user", "content": f"write to {EMAIL}, {PHONE}"}])
    assert fake_openai.requests[-1].json["messages"][0]["content"] == f"write to <EMAIL_1>, {PHONE}"
    assert answer.choices[0].message.content == "Wrote to <EMAIL_1>."  # restore: false


def test_a_stored_conversation_keeps_its_placeholders_apart(
        gw: GatewayServer, fake_openai: FakeOpenAI) -> None:
    client = openai.OpenAI(base_url=gw.openai_base_url, api_key=REDACT, max_retries=0)
    fake_openai.enqueue(Reply(text="Hi <EMAIL_1>"), Reply(text="Both <EMAIL_1> and <EMAIL_2>"))
    first = client.responses.create(model="gpt", input=f"I am {EMAIL}")
    assert first.output_text == f"Hi {EMAIL}"
    second = client.responses.create(model="gpt", previous_response_id=first.id,
                                     input="my colleague is bob@example.net")
    sent = fake_openai.requests[-1].raw.decode()
    assert EMAIL not in sent and "bob@example.net" not in sent
    assert "<EMAIL_1>" in sent and "<EMAIL_2>" in sent  # alice kept hers; bob is another
    # this turn knows only bob's address: alice's stays a placeholder (nothing of it is stored)
    assert second.output_text == "Both <EMAIL_1> and bob@example.net"
