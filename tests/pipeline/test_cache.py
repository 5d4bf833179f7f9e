"""The answer cache (``pipeline.cache``) as clients see it: a repeated request answered without
the upstream (the fake's call count), ``x-lockgate-cache``, streams replayed and parsed by the
official SDKs, tenants kept apart, ``cache-control``, expiry, errors never kept, records and
metrics, Redis shared by two gateways, and the semantic cache on near-duplicates."""

from __future__ import annotations

import base64
import functools
from collections.abc import Iterator
from typing import Any

import anthropic
import httpx2 as httpx
import openai
import pytest
import redis

import lockgate.pipeline.cache as cache_module
from conftest import OPENAI_KEY, GatewayFactory
from fakes import Fail, FakeAnthropic, FakeOpenAI, Reply
from gateway import GatewayServer, make_config, wait_for, wait_for_records
from lockgate.app import StartRefused, create_app
from lockgate.config import Config, ModelConfig
from lockgate.pipeline.context import RequestContext
from lockgate.pipeline.steps import Step
from lockgate.state.cache import CacheStore, MemoryCache
from services import redis_prefix, redis_url  # noqa: F401 (fixtures)

KEY_A, KEY_B, KEY_C = "lg-cache-key-a-0123456789", "lg-cache-key-b-0123456789", "lg-cache-key-c-0123456789"
KEYS = [{"name": "a", "key": KEY_A, "team": "research"}, {"name": "b", "key": KEY_B, "team": "research"},
        {"name": "c", "key": KEY_C}]
TEAMS = [{"name": "research"}]
MODELS: dict[str, Any] = {
    "gpt": {"targets": [{"provider": "oai", "model": "gpt-4o-mini"}], "cache": True,
            "price": {"input_per_mtok_usd": 1.0, "output_per_mtok_usd": 2.0}},
    "claude": {"targets": [{"provider": "claude", "model": "claude-sonnet-4-5"}], "cache": True},
    "plain": {"targets": [{"provider": "oai", "model": "gpt-4o-mini"}]},
}
HI: list[openai.types.chat.ChatCompletionMessageParam] = [{"role": "user", "content": "Hi"}]
HI_CLAUDE: list[anthropic.types.MessageParam] = [{"role": "user", "content": "Hi"}]


@pytest.fixture
def gw(gateway: GatewayFactory) -> GatewayServer:
    return gateway(models=MODELS, keys=KEYS, teams=TEAMS)


def oai(gw: GatewayServer, key: str = KEY_A) -> openai.OpenAI:
    return _openai(gw.openai_base_url, key)


def claude(gw: GatewayServer, key: str = KEY_A) -> anthropic.Anthropic:
    return _anthropic(gw.url, key)


# One client per gateway and key: building an SDK client costs more than a request.
@functools.cache
def _openai(base_url: str, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=base_url, api_key=key, max_retries=0)


@functools.cache
def _anthropic(base_url: str, key: str) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=base_url, api_key=key, max_retries=0)


def ask(gw: GatewayServer, key: str = KEY_A, model: str = "gpt", text: str = "Hi",
        headers: dict[str, str] | None = None, **extra: Any) -> tuple[str | None, str | None]:
    """(x-lockgate-cache, answer text) of one non-streamed OpenAI request."""
    raw = oai(gw, key).chat.completions.with_raw_response.create(
        model=model, messages=[{"role": "user", "content": text}], extra_headers=headers, **extra)
    return raw.headers.get("x-lockgate-cache"), raw.parse().choices[0].message.content


def test_a_repeated_request_is_answered_without_the_upstream(gw: GatewayServer,
                                                             fake_openai: FakeOpenAI) -> None:
    fake_openai.enqueue(Reply(text="The first answer"), Reply(text="A second answer"))
    assert ask(gw) == ("miss", "The first answer")
    assert ask(gw) == ("hit", "The first answer")
    assert len(fake_openai.requests) == 1
    assert ask(gw, text="Hello") == ("miss", "A second answer")  # another prompt
    assert len(fake_openai.requests) == 2


