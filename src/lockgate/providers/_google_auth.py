"""Google OAuth access tokens for the ``vertex`` provider, kept fresh off the request path.

Two halves:

* ``GoogleCredentials`` loads the credentials once (a service-account or other credentials
  file, else Application Default Credentials) and mints access tokens with google-auth. Both
  are blocking (file reads, the token endpoint, maybe the metadata server), so they only ever
  run in a worker thread.
* ``TokenSource`` holds the current token for the event loop. Requests read it from memory; a
  background task mints the next one ahead of expiry. Only the very first request (when the
  start-up fetch has not finished) or one made after every background refresh failed waits on
  the token endpoint, and then concurrent requests share one fetch.

google-auth is imported inside the methods: the provider module is imported at config time for
every gateway, Vertex or not.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from lockgate.errors import UpstreamError

log = logging.getLogger("lockgate")

CLOUD_PLATFORM_SCOPE = "https://www.googleapis.com/auth/cloud-platform"
# Lifetime assumed for credentials that do not say when their token expires.
DEFAULT_LIFETIME_S = 3600.0
MIN_REFRESH_S = 0.5


@dataclass(frozen=True, slots=True)
class Grant:
    """One access token and what came with it. ``lifetime_s`` is the time it had left when it
    was minted; ``project_id`` is the credentials' own project, when they name one."""

    token: str
    lifetime_s: float
    project_id: str | None = None
    quota_project_id: str | None = None


class CredentialsError(Exception):
    """Credentials could not be loaded or could not mint a token; the message is safe to show
    (it names what failed, never a key)."""


class GoogleCredentials:
    """The google-auth side. ``fetch`` is blocking: call it from a worker thread, one call at a
    time."""

    def __init__(self, credentials_file: str | None, timeout_s: float = 30.0) -> None:
        self.credentials_file = credentials_file
        self.timeout_s = timeout_s
        self._credentials: Any = None
        self._project_id: str | None = None
        self._request: Any = None

    def fetch(self) -> Grant:
        try:
            return self._fetch()
        except CredentialsError:
            raise
        except ImportError as exc:
            raise CredentialsError(f"Vertex AI needs the google-auth and requests packages "
                                   f"({exc.name} is not installed)") from None
        except Exception as exc:  # google-auth raises many kinds; each becomes one clear line
            raise CredentialsError(_describe(exc)) from None

    def _fetch(self) -> Grant:
        if self._credentials is None:
            self._credentials, self._project_id = self._load()
        credentials = self._credentials
        credentials.refresh(self._transport())
        token = credentials.token
        if not isinstance(token, str) or not token:
            raise CredentialsError("the credentials gave no access token")
        return Grant(token, _lifetime(credentials.expiry), self._project_id,
                     getattr(credentials, "quota_project_id", None))

    def _load(self) -> tuple[Any, str | None]:
        scopes = [CLOUD_PLATFORM_SCOPE]
        if self.credentials_file:
            return _load_file(self.credentials_file, scopes)
        import google.auth

        # Application Default Credentials: GOOGLE_APPLICATION_CREDENTIALS (any kind of
        # credentials file, its token_uri honoured), gcloud's file, then the metadata server of
        # Google's own runtimes.
        credentials, project_id = google.auth.default(scopes=scopes)
        return credentials, project_id

    def _transport(self) -> Any:
        if self._request is None:
            self._request = _timed_request(self.timeout_s)
        return self._request


def _load_file(path: str, scopes: list[str]) -> tuple[Any, str | None]:
    """A service-account key or a user's credentials file, by the type-specific loaders
    google-auth recommends (its generic loader accepts any kind, and warns about it)."""
    try:
        with open(path, encoding="utf-8") as file:
            info = json.load(file)
    except OSError as exc:
        raise CredentialsError(f"credentials_file {path!r} could not be read: {exc.strerror}") from None
    except ValueError:
        raise CredentialsError(f"credentials_file {path!r} is not JSON") from None
    kind = info.get("type") if isinstance(info, dict) else None
    if kind == "service_account":
        from google.oauth2 import service_account

        account = service_account.Credentials.from_service_account_info(  # type: ignore[no-untyped-call]
            info, scopes=scopes)
        return account, info.get("project_id")
    if kind == "authorized_user":
        from google.oauth2 import credentials

        user = credentials.Credentials.from_authorized_user_info(info, scopes=scopes)  # type: ignore[no-untyped-call]
        return user, None
    raise CredentialsError(
        f"credentials_file {path!r} has type {kind!r}; it takes service_account or authorized_user "
        "(other kinds work through GOOGLE_APPLICATION_CREDENTIALS)")


def _timed_request(timeout_s: float) -> Any:
    """google-auth's requests transport, with a deadline shorter than its 120 s default so that
    a hung token endpoint cannot hold the worker thread for long."""
    from google.auth.transport.requests import Request

    class TimedRequest(Request):
        def __call__(self, url: str, method: str = "GET", body: Any = None, headers: Any = None,
                     timeout: Any = None, **kwargs: Any) -> Any:
            return super().__call__(url, method, body, headers,  # type: ignore[no-untyped-call]
                                    timeout=timeout or timeout_s, **kwargs)

    return TimedRequest()


