"""Raw YAML -> validated, frozen ``Config``. The only reader of the config file and of the
environment variables it names.

Validation happens once, at load: unknown keys, wrong types, dangling references (a target's
provider, a fallback model, a key's team) are all reported together, each with its YAML path and
line, so that ``lockgate check`` can print every problem at once. The hot path only ever sees the
frozen objects built here.
"""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import UnionType
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    ValidatorFunctionWrapHandler,
    WrapValidator,
    field_validator,
    model_validator,
)

from lockgate.privacy.detect import BUILT_IN, PRESIDIO
from lockgate.providers.base import ProviderSettings
from lockgate.providers.registry import load_failure, provider_class, provider_types
from lockgate.sealing import is_encryption_key

# --- schema ----------------------------------------------------------------------------------


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)


class ServerConfig(_Strict):
    master_key: str | None = None
    max_body_bytes: int = Field(default=10 * 1024 * 1024, gt=0)
    drain_s: float = Field(default=20.0, ge=0)
    # Origins allowed to call the client endpoints from a browser; empty: no CORS headers.
    cors_origins: tuple[str, ...] = ()
    expose_route_header: bool = True
    metrics_auth: bool = False  # GET /metrics needs the master key
    per_worker_limits: bool = False
    # Where usage records wait, on local disk, while storage cannot be reached.
    spill_dir: str = "lockgate-spill"
    max_header_bytes: int = Field(default=64 * 1024, gt=0)  # all request headers; larger -> 431
    # A request's headers must arrive whole within this (slow-loris); then 408, connection closed.
    header_timeout_s: float = Field(default=10.0, gt=0)
    max_response_bytes: int = Field(default=64 * 1024 * 1024, gt=0)  # a non-streamed answer -> 502
    stream_idle_timeout_s: float = Field(default=60.0, gt=0)  # most time between two stream events
    max_event_bytes: int = Field(default=1024 * 1024, gt=0)  # one upstream SSE event
    # How long a stored Responses answer (``store``, default true) is kept for its key.
    responses_ttl_s: float = Field(default=86400.0, gt=0)
    # 32 random bytes, url-safe base64 (a Fernet key): encrypts what is stored (AES-256-GCM).
    encryption_key: str | None = None
    # Requests in flight per worker beyond which a client request is refused at once with 503
    # and retry-after (load shedding), before its body is read; 0: no cap.
    max_in_flight: int = Field(default=1024, ge=0)

    @field_validator("cors_origins")
    @classmethod
    def _origins(cls, origins: tuple[str, ...]) -> tuple[str, ...]:
        # A browser sends "https://app.example.com": with a path or a trailing slash the entry
        # would never match, and the page would fail with nothing in the config looking wrong.
        for origin in origins:
            if origin != "*" and not _ORIGIN.fullmatch(origin):
                raise ValueError(f"{origin!r} is not an origin: write scheme://host[:port], "
                                 "without a path or a trailing slash, or *")
        return origins

    @field_validator("encryption_key")
    @classmethod
    def _encryption_key(cls, key: str | None) -> str | None:
        if key is not None and not is_encryption_key(key):
            # The value is a secret: the message never repeats it.
            raise ValueError("must be 32 random bytes in url-safe base64 (44 characters), e.g. "
                             "the output of: python -c \"import base64, os; "
                             "print(base64.urlsafe_b64encode(os.urandom(32)).decode())\"")
        return key

    @field_validator("metrics_auth")
    @classmethod
    def _metrics_auth(cls, value: bool, info: ValidationInfo) -> bool:
        if value and not info.data.get("master_key"):
            raise ValueError("needs server.master_key: /metrics would be closed to everyone")
        return value


_ORIGIN = re.compile(r"[a-z][a-z0-9+.-]*://[^/\s?#]+")
_HTTP_URL = re.compile(r"https?://[^/\s?#]+(/[^\s?#]*)?")


class TelemetryConfig(_Strict):
    access_log: bool = True  # one line per request
    json_logs: bool = False  # the access log and server log as JSON lines
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    # OTLP/HTTP base URL (spans go to <base>/v1/traces); unset: no tracing, nothing of
    # OpenTelemetry imported.
    otlp_endpoint: str | None = None
    service_name: str = Field(default="lockgate", min_length=1)  # the traces' service.name
    # The share of new traces recorded; a client's traceparent decides for its own requests.
    trace_sample_ratio: float = Field(default=1.0, ge=0.0, le=1.0)

    @field_validator("otlp_endpoint")
    @classmethod
    def _otlp_endpoint(cls, url: str | None) -> str | None:
        if url is not None and not _HTTP_URL.fullmatch(url):
            raise ValueError(f"{url!r} is not an http(s) URL (the OTLP/HTTP base, e.g. "
                             "http://collector:4318)")
        return url.rstrip("/") if url is not None else None


