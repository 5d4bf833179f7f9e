"""The provider contract: what one upstream account or server must do for the gateway.

A provider module defines one ``Provider`` subclass and registers it under the
``lockgate.providers`` entry-point group (see ``registry``); nothing else in the gateway names
it. The subclass:

* sets ``type_name`` (the config's ``type:``), ``default_base_url`` and, where the provider has
  a standard credential variable, ``api_key_env``; where its official SDK reads its root from a
  variable (``OPENAI_BASE_URL``), ``base_url_env``, which a zero-config gateway honours;
* where it takes config keys of its own (Azure's ``api_version``, Bedrock's ``region``...),
  declares them in a subclass of ``ProviderSettings`` set as its ``settings_model``, and reads
  them from the typed settings it is built with; the config validates each provider entry
  against its type's model, so a key the model lacks is a config error, and a new provider's
  keys need no line in ``lockgate.config``. Third-party providers declare theirs the same way;
* implements ``chat`` and ``chat_stream`` over the canonical types of ``lockgate.core``;
  ``embeddings`` where the provider has them;
* for classical ML models, implements ``predict`` and ``metadata`` (what the model takes and
  gives, against which every request is checked before it is sent);
* may set ``native_dialect`` ("openai" or "anthropic") and implement ``forward``: then a client
  speaking that dialect is relayed byte for byte, with no translation;
* may offer optional abilities, each its own small protocol below (``TokenCounter``);
* may implement ``start`` (work that needs the running event loop, or loads a model) and
  ``aclose`` (stops what runs in the background).

What a provider can do is its ``capabilities``, read once from what its class implements:
``chat`` (``chat``), ``stream`` (``chat_stream``), ``embed`` (``embeddings``), ``predict``
(``predict``), ``relay`` (``native_dialect`` and ``forward``) and ``count_tokens``
(``TokenCounter``). The router keeps
only the deployments able to serve a request's operation, before anything is reserved, and
the conformance matrix is built from the same set; a subclass narrows it in ``offers``.

Every call takes ``timeout``: seconds until the upstream's answer starts (status line). Failures
are raised as ``lockgate.errors.UpstreamError`` (retryable or not); ``chat_stream`` raises
connection and status errors when awaited, before it returns the event iterator, so that the
pipeline can retry them, and raises ``UpstreamError`` from the iterator for a failure mid-stream.
"""

from __future__ import annotations

import os
import re
from collections.abc import AsyncIterator, Mapping
from functools import cached_property
from typing import Any, ClassVar, Protocol, runtime_checkable
from urllib.parse import urlsplit

import aiohttp
from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from lockgate.core.chat import ChatRequest, ChatResponse, StreamEvent
from lockgate.core.embeddings import EmbeddingsRequest, EmbeddingsResponse
from lockgate.core.tensors import ModelMetadata, PredictRequest, PredictResponse
from lockgate.errors import InvalidRequest
from lockgate.providers._ssrf import refused_host
from lockgate.providers.http import DEFAULT_LIMITS, ReadLimits, read_json


class ProviderSettings(BaseModel):
    """The config keys every provider takes. A provider with keys of its own extends this
    model and names the subclass in its ``settings_model``."""

    # As the rest of the config: a misspelt key is an error, and settings never change once loaded.
    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)

    type: str
    api_key: str | None = None
    # Declared before ``base_url``, whose validator reads it.
    allow_private_network: bool = False  # true: base_url may be link-local / cloud metadata
    base_url: str | None = None
    headers: dict[str, str] = Field(default_factory=dict)
    timeout_s: float = Field(default=60.0, gt=0)

    @field_validator("base_url")
    @classmethod
    def _no_metadata_address(cls, value: str | None, info: ValidationInfo) -> str | None:
        """The SSRF guard (``_ssrf``): no link-local or cloud-metadata host unless allowed."""
        if value is None or info.data.get("allow_private_network"):
            return value
        host = urlsplit(value).hostname if "://" in value else None
        reason = refused_host(host) if host else None
        if reason is not None:
            raise ValueError(f"{reason}; set allow_private_network: true on this provider "
                             "if it is meant")
        return value


