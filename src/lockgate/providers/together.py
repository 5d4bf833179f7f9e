"""Together AI's OpenAI-compatible API. Its documented output limit is ``max_tokens``, so
``max_completion_tokens`` is renamed."""

from lockgate.providers.openai import OpenAIProvider


class TogetherProvider(OpenAIProvider):
    type_name = "together"
    default_base_url = "https://api.together.xyz/v1"
    api_key_env = "TOGETHER_API_KEY"
    default_model = "meta-llama/Llama-3.3-70B-Instruct-Turbo"
    rename_params = {"max_completion_tokens": "max_tokens"}