PIIMode = Literal["off", "detect", "redact", "block"]
PII_KINDS = BUILT_IN
PRESIDIO_KINDS = PRESIDIO  # found by Microsoft Presidio (the [presidio] extra)


def _pii_kinds(kinds: tuple[str, ...] | None) -> tuple[str, ...] | None:
    if kinds is None:
        return None
    for kind in kinds:
        if kind not in (*PII_KINDS, *PRESIDIO_KINDS):
            raise ValueError(f"unknown entity {kind!r}{did_you_mean(kind, PII_KINDS)} (known: "
                             f"{', '.join((*PII_KINDS, *PRESIDIO_KINDS))})")
    presidio = [k for k in kinds if k in PRESIDIO_KINDS]
    if presidio and not presidio_installed():
        raise ValueError(f"{', '.join(presidio)} need Microsoft Presidio: install lockgate with "
                         "the [presidio] extra (pip install 'lockgate[presidio]') and a spaCy "
                         "English model (python -m spacy download en_core_web_lg)")
    return tuple(dict.fromkeys(kinds))


def presidio_installed() -> bool:
    import importlib.util

    return importlib.util.find_spec("presidio_analyzer") is not None


class PIIOverride(_Strict):
    """A key's or team's changes to the PII policy: each field it sets, the rest inherited."""

    mode: PIIMode | None = None
    entities: tuple[str, ...] | None = None
    restore: bool | None = None

    _entities = field_validator("entities")(_pii_kinds)


class PrivacyOverride(_Strict):
    """A key's or team's ``privacy``: any field of the defaults, field by field (§10)."""

    pii: PIIOverride | None = None
    log_bodies: bool | None = None
    retention_days: int | None = Field(default=None, gt=0)


class PIIConfig(_Strict):
    mode: PIIMode = "off"
    entities: tuple[str, ...] = PII_KINDS
    restore: bool = True  # placeholders in the answer are put back (redact mode)

    _entities = field_validator("entities")(_pii_kinds)


class PrivacyConfig(_Strict):
    """``privacy``: the defaults every key and team inherit, and what only the gateway sets."""

    pii: PIIConfig = Field(default_factory=PIIConfig)
    log_bodies: bool = False  # metadata only by default
    retention_days: int | None = Field(default=30, gt=0)  # None: records are kept for ever
    # How often the retention purge runs (on each worker; deleting is idempotent).
    purge_interval_s: float = Field(default=3600.0, gt=0)
    # What is kept of each body (request, answer) where log_bodies is on; the rest is cut.
    max_body_bytes: int = Field(default=32 * 1024, gt=0)


class LimitsConfig(_Strict):
    # What to do while Redis (the shared counters) cannot be reached: serve without counting
    # (fail_open, the default: availability first) or refuse with 503 (fail_closed).
    redis_failure: Literal["fail_open", "fail_closed"] = "fail_open"


# A provider entry is validated against its own type's settings model (``settings_model`` on the
# provider class), which extends ``ProviderSettings``: the keys every provider takes.


def _provider_settings(raw: Any, common: ValidatorFunctionWrapHandler) -> ProviderSettings:
    """One ``providers`` entry, validated against the settings model of its ``type``.

    A key that another provider type takes (or an in-process one) is reported as one problem at
    the entry, naming the type, once the entry's other keys are valid: "region" on an OpenAI
    provider is a key in the wrong place, not a typo. Keys no provider takes are the model's
    own "unknown key" errors, at their own path."""
    if not isinstance(raw, dict) or not isinstance(raw.get("type"), str):
        # No type to go by: the common keys are checked and the type reported, while keys that
        # some type takes wait until the type is known.
        checked: ProviderSettings = common(
            {k: v for k, v in raw.items() if k not in _typed_keys()} if isinstance(raw, dict) else raw)
        return checked
    type_name = raw["type"].strip()
    cls = provider_class(type_name)
    model = cls.settings_model if cls is not None else ProviderSettings
    misplaced = sorted((set(raw) - set(model.model_fields)) & _typed_keys())
    settings = model.model_validate({k: v for k, v in raw.items() if k not in misplaced})
    if cls is None:
        raise ValueError(_unknown_type(type_name))
    if misplaced:
        raise ValueError(f"provider type {type_name!r} does not take: {', '.join(misplaced)}")
    return settings


def _unknown_type(type_name: str) -> str:
    failure = load_failure(type_name)
    if failure:
        return f"provider type {type_name!r} is installed but failed to load: {failure}"
    known = ", ".join(sorted(provider_types()))
    return f"unknown provider type {type_name!r}{did_you_mean(type_name, provider_types())} (known: {known})"


