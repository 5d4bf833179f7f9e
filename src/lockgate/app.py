"""``create_app(config)``: builds every service once and mounts the endpoints.

The app is a plain ASGI callable with a dictionary of routes: the hot endpoints are pure ASGI
objects (no framework middleware on the request path, as Starlette's own docs advise). Services
that need the running event loop (the upstream HTTP session) are built at lifespan start-up.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import aiohttp
import orjson

from lockgate.asgi import ASGIApp, Receive, Scope, Send, send_body
from lockgate.config import Config
from lockgate.cors import CORS
from lockgate.dialects.anthropic import AnthropicDialect
from lockgate.dialects.completions import CompletionsDialect
from lockgate.dialects.openai import OpenAIDialect
from lockgate.dialects.responses_turn import StoredResponsesDialect
from lockgate.errors import GatewayError
from lockgate.experiments.service import Experiments
from lockgate.experiments.shadow import ShadowCopies
from lockgate.open_guard import OpenGuard
from lockgate.openapi import PATH as OPENAPI_PATH
from lockgate.openapi import serve_spec, spec_bytes
from lockgate.pipeline.auth import Authenticator
from lockgate.pipeline.cache import AnswerCache, build_cache
from lockgate.pipeline.call import Caller
from lockgate.pipeline.chat import ChatOperation
from lockgate.pipeline.context import RequestContext
from lockgate.pipeline.count_tokens import CountTokensOperation
from lockgate.pipeline.embeddings import EmbeddingsOperation
from lockgate.pipeline.feedback import FeedbackEndpoint
from lockgate.pipeline.frame import Frame, Operation
from lockgate.pipeline.infer import InferOperation
from lockgate.pipeline.keycache import KeyCache, principals, stored_spend
from lockgate.pipeline.limits import CountingLimiter, OwnerLimits
from lockgate.pipeline.models import ModelsEndpoint
from lockgate.pipeline.record import Recorder, Recorders, record_of
from lockgate.pipeline.responses_api import StoredResponsesEndpoint
from lockgate.pipeline.route import Router
from lockgate.pipeline.services import InFlight, Services
from lockgate.pipeline.steps import StepFactory
from lockgate.pipeline.v2_models import V2ModelEndpoint
from lockgate.pipeline.v2_models import health as v2_health
from lockgate.privacy.guard import PrivacySteps
from lockgate.privacy.logbook import BodyLog
from lockgate.privacy.retention import RetentionPurge
from lockgate.providers._ssrf import GuardedResolver
from lockgate.providers.base import Provider
from lockgate.providers.http import ReadLimits
from lockgate.providers.registry import provider_class
from lockgate.reload import ConfigReloader, ReloadRefused, restart_needed
from lockgate.routing.health import HealthBoard
from lockgate.safe_url import redact_url
from lockgate.sealing import Sealer
from lockgate.state import key_snapshot
from lockgate.state.counters import CounterStore, MemoryCounters
from lockgate.state.link import StorageLink
from lockgate.state.migrate import check_schema, ensure_schema
from lockgate.state.responses import ResponseStore
from lockgate.state.responses_backends import RedisResponseRows, ResponseRows, SqlResponseRows
from lockgate.state.store import AuthSnapshot, Store
from lockgate.telemetry.access import AccessLog
from lockgate.telemetry.metrics import Metrics, MetricsEndpoint
from lockgate.telemetry.writer import RecordWriter

if TYPE_CHECKING:
    from lockgate.state.health_share import RedisHealthShare
    from lockgate.telemetry.tracing import Tracing

log = logging.getLogger("lockgate")

_NOT_FOUND = GatewayError("no such endpoint", status=404, code="not_found")
_NOT_ALLOWED = GatewayError("method not allowed", status=405, code="method_not_allowed")


class Gateway:
    def __init__(self, config: Config, *, migrate: bool = True,
                 steps: Sequence[StepFactory] = (), metrics_dir: str | None = None,
                 config_path: str | None = None) -> None:
        self.config = config
        # The PII guard comes first: later steps (a cache) see the request as redacted.
        self.body_log = BodyLog(config.server.encryption_key, config.privacy.max_body_bytes)
        self._steps = (PrivacySteps(self.body_log), *steps)
        self.routes: dict[tuple[str, str], ASGIApp] = {}
        # Endpoints whose path ends in a name (``/v1/models/{id}``): (method or "*", path prefix).
        self.prefix_routes: dict[tuple[str, str], ASGIApp] = {}
        self.providers: dict[str, Provider] = {}
        self.ready = False
        self._migrate = migrate
        self._session: aiohttp.ClientSession | None = None
        self._admin: ASGIApp | None = None
        self._ui: ASGIApp | None = None
        self.tracing: Tracing | None = None  # where telemetry.otlp_endpoint is set
        self.cache: AnswerCache | None = None  # where a model opts in (built at start-up)
        self.store = Store(config.storage)
        self.storage = StorageLink(self.store, self._prepare_storage)
        self.writer = RecordWriter(self.storage, config.server.spill_dir)
        self._key_snapshot = key_snapshot.snapshot_path(config.server.spill_dir)
        self.access = AccessLog() if config.telemetry.access_log else None
        self.metrics = Metrics(config, metrics_dir)  # observability: GET /metrics
        # Experiments (§8): shared state and rollback, and shadow copies recorded by the writer.
        self.experiments = Experiments(config, self.store, on_rollback=self.metrics.rolled_back)
        self.shadows = ShadowCopies(self.writer.record, self.metrics.shadow)
        counters: CounterStore = MemoryCounters()
        if config.redis:
            from lockgate.state.redis_counters import RedisCounters  # only where Redis is used

            counters = RedisCounters(config.redis)
        self.limiter = CountingLimiter(counters, config.limits.redis_failure,
                                       on_store_error=lambda: self.keycache.reseed_soon(),
                                       spent=self._spent)
        self.auth = Authenticator(config)
        self.keycache = KeyCache(self.store, self.auth, self.limiter, self._save_key_snapshot)
        self.responses = _response_store(config, self.store)
        self.retention = RetentionPurge(self.store, self.auth, config.privacy.purge_interval_s)
        # Deployment health (``routing.health``), shared through Redis where it is set.
        self.health = HealthBoard()
        self.health.on_change(lambda h, event: self.metrics.health_changed(h.route, event))
        self.health_share: RedisHealthShare | None = None
        self.health_prefix = "lockgate:"  # the Redis names it shares under (tests set their own)
        self.router: Router | None = None  # built at start-up
        self._mounted: Mounted | None = None
        self._in_flight = InFlight(config.server.max_in_flight)
        self._recorder: Recorder = Recorders(self.writer, self.metrics)
        self.config_path = config_path  # where set: reloaded on SIGHUP and when it changes
        self.reloader: ConfigReloader | None = None
        self._retiring: set[asyncio.Task[None]] = set()
        # Guarded at start-up if the gateway is open.
        self._http: ASGIApp = self._outer(self._dispatch)

    async def _spent(self, owner: OwnerLimits, since: float) -> float:
        """A budget's spend by storage, for a counter that must be restored: this process's
        finished requests are written first, so none of them is left out."""
        await self.writer.sync()
        return await stored_spend(self.store, owner, since)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            await self._http(scope, receive, send)
        elif scope["type"] == "lifespan":
            await self._lifespan(receive, send)

    def _outer(self, inner: ASGIApp) -> ASGIApp:
        """The layers every HTTP request passes before ``inner`` (the router, or a guard around
        it): CORS outermost, so that every answer to a listed origin carries its headers."""
        origins = self.config.server.cors_origins
        return CORS(inner, origins) if origins else inner

    async def _dispatch(self, scope: Scope, receive: Receive, send: Send) -> None:
        endpoint = self.routes.get((scope["method"], scope["path"])) or self._by_prefix(scope)
        if endpoint is not None:
            await endpoint(scope, receive, send)
        elif self.ready and _is_admin_path(scope["path"]):
            await self._admin_app()(scope, receive, send)
        elif self.ready and _is_ui_path(scope["path"]):
            await self._ui_app()(scope, receive, send)
        else:
            await self._unrouted(scope, send)

    def _by_prefix(self, scope: Scope) -> ASGIApp | None:
        for (method, prefix), endpoint in self.prefix_routes.items():
            if method in (scope["method"], "*") and scope["path"].startswith(prefix):
                return endpoint
        return None

    async def startup(self) -> None:
        stored_keys: int | None = None
        if await self.storage.open():
            stored_keys = await self._stored_key_count()
            self.keycache.start()
        else:
            await self._start_without_storage()
            self.storage.catch_up(then=self.keycache.start)
        # Open or keyed is decided once, here. Without storage the stored keys cannot be
        # counted: the gateway then starts keyed (None), never open.
        if self.auth.decide_open(stored_keys):
            self._http = self._outer(OpenGuard(self._dispatch, self.config.server.cors_origins))
        self.writer.start()
        self.retention.start()
        self.responses.start()
        self.metrics.start()
        recorder: Recorder = Recorders(self.writer, self.metrics)
        if self.access is not None:
            self.access.start()
            recorder = Recorders(self.writer, self.metrics, self.access)
        self._recorder = recorder
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=0, ttl_dns_cache=300,
                                           resolver=GuardedResolver(self._private_hosts)),
            timeout=aiohttp.ClientTimeout(total=None),
            auto_decompress=True,
        )
        self.providers = await self._providers_for(self.config, {})
        self.cache = build_cache(self.config)
        telemetry = self.config.telemetry
        if telemetry.otlp_endpoint is not None:
            from lockgate.telemetry.tracing import Tracing  # OpenTelemetry only where it is used

            self.tracing = Tracing(telemetry.otlp_endpoint, telemetry.service_name,
                                   telemetry.trace_sample_ratio)
        try:
            mounted = self._mount(self.config, self.providers, self.cache)
        except CacheUnusable as exc:
            raise StartRefused(str(exc)) from None
        router = self.router = mounted.router
        self._mounted = mounted
        self.shadows.bind(router, mounted.caller)
        self.routes, self.prefix_routes = mounted.routes, mounted.prefix_routes
        await self._share_health()  # once the router watches its deployments
        await self._start_experiments(router)
        if self.config_path is not None:
            self.reloader = ConfigReloader(self.config_path, self, self.store.audit)
            self.reloader.start()
        self.ready = True

    async def _providers_for(self, config: Config, current: dict[str, Provider]) -> dict[str, Provider]:
        """The providers ``config`` names: one already running with the same settings is kept
        (an in-process model stays loaded, a token keeps refreshing); the others are built
        and started."""
        server = config.server
        limits = ReadLimits(server.max_event_bytes, server.max_response_bytes,
                            server.stream_idle_timeout_s)
        kept: dict[str, Provider] = {}
        fresh: dict[str, Provider] = {}
        for name, settings in config.providers.items():
            running = current.get(name)
            if running is not None and running.config == settings:
                kept[name] = running
                continue
            cls = provider_class(settings.type)
            assert cls is not None  # the config was validated against the registry
            assert self._session is not None
            fresh[name] = cls(name, settings, self._session)
            fresh[name].limits = limits
        try:
            await asyncio.gather(*(p.start() for p in fresh.values()))
        except BaseException:
            await _close_all(fresh.values())
            raise
        return {name: kept.get(name) or fresh[name] for name in config.providers}

    def _mount(self, config: Config, providers: dict[str, Provider],
               cache: AnswerCache | None) -> Mounted:
        """Every endpoint for ``config``, built off to the side: nothing serves it until the
        caller assigns the route tables (at start-up, or in one swap on a reload)."""
        # The PII guard first, then the cache: the cache keys and keeps requests and answers
        # as the upstream sees them, redacted (never a personal value in a cache entry, in
        # memory or Redis), and a hit's placeholders are restored with this request's values
        # by the guard, as an upstream answer's are (``steps.answer_early``).
        privacy, *others = self._steps
        steps = (privacy, cache, *others) if cache is not None else self._steps
        router = Router(config, providers, steps=steps,
                        shadows=self.shadows if config.experiments else None, health=self.health)
        secrets = [s for p in providers.values() for s in p.secrets()]
        secrets.extend(k.key for k in config.keys)
        if config.server.master_key:
            secrets.append(config.server.master_key)
        caller = Caller(router, secrets, self.limiter)
        server = config.server
        services = Services(
            auth=self.auth, limiter=self.limiter, router=router,
            caller=caller, recorder=self._recorder,
            max_body_bytes=server.max_body_bytes,
            expose_route=server.expose_route_header, tracer=self.tracing,
            in_flight=self._in_flight,  # one count across reloads: a swap sheds nothing
        )
        if cache is not None:  # the semantic cache embeds through the router and caller
            problem = cache.bind(router, services.caller)
            if problem is not None:
                raise CacheUnusable(problem)
        # Every operation goes through the one request frame (``pipeline.frame``).
        operations: dict[str, Operation[Any]] = {
            "chat/completions": ChatOperation(OpenAIDialect(), services),
            "messages": ChatOperation(AnthropicDialect(), services),
            "messages/count_tokens": CountTokensOperation(services),
            "responses": ChatOperation(StoredResponsesDialect(self.responses), services),
            "completions": ChatOperation(CompletionsDialect(), services),
            "embeddings": EmbeddingsOperation(services),
        }
        endpoints = {path: Frame(op, services) for path, op in operations.items()}
        models = ModelsEndpoint(services)
        feedback = FeedbackEndpoint(services, self.experiments.rows, lambda: self.writer.records,
                                    self.writer.sync)
        stored_responses = StoredResponsesEndpoint(services, self.responses)  # answers 405 itself
        routes: dict[tuple[str, str], ASGIApp] = {}
        prefix_routes: dict[tuple[str, str], ASGIApp] = {}
        for prefix in ("/v1", ""):
            for path, endpoint in endpoints.items():
                routes[("POST", f"{prefix}/{path}")] = endpoint
            routes[("GET", f"{prefix}/models")] = models
            routes[("POST", f"{prefix}/feedback")] = feedback
            prefix_routes[("GET", f"{prefix}/models/")] = models
            prefix_routes[("*", f"{prefix}/responses/")] = stored_responses
        # The V2 open inference protocol (classical ML models): ``/v2/models/{name}[...]``.
        prefix_routes[("POST", "/v2/models/")] = Frame(InferOperation(services), services)
        prefix_routes[("GET", "/v2/models/")] = V2ModelEndpoint(services)
        routes.update({("GET", path): app for path, app in v2_health(lambda: self.ready).items()})
        routes[("GET", "/healthz")] = _health
        spec_bytes()  # built once, here: every GET /openapi.json is the same cached bytes
        routes[("GET", OPENAPI_PATH)] = serve_spec
        routes[("GET", "/readyz")] = self._readyz
        routes[("GET", "/metrics")] = MetricsEndpoint(
            self.metrics, server.master_key if server.metrics_auth else None)
        return Mounted(router, caller, routes, prefix_routes)

    async def apply_config(self, new: Config) -> None:
        """Swaps ``new`` in live (``reload``): its providers, router and endpoints are built
        first; then one synchronous block (no ``await``: no request runs in between) points
        the route tables, auth and metrics at them. A request already dispatched finishes on
        the objects it started with; replaced providers are closed after a grace period."""
        needed = restart_needed(self.config, new)
        if needed:
            raise ReloadRefused("restart needed for: " + ", ".join(needed))
        try:
            providers = await self._providers_for(new, self.providers)
        except Exception as exc:
            starting = sorted(n for n, p in new.providers.items()
                              if n not in self.providers or self.providers[n].config != p)
            # The type only: a provider's error may quote a URL or a credential file.
            raise ReloadRefused(f"provider {', '.join(starting)} could not start "
                                f"({type(exc).__name__})") from None
        cache = self.cache or build_cache(new)  # the ``cache`` section itself is not live
        try:
            mounted = self._mount(new, providers, cache)
        except Exception as exc:  # nothing of it serves: undo what was started for it
            await _close_all(p for n, p in providers.items() if self.providers.get(n) is not p)
            if self.cache is None and cache is not None:
                await cache.close()  # built for this reload only
            elif self.cache is not None and self.router is not None:  # back on the serving router
                self.cache.bind(self.router, self._caller_of_old())
            why = str(exc) if isinstance(exc, CacheUnusable) else f"cannot build it ({type(exc).__name__})"
            raise ReloadRefused(why) from None
        # -- the swap: no await until it is done --
        retired = [p for n, p in self.providers.items() if providers.get(n) is not p]
        self.shadows.bind(mounted.router, mounted.caller)
        self.auth.use_config(new)
        self.metrics.use_config(new)
        self.config, self.providers, self.router, self.cache = new, providers, mounted.router, cache
        self.routes, self.prefix_routes = mounted.routes, mounted.prefix_routes
        self._admin = self._ui = None  # rebuilt with the new config on their next request
        self._mounted = mounted
        self.keycache.reload_soon()  # stored keys of config teams take the teams' new limits
        if retired:
            self._retire(retired, _grace_s(self.config))
        if self.health_share is None:  # the new config may be the first to watch a deployment
            await self._share_health()

    async def _start_experiments(self, router: Router) -> None:
        """An experiment decided before this start (promoted, rolled back, stopped) is served
        so from the first request; without storage, it follows once the poll reaches it."""
        if self.config.experiments:
            self.experiments.splits = dict(router.splits)
            try:
                await self.experiments.refresh()
            except Exception as exc:
                log.warning("experiments: cannot read their state yet (%s)", type(exc).__name__)
        self.experiments.start(router.splits)

    async def _share_health(self) -> None:
        """Through Redis where it is set and some deployment is watched (none is where every
        model has one target: nothing to share, no connection held)."""
        if not self.config.redis or not self.health.states():
            return
        from lockgate.state.health_share import RedisHealthShare  # only where Redis is used

        share = self.health_share = RedisHealthShare(self.config.redis, self.health, self.health_prefix)
        self.health.on_change(lambda h, event: share.publish(h.route, h.open_until))
        await share.start()

    async def _stored_key_count(self) -> int | None:
        """None when storage cannot say: the gateway then starts closed, never open."""
        try:
            return await self.store.key_count()
        except Exception as exc:
            log.warning("cannot count stored keys (%s): starting closed", type(exc).__name__)
            return None

    async def _prepare_storage(self) -> None:
        await (ensure_schema if self._migrate else check_schema)(self.store.engine)
        await self.keycache.refresh()

    async def _start_without_storage(self) -> None:
        """Stored keys come from the local snapshot. Without one and without config keys,
        nothing tells which keys are valid or whether the gateway is meant to be open: refuse
        to start rather than start open."""
        snapshot = await asyncio.to_thread(key_snapshot.load, self._key_snapshot)
        stored_keys = len(snapshot.keys) if snapshot is not None else None
        if stored_keys is None and not self.auth.static_principals():
            raise StartRefused(f"storage {redact_url(self.config.storage)} is unreachable and "
                               f"there are no config keys and no local key snapshot "
                               f"({self._key_snapshot}): refusing to start")
        if snapshot is not None:
            self.auth.load_stored(principals(snapshot, self.auth.config_teams, self.auth.policies))
        self._migrate = True  # serve could not migrate it: catching up includes that

    async def _save_key_snapshot(self, snapshot: AuthSnapshot) -> None:
        try:
            await asyncio.to_thread(key_snapshot.save, self._key_snapshot, snapshot)
        except Exception as exc:  # never let it hold back the keys just loaded
            log.warning("cannot save the local key snapshot %s: %s", self._key_snapshot, exc)

    def _admin_app(self) -> ASGIApp:
        """The admin API, built on its first request: a gateway nobody administers never loads
        Starlette (the admin API is the cold path; its first call pays for the import)."""
        if self._admin is None:
            from lockgate.admin.app import create_admin_app

            self._admin = create_admin_app(self.store, self.config,
                                           erasers=[self.responses.erase_user],
                                           experiments=self.experiments)
        return self._admin

    def _caller_of_old(self) -> Caller:
        assert self._mounted is not None
        return self._mounted.caller

    def _retire(self, providers: list[Provider], grace_s: float) -> None:
        """Closes replaced providers once no request can still hold them: a request that
        started before the swap ends within the longest timeout (or is cut at the drain)."""
        async def close_later() -> None:
            try:
                await asyncio.sleep(grace_s)
            finally:  # cancelled at shutdown: no request is left, close them now
                await _close_all(providers)

        task = asyncio.get_running_loop().create_task(close_later(), name="retire-providers")
        self._retiring.add(task)
        task.add_done_callback(self._retiring.discard)

    def _ui_app(self) -> ASGIApp:
        """The web dashboard, built on its first request like the admin API (cold path)."""
        if self._ui is None:
            from lockgate.ui.app import create_ui_app

            self._ui = create_ui_app(self.store, self.config, self._admin_app)
        return self._ui

    async def shutdown(self) -> None:
        self.ready = False
        if self.reloader is not None:
            await self.reloader.stop()
        for task in list(self._retiring):
            task.cancel()
        await asyncio.gather(*self._retiring, return_exceptions=True)
        await self.storage.stop()
        await self.keycache.stop()
        await self.limiter.drain()
        await self.experiments.stop()
        await self.shadows.stop()  # before the writer stops: their records are written too
        await self.writer.stop()
        await self.retention.stop()
        await self.responses.stop()
        await self.metrics.stop()
        if self.access is not None:
            await asyncio.to_thread(self.access.stop)  # every access line written
        if self.tracing is not None:
            await asyncio.to_thread(self.tracing.shutdown)  # queued spans exported, or given up
        await self.limiter.counters.close()
        if self.health_share is not None:
            await self.health_share.close()
        if self.cache is not None:
            await self.cache.close()
        await self.store.close()
        for provider in self.providers.values():
            await provider.aclose()
        if self._session is not None:
            await self._session.close()

    def _private_hosts(self) -> list[str]:
        """The hosts of providers allowed onto link-local / metadata addresses (``_ssrf``)."""
        return [host for settings in self.config.providers.values()
                if settings.allow_private_network and settings.base_url
                and (host := urlsplit(settings.base_url).hostname)]

    async def _readyz(self, scope: Scope, receive: Receive, send: Send) -> None:
        """200 once config, storage and (if set) Redis are usable; else 503 naming what is not."""
        checks = {"storage": await self.storage.ping(), "redis": await self.limiter.counters.ping()}
        down = [name for name, ok in checks.items() if not ok]
        if not self.ready:
            down.insert(0, "starting")
        body = orjson.dumps({"status": "ready" if not down else "not ready", "down": down})
        await send_body(send, 503 if down else 200, body, [] if not down else [(b"retry-after", b"1")])

    async def _unrouted(self, scope: Scope, send: Send) -> None:
        known = any(path == scope["path"] for _, path in self.routes)
        err = _NOT_ALLOWED if known else _NOT_FOUND
        anthropic = scope["path"].startswith(("/v1/messages", "/messages"))
        body = err.anthropic_body() if anthropic else err.openai_body()
        if scope["path"] == "/v2" or scope["path"].startswith("/v2/"):
            body = err.v2_body()
        await send_body(send, err.status, body, [])
        # Counted in the metrics and the access log (a client calling a wrong path shows up in
        # the error rate), but not stored: a scanner's guesses would only fill the database.
        ctx = RequestContext.begin(scope)
        ctx.status, ctx.error_code = err.status, err.code
        record = record_of(ctx)
        self.metrics.record(record)
        if self.access is not None:
            self.access.record(record)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    await self.startup()
                except StartRefused as exc:
                    log.error("%s", exc)
                    await send({"type": "lifespan.startup.failed", "message": str(exc)})
                    return
                except Exception as exc:
                    log.exception("start-up failed")
                    await send({"type": "lifespan.startup.failed", "message": str(exc)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.shutdown()
                log.info("worker %d stopped: every request finished and recorded", os.getpid())
                await send({"type": "lifespan.shutdown.complete"})
                return


@dataclass(frozen=True, slots=True)
class Mounted:
    """What one config serves: its router and caller, and the route tables ``_dispatch`` reads."""

    router: Router
    caller: Caller
    routes: dict[tuple[str, str], ASGIApp]
    prefix_routes: dict[tuple[str, str], ASGIApp]


class CacheUnusable(Exception):
    """The semantic cache cannot embed with this config; the message says why."""


def _grace_s(config: Config) -> float:
    """How long a replaced provider may still be used by a request that started before the
    swap: the longest timeout of any kind in the config, and at least the drain."""
    timeouts = [config.server.drain_s, config.server.stream_idle_timeout_s]
    timeouts.extend(p.timeout_s for p in config.providers.values() if p.timeout_s)
    for model in config.models.values():
        timeouts.extend(v.timeout_s * (v.retries + 1) for v in (model, *model.versions.values())
                        if v.timeout_s)
    return max(timeouts)


async def _close_all(providers: Iterable[Provider]) -> None:
    for provider in providers:
        try:
            await provider.aclose()
        except Exception as exc:  # one provider's failure must not leave the others open
            log.warning("closing provider %s failed (%s)", provider.name, type(exc).__name__)


class StartRefused(Exception):
    """Starting would not be safe; the message says why (logged without a traceback)."""


def _is_admin_path(path: str) -> bool:
    return path == "/admin" or path.startswith("/admin/")


def _is_ui_path(path: str) -> bool:
    return path == "/ui" or path.startswith("/ui/")


async def _health(scope: Scope, receive: Receive, send: Send) -> None:
    await send_body(send, 200, b'{"status":"ok"}', [])


def _response_store(config: Config, store: Store) -> ResponseStore:
    """Stored Responses answers live in Redis when it is set (it expires them by itself), else
    in the storage table; either way every worker and replica shares them."""
    ttl = config.server.responses_ttl_s
    rows: ResponseRows = RedisResponseRows(config.redis, ttl) if config.redis else SqlResponseRows(store)
    return ResponseStore(rows, Sealer(config.server.encryption_key, "stored responses"), ttl)


def create_app(config: Config, *, migrate: bool = True, steps: Sequence[StepFactory] = (),
               metrics_dir: str | None = None, config_path: str | None = None) -> Gateway:
    """``migrate``: bring the storage schema up to date at start-up (``serve`` does it once,
    before forking workers, and starts them with False: they only check it). ``steps``: what
    builds the models' optional steps (``pipeline.steps``) from their config. ``metrics_dir``:
    the folder every worker counts its metrics in (``telemetry.metrics.multiprocess``).
    ``config_path``: the file ``config`` was read from; the gateway then reloads it on SIGHUP
    (``on_sighup``) and when it changes (``reload``)."""
    return Gateway(config, migrate=migrate, steps=steps, metrics_dir=metrics_dir,
                   config_path=config_path)