def test_a_hit_is_recorded_and_counted_without_tokens_or_cost(gw: GatewayServer,
                                                              fake_openai: FakeOpenAI) -> None:
    ask(gw)
    ask(gw)
    records = wait_for_records(gw, 2)
    assert [r.cache for r in records] == ["miss", "hit"]
    miss, hit = records
    assert miss.prompt_tokens > 0 and miss.cost_usd > 0
    assert (hit.status, hit.prompt_tokens, hit.completion_tokens, hit.cost_usd) == (200, 0, 0, 0.0)
    metrics = httpx.get(f"{gw.url}/metrics").text
    assert 'lockgate_cache_total{result="hit"} 1.0' in metrics
    assert 'lockgate_cache_total{result="miss"} 1.0' in metrics


def test_embeddings_are_cached_too(gateway: GatewayFactory, fake_openai: FakeOpenAI) -> None:
    models = {"embed": {"targets": [{"provider": "oai", "model": "text-embedding-3-small"}],
                        "cache": {"semantic": True}},
              "gpt": MODELS["gpt"]}
    gw = gateway(models=models, keys=KEYS, teams=TEAMS,
                 cache={"semantic": {"embedding_model": "embed", "threshold": 0.1}})
    client = oai(gw)
    first = client.embeddings.with_raw_response.create(model="embed", input="the capital of France")
    again = client.embeddings.with_raw_response.create(model="embed", input="the capital of France")
    assert (first.headers["x-lockgate-cache"], again.headers["x-lockgate-cache"]) == ("miss", "hit")
    assert again.parse().data[0].embedding == first.parse().data[0].embedding
    # Another text is another vector, however close: the semantic cache is for chat only.
    other = client.embeddings.with_raw_response.create(model="embed", input="the capital of Spain")
    assert other.headers["x-lockgate-cache"] == "miss"
    assert len([r for r in fake_openai.requests if r.path == "/v1/embeddings"]) == 2


def test_hits_do_not_use_the_keys_tokens(gateway: GatewayFactory, fake_openai: FakeOpenAI) -> None:
    # 18 tokens an answer (the fake's 11 + 7), about 25 reserved for each request until it is
    # settled (just after its answer is sent: the next may come first). A tpm of 70 allows
    # three upstream answers a minute, and any number of hits.
    gw = gateway(models=MODELS, keys=[{"name": "small", "key": KEY_A, "tpm": 70}])
    for expected in ["miss"] + ["hit"] * 8:
        assert ask(gw, max_tokens=5)[0] == expected
    assert len(fake_openai.requests) == 1


def test_the_admin_logs_show_hits_and_misses(gateway: GatewayFactory, fake_openai: FakeOpenAI) -> None:
    master = "lg-cache-master-0123456789"
    gw = gateway(models=MODELS, keys=KEYS, teams=TEAMS, server={"master_key": master})
    ask(gw)
    ask(gw)

    def logged() -> list[Any]:
        rows: list[Any] = httpx.get(f"{gw.url}/admin/logs", headers={
            "authorization": f"Bearer {master}"}).json()["data"]
        return rows if len(rows) == 2 else []

    wait_for(logged, 5, "two logged requests")
    hit, miss = logged()  # newest first
    assert (hit["cache"], hit["cost_usd"], hit["prompt_tokens"]) == ("hit", 0.0, 0)
    assert (miss["cache"], miss["cost_usd"]) == ("miss", pytest.approx(2.5e-05))


def test_a_model_without_the_cache_says_nothing_of_it(gw: GatewayServer,
                                                      fake_openai: FakeOpenAI) -> None:
    assert ask(gw, model="plain")[0] is None
    assert ask(gw, model="plain")[0] is None
    assert len(fake_openai.requests) == 2
    assert wait_for_records(gw, 2)[-1].cache is None


def test_answers_are_shared_within_a_team_never_across_tenants(gw: GatewayServer,
                                                               fake_openai: FakeOpenAI) -> None:
    fake_openai.enqueue(Reply(text="for research"), Reply(text="for c"))
    assert ask(gw, KEY_A) == ("miss", "for research")
    assert ask(gw, KEY_B) == ("hit", "for research")  # the same team
    assert ask(gw, KEY_C) == ("miss", "for c")  # a key without a team is its own tenant
    assert ask(gw, KEY_C) == ("hit", "for c")
    assert len(fake_openai.requests) == 2