def _typed_keys() -> frozenset[str]:
    """Every key that some provider type takes beyond the common ones."""
    declared = (cls.settings_model.model_fields for cls in provider_types().values())
    return frozenset().union(*declared) - ProviderSettings.model_fields.keys()


class Target(_Strict):
    provider: str
    model: str | None = None  # None: the model name the client asked for
    weight: float = Field(default=1.0, gt=0)
    # The provider account's own quota for this deployment: the router keeps under it, and
    # routes around the deployment while it is full.
    rpm: int | None = Field(default=None, gt=0)
    tpm: int | None = Field(default=None, gt=0)


class Price(_Strict):
    input_per_mtok_usd: float | None = Field(default=None, ge=0)
    output_per_mtok_usd: float | None = Field(default=None, ge=0)
    cached_input_per_mtok_usd: float | None = Field(default=None, ge=0)
    per_1k_requests_usd: float | None = Field(default=None, ge=0)


class HealthConfig(_Strict):
    """Passive outlier detection per deployment (``routing.health``): a deployment that fails
    ``consecutive_failures`` times in a row, or more than ``max_error_rate`` of its answers
    within ``window_s`` (once it had ``min_requests`` there), is passed over for ``cooldown_s``,
    then given one trial request. An answer slower than ``slow_ms`` counts as a failure."""

    consecutive_failures: int = Field(default=3, ge=0)  # 0: off
    cooldown_s: float = Field(default=30.0, gt=0)
    max_error_rate: float | None = Field(default=None, gt=0, le=1)  # None: not judged by rate
    window_s: float = Field(default=60.0, gt=0)
    min_requests: int = Field(default=20, ge=1)
    slow_ms: float | None = Field(default=None, gt=0)

    @property
    def enabled(self) -> bool:
        return self.consecutive_failures > 0 or self.max_error_rate is not None


Strategy = Literal["weighted", "ordered", "least-latency", "least-cost"]


class VersionConfig(_Strict):
    """How one version of a model is served (§7); a model without versions is served so too."""

    targets: tuple[Target, ...]
    strategy: Strategy = "weighted"
    fallbacks: tuple[str, ...] = ()
    retries: int = Field(default=2, ge=0, le=10)
    timeout_s: float | None = Field(default=None, gt=0)
    price: Price | None = None
    health: HealthConfig = HealthConfig()
    # > 0: a second attempt on another deployment once the first has not answered in this
    # long; the first complete answer (a stream's first event) wins, the other is cancelled.
    hedge_after_ms: float = Field(default=0, ge=0)

    # Not Field(min_length=1): pydantic would also report "at least 1 item" for a list whose only
    # item has a typo, beside the typo itself. An after-validator runs only on valid items.
    @field_validator("targets")
    @classmethod
    def _some_targets(cls, targets: tuple[Target, ...]) -> tuple[Target, ...]:
        if not targets:
            raise ValueError("a model needs at least one target")
        return targets

    @model_validator(mode="after")
    def _hedge_needs_two(self) -> VersionConfig:
        if self.hedge_after_ms > 0 and len(self.targets) < 2:
            raise ValueError("hedge_after_ms needs at least two targets: a hedge goes to another "
                             "deployment")
        return self


class ModelCacheConfig(_Strict):
    """A model's own cache settings (``cache: {ttl_s: 600, semantic: true}``)."""

    ttl_s: float | None = Field(default=None, gt=0)  # None: the top-level ``cache.ttl_s``
    semantic: bool = False  # also answer near-duplicates (needs ``cache.semantic``)


class ModelConfig(VersionConfig):
    """A model: served by its own ``targets``, or by ``versions`` (clients pin one with
    ``name@version``; ``name`` alone is the ``default_version``)."""

    targets: tuple[Target, ...] = ()
    # Opt-in to the answer cache (§9): ``true``, or settings of its own; for every version.
    # None: not cached.
    cache: ModelCacheConfig | None = None
    versions: dict[str, VersionConfig] = Field(default_factory=dict)
    default_version: str | None = None

    @field_validator("cache", mode="before")
    @classmethod
    def _cache_flag(cls, value: Any) -> Any:
        # ``cache: true`` is the default settings; a mapping is checked as a ModelCacheConfig.
        return {} if value is True else None if value is False else value

    @field_validator("versions")
    @classmethod
    def _version_names(cls, versions: dict[str, VersionConfig]) -> dict[str, VersionConfig]:
        for name in versions:
            if not name or not _VERSION_NAME.fullmatch(name):
                raise ValueError(f"version {name!r}: letters, digits, '.', '_' and '-' only")
        return versions

    @model_validator(mode="after")
    def _targets_or_versions(self) -> ModelConfig:
        if self.versions and self.targets:
            raise ValueError("a model has either targets or versions (each with its own targets)")
        per_version = sorted(self.model_fields_set & (set(VersionConfig.model_fields) - {"targets"}))
        if self.versions and per_version:
            raise ValueError(f"a model with versions sets {', '.join(per_version)} in each version")
        if not self.versions:
            if not self.targets:
                raise ValueError("a model needs targets, or versions")
            if self.default_version is not None:
                raise ValueError("default_version is for a model with versions")
        elif self.default_version is None and len(self.versions) > 1:
            raise ValueError(f"default_version is required: which of {', '.join(self.versions)} "
                             "serves a request that names no version?")
        elif self.default_version is not None and self.default_version not in self.versions:
            raise ValueError(f"default_version {self.default_version!r} is not one of the versions "
                             f"({', '.join(self.versions)})")
        return self

    @property
    def default(self) -> str | None:
        """The version a request for the bare name gets (None: a model without versions)."""
        return self.default_version or next(iter(self.versions), None)


