"""OpenRouter. Its output limit is ``max_tokens``; requests carry its app-attribution title
(``X-Title``), which ``headers`` in the config may replace or extend with ``HTTP-Referer``."""

from lockgate.providers.openai import OpenAIProvider


class OpenRouterProvider(OpenAIProvider):
    type_name = "openrouter"
    default_base_url = "https://openrouter.ai/api/v1"
    api_key_env = "OPENROUTER_API_KEY"
    default_model = "openai/gpt-4o-mini"
    rename_params = {"max_completion_tokens": "max_tokens"}
    extra_headers = {"X-Title": "lockgate"}