def test_a_streamed_answer_is_replayed_as_a_stream_the_openai_sdk_reads(
        gw: GatewayServer, fake_openai: FakeOpenAI) -> None:
    fake_openai.enqueue(Reply(text="Streams replay word by word", prompt_tokens=5, completion_tokens=5))

    def stream() -> tuple[str | None, str, int | None]:
        raw = oai(gw).chat.completions.with_raw_response.create(
            model="gpt", messages=HI, stream=True, stream_options={"include_usage": True})
        text, usage = "", None
        for chunk in raw.parse():
            if chunk.choices:
                text += chunk.choices[0].delta.content or ""
            if chunk.usage is not None:
                usage = chunk.usage.total_tokens
        return raw.headers.get("x-lockgate-cache"), text, usage

    assert stream() == ("miss", "Streams replay word by word", 10)
    assert stream() == ("hit", "Streams replay word by word", 10)
    assert len(fake_openai.requests) == 1
    # A whole answer is cached apart from a stream: the first non-streamed request is a miss.
    assert ask(gw)[0] == "miss"


def test_the_anthropic_dialect_gets_anthropic_answers_relayed_or_translated(
        gw: GatewayServer, fake_openai: FakeOpenAI, fake_anthropic: FakeAnthropic) -> None:
    fake_anthropic.enqueue(Reply(text="Relayed from Claude"))
    fake_openai.enqueue(Reply(text="Translated from GPT"))
    for model, text in (("claude", "Relayed from Claude"), ("gpt", "Translated from GPT")):
        for expected in ("miss", "hit"):
            raw = claude(gw).messages.with_raw_response.create(model=model, max_tokens=50,
                                                               messages=HI_CLAUDE)
            assert raw.headers["x-lockgate-cache"] == expected
            message = raw.parse()
            assert message.content[0].type == "text" and message.content[0].text == text
    assert len(fake_anthropic.requests) == len(fake_openai.requests) == 1
    # An OpenAI client asking the same of the same model is another dialect: its own answer.
    assert ask(gw, model="claude")[0] == "miss"


def test_an_anthropic_stream_is_replayed_for_the_anthropic_sdk(
        gw: GatewayServer, fake_anthropic: FakeAnthropic, fake_openai: FakeOpenAI) -> None:
    fake_anthropic.enqueue(Reply(text="Claude streams this"))
    fake_openai.enqueue(Reply(text="GPT streams that"))
    for model, text in (("claude", "Claude streams this"), ("gpt", "GPT streams that")):
        for expected in ("miss", "hit"):
            with claude(gw).messages.stream(model=model, max_tokens=50, messages=HI_CLAUDE) as stream:
                assert stream.response.headers["x-lockgate-cache"] == expected
                assert "".join(stream.text_stream) == text
                assert stream.get_final_message().stop_reason == "end_turn"
    assert len(fake_anthropic.requests) == len(fake_openai.requests) == 1


def test_responses_are_cached_only_where_the_gateway_does_not_store_them(
        gw: GatewayServer, fake_openai: FakeOpenAI) -> None:
    client = oai(gw)
    for expected in ("miss", "hit"):
        raw = client.responses.with_raw_response.create(model="gpt", input="Hi", store=False)
        assert raw.headers["x-lockgate-cache"] == expected
        assert raw.parse().output_text == "Hello from the fake!"
    stored = client.responses.with_raw_response.create(model="gpt", input="Hi")
    assert "x-lockgate-cache" not in stored.headers
    assert len(fake_openai.requests) == 2


class Checked(Step):
    """Another step, which changes the answer on its way out."""

    def answer(self, call: Any, answer: bytes, ctx: RequestContext) -> bytes:
        return answer.replace(b"Hello from the fake!", b"Hello, checked!")


class CheckedSteps:
    def for_model(self, name: str, model: ModelConfig | None) -> Step | None:
        return Checked()


def test_the_answer_kept_is_the_one_the_other_steps_made(gateway: GatewayFactory,
                                                         fake_openai: FakeOpenAI) -> None:
    gw = gateway(models=MODELS, keys=KEYS, teams=TEAMS, steps=[CheckedSteps()])
    assert ask(gw) == ("miss", "Hello, checked!")
    assert ask(gw) == ("hit", "Hello, checked!")


