"""Step 4: which deployments may serve the model the client named, and in what order.

Plans are built once from the config; per request the router only looks a name up, checks the
caller's allow-list and orders the deployments (``routing.strategies``).
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

from lockgate import pricing
from lockgate.config import Config, ModelConfig, Target, no_provider_hint
from lockgate.errors import InvalidRequest, ModelNotAllowed, ModelNotFound
from lockgate.pipeline.auth import Principal
from lockgate.pipeline.limits import OwnerLimits
from lockgate.pricing import UnitPrice
from lockgate.providers.base import Provider, safe_in_path
from lockgate.routing.strategies import attempt_order


@dataclass(frozen=True, slots=True)
class Deployment:
    provider: Provider
    model: str  # the upstream model id
    weight: float = 1.0
    price: UnitPrice | None = None
    quota: OwnerLimits | None = None  # the upstream account's rpm / tpm for this deployment

    @property
    def route(self) -> str:
        """``<provider name>/<upstream model id>``, as ``x-lockgate-route`` says it."""
        return f"{self.provider.name}/{self.model}"


@dataclass(frozen=True, slots=True)
class ModelPlan:
    name: str
    deployments: tuple[Deployment, ...]
    strategy: str = "weighted"
    retries: int = 2
    timeout_s: float | None = None
    fallbacks: tuple[str, ...] = ()

    def timeout_for(self, deployment: Deployment) -> float:
        return self.timeout_s if self.timeout_s is not None else deployment.provider.timeout_s


class Router:
    def __init__(self, config: Config, providers: Mapping[str, Provider], seed: int | None = None) -> None:
        self._plans = {name: _plan(name, m, providers) for name, m in config.models.items()}
        self._providers = providers
        self._direct = config.zero_config
        self._rng = random.Random(seed)

    @property
    def model_names(self) -> list[str]:
        return list(self._plans)

    def plan(self, model: str, principal: Principal) -> ModelPlan:
        plan = self._plans.get(model) or self._direct_plan(model)
        if plan is None:
            raise ModelNotFound(self._not_found(model))
        if not principal.may_use(model):
            raise ModelNotAllowed(f"this key may not use the model {model!r}")
        return _allowed_fallbacks(plan, principal)

    def fallbacks(self, plan: ModelPlan) -> list[ModelPlan]:
        return [self._plans[name] for name in plan.fallbacks]

    def order(self, plan: ModelPlan) -> Sequence[Deployment]:
        return attempt_order(plan.deployments, plan.strategy, self._rng)

    def _not_found(self, model: str) -> str:
        """A zero-config gateway's 404 says what it can serve, or how to give it a provider."""
        message = f"the model {model!r} does not exist"
        if not self._direct:
            return message
        if not self._providers:
            return f"{message}; {no_provider_hint()}"
        served = ", ".join([*self._plans, *(f"{name}/<model id>" for name in self._providers)])
        return f"{message}; this gateway serves {served}"

    def _direct_plan(self, model: str) -> ModelPlan | None:
        """Zero-config gateways route ``<provider>/<model id>`` straight to that provider."""
        if not self._direct or "/" not in model:
            return None
        provider_name, _, upstream = model.partition("/")
        provider = self._providers.get(provider_name)
        if provider is None or not upstream:
            return None
        if provider.model_in_path and not safe_in_path(upstream):
            raise InvalidRequest(
                f"model: {model!r} cannot be routed: provider {provider_name!r} puts the model id "
                "in its URL path, where it may not contain '..', '/', '?', '#', '%', spaces or "
                "control characters")
        price = pricing.lookup(provider.type_name, upstream)
        return ModelPlan(name=model, deployments=(Deployment(provider, upstream, price=price),))


def _allowed_fallbacks(plan: ModelPlan, principal: Principal) -> ModelPlan:
    """The plan with only the fallback models the key and its team may use (§5): a fallback
    is another model, and the allow-list holds for every model tried, not only the one asked
    for. The plan is copied only when something is dropped (the usual case costs nothing)."""
    allowed = tuple(name for name in plan.fallbacks if principal.may_use(name))
    return plan if len(allowed) == len(plan.fallbacks) else replace(plan, fallbacks=allowed)


def _plan(name: str, model: ModelConfig, providers: Mapping[str, Provider]) -> ModelPlan:
    deployments = tuple(
        Deployment(providers[t.provider], t.model or name, t.weight,
                   _price(model, providers[t.provider], t.model or name), _quota(t, name))
        for t in model.targets)
    return ModelPlan(name=name, deployments=deployments, strategy=model.strategy,
                     retries=model.retries, timeout_s=model.timeout_s, fallbacks=model.fallbacks)


def _price(model: ModelConfig, provider: Provider, upstream: str) -> UnitPrice | None:
    if model.price is not None:
        p = model.price
        return pricing.from_config(p.input_per_mtok_usd, p.output_per_mtok_usd,
                                   p.cached_input_per_mtok_usd, p.per_1k_requests_usd)
    return pricing.lookup(provider.type_name, upstream)


def _quota(target: Target, model_name: str) -> OwnerLimits | None:
    if target.rpm is None and target.tpm is None:
        return None
    route = f"{target.provider}/{target.model or model_name}"
    return OwnerLimits(owner=f"target:{route}", rpm=target.rpm, tpm=target.tpm, name=route)
