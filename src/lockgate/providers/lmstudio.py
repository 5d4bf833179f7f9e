"""LM Studio's local server. It takes ``max_tokens`` and has no ``stream_options`` (its streams
carry no usage: lmstudio-ai/lmstudio-bug-tracker#713), so streams go without a usage chunk."""

from lockgate.providers.openai import OpenAIProvider


class LMStudioProvider(OpenAIProvider):
    type_name = "lmstudio"
    default_base_url = "http://localhost:1234/v1"
    api_key_env = None  # a local server: never send it the OpenAI key from the environment
    default_model = None
    rename_params = {"max_completion_tokens": "max_tokens"}
    supports_stream_usage = False
