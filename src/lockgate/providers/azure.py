"""Azure OpenAI: OpenAI's Chat Completions and Embeddings behind a resource endpoint, where a
target's ``model`` names a *deployment*::

    POST {endpoint}/openai/deployments/{deployment}/chat/completions?api-version={api_version}
    POST {endpoint}/openai/deployments/{deployment}/embeddings?api-version={api_version}

``base_url`` is the resource endpoint (``https://{resource}.openai.azure.com``; without one,
``AZURE_OPENAI_ENDPOINT`` as the official SDK reads it). An endpoint that already ends in
``/openai`` is accepted as well, and one that ends in ``/openai/v1`` selects Azure's v1 API:
``{base}/chat/completions`` with the deployment as the body's ``model``, and an api-version only
when one is configured.

Credentials: an ``api-key`` header (``api_key``, else ``AZURE_OPENAI_API_KEY``), or a Microsoft
Entra ID token: an ``Authorization`` header in the config's ``headers`` (used as is, in place of
the key variable), else ``AZURE_OPENAI_AD_TOKEN`` sent as a bearer token.

The wire format is OpenAI's, so an OpenAI client is relayed byte for byte and Azure's additions
reach it: ``prompt_filter_results``, per-choice ``content_filter_results``, and a stream that
opens with a chunk without choices, id or model. API versions older than 2024-09-01 know neither
``stream_options`` nor ``max_completion_tokens``; for them the option is dropped (such streams
carry no usage) and the limit is sent as ``max_tokens``.
"""

from __future__ import annotations

import os
import re
from urllib.parse import quote

import aiohttp

from lockgate.errors import UpstreamError
from lockgate.providers.base import ProviderSettings
from lockgate.providers.http import merge_headers
from lockgate.providers.openai import OpenAIProvider, Quirks

# The latest dated GA version of the inference API (stable/2024-10-21 in Azure's REST specs).
DEFAULT_API_VERSION = "2024-10-21"
# The first version with stream_options and max_completion_tokens (2024-09-01-preview).
_STREAM_USAGE_SINCE = "2024-09-01"
_DATED = re.compile(r"\d{4}-\d{2}-\d{2}")
_PATHS = {"chat": "/chat/completions", "embeddings": "/embeddings"}


class AzureSettings(ProviderSettings):
    """Azure's own config key: the dated API version (unset: the v1 API or DEFAULT_API_VERSION)."""

    api_version: str | None = None


class AzureProvider(OpenAIProvider):
    type_name = "azure"
    default_base_url = ""
    api_key_env = "AZURE_OPENAI_API_KEY"
    settings_model = AzureSettings
    default_model = None  # deployments are named by their owner; there is no common one
    model_in_path = True  # the deployment name is in the URL path

    def __init__(self, name: str, config: AzureSettings, session: aiohttp.ClientSession) -> None:
        endpoint = (config.base_url or os.environ.get("AZURE_OPENAI_ENDPOINT") or "").rstrip("/")
        self.v1 = endpoint.endswith("/openai/v1")
        self.api_version = config.api_version or (None if self.v1 else DEFAULT_API_VERSION)
        super().__init__(name, config, session)
        self.base_url = endpoint
        self._root = endpoint.removesuffix("/openai")
        entra_header = any(k.lower() == "authorization" for k in config.headers)
        if entra_header and not config.api_key:
            self.api_key = None  # the configured token is the credential, not the key variable
        self.ad_token = None
        if not self.api_key and not entra_header:
            self.ad_token = os.environ.get("AZURE_OPENAI_AD_TOKEN") or None

    def build_quirks(self) -> Quirks:
        quirks = super().build_quirks()
        version = self.api_version or ""
        if not _DATED.match(version) or version >= _STREAM_USAGE_SINCE:
            return quirks
        return Quirks(quirks.drop | {"stream_options"}, {"max_completion_tokens": "max_tokens"},
                      quirks.drop_message_fields)

    def headers(self) -> dict[str, str]:
        headers = {"content-type": "application/json"}
        if self.api_key:
            headers["api-key"] = self.api_key
        elif self.ad_token:
            headers["authorization"] = f"Bearer {self.ad_token}"
        return merge_headers(headers, self.config.headers)

    def secrets(self) -> list[str]:
        return [*super().secrets(), *([self.ad_token] if self.ad_token else [])]

    def url(self, operation: str, model: str) -> str:
        if not self.base_url:
            raise UpstreamError(
                f"provider {self.name!r} has no Azure endpoint: set its base_url "
                "(https://<resource>.openai.azure.com) or AZURE_OPENAI_ENDPOINT", retryable=False)
        if self.v1:
            url = self.base_url + _PATHS[operation]
        else:
            url = f"{self._root}/openai/deployments/{quote(model, safe='')}{_PATHS[operation]}"
        return f"{url}?api-version={quote(self.api_version)}" if self.api_version else url