_VERSION_NAME = re.compile(r"[A-Za-z0-9._-]+")


BudgetPeriod = Literal["total", "daily", "monthly"]


class SemanticCacheConfig(_Strict):
    """Near-duplicate prompts answered from the cache (§9): the prompt's embedding, by a model
    of this config that serves embeddings, against those of cached answers."""

    embedding_model: str = Field(min_length=1)
    threshold: float = Field(default=0.95, gt=0, le=1)  # least cosine similarity for a hit
    # A request whose temperature is above this is cached exactly only: a sampled answer is one
    # of many, and a near-duplicate prompt should not pin it.
    max_temperature: float = Field(default=0.1, ge=0)
    # Most vectors kept per tenant and request shape (searched in-process, newest first kept).
    max_vectors: int = Field(default=1000, gt=0, le=100_000)


class CacheConfig(_Strict):
    backend: Literal["memory", "redis"] = "memory"  # redis: needs the top-level ``redis``
    ttl_s: float = Field(default=3600, gt=0)
    max_entries: int = Field(default=10_000, gt=0)  # memory backend: least recently used go first
    key_prefix: str = Field(default="lockgate:cache:", min_length=1)  # redis backend
    semantic: SemanticCacheConfig | None = None


class _Limits(_Strict):
    models: tuple[str, ...] | None = None
    rpm: int | None = Field(default=None, gt=0)
    tpm: int | None = Field(default=None, gt=0)
    max_parallel: int | None = Field(default=None, gt=0)
    budget_usd: float | None = Field(default=None, ge=0)
    budget_period: BudgetPeriod = "total"

    def has_limits(self) -> bool:
        return any(v is not None for v in (self.rpm, self.tpm, self.max_parallel, self.budget_usd))


class TeamConfig(_Limits):
    name: str
    privacy: PrivacyOverride | None = None


class KeyConfig(_Limits):
    name: str
    key: str = Field(min_length=8)
    team: str | None = None
    privacy: PrivacyOverride | None = None


class VariantConfig(_Strict):
    """One arm of an experiment: a model ref (``name`` or ``name@version``) and its share."""

    use: str
    weight: float = Field(default=1.0, ge=0)


class RollbackConfig(_Strict):
    """When a candidate is stopped by itself: once each variant has ``min_requests`` and the
    candidate breaks a threshold with confidence (its confidence sequence is past it)."""

    max_error_rate: float | None = Field(default=None, gt=0, lt=1)
    max_p95_latency_ratio: float | None = Field(default=None, gt=0)  # candidate p95 / control p95
    min_requests: int = Field(default=200, ge=1)

    @model_validator(mode="after")
    def _some_threshold(self) -> RollbackConfig:
        if self.max_error_rate is None and self.max_p95_latency_ratio is None:
            raise ValueError("rollback needs max_error_rate or max_p95_latency_ratio")
        return self


class ExperimentConfig(_Strict):
    """A split of one model's traffic (§8). One variant is the control (the one named
    ``control``, else the first): the others are compared with it, and a rollback sends
    their traffic back to it."""

    model: str
    variants: dict[str, VariantConfig]
    sticky: Literal["user", "key", "none"] = "user"
    shadow: tuple[str, ...] = ()  # model refs that get a copy; answers recorded, never returned
    rollback: RollbackConfig | None = None
    # The error rate of every verdict and rollback: the chance, over the whole experiment
    # however often it is looked at, that a confidence sequence misses its true value.
    alpha: float = Field(default=0.05, gt=0, lt=0.5)
    shadow_max_parallel: int = Field(default=8, gt=0)  # shadow calls in flight; more are dropped

    @field_validator("variants")
    @classmethod
    def _variants(cls, variants: dict[str, VariantConfig]) -> dict[str, VariantConfig]:
        for name in variants:
            if not _VERSION_NAME.fullmatch(name) or len(name) > 48:
                raise ValueError(f"variant {name!r}: letters, digits, '.', '_' and '-' only "
                                 "(at most 48)")
        if len(variants) < 2:
            raise ValueError("an experiment needs at least two variants: a control (the one "
                             "named control, else the first) and a candidate")
        if not any(v.weight > 0 for v in variants.values()):
            raise ValueError("at least one variant needs a weight above 0")
        return variants

    @property
    def control(self) -> str:
        return "control" if "control" in self.variants else next(iter(self.variants))

    @property
    def candidates(self) -> list[str]:
        return [name for name in self.variants if name != self.control]