def test_an_experiments_variants_are_cached_apart(gateway: GatewayFactory, fake_openai: FakeOpenAI,
                                                  fake_anthropic: FakeAnthropic) -> None:
    models = {**MODELS, "chat": {"targets": [{"provider": "oai", "model": "gpt-4o"}]}}
    experiments = {"trial": {"model": "chat", "sticky": "user", "variants": {
        "control": {"use": "gpt", "weight": 1}, "candidate": {"use": "claude", "weight": 1}}}}
    gw = gateway(models=models, keys=KEYS, teams=TEAMS, experiments=experiments)
    fake_openai.enqueue(*[Reply(text="from gpt")] * 20)
    fake_anthropic.enqueue(*[Reply(text="from claude")] * 20)
    seen: dict[str, str] = {}
    for user in (f"user-{n}" for n in range(20)):
        raw = oai(gw).chat.completions.with_raw_response.create(model="chat", messages=HI, user=user)
        variant, text = raw.headers["x-lockgate-variant"], raw.parse().choices[0].message.content or ""
        assert raw.headers["x-lockgate-cache"] == ("hit" if variant in seen else "miss")
        assert text == seen.setdefault(variant, text)  # each variant's own answer
        if len(seen) == 2:
            break
    assert seen == {"control": "from gpt", "candidate": "from claude"}
    assert len(fake_openai.requests) == len(fake_anthropic.requests) == 1


def test_cache_control_no_store_and_no_cache(gw: GatewayServer, fake_openai: FakeOpenAI) -> None:
    fake_openai.enqueue(Reply(text="not kept"), Reply(text="kept"), Reply(text="fresh"))
    assert ask(gw, headers={"cache-control": "no-store"}) == ("miss", "not kept")
    assert ask(gw) == ("miss", "kept")
    assert ask(gw) == ("hit", "kept")
    # no-cache: not answered from the cache, and the fresh answer replaces the kept one.
    assert ask(gw, headers={"cache-control": "no-cache"}) == ("miss", "fresh")
    assert ask(gw) == ("hit", "fresh")
    assert len(fake_openai.requests) == 3


def test_an_error_is_never_kept(gw: GatewayServer, fake_openai: FakeOpenAI) -> None:
    fake_openai.enqueue(Fail(400, "bad request upstream"), Reply(text="fine"))
    with pytest.raises(openai.BadRequestError):
        ask(gw)
    assert ask(gw) == ("miss", "fine")


