"""Raw YAML -> validated, frozen ``Config``. The only reader of the config file and of the
environment variables it names.

Validation happens once, at load: unknown keys, wrong types, dangling references (a target's
provider, a fallback model, a key's team) are all reported together, each with its YAML path and
line, so that ``lockgate check`` can print every problem at once. The hot path only ever sees the
frozen objects built here.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from lockgate.providers.registry import load_failure, provider_class, provider_types

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
    # Comes with GET /metrics (observability): until then a config error, never ignored.
    metrics_auth: bool = False
    per_worker_limits: bool = False
    # Where usage records wait, on local disk, while storage cannot be reached.
    spill_dir: str = "lockgate-spill"
    max_header_bytes: int = Field(default=64 * 1024, gt=0)  # all request headers; larger -> 431
    max_response_bytes: int = Field(default=64 * 1024 * 1024, gt=0)  # a non-streamed answer -> 502
    stream_idle_timeout_s: float = Field(default=60.0, gt=0)  # most time between two stream events
    max_event_bytes: int = Field(default=1024 * 1024, gt=0)  # one upstream SSE event

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

    @field_validator("metrics_auth")
    @classmethod
    def _metrics_not_built(cls, value: bool) -> bool:
        if value:
            raise ValueError("not available yet: it comes with the /metrics endpoint")
        return value


_ORIGIN = re.compile(r"[a-z][a-z0-9+.-]*://[^/\s?#]+")


class TelemetryConfig(_Strict):
    access_log: bool = True  # one line per request
    json_logs: bool = False  # the access log and server log as JSON lines
    log_level: Literal["debug", "info", "warning", "error"] = "info"


# Keys every network provider accepts, beside the type-specific ones each class declares.
COMMON_PROVIDER_KEYS = frozenset({"type", "api_key", "base_url", "headers", "timeout_s"})


class LimitsConfig(_Strict):
    # What to do while Redis (the shared counters) cannot be reached: serve without counting
    # (fail_open, the default: availability first) or refuse with 503 (fail_closed).
    redis_failure: Literal["fail_open", "fail_closed"] = "fail_open"


class ProviderConfig(_Strict):
    type: str
    api_key: str | None = None
    base_url: str | None = None
    headers: dict[str, str] = Field(default_factory=dict)
    timeout_s: float = Field(default=60.0, gt=0)
    # Type-specific keys (§2); each provider class lists the ones it takes in settings_keys.
    api_version: str | None = None
    region: str | None = None
    aws_access_key_id: str | None = None
    aws_secret_access_key: str | None = None
    aws_session_token: str | None = None
    project: str | None = None
    location: str | None = None
    credentials_file: str | None = None
    path: str | None = None
    threads: int | None = Field(default=None, gt=0)

    @model_validator(mode="after")
    def _known_type_and_keys(self) -> ProviderConfig:
        cls = provider_class(self.type)
        if cls is None:
            failure = load_failure(self.type)
            if failure:
                raise ValueError(f"provider type {self.type!r} is installed but failed to load: {failure}")
            known = ", ".join(sorted(provider_types()))
            raise ValueError(f"unknown provider type {self.type!r} (known: {known})")
        extra = sorted(self.model_fields_set - COMMON_PROVIDER_KEYS - cls.settings_keys)
        if extra:
            raise ValueError(f"provider type {self.type!r} does not take: {', '.join(extra)}")
        return self


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


class ModelConfig(_Strict):
    targets: tuple[Target, ...]
    strategy: Literal["weighted", "ordered"] = "weighted"
    fallbacks: tuple[str, ...] = ()
    retries: int = Field(default=2, ge=0, le=10)
    timeout_s: float | None = Field(default=None, gt=0)
    price: Price | None = None

    # Not Field(min_length=1): pydantic would also report "at least 1 item" for a list whose only
    # item has a typo, beside the typo itself. An after-validator runs only on valid items.
    @field_validator("targets")
    @classmethod
    def _some_targets(cls, targets: tuple[Target, ...]) -> tuple[Target, ...]:
        if not targets:
            raise ValueError("a model needs at least one target")
        return targets


BudgetPeriod = Literal["total", "daily", "monthly"]


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


class KeyConfig(_Limits):
    name: str
    key: str = Field(min_length=8)
    team: str | None = None


class Config(_Strict):
    server: ServerConfig = Field(default_factory=ServerConfig)
    storage: str = "sqlite:///lockgate.db"
    redis: str | None = None
    limits: LimitsConfig = Field(default_factory=LimitsConfig)
    telemetry: TelemetryConfig = Field(default_factory=TelemetryConfig)
    providers: dict[str, ProviderConfig] = Field(default_factory=dict)
    models: dict[str, ModelConfig] = Field(default_factory=dict)
    teams: tuple[TeamConfig, ...] = ()
    keys: tuple[KeyConfig, ...] = ()
    # Set for a config built from the environment alone: ``provider/model`` names route directly.
    zero_config: bool = False

    @model_validator(mode="after")
    def _references(self) -> Config:
        problems = list(_dangling_references(self))
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def has_limits(self) -> bool:
        return any(x.has_limits() for x in (*self.teams, *self.keys))


def _dangling_references(config: Config) -> Iterator[str]:
    team_names = {t.name for t in config.teams}
    for name, model in config.models.items():
        for i, target in enumerate(model.targets):
            if target.provider not in config.providers:
                yield f"models.{name}.targets.{i}.provider: no provider named {target.provider!r}"
        for fallback in model.fallbacks:
            if fallback not in config.models:
                yield f"models.{name}.fallbacks: no model named {fallback!r}"
            elif fallback == name:
                yield f"models.{name}.fallbacks: a model cannot fall back to itself"
    for kind, owners in (("keys", config.keys), ("teams", config.teams)):
        for i, owner in enumerate(owners):
            for model_name in owner.models or ():
                if model_name not in config.models and not config.zero_config:
                    yield f"{kind}.{i}.models: no model named {model_name!r}"
    for i, key in enumerate(config.keys):
        if key.team is not None and key.team not in team_names:
            yield f"keys.{i}.team: no team named {key.team!r}"
    seen: set[str] = set()
    for i, key in enumerate(config.keys):
        if key.key in seen:
            yield f"keys.{i}.key: the same secret is given to two keys"
        seen.add(key.key)


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


def load_config(path: str | Path | None, env: Mapping[str, str] | None = None) -> Config:
    """Reads, substitutes and validates. ``path`` None: the built-in defaults for ``env``."""
    env = os.environ if env is None else env
    if path is None:
        return default_config(env)
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise ConfigError([ConfigProblem("", f"cannot read {path}: {exc.strerror}")]) from None
    return parse_config(text, env)


def parse_config(text: str, env: Mapping[str, str]) -> Config:
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        raise ConfigError([ConfigProblem("", f"not valid YAML: {exc}", line)]) from None
    lines = _line_numbers(node)
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError([ConfigProblem("", "the config must be a mapping at the top level", 1)])
    problems: list[ConfigProblem] = []
    raw = _substitute(raw, env, (), problems, lines)
    if problems:
        raise ConfigError(problems)
    return _validate(raw, lines)


def _validate(raw: dict[str, Any], lines: dict[tuple[str, ...], int]) -> Config:
    try:
        return Config.model_validate(raw)
    except ValidationError as exc:
        # In file order, so that `check` reads top to bottom and `serve` names the first one.
        found = sorted(_problems(exc, lines), key=lambda p: p.line or 0)
        raise ConfigError(found) from None


def _problems(exc: ValidationError, lines: dict[tuple[str, ...], int]) -> Iterator[ConfigProblem]:
    for error in exc.errors():
        loc = tuple(str(part) for part in error["loc"])
        message = error["msg"].removeprefix("Value error, ")
        if error["type"] == "extra_forbidden":
            message = "unknown key"
        if not loc and ": " in message:  # cross-reference problems carry their own paths
            for item in message.split("; "):
                where, _, what = item.partition(": ")
                yield ConfigProblem(where, what, lines.get(tuple(where.split("."))))
            continue
        yield ConfigProblem(".".join(loc), message, _nearest_line(loc, lines))


def _nearest_line(loc: tuple[str, ...], lines: dict[tuple[str, ...], int]) -> int | None:
    while loc:
        if loc in lines:
            return lines[loc]
        loc = loc[:-1]
    return None


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
        return ""

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
