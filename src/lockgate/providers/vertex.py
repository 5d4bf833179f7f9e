"""Vertex AI: Google's Gemini models and Anthropic's Claude models on Google Cloud.

Wire format (https://cloud.google.com/vertex-ai/generative-ai/docs/reference/rest):
``POST {root}/v1/projects/{project}/locations/{location}/publishers/{publisher}/models/{model}:{method}``
with ``Authorization: Bearer <OAuth access token>``. The root is
``https://{location}-aiplatform.googleapis.com`` (``aiplatform.googleapis.com`` for ``global``,
``aiplatform.{us|eu}.rep.googleapis.com`` for the multi-regions); a configured ``base_url``
replaces it.

* Gemini (publisher ``google``): ``:generateContent`` and ``:streamGenerateContent?alt=sse``,
  bodies and answers exactly as on the Gemini API, so the translation is ``providers.gemini``'s;
  embeddings are ``:predict`` (``instances[].content`` in, ``predictions[].embeddings`` out).
* Claude (publisher ``anthropic``, model ids like ``claude-sonnet-4-5@20250929``):
  ``:rawPredict`` and ``:streamRawPredict``, an Anthropic Messages body without ``model`` and
  with ``anthropic_version``; answers and streams are Anthropic's, so the translation is
  ``providers.anthropic``'s.

The publisher is picked by the model id: ``claude*`` is Anthropic, anything else Google. A model
id that is a resource path (``endpoints/123`` for a tuned model, ``publishers/x/models/y``) is
used under the project and location as is.

Credentials: ``credentials_file``, else Application Default Credentials. Tokens are minted in a
worker thread and refreshed in the background before they expire (``_google_auth``); a request
only reads the current one. With an ``api_key`` instead, the provider speaks Vertex AI express
mode (Gemini only, no project or location in the path).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import time
from collections.abc import AsyncIterator
from typing import Any, ClassVar

import aiohttp
import orjson

from lockgate.core.chat import ChatRequest, ChatResponse, StreamEvent
from lockgate.core.embeddings import EmbeddingsRequest, EmbeddingsResponse
from lockgate.core.lenient import as_object
from lockgate.errors import InvalidRequest, UpstreamError, UpstreamTimeout, scrub
from lockgate.providers import anthropic, gemini
from lockgate.providers._embed_batches import Batch, batches, gather_batches
from lockgate.providers._google_auth import GoogleCredentials, Grant, TokenSource
from lockgate.providers.base import Provider, ProviderSettings
from lockgate.providers.http import aclose, iter_sse, merge_headers, open_response, parse_sse

JSON = dict[str, Any]

API_VERSION = "v1"
DEFAULT_LOCATION = "us-central1"
# The version Vertex AI's Claude endpoints take in the body, in place of the header.
ANTHROPIC_VERSION = "vertex-2023-10-16"
# :predict takes up to 250 texts for the text-embedding models, one for Gemini embedding models.
EMBED_BATCH = 250
EMBED_PARALLEL = 8
_MULTI_REGIONS = frozenset({"us", "eu"})


# --- addresses -------------------------------------------------------------------------------


def default_root(location: str) -> str:
    """The service root Google's SDKs use for ``location``."""
    if location == "global":
        return "https://aiplatform.googleapis.com"
    if location in _MULTI_REGIONS:
        return f"https://aiplatform.{location}.rep.googleapis.com"
    return f"https://{location}-aiplatform.googleapis.com"


def is_claude(model: str) -> bool:
    return model.rsplit("/", 1)[-1].startswith("claude")


def model_resource(model: str, project: str | None, location: str) -> str:
    """The model's resource name: ``projects/{p}/locations/{l}/publishers/{pub}/models/{m}``;
    without a project (express mode) ``publishers/{pub}/models/{m}``."""
    if model.startswith("projects/"):
        return model
    if "/" not in model:
        model = f"publishers/{'anthropic' if is_claude(model) else 'google'}/models/{model}"
    return f"projects/{project}/locations/{location}/{model}" if project else model


def versioned_root(base_url: str) -> str:
    """``{root}/v1``; a configured root that already ends in an API version keeps it."""
    return base_url if re.search(r"/v1(?:beta1)?$", base_url) else f"{base_url}/{API_VERSION}"


