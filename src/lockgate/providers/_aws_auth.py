"""AWS credentials and request signing for the Bedrock provider.

Keys come from the provider's config, else from botocore's default credential chain
(environment, shared files and profiles, SSO, container and instance roles), looked up once when
the provider is built at start-up, never per request. Requests are signed by botocore's own
SigV4 signer; a Bedrock API key is sent as a bearer token instead, as botocore sends it.
"""

from __future__ import annotations

import asyncio
import logging
import os
from typing import Any, NamedTuple, Protocol
from urllib.parse import urlsplit

from lockgate.errors import UpstreamError
from lockgate.providers.base import ProviderSettings

log = logging.getLogger("lockgate")

SERVICE = "bedrock"  # the SigV4 signing name of bedrock-runtime
DEFAULT_REGION = "us-east-1"


class AwsSettings(ProviderSettings):
    """Bedrock's own config keys: where it runs and, optionally, the keys it signs with."""

    region: str | None = None
    aws_access_key_id: str | None = None
    aws_secret_access_key: str | None = None
    aws_session_token: str | None = None


class AwsKeys(NamedTuple):
    """A frozen set of AWS credentials (botocore's signer reads these three attributes)."""

    access_key: str
    secret_key: str
    token: str | None = None


class AwsCredentials:
    """Where SigV4 keys come from: the config's keys, else botocore's default chain
    (environment, shared files and profiles, SSO, container and instance roles), looked up once,
    when the provider is built at start-up, never per request.

    Temporary credentials from the chain expire; botocore refreshes them inside
    ``get_frozen_credentials`` with network I/O. That happens in a worker thread, one refresh
    at a time, once they are near expiry; otherwise the current keys are read without I/O.
    """

    def __init__(self, static: AwsKeys | None, chain: Any) -> None:
        self._static = static
        self._chain = chain  # a botocore Credentials / RefreshableCredentials, or None
        self._refreshing: asyncio.Future[Any] | None = None

    @classmethod
    def from_config(cls, config: AwsSettings) -> AwsCredentials:
        if config.aws_access_key_id or config.aws_secret_access_key:
            if not (config.aws_access_key_id and config.aws_secret_access_key):
                raise ValueError("bedrock: aws_access_key_id and aws_secret_access_key go together")
            keys = AwsKeys(config.aws_access_key_id, config.aws_secret_access_key,
                           config.aws_session_token)
            return cls(keys, None)
        return cls(None, _botocore_session().get_credentials())

    @property
    def found(self) -> bool:
        return self._static is not None or self._chain is not None

    def secrets(self) -> list[str]:
        """The keys known without I/O (temporary ones from the chain are not fetched here)."""
        keys = self._static
        if keys is None and self._chain is not None and not _refreshable(self._chain):
            keys = AwsKeys(self._chain.access_key, self._chain.secret_key, self._chain.token)
        return [v for v in (keys.secret_key, keys.token) if v] if keys is not None else []

    async def get(self) -> AwsKeys:
        if self._static is not None:
            return self._static
        chain = self._chain
        if chain is None:
            raise UpstreamError(
                "no AWS credentials: set aws_access_key_id and aws_secret_access_key (or api_key) "
                "for this provider, or AWS credentials in the environment", status=401)
        frozen = await self._refresh(chain) if _near_expiry(chain) else chain.get_frozen_credentials()
        return AwsKeys(frozen.access_key, frozen.secret_key, frozen.token)

    async def _refresh(self, chain: Any) -> Any:
        # Requests that find the keys near expiry share one refresh; shield() keeps it running
        # when the request that started it is cancelled.
        if self._refreshing is None or self._refreshing.done():
            self._refreshing = asyncio.ensure_future(asyncio.to_thread(chain.get_frozen_credentials))
        try:
            return await asyncio.shield(self._refreshing)
        except Exception as exc:  # botocore's many credential errors
            raise UpstreamError(f"could not refresh the AWS credentials ({type(exc).__name__})",
                                status=502, retryable=True) from None


