"""Providers are found without being listed anywhere: built-ins by scanning the package, third
parties through the ``lockgate.providers`` entry-point group."""

from __future__ import annotations

import sys
import textwrap
from collections.abc import Iterator
from importlib.metadata import EntryPoint
from pathlib import Path

import pytest

from gateway import make_config
from lockgate.config import ConfigError
from lockgate.providers import registry
from lockgate.providers.base import Provider

BUILT_IN = {"openai", "azure", "anthropic", "gemini", "vertex", "bedrock", "cohere", "mistral",
            "vllm", "ollama", "llamacpp", "lmstudio", "groq", "together", "deepseek", "openrouter"}


@pytest.fixture
def plugin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Installs a third-party module and entry points the way a pip-installed package would."""
    (tmp_path / "acme_llm.py").write_text(textwrap.dedent('''
        from lockgate.providers.base import ProviderSettings
        from lockgate.providers.openai import OpenAIProvider

        class AcmeSettings(ProviderSettings):
            tenant: str | None = None

        class AcmeProvider(OpenAIProvider):
            type_name = "acme"
            default_base_url = "https://llm.acme.example/v1"
            api_key_env = None
            settings_model = AcmeSettings
    '''))
    monkeypatch.syspath_prepend(str(tmp_path))
    entries = [EntryPoint("acme", "acme_llm:AcmeProvider", registry.GROUP),
               EntryPoint("broken", "acme_missing_module:Nope", registry.GROUP)]
    monkeypatch.setattr(registry, "entry_points", lambda group: entries if group == registry.GROUP else [])
    registry._scan.cache_clear()
    yield
    registry._scan.cache_clear()
    sys.modules.pop("acme_llm", None)


def test_every_built_in_provider_is_found_by_scanning_the_package() -> None:
    types = registry.provider_types()
    assert set(types) >= BUILT_IN
    assert all(issubclass(cls, Provider) for cls in types.values())


def test_a_third_party_provider_plugs_in_through_an_entry_point(plugin: None) -> None:
    cls = registry.provider_class("acme")
    assert cls is not None and cls.__name__ == "AcmeProvider"
    config = make_config({"providers": {"a": {"type": "acme", "api_key": "k-123456789"}},
                          "models": {"m": {"targets": [{"provider": "a"}]}}})
    assert config.providers["a"].type == "acme"


def test_a_plugin_that_fails_to_import_is_named_in_the_config_error(plugin: None) -> None:
    assert registry.provider_class("broken") is None
    with pytest.raises(ConfigError) as caught:
        make_config({"providers": {"b": {"type": "broken"}}})
    assert "failed to load" in str(caught.value) and "ModuleNotFoundError" in str(caught.value)
    assert registry.provider_class("openai") is not None  # the rest still load


def test_a_third_party_provider_declares_its_own_settings(plugin: None) -> None:
    models = {"m": {"targets": [{"provider": "a"}]}}
    config = make_config({"providers": {"a": {"type": "acme", "tenant": "blue"}}, "models": models})
    assert config.providers["a"].model_dump()["tenant"] == "blue"
    with pytest.raises(ConfigError) as caught:
        make_config({"providers": {"a": {"type": "openai", "tenant": "blue"}}, "models": models})
    assert "provider type 'openai' does not take: tenant" in str(caught.value)