class Provider:
    type_name: ClassVar[str] = ""
    default_base_url: ClassVar[str] = ""
    api_key_env: ClassVar[str | None] = None
    base_url_env: ClassVar[str | None] = None  # read through ``base_url_variable``
    settings_model: ClassVar[type[ProviderSettings]] = ProviderSettings
    native_dialect: ClassVar[str | None] = None
    # The model a zero-config gateway exposes when only the credential variable is set.
    default_model: ClassVar[str | None] = None
    # True where the upstream model id goes into the request's URL path (Gemini, Vertex,
    # Bedrock, Azure deployments): an id a client chose must then not be able to change the
    # path (``safe_in_path``). Providers that send the id in the body set False.
    model_in_path: ClassVar[bool] = True
    # What one upstream answer or stream event may weigh; ``create_app`` sets the configured
    # limits on each provider it builds (a provider built on its own keeps the defaults).
    limits: ReadLimits = DEFAULT_LIMITS

    capabilities: ClassVar[frozenset[str]] = frozenset()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls.capabilities = cls.offers()

    @classmethod
    def offers(cls) -> frozenset[str]:
        """The capabilities this class implements (see the module's docstring)."""
        own = {name for name, method in _CAPABILITY_METHODS.items()
               if getattr(cls, method) is not getattr(Provider, method)}
        if "relay" in own and cls.native_dialect is None:
            own.discard("relay")
        if callable(getattr(cls, "count_tokens", None)):  # the TokenCounter protocol
            own.add("count_tokens")
        return frozenset(own)

    def __init__(self, name: str, config: ProviderSettings, session: aiohttp.ClientSession) -> None:
        self.name = name
        self.config = config
        self.session = session
        self.base_url = (config.base_url or self.default_base_url).rstrip("/")
        self.api_key = config.api_key or (os.environ.get(self.api_key_env) if self.api_key_env else None)
        self.timeout_s = config.timeout_s

    @classmethod
    def base_url_variable(cls) -> str | None:
        """``base_url_env`` as this very class declares it, never inherited: an OpenAI-compatible
        server (Groq, Ollama...) subclasses the OpenAI provider but is not at OPENAI_BASE_URL."""
        value = cls.__dict__.get("base_url_env")
        return value if isinstance(value, str) else None

    def secrets(self) -> list[str]:
        """Every credential this provider holds, so that error messages can be scrubbed."""
        values = [self.api_key or ""]
        values.extend(v for k, v in self.config.headers.items() if k.lower() in _SECRET_HEADERS)
        return [v for v in values if v]

    def headers(self) -> dict[str, str]:
        """The headers sent on every upstream request: the provider's auth plus the config's
        (a subclass builds its own and merges the config's with ``http.merge_headers``)."""
        return dict(self.config.headers)

    @cached_property
    def request_headers(self) -> dict[str, str]:
        """``headers()`` built once, for providers whose headers depend only on the frozen
        config (not for rotating tokens or per-request signatures)."""
        return self.headers()

    async def read_json(self, response: aiohttp.ClientResponse, timeout: float) -> Any:
        """A whole JSON answer, within ``timeout`` and ``limits.max_response_bytes``."""
        return await read_json(response, timeout, self.limits.max_response_bytes)

    async def chat(self, request: ChatRequest, timeout: float) -> ChatResponse:
        raise NotImplementedError

    async def chat_stream(self, request: ChatRequest, timeout: float) -> AsyncIterator[StreamEvent]:
        raise NotImplementedError

    async def embeddings(self, request: EmbeddingsRequest, timeout: float) -> EmbeddingsResponse:
        raise InvalidRequest(f"provider type {self.type_name!r} does not offer embeddings")

    async def predict(self, request: PredictRequest, timeout: float) -> PredictResponse:
        """One prediction; ``request`` is already checked against ``metadata``."""
        raise NotImplementedError

    async def metadata(self, model: str, timeout: float) -> ModelMetadata:
        """The inputs and outputs of the upstream model ``model`` (a provider that predicts
        implements it; an in-process one knows it from start-up)."""
        raise NotImplementedError

    async def start(self) -> None:
        """Work that needs the running event loop or takes time (loading a model), done once
        before the gateway serves; nothing by default."""
        return None

    async def aclose(self) -> None:
        """Stops whatever the provider runs in the background (token refresh...)."""
        return None

    async def forward(
        self, operation: str, body: dict[str, Any], timeout: float | None,
        client_headers: Mapping[str, str] | None = None,
    ) -> aiohttp.ClientResponse:
        """Sends a request already in ``native_dialect`` (``body["model"]`` set to the upstream
        id) to the provider's endpoint for ``operation`` ("chat" or "embeddings") and returns
        the open response, status already checked. ``timeout`` None: the caller holds the
        deadline (one timer for the whole attempt instead of one per step).
        ``client_headers``: the client's protocol headers (``anthropic-beta``, ``openai-beta``),
        sent along with the provider's own (``http.with_client_headers``)."""
        raise NotImplementedError


# "..", a path separator, a query or fragment start, a percent-escape (decoded by some servers
# and proxies) and any whitespace or control character.
_UNSAFE_IN_PATH = re.compile(r"\.\.|[/\\?#%\s\x00-\x1f\x7f]")


def safe_in_path(model_id: str) -> bool:
    """Whether a client-chosen model id can go into an upstream URL path without changing
    which endpoint it names (``gemini/../../v1beta/cachedContents?...`` must not)."""
    return _UNSAFE_IN_PATH.search(model_id) is None


@runtime_checkable
class TokenCounter(Protocol):
    """A provider that counts a request's input tokens itself (Anthropic's
    ``/v1/messages/count_tokens``). ``body`` is an Anthropic Messages count request with
    ``model`` set to the upstream id; the answer is its ``input_tokens``. Failures are
    ``UpstreamError`` as for any call."""

    async def count_tokens(self, body: dict[str, Any], timeout: float) -> int: ...


_CAPABILITY_METHODS = {"chat": "chat", "stream": "chat_stream", "embed": "embeddings",
                       "relay": "forward", "predict": "predict"}

_SECRET_HEADERS = frozenset({"authorization", "api-key", "x-api-key", "x-goog-api-key"})