class Config(_Strict):
    server: ServerConfig = Field(default_factory=ServerConfig)
    storage: str = "sqlite:///lockgate.db"
    redis: str | None = None
    limits: LimitsConfig = Field(default_factory=LimitsConfig)
    telemetry: TelemetryConfig = Field(default_factory=TelemetryConfig)
    cache: CacheConfig = Field(default_factory=CacheConfig)  # used by models that opt in
    providers: dict[str, Annotated[ProviderSettings, WrapValidator(_provider_settings)]] = Field(
        default_factory=dict)
    models: dict[str, ModelConfig] = Field(default_factory=dict)
    teams: tuple[TeamConfig, ...] = ()
    keys: tuple[KeyConfig, ...] = ()
    experiments: dict[str, ExperimentConfig] = Field(default_factory=dict)
    privacy: PrivacyConfig = Field(default_factory=PrivacyConfig)
    # Set for a config built from the environment alone: ``provider/model`` names route directly.
    zero_config: bool = False

    def has_limits(self) -> bool:
        return any(x.has_limits() for x in (*self.teams, *self.keys))

    @model_validator(mode="after")
    def _bodies_need_a_key(self) -> Config:
        """Stored bodies are encrypted at rest, always: logging them needs the key to do it."""
        if self.server.encryption_key is not None:
            return self
        owners: list[tuple[str, PrivacyOverride | None]] = [
            *((f"teams.{i}.privacy", t.privacy) for i, t in enumerate(self.teams)),
            *((f"keys.{i}.privacy", k.privacy) for i, k in enumerate(self.keys))]
        where = ["privacy"] if self.privacy.log_bodies else []
        where += [path for path, o in owners if o is not None and o.log_bodies]
        if where:
            raise ValueError(f"log_bodies is on ({', '.join(where)}) but server.encryption_key is "
                             "not set: stored bodies are always encrypted at rest")
        return self


def _dangling_references(raw: Mapping[str, Any]) -> Iterator[tuple[str, str]]:
    """(path, problem) for each name that points nowhere. Reads the raw (substituted) data, not a
    ``Config``, so that it runs beside schema validation even when that fails: ``check`` then
    reports references and schema problems in one round. Parts of the wrong shape are skipped
    (the schema reports them)."""
    providers, models = _mapping(raw.get("providers")), _mapping(raw.get("models"))
    teams, keys = _entries(raw.get("teams")), _entries(raw.get("keys"))
    for name, model in models.items():
        served = [(f"models.{name}", _mapping(model))]
        served += [(f"models.{name}.versions.{v}", _mapping(version))
                   for v, version in _mapping(_mapping(model).get("versions")).items()]
        for path, part in served:
            yield from _dangling_in(path, name, part, providers, models)
    for kind, owners in (("keys", keys), ("teams", teams)):
        for i, owner in owners:
            for model_name in _names(owner.get("models")):
                if model_name not in models and raw.get("zero_config") is not True:
                    yield f"{kind}.{i}.models", _no(f"model named {model_name!r}", model_name, models)
    yield from _dangling_in_experiments(_mapping(raw.get("experiments")), models)
    yield from _cache_references(raw, models)
    team_names = [n for _, t in teams if (n := _name(t.get("name"))) is not None]
    seen: set[str] = set()
    for i, key in keys:
        team = _name(key.get("team"))
        if team is not None and team not in team_names:
            yield f"keys.{i}.team", _no(f"team named {team!r}", team, team_names)
        secret = _name(key.get("key"))
        if secret and secret in seen:
            yield f"keys.{i}.key", "the same secret is given to two keys"
        seen.add(secret or "")


def _cache_references(raw: Mapping[str, Any], models: dict[str, Any]) -> Iterator[tuple[str, str]]:
    """The cache's embedding model must exist; a model's semantic cache needs one; a Redis
    cache needs Redis."""
    cache = _mapping(raw.get("cache"))
    semantic = _mapping(cache.get("semantic"))
    embedder = _name(semantic.get("embedding_model"))
    if embedder and embedder not in models:
        yield "cache.semantic.embedding_model", _no(f"model named {embedder!r}", embedder, models)
    if cache.get("backend") == "redis" and not raw.get("redis"):
        yield "cache.backend", "the redis backend needs the top-level 'redis' URL"
    for name, model in models.items():
        wanted = _mapping(_mapping(model).get("cache")).get("semantic") is True
        if wanted and not semantic:
            yield (f"models.{name}.cache.semantic",
                   "a semantic cache needs 'cache.semantic' (its embedding_model) at the top level")


