"""Step 4: which deployments may serve the model the client named, and in what order.

Plans are built once from the config, one per model and operation (only the deployments able
to serve it: ``Provider.capabilities``), with the model's strategy and optional steps chosen
then. Per request the router only looks a name up, checks the caller's allow-list and asks the
strategy for an order, telling it who is asking (``Subject``: key, team, end user), which is
what sticky experiments and versions key on.
"""

from __future__ import annotations

import contextlib
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Protocol

from lockgate import pricing
from lockgate.config import (
    Config,
    ExperimentConfig,
    ModelConfig,
    Target,
    VersionConfig,
    no_provider_hint,
)
from lockgate.errors import InvalidRequest, ModelNotAllowed, ModelNotFound
from lockgate.pipeline.auth import Principal
from lockgate.pipeline.limits import OwnerLimits
from lockgate.pricing import UnitPrice
from lockgate.providers.base import Provider, safe_in_path
from lockgate.routing.health import DeploymentHealth, HealthBoard
from lockgate.routing.strategies import Ordered, Strategy, strategy

if TYPE_CHECKING:
    from lockgate.pipeline.experiment import ExperimentSplit
    from lockgate.pipeline.steps import Step, StepFactory


@dataclass(frozen=True, slots=True)
class Deployment:
    provider: Provider
    model: str  # the upstream model id
    weight: float = 1.0
    price: UnitPrice | None = None
    quota: OwnerLimits | None = None  # the upstream account's rpm / tpm for this deployment
    version: str | None = None  # the model version this deployment serves, where it has versions
    # Its health as the model's policy judges it (``routing.health``); None: not watched.
    health: DeploymentHealth | None = field(default=None, compare=False)

    @property
    def route(self) -> str:
        """``<provider name>/<upstream model id>``, as ``x-lockgate-route`` says it."""
        return f"{self.provider.name}/{self.model}"


@dataclass(frozen=True, slots=True)
class Subject:
    """Who a request is for: the key (and its team) and the end user it names."""

    principal: Principal
    user: str | None = None

    @property
    def key_id(self) -> str | None:
        return self.principal.key_id

    @property
    def team_id(self) -> str | None:
        return self.principal.team_id


_IN_ORDER = Ordered()


@dataclass(frozen=True, slots=True)
class ModelPlan:
    name: str
    deployments: tuple[Deployment, ...]
    strategy: Strategy = _IN_ORDER
    retries: int = 2
    timeout_s: float | None = None
    fallbacks: tuple[str, ...] = ()
    version: str | None = None  # the version every deployment of this plan serves
    steps: tuple[Step, ...] = ()  # the model's optional steps (``pipeline.steps``)
    # The capability every deployment of this plan has: a plan built from the config says
    # "chat" where all its deployments chat (the usual case, served as it is), else "".
    needs: str = "chat"
    variant: str | None = None  # the experiment variant this plan serves
    split: ExperimentSplit | None = None  # the experiment that picks a variant's plan instead
    hedge_after_s: float = 0.0  # > 0: a second deployment is tried after this long (``Caller``)

    def timeout_for(self, deployment: Deployment) -> float:
        return self.timeout_s if self.timeout_s is not None else deployment.provider.timeout_s


class ShadowSteps(Protocol):
    """Builds an experiment's shadow step (``experiments.shadow``), or None without shadows."""

    def for_experiment(self, name: str, experiment: ExperimentConfig) -> Step | None: ...