# --- Claude bodies ---------------------------------------------------------------------------


def anthropic_body(request: ChatRequest, *, stream: bool) -> JSON:
    """The Anthropic Messages body as Vertex AI takes it: the model is in the URL, the API
    version in the body. A JSON schema goes as an instruction: Vertex AI switches Claude's
    structured outputs off by default (an organisation policy) and offers them on fewer models."""
    body = anthropic.encode_request(request, stream=stream, native_json=False)
    del body["model"]
    body["anthropic_version"] = ANTHROPIC_VERSION
    return body


# --- embeddings ------------------------------------------------------------------------------


def build_predict_request(inputs: list[str], dimensions: int | None) -> JSON:
    body: JSON = {"instances": [{"content": text} for text in inputs]}
    if dimensions is not None:
        body["parameters"] = {"outputDimensionality": dimensions}
    return body


def parse_predictions(data: Any) -> tuple[list[list[float]], int]:
    """The vectors of a text-embedding ``:predict`` answer and the tokens they counted."""
    predictions = data.get("predictions") if isinstance(data, dict) else None
    if not isinstance(predictions, list):
        raise UpstreamError("the upstream answered without predictions", retryable=True)
    vectors: list[list[float]] = []
    tokens = 0
    for prediction in predictions:
        embeddings = as_object(as_object(prediction).get("embeddings"))
        values = embeddings.get("values")
        if not isinstance(values, list):
            raise UpstreamError("the upstream answered a prediction without values", retryable=True)
        vectors.append(values)
        count = as_object(embeddings.get("statistics")).get("token_count")
        # Vertex sends the count as a JSON number that may be written as a float.
        tokens += int(count) if isinstance(count, int | float) else 0
    return vectors, tokens


class VertexSettings(ProviderSettings):
    """Vertex's own config keys; each unset one falls back as the module docstring says."""

    project: str | None = None
    location: str | None = None
    credentials_file: str | None = None


# --- the provider ----------------------------------------------------------------------------