def _dangling_in(path: str, name: str, served: dict[str, Any], providers: dict[str, Any],
                 models: dict[str, Any]) -> Iterator[tuple[str, str]]:
    """The dangling references of one model or version: its targets' providers, its fallbacks
    (another model, or ``model@version``)."""
    for i, target in _entries(served.get("targets")):
        provider = _name(target.get("provider"))
        if provider is not None and provider not in providers:
            yield f"{path}.targets.{i}.provider", _no(f"provider named {provider!r}", provider, providers)
    for fallback in _names(served.get("fallbacks")):
        base, _, version = fallback.partition("@")
        top = path == f"models.{name}"
        if (top and base == name) or (not top and fallback == f"{name}@{path.rpartition('.')[2]}"):
            yield f"{path}.fallbacks", "a model cannot fall back to itself"
        elif base not in models:
            yield f"{path}.fallbacks", _no(f"model named {base!r}", base, models)
        elif version and version not in _mapping(_mapping(models[base]).get("versions")):
            yield f"{path}.fallbacks", f"the model {base!r} has no version {version!r}"


def _dangling_in_experiments(experiments: dict[str, Any],
                              models: dict[str, Any]) -> Iterator[tuple[str, str]]:
    """Each experiment splits a configured model (one experiment per model), and every
    variant and shadow names a model, or a version of one, that exists."""
    split: dict[str, str] = {}
    for name, experiment in experiments.items():
        path, experiment = f"experiments.{name}", _mapping(experiment)
        model = _name(experiment.get("model"))
        if model is not None and model not in models:
            yield f"{path}.model", _no(f"model named {model!r}", model, models)
        elif model is not None and model in split:
            yield f"{path}.model", f"the model {model!r} is already split by {split[model]!r}"
        elif model is not None:
            split[model] = name
        for variant, arm in _mapping(experiment.get("variants")).items():
            ref = _name(_mapping(arm).get("use"))
            problem = _bad_ref(ref, models) if ref is not None else None
            if problem:
                yield f"{path}.variants.{variant}.use", problem
        for i, ref in enumerate(_names(experiment.get("shadow"))):
            problem = _bad_ref(ref, models)
            if problem:
                yield f"{path}.shadow.{i}", problem


def _bad_ref(ref: str, models: dict[str, Any]) -> str | None:
    """What is wrong with a model ref (``name`` or ``name@version``), or None."""
    base, _, version = ref.partition("@")
    if base not in models:
        return _no(f"model named {base!r}", base, models)
    if version and version not in _mapping(_mapping(models[base]).get("versions")):
        return f"the model {base!r} has no version {version!r}"
    return None


def _no(what: str, name: str, names: Iterable[str]) -> str:
    return f"no {what}{did_you_mean(name, names)}"


def _mapping(value: Any) -> dict[str, Any]:
    return {str(k): v for k, v in value.items()} if isinstance(value, dict) else {}


def _entries(value: Any) -> list[tuple[int, dict[str, Any]]]:
    """The mappings of a list, with their indices (other items are the schema's to report)."""
    items = value if isinstance(value, list) else []
    return [(i, _mapping(item)) for i, item in enumerate(items) if isinstance(item, dict)]


def _name(value: Any) -> str | None:
    return value.strip() if isinstance(value, str) else None  # stripped, as the schema does


def _names(value: Any) -> list[str]:
    items = value if isinstance(value, list) else []
    return [n for item in items if (n := _name(item)) is not None]


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """`` (did you mean 'x'?)`` for the nearest of ``choices`` to a misspelt ``word``, or ``""``."""
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _keys_at(loc: tuple[str, ...]) -> Iterable[str]:
    """The keys the schema accepts in the mapping at ``loc``, for "did you mean" on an unknown
    key: walks the models' annotations (dict values, tuple items, optional fields)."""
    shape: Any = Config
    for part in loc:
        if isinstance(shape, type) and issubclass(shape, BaseModel):
            field = shape.model_fields.get(part)
            shape = None if field is None else _unwrap(field.annotation)
        elif get_origin(shape) in (dict, tuple):
            shape = _unwrap(get_args(shape)[-1 if get_origin(shape) is dict else 0])
        else:
            return ()
    if shape is ProviderSettings:  # the entry's own model is known only with its data
        return {*ProviderSettings.model_fields, *_typed_keys()}
    if isinstance(shape, type) and issubclass(shape, BaseModel):
        return shape.model_fields
    return ()


