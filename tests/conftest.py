"""Shared fixtures: the fake upstreams (one per session, reset per test) and a factory that
starts a real gateway in front of them."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from fakes import FakeAnthropic, FakeGemini, FakeOpenAI
from gateway import GatewayServer, make_config
from lockgate.pipeline.steps import StepFactory

OPENAI_KEY = "sk-upstream-openai-0123456789"
ANTHROPIC_KEY = "sk-ant-upstream-0123456789"
GEMINI_KEY = "AIza-upstream-gemini-0123456789"
CLIENT_KEY = "lg-test-client-key-0123456789"


@pytest.fixture(scope="session")
def _openai_server() -> Iterator[FakeOpenAI]:
    with FakeOpenAI(api_key=OPENAI_KEY) as fake:
        yield fake


@pytest.fixture(scope="session")
def _anthropic_server() -> Iterator[FakeAnthropic]:
    with FakeAnthropic(api_key=ANTHROPIC_KEY) as fake:
        yield fake


@pytest.fixture(scope="session")
def _gemini_server() -> Iterator[FakeGemini]:
    with FakeGemini(api_key=GEMINI_KEY) as fake:
        yield fake


@pytest.fixture
def fake_openai(_openai_server: FakeOpenAI) -> FakeOpenAI:
    _openai_server.reset()
    return _openai_server


@pytest.fixture
def fake_anthropic(_anthropic_server: FakeAnthropic) -> FakeAnthropic:
    _anthropic_server.reset()
    return _anthropic_server


@pytest.fixture
def fake_gemini(_gemini_server: FakeGemini) -> FakeGemini:
    _gemini_server.reset()
    return _gemini_server


@pytest.fixture
def providers(fake_openai: FakeOpenAI, fake_anthropic: FakeAnthropic,
              fake_gemini: FakeGemini) -> dict[str, dict[str, Any]]:
    """A ``providers:`` config section pointing at the three fakes."""
    return {
        "oai": {"type": "openai", "api_key": OPENAI_KEY, "base_url": fake_openai.base_url},
        "claude": {"type": "anthropic", "api_key": ANTHROPIC_KEY, "base_url": fake_anthropic.base_url},
        "gem": {"type": "gemini", "api_key": GEMINI_KEY, "base_url": fake_gemini.base_url},
    }


GatewayFactory = Callable[..., GatewayServer]


@pytest.fixture
def gateway(providers: dict[str, dict[str, Any]]) -> Iterator[GatewayFactory]:
    """``gateway(models=..., keys=..., server=...)`` starts a gateway over the fakes."""
    started: list[GatewayServer] = []

    def start(*, steps: Sequence[StepFactory] = (), **sections: Any) -> GatewayServer:
        raw: dict[str, Any] = {"providers": providers, **sections}
        server = GatewayServer(make_config(raw), steps).start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()

@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A storage URL of each backend with no rows in it: a SQLite file in the test's folder, or
    the session's PostgreSQL database emptied (``services.postgres_clean_url``). A sync fixture: the
    PostgreSQL one runs asyncio itself, which cannot run inside an async fixture."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/lockgate.db"
    else:
        yield request.getfixturevalue("postgres_clean_url")