class Router:
    def __init__(self, config: Config, providers: Mapping[str, Provider], seed: int | None = None,
                 steps: Sequence[StepFactory] = (), shadows: ShadowSteps | None = None,
                 health: HealthBoard | None = None) -> None:
        self._rng = random.Random(seed)
        self.health = health if health is not None else HealthBoard()
        self._plans: dict[str, ModelPlan] = {}
        for name, m in config.models.items():
            self._plans.update(_plans(name, m, providers, self._rng, steps, self.health))
        self.splits: dict[str, ExperimentSplit] = {}
        for name, experiment in config.experiments.items():
            self._split(name, experiment, shadows)
        self._versions = {name: (tuple(m.versions), m.default) for name, m in config.models.items()}
        self._providers = providers
        self._direct = config.zero_config
        # The steps of a model the config does not name (zero-config ``provider/model``).
        self._direct_steps = tuple(s for s in (f.for_model("", None) for f in steps)
                                   if s is not None) if self._direct else ()
        # The plans for operations that not every deployment offers, built on first use.
        self._able: dict[tuple[str, str | None, str | None, str], ModelPlan] = {}

    @property
    def model_names(self) -> list[str]:
        return list(self._versions)

    def versions(self, model: str) -> tuple[tuple[str, ...], str | None]:
        """A model's versions and its default version (``()``, None: it has none)."""
        return self._versions.get(model, ((), None))

    def plan(self, model: str, subject: Subject, needs: str = "chat") -> ModelPlan:
        """The plan for serving ``model`` to ``subject``, with only the deployments that can do
        what the operation ``needs``; raises before anything is reserved where none can."""
        plan = self._plans.get(model) or self._direct_plan(model)
        if plan is None:
            raise ModelNotFound(self._not_found(model))
        if plan.split is not None:  # an experiment: the variant's plan, for this subject
            plan = plan.split.pick(subject)
        principal = subject.principal
        if not principal.may_use(plan.name):  # a version is allowed with its model
            raise ModelNotAllowed(f"this key may not use the model {plan.name!r}")
        if needs != plan.needs:
            plan = self._able_plan(plan, needs)
        return _allowed_fallbacks(plan, principal)

    def fallbacks(self, plan: ModelPlan) -> list[ModelPlan]:
        """The plans of the model's fallback models, for the same operation; a fallback with
        no deployment able to serve it is passed over."""
        able = []
        for fallback in (self._plans[name] for name in plan.fallbacks):
            if fallback.needs == plan.needs:
                able.append(fallback)
                continue
            with contextlib.suppress(InvalidRequest):
                able.append(self._able_plan(fallback, plan.needs))
        return able

    def order(self, plan: ModelPlan, subject: Subject | None = None,
              trial: bool = False) -> Sequence[Deployment]:
        """The strategy's order, with deployments that are cooling down moved last (all of
        them cooling: still tried, soonest to recover first); see ``routing.health``.
        ``trial``: the caller reports each attempt's outcome, so a half-open deployment may
        have its one trial request here."""
        return self.health.arrange(plan.strategy.order(plan.deployments, subject), trial)

    def plan_of(self, ref: str) -> ModelPlan | None:
        """The plan of a model ref (``name`` or ``name@version``) as the config names it,
        without an experiment's split: a variant's or a shadow's target."""
        plan = self._plans.get(ref)
        if plan is not None and plan.split is not None:
            return plan.split.default
        return plan

    def _split(self, name: str, experiment: ExperimentConfig, shadows: ShadowSteps | None) -> None:
        """Gives the experiment's model a plan that picks a variant's plan per request. A
        variant's plan is the plan of the model ref it uses, named as the client asked (so the
        key's allow-list and the answer's ``model`` are the experiment model's), with the
        experiment's shadow step, if it has shadows."""
        from lockgate.pipeline.experiment import ExperimentSplit

        default = self._plans[experiment.model]
        shadow = shadows.for_experiment(name, experiment) if shadows is not None else None
        plans = {}
        for variant, arm in experiment.variants.items():
            used = self.plan_of(arm.use)
            assert used is not None  # the config was checked
            steps = (*used.steps, shadow) if shadow is not None else used.steps
            plans[variant] = replace(used, name=experiment.model, variant=variant, steps=steps)
        split = ExperimentSplit(name, experiment, plans, default)
        self._plans[experiment.model] = replace(default, split=split)
        self.splits[name] = split

    def _able_plan(self, plan: ModelPlan, needs: str) -> ModelPlan:
        key = (plan.name, plan.version, plan.variant, needs)
        able = self._able.get(key)
        if able is None:
            deployments = tuple(d for d in plan.deployments if needs in d.provider.capabilities)
            if not deployments:
                types = ", ".join(sorted({d.provider.type_name for d in plan.deployments}))
                raise InvalidRequest(f"the model {plan.name!r} cannot serve {_OPERATIONS[needs]}: "
                                     f"its provider type ({types}) does not offer them")
            able = replace(plan, deployments=deployments, needs=needs)
            if plan.name in self._plans:  # zero-config plans are built per request: not kept
                self._able[key] = able
        return able

    def _not_found(self, model: str) -> str:
        """A zero-config gateway's 404 says what it can serve, or how to give it a provider."""
        message = f"the model {model!r} does not exist"
        base, _, version = model.rpartition("@")
        if base in self._versions and version:
            return f"the model {base!r} has no version {version!r}"
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
        return ModelPlan(name=model, deployments=(Deployment(provider, upstream, price=price),),
                         steps=self._direct_steps)