def _refreshable(credentials: Any) -> bool:
    return callable(getattr(credentials, "refresh_needed", None))


def _near_expiry(credentials: Any) -> bool:
    """True when reading the keys could make botocore refresh them (I/O): within its advisory
    window (15 minutes unless the credential source set another), plus a minute's margin."""
    if not _refreshable(credentials):
        return False
    window = getattr(credentials, "_advisory_refresh_timeout", 15 * 60)
    return bool(credentials.refresh_needed(float(window) + 60))


def _botocore_session() -> Any:
    import botocore.session  # type: ignore[import-untyped]

    return botocore.session.Session()


def resolve_region(config: AwsSettings) -> str:
    """The config's ``region``, else ``AWS_REGION`` / ``AWS_DEFAULT_REGION``, else the AWS
    profile's region, else us-east-1 (with a warning: botocore would refuse to guess)."""
    region = config.region or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
    if not region:
        region = _botocore_session().get_config_variable("region")
    if not region:
        log.warning("bedrock: no AWS region configured; using %s", DEFAULT_REGION)
    return str(region or DEFAULT_REGION)


def endpoint_url(region: str) -> str:
    suffix = "amazonaws.com.cn" if region.startswith("cn-") else "amazonaws.com"
    return f"https://bedrock-runtime.{region}.{suffix}"


class Auth(Protocol):
    async def headers(self, url: str, body: bytes) -> dict[str, str]: ...


class BearerAuth:
    """A Bedrock API key: ``Authorization: Bearer``, as botocore sends it."""

    def __init__(self, token: str) -> None:
        self._header = f"Bearer {token}"

    async def headers(self, url: str, body: bytes) -> dict[str, str]:
        return {"content-type": "application/json", "authorization": self._header}


class SigV4Auth:
    """Signs each request with botocore's SigV4 signer (service ``bedrock``)."""

    def __init__(self, credentials: AwsCredentials, region: str) -> None:
        self.credentials = credentials
        self.region = region

    async def headers(self, url: str, body: bytes) -> dict[str, str]:
        return sign_request(url, body, await self.credentials.get(), self.region)


def sign_request(url: str, body: bytes, keys: AwsKeys, region: str) -> dict[str, str]:
    """The headers that sign a JSON ``POST`` of ``body`` to ``url``: ``content-type``,
    ``host``, ``x-amz-date``, ``x-amz-security-token`` (temporary keys) and ``authorization``.
    ``url`` must be exactly what goes on the wire (already percent-encoded)."""
    from botocore.auth import SigV4Auth as BotocoreSigV4  # type: ignore[import-untyped]
    from botocore.awsrequest import AWSRequest  # type: ignore[import-untyped]

    # Giving the host saves botocore working it out from the URL twice per signature (a tenth
    # of its cost); the HTTP client then sends this very value.
    headers = {"content-type": "application/json", "host": host_header(url)}
    request = AWSRequest(method="POST", url=url, data=body, headers=headers)
    BotocoreSigV4(keys, SERVICE, region).add_auth(request)
    return {str(name).lower(): str(value) for name, value in request.headers.items()}


def host_header(url: str) -> str:
    """The ``Host`` an HTTP client sends for ``url``: its authority, less a default port."""
    parts = urlsplit(url)
    authority = parts.netloc.rpartition("@")[2]
    default_port = {"http": ":80", "https": ":443"}.get(parts.scheme, "")
    return authority.removesuffix(default_port) if default_port else authority


def make_auth(
    name: str, config: AwsSettings, api_key: str | None, region: str
) -> tuple[Auth, AwsCredentials | None]:
    """How provider ``name`` authenticates, and its AWS credentials when it signs. The config's
    AWS keys win over an API key, which wins over the default chain (as in botocore, where a
    bearer token in the environment is preferred to SigV4)."""
    if api_key and not config.aws_access_key_id:
        return BearerAuth(api_key), None
    credentials = AwsCredentials.from_config(config)
    if not credentials.found:
        log.warning("bedrock provider %r: no AWS credentials found", name)
    return SigV4Auth(credentials, region), credentials
