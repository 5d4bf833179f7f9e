"""Clients too heavy for the test environment, tested by the exact requests they send, recorded
from their source, and by reading the answers as they read them.

* LlamaIndex ``OpenAILike`` (llama-index-llms-openai-like 0.8.1; it pulls in llama-index-core,
  NLTK, NumPy and ``transformers``, and pins an older ``openai``): with its default
  ``is_chat_model=False`` every ``complete``, ``stream_complete`` and ``chat`` is a legacy
  ``completions.create(prompt=..., model=..., temperature=0.1, stream=...)``; ``chat`` first
  joins the messages into one prompt (``"<role>: <content>"`` lines, then ``"assistant: "``).
  It reads ``choices[0].text`` (stream: each chunk's, when it has choices) and ``usage``.
* litellm (1.110.2; a gateway of its own, large, and loading a price map over the network at
  import): ``text_completion(model="text-completion-openai/<name>", prompt=...)`` sends
  ``{"model", "prompt", **optional_params}`` to ``/v1/completions`` through the OpenAI SDK;
  ``completion`` and ``embedding`` with ``openai/<name>`` send plain Chat Completions and
  Embeddings bodies (text inputs).
"""

from __future__ import annotations

import json
from typing import Any

import httpx2 as httpx
import pytest

from fakes import FakeAnthropic, fake_vector
from gateway import GatewayServer

from .conftest import CHAT_MODELS

LLAMA_INDEX_CHAT_PROMPT = "system: Be brief.\nuser: Hi\nassistant: "

# (client, call) -> (path, body without "model"); the model is the gateway's name.
RECORDED: dict[str, tuple[str, dict[str, Any]]] = {
    "llama-index complete": ("/completions", {"prompt": "Hi", "stream": False, "temperature": 0.1}),
    "llama-index chat": ("/completions", {"prompt": LLAMA_INDEX_CHAT_PROMPT, "stream": False,
                                          "temperature": 0.1}),
    "litellm text_completion": ("/completions", {"prompt": "Say this is a test", "max_tokens": 7}),
    "litellm completion": ("/chat/completions", {"messages": [{"role": "user", "content": "Hi"}]}),
}
RECORDED_STREAMS: dict[str, tuple[str, dict[str, Any]]] = {
    "llama-index stream_complete": ("/completions", {"prompt": "Hi", "temperature": 0.1, "stream": True}),
    "litellm text_completion stream": ("/completions", {"prompt": "Say this is a test", "stream": True}),
}


def post(gw: GatewayServer, path: str, body: dict[str, Any]) -> httpx.Response:
    return httpx.post(gw.openai_base_url + path, json=body, headers={"authorization": "Bearer lg-key"})


def text_of(answer: dict[str, Any]) -> str:
    choice = answer["choices"][0]
    return str(choice["text"] if "text" in choice else choice["message"]["content"])


@pytest.mark.parametrize("model", CHAT_MODELS)
@pytest.mark.parametrize("call", RECORDED)
def test_recorded_calls_get_what_the_client_reads(gw: GatewayServer, call: str, model: str) -> None:
    path, body = RECORDED[call]
    response = post(gw, path, {"model": model, **body})
    assert response.status_code == 200, response.text
    answer = response.json()
    assert text_of(answer) == "Hello from the fake!"
    assert answer["model"] == model
    usage = answer["usage"]
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"] > 0


def test_the_llama_index_chat_prompt_reaches_the_model_as_one_user_turn(
        gw: GatewayServer, fake_anthropic: FakeAnthropic) -> None:
    path, body = RECORDED["llama-index chat"]
    post(gw, path, {"model": "claude", **body})
    [sent] = fake_anthropic.requests
    assert sent.json["messages"] == [{"role": "user", "content": [
        {"type": "text", "text": LLAMA_INDEX_CHAT_PROMPT}]}]
    assert sent.json["temperature"] == 0.1


@pytest.mark.parametrize("model", CHAT_MODELS)
@pytest.mark.parametrize("call", RECORDED_STREAMS)
def test_recorded_streams_get_text_completion_chunks(gw: GatewayServer, call: str, model: str) -> None:
    path, body = RECORDED_STREAMS[call]
    with httpx.stream("POST", gw.openai_base_url + path, json={"model": model, **body},
                      headers={"authorization": "Bearer lg-key"}) as response:
        assert response.status_code == 200
        lines = [line[6:] for line in response.iter_lines() if line.startswith("data: ")]
    assert lines[-1] == "[DONE]"
    chunks = [json.loads(line) for line in lines[:-1]]
    assert {c["object"] for c in chunks} == {"text_completion"}
    assert "".join(c["choices"][0]["text"] for c in chunks if c["choices"]) == "Hello from the fake!"
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"


def test_litellm_embeddings_send_text_that_any_provider_takes(gw: GatewayServer) -> None:
    response = post(gw, "/embeddings", {"model": "gembed", "input": ["hello"], "encoding_format": "float"})
    assert response.json()["data"][0]["embedding"] == fake_vector("hello")
