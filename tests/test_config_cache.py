"""The ``cache:`` section and a model's ``cache`` (§9), as ``lockgate check`` reports them."""

from __future__ import annotations

import pytest

from lockgate.config import ConfigError, ConfigProblem, ModelCacheConfig, parse_config

BASE = """
providers:
  oai: {type: openai, api_key: sk-0123456789}
models:
  chat: {targets: [{provider: oai, model: gpt-4o-mini}], cache: {ttl_s: 600, semantic: true}}
  embed: {targets: [{provider: oai, model: text-embedding-3-small}]}
"""


def problems(text: str) -> list[tuple[str, str]]:
    with pytest.raises(ConfigError) as caught:
        parse_config(text, {})
    found: list[ConfigProblem] = caught.value.problems
    return [(p.path, p.message) for p in found]


def test_a_full_cache_section_is_read() -> None:
    config = parse_config(BASE + """
redis: redis://127.0.0.1:6379/0
cache:
  backend: redis
  ttl_s: 60
  max_entries: 5
  key_prefix: "myapp:cache:"
  semantic: {embedding_model: embed, threshold: 0.9, max_temperature: 0.5, max_vectors: 50}
""", {})
    assert config.cache.backend == "redis" and config.cache.ttl_s == 60
    assert config.cache.semantic is not None and config.cache.semantic.threshold == 0.9
    assert config.models["chat"].cache == ModelCacheConfig(ttl_s=600, semantic=True)
    assert config.models["embed"].cache is None


def test_a_missing_embedding_model_is_named() -> None:
    found = problems(BASE + "cache: {semantic: {embedding_model: embedd}}\n")
    assert found == [("cache.semantic.embedding_model",
                      "no model named 'embedd' (did you mean 'embed'?)")]


def test_a_semantic_model_needs_the_semantic_section() -> None:
    found = problems(BASE)
    assert [path for path, _ in found] == ["models.chat.cache.semantic"]


def test_redis_backend_needs_redis_and_bad_values_are_refused() -> None:
    text = BASE + "cache: {backend: redis, ttl_s: 0, semantic: {embedding_model: embed, threshold: 1.5}}\n"
    paths = {path for path, _ in problems(text)}
    assert paths == {"cache.backend", "cache.ttl_s", "cache.semantic.threshold"}


def test_unknown_cache_keys_are_refused() -> None:
    text = BASE.replace("semantic: true", "semantic: true, ttl: 5") + \
        "cache: {semantic: {embedding_model: embed}}\n"
    assert [path for path, _ in problems(text)] == ["models.chat.cache.ttl"]