def _lifetime(expiry: Any) -> float:
    """Seconds from now until ``expiry`` (google-auth's naive UTC datetime)."""
    if not isinstance(expiry, datetime.datetime):
        return DEFAULT_LIFETIME_S
    now = datetime.datetime.now(datetime.UTC).replace(tzinfo=None)
    return max(0.0, (expiry - now).total_seconds())


def _describe(exc: Exception) -> str:
    # RefreshError carries (message, token-endpoint response); the message is enough.
    first = exc.args[0] if exc.args else ""
    text = first if isinstance(first, str) and first else str(exc)
    return f"{type(exc).__name__}: {text}"[:500]


class TokenSource:
    """The current access token, refreshed in the background ``early_s`` before it expires
    (or half-way through a shorter lifetime).

    ``grant()`` answers from memory while the token is usable; otherwise it waits for the one
    fetch in flight (started by the background task or by the first caller). A failed fetch is
    remembered for ``hold_s`` so that a dead token endpoint is not called once per request;
    the background task tries again every ``retry_s`` while the old token lasts.
    """

    def __init__(
        self,
        fetch: Callable[[], Grant],
        *,
        early_s: float = 300.0,
        retry_s: float = 10.0,
        hold_s: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._fetch = fetch
        self._early_s = early_s
        self._retry_s = retry_s
        self._hold_s = hold_s
        self._clock = clock
        self._grant: Grant | None = None
        self._previous: Grant | None = None
        self._usable_until = 0.0
        self._refresh_at = 0.0
        self._error: UpstreamError | None = None
        self._error_until = 0.0
        self._inflight: asyncio.Future[Grant] | None = None
        self._keeper: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Starts the background task (first fetch, then each refresh); needs a running loop.
        Idempotent."""
        if self._keeper is None or self._keeper.done():
            self._keeper = asyncio.get_running_loop().create_task(self._keep())

    def current(self) -> Grant | None:
        """The token in memory while it is usable, else None (then ``grant()`` waits)."""
        if self._grant is not None and self._clock() < self._usable_until:
            return self._grant
        return None

    async def grant(self) -> Grant:
        grant = self.current()
        if grant is not None:
            return grant
        if self._error is not None and self._clock() < self._error_until:
            raise self._error
        self.start()
        return await self._shared_fetch()

    def reject(self, token: str) -> None:
        """Google refused ``token`` (revoked, or a clock far off): the next ``grant()`` fetches
        a new one. A token already replaced is left alone, so that a burst of refusals causes
        one fetch, not one each."""
        if self._grant is not None and self._grant.token == token:
            self._usable_until = 0.0

    def recent_tokens(self) -> list[str]:
        """The current token and the one before it (still in use by requests in flight)."""
        return [g.token for g in (self._grant, self._previous) if g is not None]

    async def aclose(self) -> None:
        keeper, self._keeper = self._keeper, None
        if keeper is not None:
            keeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await keeper

    async def _keep(self) -> None:
        while True:
            try:
                await self._shared_fetch()
                # The floor keeps a token that comes back already expired from turning
                # this loop into a busy one.
                delay = max(self._refresh_at - self._clock(), MIN_REFRESH_S)
            except UpstreamError as err:
                log.warning("could not refresh a Google access token: %s", err.message)
                delay = self._retry_s
            except Exception:  # a bug must not stop the refreshes for good
                log.exception("the Google access token refresh failed")
                delay = self._retry_s
            await asyncio.sleep(delay)

    async def _shared_fetch(self) -> Grant:
        if self._inflight is None:
            self._inflight = asyncio.ensure_future(self._fetch_once())
            self._inflight.add_done_callback(_retrieve)
        # A caller that gives up (its own deadline) must not cancel the fetch the others wait on.
        return await asyncio.shield(self._inflight)

    async def _fetch_once(self) -> Grant:
        try:
            started = self._clock()
            grant = await asyncio.to_thread(self._fetch)
        except CredentialsError as exc:
            self._error = UpstreamError(f"could not get a Google access token: {exc}",
                                        retryable=True)
            self._error_until = self._clock() + self._hold_s
            raise self._error from None
        finally:
            self._inflight = None
        self._accept(grant, started)
        return grant

    def _accept(self, grant: Grant, started: float) -> None:
        lifetime = grant.lifetime_s
        # Not used in its last moments, so that it does not expire on its way to Google.
        self._usable_until = started + lifetime - min(30.0, lifetime / 10)
        self._refresh_at = started + lifetime - min(self._early_s, lifetime / 2)
        self._previous, self._grant = self._grant, grant
        self._error = None


def _retrieve(future: asyncio.Future[Grant]) -> None:
    # Marks a failure as seen when every waiter gave up, so asyncio does not log it as lost;
    # the failure itself is kept in ``TokenSource._error``.
    if not future.cancelled():
        future.exception()