def _unwrap(annotation: Any) -> Any:
    """``X | None`` -> ``X``; ``Annotated[X, ...]`` -> ``X``."""
    if get_origin(annotation) is Annotated:
        return get_args(annotation)[0]
    if get_origin(annotation) in (Union, UnionType):
        args = [a for a in get_args(annotation) if a is not type(None)]
        return args[0] if len(args) == 1 else annotation
    return annotation


# --- loading ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ConfigProblem:
    path: str
    message: str
    line: int | None = None

    def __str__(self) -> str:
        where = f"{self.path} (line {self.line})" if self.line else self.path
        return f"{where}: {self.message}" if self.path else self.message


class ConfigError(Exception):
    def __init__(self, problems: list[ConfigProblem]) -> None:
        super().__init__("\n".join(str(p) for p in problems))
        self.problems = problems


_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def load_config(path: str | Path | None, env: Mapping[str, str] | None = None, *,
                sections: frozenset[str] | None = None) -> Config:
    """Reads, substitutes and validates. ``path`` None: the built-in defaults for ``env``.

    ``sections``: the top-level sections the caller uses; an unset variable elsewhere is then no
    error (its ``${NAME}`` text stays), so that ``lockgate keys`` runs with only the storage's
    variables set, not every provider's secret. None: every section is used."""
    env = os.environ if env is None else env
    if path is None:
        return default_config(env)
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise ConfigError([ConfigProblem("", f"cannot read {path}: {exc.strerror}")]) from None
    config = parse_config(text, env, sections=sections)
    # A relative SQLite file belongs beside the config, whatever folder the command runs in.
    storage = sqlite_beside(config.storage, Path(path).parent)
    return config if storage == config.storage else config.model_copy(update={"storage": storage})


_RELATIVE_SQLITE = re.compile(r"^(sqlite(?:\+\w+)?:///)([^/?][^?]*)(\?.*)?$")


def sqlite_beside(url: str, folder: Path) -> str:
    """``sqlite:///x.db`` as ``sqlite:////<folder>/x.db``; other URLs (absolute, in memory,
    another database) as they are."""
    match = _RELATIVE_SQLITE.match(url)
    if match is None or match.group(2) == ":memory:":
        return url
    return f"{match.group(1)}{os.path.abspath(folder / match.group(2))}{match.group(3) or ''}"


def parse_config(text: str, env: Mapping[str, str], *, sections: frozenset[str] | None = None) -> Config:
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        message = f"not valid YAML: {exc}{_yaml_hint(text, line)}"
        raise ConfigError([ConfigProblem("", message, line)]) from None
    lines = _line_numbers(node)
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError([ConfigProblem("", "the config must be a mapping at the top level", 1)])
    unset: list[ConfigProblem] = []
    raw = _substitute(raw, env, (), unset, lines)
    return _validate(raw, lines, unset, sections)


def _yaml_hint(text: str, line: int | None) -> str:
    """The commonest way to break YAML here: ``{key: ${VAR}}`` reads ``{`` as a nested mapping."""
    where = text.splitlines()[line - 1] if line and line <= len(text.splitlines()) else ""
    if "${" in where and ("{" in where.split("${")[0] or "[" in where.split("${")[0]):
        return "\n(inside { } or [ ], quote a value that holds ${...}: key: \"${NAME}\")"
    return ""


def _validate(raw: dict[str, Any], lines: dict[tuple[str, ...], int],
              unset: list[ConfigProblem] | None = None, sections: frozenset[str] | None = None) -> Config:
    """Schema and references in one round, beside the ``unset`` variables already found: every
    problem at once, each reported where it starts. A problem inside a value already reported
    (the schema's complaint about an unset variable's text, a reference of the wrong type) is
    left out: it would only repeat the first."""
    found = list(unset or ())
    config: Config | None = None
    try:
        config = Config.model_validate(raw)
    except ValidationError as exc:
        found.extend(p for p in _problems(exc, lines) if not _inside(p, found))
    references = [ConfigProblem(path, what, lines.get(tuple(path.split("."))))
                  for path, what in _dangling_references(raw)]
    found.extend(p for p in references if not _inside(p, found))
    ignored = [p for p in unset or () if sections is not None and p.path.split(".")[0] not in sections]
    if config is not None and len(found) == len(ignored):
        return config
    # In file order, so that `check` reads top to bottom and `serve` names the first one.
    raise ConfigError(sorted(found, key=lambda p: p.line or 0))


def _inside(problem: ConfigProblem, reported: list[ConfigProblem]) -> bool:
    parts = problem.path.split(".")
    return any(r.path and parts[:len(r.path.split("."))] == r.path.split(".") for r in reported)