_OPERATIONS = {"predict": "predictions", "embed": "embeddings", "count_tokens": "token counts",
               "stream": "streams", "relay": "relayed requests", "chat": "chat requests"}


def _allowed_fallbacks(plan: ModelPlan, principal: Principal) -> ModelPlan:
    """The plan with only the fallback models the key and its team may use (§5): a fallback
    is another model, and the allow-list holds for every model tried, not only the one asked
    for. The plan is copied only when something is dropped (the usual case costs nothing)."""
    allowed = tuple(name for name in plan.fallbacks if principal.may_use(name))
    return plan if len(allowed) == len(plan.fallbacks) else replace(plan, fallbacks=allowed)


def _plans(name: str, model: ModelConfig, providers: Mapping[str, Provider], rng: random.Random,
           factories: Sequence[StepFactory], board: HealthBoard) -> dict[str, ModelPlan]:
    """A model's plans by the names a client may ask for: ``name``, and for a model with
    versions ``name@version`` for each, ``name`` being its default version's plan."""
    steps = tuple(s for s in (f.for_model(name, model) for f in factories) if s is not None)
    if not model.versions:
        return {name: _plan(name, model, None, providers, rng, steps, board)}
    plans = {f"{name}@{v}": _plan(name, served, v, providers, rng, steps, board)
             for v, served in model.versions.items()}
    plans[name] = plans[f"{name}@{model.default}"]
    return plans


def _plan(name: str, model: VersionConfig, version: str | None, providers: Mapping[str, Provider],
          rng: random.Random, steps: tuple[Step, ...], board: HealthBoard) -> ModelPlan:
    deployments = tuple(
        Deployment(providers[t.provider], t.model or name, t.weight,
                   _price(model, providers[t.provider], t.model or name), _quota(t, name), version,
                   _health(model, f"{t.provider}/{t.model or name}", board))
        for t in model.targets)
    chat = all("chat" in d.provider.capabilities for d in deployments)
    return ModelPlan(name=name, deployments=deployments, strategy=strategy(model.strategy, rng),
                     retries=model.retries, timeout_s=model.timeout_s, fallbacks=model.fallbacks,
                     version=version, steps=steps, needs="chat" if chat else "",
                     hedge_after_s=model.hedge_after_ms / 1000.0)


def _health(model: VersionConfig, route: str, board: HealthBoard) -> DeploymentHealth | None:
    """Watched unless the policy is off, or nothing would use the figures: health decides
    nothing for a model with one deployment, unless it is ordered by latency."""
    watched = model.health.enabled and len(model.targets) > 1
    if not watched and model.strategy != "least-latency":
        return None
    return board.watch(route, model.health, timed=model.strategy == "least-latency")


def _price(model: VersionConfig, provider: Provider, upstream: str) -> UnitPrice | None:
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
