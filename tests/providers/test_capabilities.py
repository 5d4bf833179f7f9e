"""What a provider can do is read from what it implements (``Provider.capabilities``), and the
gateway starts and stops providers that need it — shown with a third-party, in-process provider
(the shape the in-process model runtimes will have) served through a real gateway."""

from __future__ import annotations

import sys
import textwrap
from collections.abc import Iterator
from importlib.metadata import EntryPoint
from pathlib import Path
from typing import Any

import openai
import pytest

from gateway import GatewayServer, make_config
from lockgate.providers import registry

ECHO_MODULE = '''
    import asyncio
    from lockgate.core.chat import ChatResponse, Usage
    from lockgate.providers.base import Provider

    EVENTS = []  # what the gateway did with the provider, in order

    class EchoProvider(Provider):
        """Answers with the last message, upper-cased; needs a start before it can."""
        type_name = "echo"
        model_in_path = False

        async def start(self):
            await asyncio.sleep(0)  # start runs on the gateway's event loop
            EVENTS.append("start")
            self.ready = True

        async def chat(self, request, timeout):
            EVENTS.append("chat")
            assert self.ready, "called before start"
            text = request.messages[-1].text()
            return ChatResponse(id="echo-1", model=request.model, content=str(text).upper(),
                                usage=Usage(3, 2), finish_reason="stop")

        async def aclose(self):
            EVENTS.append("aclose")
'''


@pytest.fixture
def echo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    (tmp_path / "echo_llm.py").write_text(textwrap.dedent(ECHO_MODULE))
    monkeypatch.syspath_prepend(str(tmp_path))
    entries = [EntryPoint("echo", "echo_llm:EchoProvider", registry.GROUP)]
    monkeypatch.setattr(registry, "entry_points", lambda group: entries if group == registry.GROUP else [])
    registry._scan.cache_clear()
    import echo_llm  # type: ignore[import-not-found]

    yield echo_llm
    registry._scan.cache_clear()
    sys.modules.pop("echo_llm", None)


def capabilities(type_name: str) -> set[str]:
    cls = registry.provider_class(type_name)
    assert cls is not None
    return set(cls.capabilities)


def test_built_in_providers_offer_what_they_implement() -> None:
    assert capabilities("openai") == {"chat", "stream", "embed", "relay"}
    assert capabilities("anthropic") == {"chat", "stream", "relay", "count_tokens"}
    assert capabilities("gemini") == {"chat", "stream", "embed"}
    # An OpenAI-compatible server without an embeddings endpoint does not offer them.
    assert capabilities("groq") == {"chat", "stream", "relay"}


def test_a_provider_that_only_chats_is_started_served_and_stopped(echo: Any) -> None:
    assert capabilities("echo") == {"chat"}
    config = make_config({"providers": {"local": {"type": "echo"}},
                          "models": {"shout": {"targets": [{"provider": "local", "model": "m"}]}}})
    with GatewayServer(config) as gw:
        assert echo.EVENTS == ["start"]  # before the first request could arrive
        client = openai.OpenAI(base_url=gw.openai_base_url, api_key="x", max_retries=0)
        answer = client.chat.completions.create(
            model="shout", messages=[{"role": "user", "content": "hello"}])
        assert answer.choices[0].message.content == "HELLO"
        with pytest.raises(openai.BadRequestError, match="cannot serve embeddings"):
            client.embeddings.create(model="shout", input="hello")
        assert echo.EVENTS == ["start", "chat"]  # the refusal never reached the provider
    assert echo.EVENTS == ["start", "chat", "aclose"]