def _problems(exc: ValidationError, lines: dict[tuple[str, ...], int]) -> Iterator[ConfigProblem]:
    for error in exc.errors():
        loc = tuple(str(part) for part in error["loc"])
        message = error["msg"].removeprefix("Value error, ")
        if error["type"] == "extra_forbidden":
            message = f"unknown key{did_you_mean(loc[-1], _keys_at(loc[:-1]))}"
        yield ConfigProblem(".".join(loc), message, _nearest_line(loc, lines))


def _nearest_line(loc: tuple[str, ...], lines: dict[tuple[str, ...], int]) -> int | None:
    while loc:
        if loc in lines:
            return lines[loc]
        loc = loc[:-1]
    return None


def line_numbers(text: str) -> dict[tuple[str, ...], int]:
    """The line each YAML path of a (readable) config text starts on."""
    return _line_numbers(yaml.compose(text, Loader=yaml.SafeLoader))


def _line_numbers(node: yaml.Node | None, path: tuple[str, ...] = ()) -> dict[tuple[str, ...], int]:
    """Maps each YAML path to the line it starts on, for error messages."""
    found: dict[tuple[str, ...], int] = {}
    if node is None:
        return found
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            child = (*path, str(key_node.value))
            found[child] = key_node.start_mark.line + 1
            found.update(_line_numbers(value_node, child))
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            child = (*path, str(i))
            found[child] = item.start_mark.line + 1
            found.update(_line_numbers(item, child))
    return found


def _substitute(
    value: Any,
    env: Mapping[str, str],
    path: tuple[str, ...],
    problems: list[ConfigProblem],
    lines: dict[tuple[str, ...], int],
) -> Any:
    if isinstance(value, str):
        return _substitute_string(value, env, path, problems, lines)
    if isinstance(value, dict):
        return {k: _substitute(v, env, (*path, str(k)), problems, lines) for k, v in value.items()}
    if isinstance(value, list):
        return [_substitute(v, env, (*path, str(i)), problems, lines) for i, v in enumerate(value)]
    return value


def _substitute_string(
    text: str,
    env: Mapping[str, str],
    path: tuple[str, ...],
    problems: list[ConfigProblem],
    lines: dict[tuple[str, ...], int],
) -> str:
    def replace(match: re.Match[str]) -> str:
        name, default = match.group(1), match.group(2)
        # As in the shell and Compose, ``:-`` also replaces a variable that is set but empty.
        if env.get(name) or (name in env and default is None):
            return env[name]
        if default is not None:
            return default
        problems.append(
            ConfigProblem(".".join(path), f"environment variable {name} is not set", lines.get(path))
        )
        return match.group(0)  # kept as written: a caller that does not need it may go on

    return _VAR.sub(replace, text)


def default_config(env: Mapping[str, str]) -> Config:
    """No config file: an open gateway on loopback, with one model per provider whose standard
    API-key variable is set (its ``default_model``), and ``provider/model`` for any other.

    The SDKs' base-URL variables (``OPENAI_BASE_URL``, ``ANTHROPIC_BASE_URL``) move the
    provider's root, as they do for the SDK; one set alone enables the provider too, for a
    local server that wants no key."""
    providers: dict[str, Any] = {}
    models: dict[str, Any] = {}
    for type_name, cls in sorted(provider_types().items()):
        key = env.get(cls.api_key_env) if cls.api_key_env else None
        url_variable = cls.base_url_variable()
        base_url = env.get(url_variable) if url_variable else None
        if not key and not base_url:
            continue
        providers[type_name] = {"type": type_name, "api_key": key or None, "base_url": base_url or None}
        if cls.default_model:
            models[cls.default_model] = {"targets": [{"provider": type_name}]}
    return _validate({"providers": providers, "models": models, "zero_config": True}, {})


def no_provider_hint() -> str:
    """How to give a zero-config gateway a provider: what a client is told instead of a bare
    404, and what the start-up log says."""
    names = sorted({cls.api_key_env for cls in provider_types().values() if cls.api_key_env})
    urls = sorted({v for cls in provider_types().values() if (v := cls.base_url_variable())})
    return (f"no provider is configured: set one of {', '.join(names)} (or {' / '.join(urls)} "
            "for a server that needs no key) before 'lockgate serve', or give it a config file "
            "with providers and models (--config, $LOCKGATE_CONFIG or ./lockgate.yaml)")


def find_config_path(explicit: str | None, env: Mapping[str, str]) -> str | None:
    """``--config``, else ``$LOCKGATE_CONFIG``, else ``./lockgate.yaml`` if present."""
    if explicit:
        return explicit
    if env.get("LOCKGATE_CONFIG"):
        return env["LOCKGATE_CONFIG"]
    return "lockgate.yaml" if Path("lockgate.yaml").is_file() else None
