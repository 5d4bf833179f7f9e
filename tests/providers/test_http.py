"""``providers.http``: the helpers every provider shares — one header merge, and one stream
driver that releases the upstream connection the moment a stream is closed."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import aiohttp
import pytest

from conftest import ANTHROPIC_KEY, GEMINI_KEY, OPENAI_KEY
from fakes import FakeAnthropic, FakeGemini, FakeOpenAI, FakeServer, Reply
from fakes.cohere import FakeCohere
from fakes.mistral import FakeMistral
from lockgate.config import ProviderConfig, ServerConfig
from lockgate.core.chat import ChatRequest, Message, StreamEvent, TextPart
from lockgate.errors import UpstreamError
from lockgate.providers import http
from lockgate.providers.base import Provider
from lockgate.providers.http import drive, merge_headers
from lockgate.providers.registry import provider_class

# Each provider's own auth header in another case, and one header no provider sets.
CONFIGURED = {"Authorization": "Bearer configured-0123456789", "X-Api-Key": "configured-x",
              "X-Goog-Api-Key": "configured-goog", "Api-Key": "configured-azure",
              "Content-Type": "application/json; charset=utf-8", "X-Extra": "1"}


def test_merge_headers_replaces_a_name_in_any_case() -> None:
    merged = merge_headers({"authorization": "Bearer ours", "content-type": "application/json"},
                           {"Authorization": "Bearer theirs"})
    assert merged == {"content-type": "application/json", "Authorization": "Bearer theirs"}


# Every provider type whose headers are built from its config (bedrock signs, vertex with a
# service account adds a fresh token: both are checked through merge_headers in their modules).
HEADER_TYPES = ["openai", "azure", "anthropic", "gemini", "mistral", "cohere", "groq", "deepseek",
                "openrouter", "together", "vertex"]


@pytest.mark.parametrize("type_name", HEADER_TYPES)
def test_a_configured_header_replaces_the_providers_own_whatever_its_case(type_name: str) -> None:
    """Mistral used to send two ``Authorization`` headers when one was configured, Anthropic
    two ``x-api-key``, Gemini two ``x-goog-api-key``."""
    cls = provider_class(type_name)
    assert cls is not None
    settings: dict[str, Any] = {"type": type_name, "api_key": "sk-provider-0123456789",
                                "headers": CONFIGURED}
    if type_name == "azure":
        settings.update(base_url="https://x.openai.azure.com", api_version="2024-10-21")
    config = ProviderConfig.model_construct(**ProviderConfig(**settings).__dict__)
    headers = cls("p", config, None).headers()  # type: ignore[arg-type]
    names = [name.lower() for name in headers]
    assert len(names) == len(set(names)), headers
    assert {name: headers[name] for name in CONFIGURED} == CONFIGURED


# --- drive ----------------------------------------------------------------------------------


class Source:
    """An upstream stand-in that knows whether it was closed."""

    def __init__(self, items: list[int]) -> None:
        self.items = items
        self.closed = False

    async def gen(self) -> AsyncIterator[int]:
        try:
            for item in self.items:
                yield item
        finally:
            self.closed = True


async def test_drive_closes_its_source_when_the_consumer_stops_early() -> None:
    source = Source([1, 2, 3])
    events = drive(source.gen(), lambda n: [n * 10], lambda: [99])
    assert await anext(events) == 10
    await events.aclose()
    assert source.closed


async def test_drive_closes_its_source_when_the_parser_fails() -> None:
    source = Source([1, 2, 3])

    def feed(n: int) -> list[int]:
        if n == 2:
            raise UpstreamError("broken")
        return [n]

    with pytest.raises(UpstreamError):
        _ = [e async for e in drive(source.gen(), feed, lambda: None)]
    assert source.closed


async def test_drive_ends_with_what_the_parser_holds_back() -> None:
    events = [e async for e in drive(Source([1, 2]).gen(), lambda n: [n], lambda: [3])]
    assert events == [1, 2, 3]


# --- every stream driver releases its upstream at once ---------------------------------------

FakeFactory = Callable[[], FakeServer]
STREAMING: dict[str, tuple[FakeFactory, str, str, Callable[[FakeServer], str]]] = {
    "openai": (lambda: FakeOpenAI(api_key=OPENAI_KEY), OPENAI_KEY, "gpt-4o-mini",
               lambda f: f.root_url + "/v1"),
    "anthropic": (lambda: FakeAnthropic(api_key=ANTHROPIC_KEY), ANTHROPIC_KEY, "claude-sonnet-4-5",
                  lambda f: f.root_url),
    "gemini": (lambda: FakeGemini(api_key=GEMINI_KEY), GEMINI_KEY, "gemini-2.5-flash",
               lambda f: f.root_url),
    "mistral": (lambda: FakeMistral(api_key="mistral-key-0123456789"), "mistral-key-0123456789",
                "mistral-small-latest", lambda f: f.root_url + "/v1"),
    "cohere": (lambda: FakeCohere(api_key="cohere-key-0123456789"), "cohere-key-0123456789",
               "command-r", lambda f: f.root_url),
}


@pytest.fixture(params=sorted(STREAMING))
def upstream(request: pytest.FixtureRequest) -> Iterator[tuple[str, FakeServer]]:
    factory = STREAMING[request.param][0]
    with factory() as fake:
        yield request.param, fake


async def test_closing_a_stream_after_its_first_event_closes_the_upstream_response(
        upstream: tuple[str, FakeServer], monkeypatch: pytest.MonkeyPatch) -> None:
    type_name, fake = upstream
    _, key, model, base_url = STREAMING[type_name]
    opened: list[aiohttp.ClientResponse] = []
    real_iter_chunks = http.iter_chunks

    def spying(response: aiohttp.ClientResponse, idle_timeout_s: float | None = None
               ) -> AsyncIterator[bytes]:
        opened.append(response)
        return real_iter_chunks(response, idle_timeout_s)

    monkeypatch.setattr(http, "iter_chunks", spying)
    fake.enqueue(Reply(text="one two three four five six"))
    async with aiohttp.ClientSession() as session:
        cls = provider_class(type_name)
        assert cls is not None
        provider: Provider = cls("p", ProviderConfig(type=type_name, api_key=key,
                                                     base_url=base_url(fake)), session)
        request = ChatRequest(model=model, messages=[Message(role="user", content=[TextPart("Hi")])],
                              stream=True)
        events = await provider.chat_stream(request, 5)
        first: StreamEvent = await anext(events)  # type: ignore[call-overload]
        assert first is not None
        await events.aclose()  # type: ignore[attr-defined]
        [response] = opened
        assert response.closed


def test_the_read_limits_default_to_the_config_defaults() -> None:
    server = ServerConfig()
    configured = http.ReadLimits(server.max_event_bytes, server.max_response_bytes,
                                 server.stream_idle_timeout_s)
    assert configured == http.DEFAULT_LIMITS
