"""``pipeline.route``: which deployments serve the model a client named, in what order, with
which fallbacks, as pure calls on ``Router``; and, through a zero-config gateway, that a model
id that would change the upstream URL path (where the provider puts the id in it) is refused
before any call."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any, TypeVar

import httpx2 as httpx
import pytest

from conftest import GatewayFactory
from gateway import GatewayServer, make_config
from lockgate.errors import InvalidRequest, ModelNotAllowed, ModelNotFound
from lockgate.pipeline.auth import ANONYMOUS, Principal
from lockgate.pipeline.limits import OwnerLimits
from lockgate.pipeline.route import ModelPlan, Router, Subject
from lockgate.pricing import UnitPrice
from lockgate.providers.base import Provider
from lockgate.providers.registry import provider_class
from lockgate.routing.strategies import WeightedRandom

HI = [{"role": "user", "content": "Hi"}]
W = TypeVar("W")


@pytest.fixture
def direct(gateway: GatewayFactory) -> GatewayServer:
    return gateway(zero_config=True)


def chat(gw: GatewayServer, model: str) -> httpx.Response:
    return httpx.post(gw.openai_base_url + "/chat/completions", json={"model": model, "messages": HI})


@pytest.mark.parametrize("upstream", [
    "../../v1beta/cachedContents?x", "..%2F..%2Fv1beta%2FcachedContents", "gemini-2.0-flash?key=x",
    "gemini-2.0-flash#x", "tunedModels/x", "gemini 2", "gemini\tx", "..", "a\\..\\b",
])
def test_a_model_id_that_would_change_the_upstream_path_is_refused(
        direct: GatewayServer, fake_gemini: Any, upstream: str) -> None:
    response = chat(direct, f"gem/{upstream}")
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["code"] == "invalid_request"
    assert repr(f"gem/{upstream}") in error["message"]
    assert fake_gemini.requests == []


def test_a_plain_model_id_reaches_a_path_provider(direct: GatewayServer, fake_gemini: Any) -> None:
    assert chat(direct, "gem/gemini-2.0-flash").status_code == 200
    [request] = fake_gemini.requests
    assert request.path.endswith("/models/gemini-2.0-flash:generateContent")


def test_a_body_provider_takes_any_model_id(direct: GatewayServer, fake_openai: Any) -> None:
    assert chat(direct, "oai/org/model?v=1").status_code == 200
    assert fake_openai.requests[0].json["model"] == "org/model?v=1"


# --- the router, called directly ----------------------------------------------------------

PROVIDERS: dict[str, dict[str, Any]] = {
    "oai": {"type": "openai", "api_key": "sk-test-0123456789", "timeout_s": 30},
    "backup": {"type": "openai", "api_key": "sk-test-9876543210", "base_url": "http://backup.test/v1"},
    "gem": {"type": "gemini", "api_key": "AIza-test-0123456789"},
}

MODELS: dict[str, dict[str, Any]] = {
    "chat": {"targets": [{"provider": "oai", "model": "gpt-4o-mini", "weight": 3},
                         {"provider": "backup", "model": "gpt-4o-mini", "rpm": 60, "tpm": 10_000}],
             "retries": 1, "timeout_s": 12, "fallbacks": ["big", "gemini-2.0-flash"]},
    "big": {"targets": [{"provider": "oai", "model": "gpt-4o"}, {"provider": "backup", "model": "gpt-4o"}],
            "strategy": "ordered", "price": {"input_per_mtok_usd": 1, "output_per_mtok_usd": 2}},
    "gemini-2.0-flash": {"targets": [{"provider": "gem"}]},  # no model: the name is the id
}


def router(*, zero_config: bool = False, seed: int | None = 1, **sections: Any) -> Router:
    raw: dict[str, Any] = {"providers": PROVIDERS, "models": MODELS, **sections}
    if zero_config:
        raw = {"providers": raw["providers"], "zero_config": True}
    config = make_config(raw)
    return Router(config, providers_of(config.providers), seed=seed)


def providers_of(settings: dict[str, Any]) -> dict[str, Provider]:
    out: dict[str, Provider] = {}
    for name, provider in settings.items():
        cls = provider_class(provider.type)
        assert cls is not None
        out[name] = cls(name, provider, None)  # type: ignore[arg-type]  # never calls out
    return out


ANYONE = Subject(ANONYMOUS)


def key(*models: str, team: tuple[str, ...] | None = None) -> Subject:
    return Subject(Principal(key_id="static/k", name="k", models=frozenset(models),
                             team_models=None if team is None else frozenset(team)))


def routes(plan: ModelPlan) -> list[str]:
    return [d.route for d in plan.deployments]


def test_a_plan_holds_the_configured_targets_and_settings() -> None:
    plan = router().plan("chat", ANYONE)
    assert routes(plan) == ["oai/gpt-4o-mini", "backup/gpt-4o-mini"]
    assert [d.weight for d in plan.deployments] == [3, 1]
    assert isinstance(plan.strategy, WeightedRandom)
    assert (plan.retries, plan.fallbacks) == (1, ("big", "gemini-2.0-flash"))


def test_a_target_without_a_model_calls_the_upstream_by_the_models_name() -> None:
    assert routes(router().plan("gemini-2.0-flash", ANYONE)) == ["gem/gemini-2.0-flash"]


def test_the_models_timeout_overrides_the_providers() -> None:
    chat, big = router().plan("chat", ANYONE), router().plan("big", ANYONE)
    assert chat.timeout_for(chat.deployments[0]) == 12
    assert big.timeout_for(big.deployments[0]) == 30  # the oai provider's own timeout_s


def test_a_configured_price_overrides_the_catalogue() -> None:
    [oai, _] = router().plan("big", ANYONE).deployments
    assert oai.price == UnitPrice(input=1.0, output=2.0)
    [mini, _] = router().plan("chat", ANYONE).deployments
    assert mini.price is not None and mini.price.input > 0  # gpt-4o-mini from the catalogue


def test_a_target_with_an_account_quota_carries_it() -> None:
    first, second = router().plan("chat", ANYONE).deployments
    assert first.quota is None
    assert second.quota == OwnerLimits(owner="target:backup/gpt-4o-mini", rpm=60, tpm=10_000,
                                       name="backup/gpt-4o-mini")


def test_an_unknown_model_is_not_found_without_a_list_of_what_exists() -> None:
    with pytest.raises(ModelNotFound) as caught:
        router().plan("gpt-5", ANYONE)
    assert caught.value.message == "the model 'gpt-5' does not exist"


def test_a_provider_prefix_routes_nothing_unless_the_gateway_is_zero_config() -> None:
    with pytest.raises(ModelNotFound):
        router().plan("oai/gpt-4o", ANYONE)


def test_a_key_may_not_plan_a_model_outside_its_list_or_its_teams() -> None:
    with pytest.raises(ModelNotAllowed, match="'big'"):
        router().plan("big", key("chat"))
    with pytest.raises(ModelNotAllowed):
        router().plan("chat", key("chat", "big", team=("big",)))
    assert router().plan("chat", key("chat", team=("chat", "big"))).name == "chat"


def test_fallbacks_are_only_the_models_the_key_may_use() -> None:
    assert router().plan("chat", key("chat", "gemini-2.0-flash")).fallbacks == ("gemini-2.0-flash",)
    assert router().plan("chat", key("chat", "big", "gemini-2.0-flash", team=("chat", "big"))
                         ).fallbacks == ("big",)
    assert router().plan("chat", key("chat")).fallbacks == ()


def test_fallback_plans_come_in_the_configured_order() -> None:
    gateway_router = router()
    fallbacks = gateway_router.fallbacks(gateway_router.plan("chat", ANYONE))
    assert [plan.name for plan in fallbacks] == ["big", "gemini-2.0-flash"]
    assert routes(fallbacks[0]) == ["oai/gpt-4o", "backup/gpt-4o"]


def test_an_ordered_model_is_always_tried_in_the_configured_order() -> None:
    gateway_router = router(seed=None)
    plan = gateway_router.plan("big", ANYONE)
    assert {tuple(d.route for d in gateway_router.order(plan)) for _ in range(50)} == {
        ("oai/gpt-4o", "backup/gpt-4o")}


def test_a_weighted_model_tries_every_deployment_first_sometimes_by_weight() -> None:
    gateway_router = router(seed=7)
    plan = gateway_router.plan("chat", ANYONE)
    orders = [tuple(d.route for d in gateway_router.order(plan)) for _ in range(2000)]
    assert set(orders) == {("oai/gpt-4o-mini", "backup/gpt-4o-mini"),
                           ("backup/gpt-4o-mini", "oai/gpt-4o-mini")}
    first_oai = sum(order[0] == "oai/gpt-4o-mini" for order in orders) / len(orders)
    assert 0.70 < first_oai < 0.80  # weights 3 : 1


def test_the_same_seed_routes_the_same_way() -> None:
    plans = [(r, r.plan("chat", ANYONE)) for r in (router(seed=3), router(seed=3))]
    first, second = ([tuple(d.route for d in r.order(p)) for _ in range(20)] for r, p in plans)
    assert first == second


def test_zero_config_routes_provider_slash_model_straight_to_the_provider() -> None:
    plan = router(zero_config=True).plan("oai/gpt-4o-2024-08-06", ANYONE)
    assert (plan.name, routes(plan)) == ("oai/gpt-4o-2024-08-06", ["oai/gpt-4o-2024-08-06"])
    assert plan.deployments[0].price is not None  # priced as its base model
    [body_provider] = router(zero_config=True).plan("oai/org/model?v=1", ANYONE).deployments
    assert body_provider.model == "org/model?v=1"  # the id goes in the body: any id will do


@pytest.mark.parametrize("model", ["nobody/gpt-4o", "oai/", "gpt-4o"])
def test_zero_config_names_what_it_serves_when_a_model_is_not_found(model: str) -> None:
    with pytest.raises(ModelNotFound) as caught:
        router(zero_config=True).plan(model, ANYONE)
    assert caught.value.message == (f"the model {model!r} does not exist; "
                                    "this gateway serves backup/<model id>, gem/<model id>, oai/<model id>")


@pytest.mark.parametrize("upstream", ["../x", "gemini?key=1", "a b", "a%2Fb", "a#b"])
def test_zero_config_refuses_an_id_that_would_change_a_path_providers_url(upstream: str) -> None:
    with pytest.raises(InvalidRequest, match="cannot be routed"):
        router(zero_config=True).plan(f"gem/{upstream}", ANYONE)


def test_zero_config_checks_the_allow_list_too() -> None:
    with pytest.raises(ModelNotAllowed):
        router(zero_config=True).plan("oai/gpt-4o", key("oai/gpt-4o-mini"))


class Sticky:
    """A strategy that keys on who is asking, as sticky experiments will."""

    def __init__(self) -> None:
        self.asked: list[object] = []

    def order(self, targets: Sequence[W], subject: object) -> Sequence[W]:
        self.asked.append(subject)
        user = subject.user if isinstance(subject, Subject) else None
        return list(reversed(targets)) if user == "bob" else targets


def test_the_strategy_is_told_who_is_asking() -> None:
    gateway_router = router()
    sticky = Sticky()
    plan = replace(gateway_router.plan("big", ANYONE), strategy=sticky)
    alice, bob = Subject(ANONYMOUS, "alice"), Subject(ANONYMOUS, "bob")
    assert [d.route for d in gateway_router.order(plan, alice)] == ["oai/gpt-4o", "backup/gpt-4o"]
    assert [d.route for d in gateway_router.order(plan, bob)] == ["backup/gpt-4o", "oai/gpt-4o"]
    assert sticky.asked == [alice, bob]


def test_a_plan_for_embeddings_keeps_only_the_deployments_that_embed() -> None:
    models = {"mixed": {"targets": [{"provider": "claude", "model": "claude-haiku-4-5"},
                                    {"provider": "gem", "model": "gemini-embedding-001"}],
                        "fallbacks": ["talker", "big"]},
              "talker": {"targets": [{"provider": "claude", "model": "claude-haiku-4-5"}]},
              "big": MODELS["big"]}
    providers = {**PROVIDERS, "claude": {"type": "anthropic", "api_key": "sk-ant-test-0123456789"}}
    config = make_config({"providers": providers, "models": models})
    gateway_router = Router(config, providers_of(config.providers), seed=1)
    chat = gateway_router.plan("mixed", ANYONE)
    embed = gateway_router.plan("mixed", ANYONE, "embed")
    assert routes(chat) == ["claude/claude-haiku-4-5", "gem/gemini-embedding-001"]
    assert routes(embed) == ["gem/gemini-embedding-001"]
    assert gateway_router.plan("mixed", ANYONE, "embed") is embed  # built once, then looked up
    # A fallback that cannot embed is passed over for embeddings, kept for chat.
    assert [p.name for p in gateway_router.fallbacks(embed)] == ["big"]
    assert [p.name for p in gateway_router.fallbacks(chat)] == ["talker", "big"]
    with pytest.raises(InvalidRequest, match="'talker' cannot serve embeddings"):
        gateway_router.plan("talker", ANYONE, "embed")


# --- versions (§7) -----------------------------------------------------------------------------

VERSIONED: dict[str, dict[str, Any]] = {
    "summarizer": {"versions": {"v1": {"targets": [{"provider": "oai", "model": "gpt-4o-mini"}]},
                                "v2": {"targets": [{"provider": "gem", "model": "gemini-2.0-flash"}],
                                       "retries": 0, "fallbacks": ["summarizer@v1"]}},
                   "default_version": "v2"},
    "big": MODELS["big"],
}


def test_a_version_is_planned_by_name_at_version_and_the_name_is_its_default() -> None:
    versioned = router(models=VERSIONED)
    pinned = versioned.plan("summarizer@v1", ANYONE)
    assert (pinned.name, pinned.version, routes(pinned)) == ("summarizer", "v1", ["oai/gpt-4o-mini"])
    assert [d.version for d in pinned.deployments] == ["v1"]
    default = versioned.plan("summarizer", ANYONE)
    assert (default.version, default.retries, routes(default)) == ("v2", 0, ["gem/gemini-2.0-flash"])
    assert [p.version for p in versioned.fallbacks(default)] == ["v1"]
    assert sorted(versioned.model_names) == ["big", "summarizer"]
    assert versioned.versions("summarizer") == (("v1", "v2"), "v2")
    assert versioned.versions("big") == ((), None)


def test_an_unknown_version_is_not_found() -> None:
    with pytest.raises(ModelNotFound) as caught:
        router(models=VERSIONED).plan("summarizer@v3", ANYONE)
    assert caught.value.message == "the model 'summarizer' has no version 'v3'"


def test_a_version_is_allowed_with_its_model() -> None:
    assert router(models=VERSIONED).plan("summarizer@v1", key("summarizer")).version == "v1"
    with pytest.raises(ModelNotAllowed, match="'summarizer'"):
        router(models=VERSIONED).plan("summarizer@v1", key("big"))