def test_a_stream_cut_by_an_error_is_never_kept(gw: GatewayServer, fake_openai: FakeOpenAI) -> None:
    fake_openai.enqueue(Reply(text="one two three four five", cut_after=3), Reply(text="whole"))
    body = {"model": "gpt", "messages": HI, "stream": True}
    cut = httpx.post(f"{gw.openai_base_url}/chat/completions", json=body,
                     headers={"authorization": f"Bearer {KEY_A}"})
    assert cut.headers["x-lockgate-cache"] == "miss" and '"error"' in cut.text
    assert "[DONE]" not in cut.text
    again = httpx.post(f"{gw.openai_base_url}/chat/completions", json=body,
                       headers={"authorization": f"Bearer {KEY_A}"})
    assert again.headers["x-lockgate-cache"] == "miss" and "whole" in again.text
    assert len(fake_openai.requests) == 2


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_answers_expire_after_the_models_ttl(gateway: GatewayFactory, fake_openai: FakeOpenAI,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    clock = Clock()

    def store(config: Config, max_vectors: int) -> CacheStore:
        return MemoryCache(config.cache.max_entries, clock=clock)

    monkeypatch.setattr(cache_module, "_store", store)
    models = {"gpt": {**MODELS["gpt"], "cache": {"ttl_s": 600}},
              "long": {"targets": [{"provider": "oai", "model": "gpt-4o"}], "cache": True}}
    gw = gateway(models=models, keys=KEYS, teams=TEAMS, cache={"ttl_s": 7200})
    ask(gw)
    ask(gw, model="long")
    clock.now = 599
    assert ask(gw)[0] == "hit"
    clock.now = 601
    assert ask(gw)[0] == "miss"  # the model's own ttl_s
    assert ask(gw, model="long")[0] == "hit"  # the top-level ttl_s
    clock.now = 7201
    assert ask(gw, model="long")[0] == "miss"


def test_the_memory_cache_keeps_max_entries(gateway: GatewayFactory, fake_openai: FakeOpenAI) -> None:
    gw = gateway(models=MODELS, keys=KEYS, teams=TEAMS, cache={"max_entries": 1})
    ask(gw, text="one")
    ask(gw, text="two")  # pushes "one" out
    assert ask(gw, text="two")[0] == "hit"
    assert ask(gw, text="one")[0] == "miss"


# --- Redis -----------------------------------------------------------------------------------


@pytest.fixture
def redis_cache(redis_url: str, redis_prefix: str) -> Iterator[dict[str, Any]]:  # noqa: F811
    yield {"redis": redis_url, "cache": {"backend": "redis", "key_prefix": redis_prefix}}
    client = redis.Redis.from_url(redis_url)
    keys = list(client.scan_iter(f"{redis_prefix}*"))
    if keys:
        client.delete(*keys)
    client.close()


def test_redis_shares_the_cache_between_gateways(gateway: GatewayFactory, fake_openai: FakeOpenAI,
                                                 redis_cache: dict[str, Any]) -> None:
    # With an encryption key, what Redis holds is sealed.
    server = {"encryption_key": base64.urlsafe_b64encode(b"k" * 32).decode()}
    first = gateway(models=MODELS, keys=KEYS, teams=TEAMS, server=server, **redis_cache)
    second = gateway(models=MODELS, keys=KEYS, teams=TEAMS, server=server, **redis_cache)
    fake_openai.enqueue(Reply(text="from Redis"))
    assert ask(first) == ("miss", "from Redis")
    client = redis.Redis.from_url(redis_cache["redis"])
    prefix = redis_cache["cache"]["key_prefix"]
    wait_for(lambda: list(client.scan_iter(f"{prefix}a:*")), 2, "the answer written to Redis")
    assert ask(second) == ("hit", "from Redis")
    assert len(fake_openai.requests) == 1
    stored = [client.get(k) for k in client.scan_iter(f"{prefix}a:*")]
    client.close()
    assert len(stored) == 1 and stored[0] is not None and b"from Redis" not in stored[0]


def test_a_redis_outage_never_fails_a_request(gateway: GatewayFactory, fake_openai: FakeOpenAI,
                                              caplog: pytest.LogCaptureFixture) -> None:
    gw = gateway(models=MODELS, keys=KEYS, teams=TEAMS, redis="redis://127.0.0.1:1/0",
                 cache={"backend": "redis"})
    assert ask(gw)[0] == "miss"
    assert ask(gw)[0] == "miss"
    assert len(fake_openai.requests) == 2
    assert sum("cache's Redis cannot be reached" in r.getMessage() for r in caplog.records) == 1


# --- the semantic cache ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def embedder() -> Iterator[FakeOpenAI]:
    with FakeOpenAI(api_key=OPENAI_KEY) as fake:
        fake.word_embeddings = True
        yield fake


def start_semantic(gateway: GatewayFactory, providers: dict[str, Any], embedder: FakeOpenAI,
                   **sections: Any) -> GatewayServer:
    embedder.reset()
    models = {
        "gpt": {**MODELS["gpt"], "cache": {"semantic": True}},
        "embed": {"targets": [{"provider": "emb", "model": "text-embedding-3-small"}]},
    }
    emb = {"type": "openai", "api_key": OPENAI_KEY, "base_url": embedder.base_url}
    # The keys may use "gpt" only: the gateway's own embedding call is not theirs.
    keys = [{**k, "models": ["gpt"]} for k in KEYS]
    cache = {"semantic": {"embedding_model": "embed", "threshold": 0.9}, **sections.pop("cache", {})}
    return gateway(providers={**providers, "emb": emb}, models=models, keys=keys, teams=TEAMS,
                   cache=cache, **sections)


@pytest.fixture
def semantic_gw(gateway: GatewayFactory, providers: dict[str, Any],
                embedder: FakeOpenAI) -> GatewayServer:
    return start_semantic(gateway, providers, embedder)


def test_a_near_duplicate_prompt_is_a_semantic_hit(semantic_gw: GatewayServer, fake_openai: FakeOpenAI,
                                                    embedder: FakeOpenAI) -> None:
    fake_openai.enqueue(Reply(text="Paris"), Reply(text="Bake it hot"))
    assert ask(semantic_gw, text="Tell me the capital city of France please") == ("miss", "Paris")
    assert ask(semantic_gw, text="Tell me the capital city of France") == ("hit", "Paris")
    assert ask(semantic_gw, text="How do I bake sourdough bread at home") == ("miss", "Bake it hot")
    assert len(fake_openai.requests) == 2
    assert len(embedder.requests) == 3
    # Another tenant's near-duplicate is not answered from the research team's prompts.
    assert ask(semantic_gw, KEY_C, text="Tell me the capital city of France")[0] == "miss"


def test_the_semantic_cache_is_only_used_where_safe(semantic_gw: GatewayServer, fake_openai: FakeOpenAI,
                                                     embedder: FakeOpenAI) -> None:
    ask(semantic_gw, text="Tell me the capital city of France please", temperature=0.9)
    assert len(embedder.requests) == 0  # a sampled answer: exact matches only
    assert ask(semantic_gw, text="Tell me the capital city of France", temperature=0.9)[0] == "miss"
    assert ask(semantic_gw, text="Tell me the capital city of France please", temperature=0.9)[0] == "hit"


def test_a_failing_embedding_model_leaves_the_exact_cache(semantic_gw: GatewayServer,
                                                          fake_openai: FakeOpenAI,
                                                          embedder: FakeOpenAI) -> None:
    embedder.enqueue(Fail(400, "no"), Fail(400, "no"))
    assert ask(semantic_gw)[0] == "miss"
    assert ask(semantic_gw)[0] == "hit"  # the exact key needs no embedding
    assert len(fake_openai.requests) == 1



async def test_an_embedding_model_that_cannot_embed_refuses_to_start(
        providers: dict[str, Any]) -> None:
    models = {"gpt": {**MODELS["gpt"], "cache": {"semantic": True}}, "claude": MODELS["claude"]}
    app = create_app(make_config({"providers": providers, "models": models,
                                  "cache": {"semantic": {"embedding_model": "claude"}}}))
    with pytest.raises(StartRefused, match=r"cache.semantic.embedding_model: .*embeddings"):
        await app.startup()
    await app.shutdown()


def test_the_semantic_cache_in_redis(gateway: GatewayFactory, providers: dict[str, Any],
                                     embedder: FakeOpenAI, fake_openai: FakeOpenAI,
                                     redis_cache: dict[str, Any]) -> None:
    gw = start_semantic(gateway, providers, embedder, redis=redis_cache["redis"],
                        cache=redis_cache["cache"])
    fake_openai.enqueue(Reply(text="Paris"))
    assert ask(gw, text="Tell me the capital city of France please") == ("miss", "Paris")
    client = redis.Redis.from_url(redis_cache["redis"])
    prefix = redis_cache["cache"]["key_prefix"]
    wait_for(lambda: list(client.scan_iter(f"{prefix}v:*")), 2, "the prompt's vector in Redis")
    client.close()
    assert ask(gw, text="Tell me the capital city of France") == ("hit", "Paris")
    assert len(fake_openai.requests) == 1


def test_a_redacted_request_is_cached_redacted_and_a_hit_is_restored_with_its_own_values(
        gateway: GatewayFactory, fake_openai: FakeOpenAI) -> None:
    # The PII guard runs before the cache: the cache keys and keeps what the upstream saw
    # (placeholders), and a hit's placeholders are put back with the asking request's values.
    key = "lg-cache-pii-key-0123456789"
    gw = gateway(models=MODELS, keys=[{"name": "pii", "key": key, "privacy": {"pii": {"mode": "redact"}}}])
    fake_openai.enqueue(Reply(text="I wrote to <EMAIL_1>."), Reply(text="Streamed to <EMAIL_1>."))
    client = oai(gw, key)

    def ask(email: str) -> str:
        answer = client.chat.completions.create(
            model="gpt", messages=[{"role": "user", "content": f"write to {email}"}])
        return answer.choices[0].message.content or ""

    def ask_streamed(email: str) -> str:
        stream = client.chat.completions.create(
            model="gpt", stream=True, messages=[{"role": "user", "content": f"write to {email}"}])
        return "".join(c.choices[0].delta.content or "" for c in stream if c.choices)

    assert ask("alice@example.com") == "I wrote to alice@example.com."
    assert ask("bob@example.org") == "I wrote to bob@example.org."  # a hit: the same redacted request
    assert ask_streamed("carol@example.net") == "Streamed to carol@example.net."
    assert ask_streamed("dave@example.com") == "Streamed to dave@example.com."  # a hit, as a stream
    assert len(fake_openai.requests) == 2
    assert all(b"@example" not in r.raw for r in fake_openai.requests)
    cache = gw.app.cache
    assert cache is not None and isinstance(cache.store, MemoryCache)
    kept = b"".join(value for _, value in cache.store._entries.values())
    assert b"<EMAIL_1>" in kept and b"@example" not in kept
