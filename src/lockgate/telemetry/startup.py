"""What ``lockgate serve`` says at start-up (§11): the config file, the models and providers,
storage, Redis, the auth mode and the workers — once, from the supervisor, before any worker
starts. URLs are shown with their passwords removed; no key or secret is ever shown, only how
many there are.
"""

from __future__ import annotations

import logging

from lockgate.config import Config, no_provider_hint
from lockgate.safe_url import redact_url

log = logging.getLogger("lockgate")


def startup_lines(config: Config, source: str | None, workers: int,
                  stored_keys: int | None) -> list[tuple[int, str]]:
    """(level, message) pairs. ``stored_keys`` None: storage could not be asked."""
    lines = [(logging.INFO, f"config: {source or 'none (built-in defaults from the environment)'}")]
    lines.append(_models(config))
    lines.extend((logging.INFO, line) for line in _experiments(config))
    cached = [name for name, m in config.models.items() if m.cache is not None]
    if cached:
        lines.append((logging.INFO, _cache(config, cached)))
    if config.providers:
        providers = ", ".join(f"{name} ({p.type}{_at(p.base_url)})" for name, p in config.providers.items())
        lines.append((logging.INFO, f"providers: {providers}"))
    lines.append((logging.INFO, f"storage: {redact_url(config.storage)}"))
    redis = redact_url(config.redis) if config.redis else "none (limits are counted in each process)"
    lines.append((logging.INFO, f"redis: {redis}"))
    lines.append((logging.INFO, f"auth: {auth_mode(config, stored_keys)}"))
    access = "off" if not config.telemetry.access_log else (
        "json" if config.telemetry.json_logs else "text")
    lines.append((logging.INFO, f"workers: {workers}; access log: {access}; "
                                f"log level: {config.telemetry.log_level}"))
    lines.append((logging.INFO, _observability(config)))
    return lines


def _cache(config: Config, cached: list[str]) -> str:
    cache = config.cache
    where = "redis" if cache.backend == "redis" else f"memory, {cache.max_entries} entries"
    line = f"cache: {where}, ttl {cache.ttl_s:g} s, for {', '.join(cached)}"
    if cache.semantic is not None:
        line += (f"; semantic via {cache.semantic.embedding_model} "
                 f"(threshold {cache.semantic.threshold:g})")
    return line


def _observability(config: Config) -> str:
    metrics = "master key" if config.server.metrics_auth else "open"
    endpoint = config.telemetry.otlp_endpoint
    traces = (f"OTLP/HTTP to {redact_url(endpoint)}/v1/traces as {config.telemetry.service_name}"
              if endpoint else "off")
    return f"metrics: GET /metrics ({metrics}); traces: {traces}"


def log_startup(config: Config, source: str | None, workers: int, stored_keys: int | None) -> None:
    for level, message in startup_lines(config, source, workers, stored_keys):
        log.log(level, message)


def auth_mode(config: Config, stored_keys: int | None) -> str:
    parts = []
    if config.keys:
        parts.append(f"{len(config.keys)} key{'s' if len(config.keys) != 1 else ''} in the config")
    if stored_keys:
        parts.append(f"{stored_keys} stored key{'s' if stored_keys != 1 else ''}")
    if config.server.master_key:
        parts.append("master key")
    if parts:
        return "keys required (" + ", ".join(parts) + ")"
    if stored_keys is None:
        return "no key in the config; stored keys unknown (storage unreachable)"
    return "open (no key and no master key: any caller is served)"


def _models(config: Config) -> tuple[int, str]:
    names = list(config.models)
    if config.zero_config:
        names.extend(f"{name}/<model id>" for name in config.providers)
    if not names:
        hint = no_provider_hint() if config.zero_config else "no model is configured"
        return logging.WARNING, f"models: none; {hint}"
    return logging.INFO, f"models: {', '.join(names)}"


def _experiments(config: Config) -> list[str]:
    """One line per experiment: what it splits, how, and what it watches."""
    lines = []
    for name, e in config.experiments.items():
        split = ", ".join(f"{v} {arm.use} ({arm.weight:g})" for v, arm in e.variants.items())
        extra = f"; shadow: {', '.join(e.shadow)}" if e.shadow else ""
        extra += "; automatic rollback" if e.rollback is not None else ""
        lines.append(f"experiment {name}: {e.model} -> {split}; control {e.control}; "
                     f"sticky {e.sticky}{extra}")
    return lines


def _at(base_url: str | None) -> str:
    return f" at {redact_url(base_url)}" if base_url else ""