class VertexProvider(Provider):
    type_name: ClassVar[str] = "vertex"
    default_base_url: ClassVar[str] = default_root(DEFAULT_LOCATION)
    settings_model: ClassVar[type[ProviderSettings]] = VertexSettings

    def __init__(self, name: str, config: VertexSettings, session: aiohttp.ClientSession) -> None:
        super().__init__(name, config, session)
        self.location = config.location or os.environ.get("GOOGLE_CLOUD_LOCATION") or DEFAULT_LOCATION
        self.project = config.project or os.environ.get("GOOGLE_CLOUD_PROJECT")
        express = bool(self.api_key)
        if not config.base_url:
            self.base_url = default_root("global" if express else self.location)
        self._signatures = gemini.SignatureCache()
        self._tokens: TokenSource | None = None
        if not express:
            self._tokens = TokenSource(GoogleCredentials(config.credentials_file).fetch)
            # Built at gateway start-up: fetch the first token now, in the background.
            # Without a running loop (a config check) it is fetched at first use instead.
            with contextlib.suppress(RuntimeError):
                self._tokens.start()

    def headers(self) -> dict[str, str]:
        headers = {"content-type": "application/json"}
        if self.api_key:
            headers["x-goog-api-key"] = self.api_key
        return merge_headers(headers, self.config.headers)

    async def aclose(self) -> None:
        """Stops the background token refresh."""
        if self._tokens is not None:
            await self._tokens.aclose()

    # -- chat ---------------------------------------------------------------------------------

    async def chat(self, request: ChatRequest, timeout: float) -> ChatResponse:
        if is_claude(request.model):
            body = anthropic_body(request, stream=False)
            response = await self._post(request.model, "rawPredict", body, timeout)
            return anthropic.decode_response(await self.read_json(response, timeout))
        body = gemini.build_request(request, self._signatures)
        response = await self._post(request.model, "generateContent", body, timeout)
        data = await self.read_json(response, timeout)
        if not isinstance(data, dict):
            raise UpstreamError("the upstream answered with a JSON value that is not an object")
        return gemini.parse_response(data, request.model, self._signatures)

    async def chat_stream(self, request: ChatRequest, timeout: float) -> AsyncIterator[StreamEvent]:
        if is_claude(request.model):
            body = anthropic_body(request, stream=True)
            response = await self._post(request.model, "streamRawPredict", body, timeout)
            claude = anthropic.AnthropicStreamParser()
            return self._redacting(parse_sse(response, claude, self.limits))
        body = gemini.build_request(request, self._signatures)
        response = await self._post(request.model, "streamGenerateContent", body, timeout,
                                    query="?alt=sse")
        parser = gemini.StreamParser(request.model, self._signatures)
        return self._redacting(gemini.stream_events(iter_sse(response, self.limits), parser))

    # -- embeddings ---------------------------------------------------------------------------

    async def embeddings(self, request: EmbeddingsRequest, timeout: float) -> EmbeddingsResponse:
        if is_claude(request.model):
            raise InvalidRequest(f"provider type 'vertex' has no embeddings for {request.model!r}: "
                                 "Claude models offer none")
        size = 1 if "gemini" in request.model else EMBED_BATCH
        gate = asyncio.Semaphore(EMBED_PARALLEL)
        return await gather_batches(request.model, (
            self._embed(request, texts, timeout, gate) for texts in batches(request.inputs, size)))

    async def _embed(
        self, request: EmbeddingsRequest, inputs: list[str], timeout: float, gate: asyncio.Semaphore
    ) -> Batch:
        async with gate:
            body = build_predict_request(inputs, request.dimensions)
            response = await self._post(request.model, "predict", body, timeout)
            vectors, tokens = parse_predictions(await self.read_json(response, timeout))
        if len(vectors) != len(inputs):
            raise UpstreamError("the upstream answered a different number of embeddings")
        return vectors, tokens

    # -- transport ----------------------------------------------------------------------------

    async def _post(
        self, model: str, method: str, body: JSON, timeout: float, query: str = ""
    ) -> aiohttp.ClientResponse:
        """Opens ``{model}:{method}``. The wait for an access token (only ever the first one,
        or after refreshes failed) counts against the attempt's ``timeout``."""
        started = time.monotonic()
        project, token, headers = await self._credentials(timeout)
        url = f"{versioned_root(self.base_url)}/{model_resource(model, project, self.location)}"
        remaining = max(timeout - (time.monotonic() - started), 0.001)
        try:
            return await open_response(self.session, f"{url}:{method}{query}",
                                       body=orjson.dumps(body), headers=headers, timeout=remaining)
        except UpstreamError as err:
            if err.status == 401 and self._tokens is not None and token:
                # Refused token: the next attempt (retries apply) gets a fresh one.
                self._tokens.reject(token)
                err.retryable = True
            raise self._redacted(err) from None

    @staticmethod
    async def _wait_for_token(tokens: TokenSource, timeout: float) -> Grant:
        try:
            async with asyncio.timeout(timeout):
                return await tokens.grant()
        except TimeoutError:
            raise UpstreamTimeout("no Google access token in time") from None

    def _redacted(self, err: UpstreamError) -> UpstreamError:
        """``err`` without the access tokens in its message. The gateway scrubs the secrets it
        knew at start-up; these rotate, so the provider removes them itself."""
        if self._tokens is not None:
            err.message = scrub(err.message, self._tokens.recent_tokens())
            err.args = (err.message,)
        return err

    async def _redacting(self, events: AsyncIterator[StreamEvent]) -> AsyncIterator[StreamEvent]:
        try:
            async for event in events:
                yield event
        except UpstreamError as err:
            raise self._redacted(err) from None
        finally:
            await aclose(events)

    async def _credentials(self, timeout: float) -> tuple[str | None, str, dict[str, str]]:
        """The project for the path, the access token and the request headers (auth
        included)."""
        if self._tokens is None:
            return None, "", self.headers()  # express mode: the API key is the credential
        grant = self._tokens.current() or await self._wait_for_token(self._tokens, timeout)
        project = self.project or grant.project_id
        if not project:
            raise UpstreamError(
                f"provider {self.name!r} has no Google Cloud project: set `project` in its config "
                "or GOOGLE_CLOUD_PROJECT", retryable=True)
        headers = {"content-type": "application/json", "authorization": f"Bearer {grant.token}"}
        if grant.quota_project_id:
            headers["x-goog-user-project"] = grant.quota_project_id
        return project, grant.token, merge_headers(headers, self.config.headers)
