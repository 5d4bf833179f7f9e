"""vLLM's OpenAI-compatible server (``vllm serve``). It speaks OpenAI's API as is; it needs no
key unless it was started with ``--api-key`` (then set ``api_key``)."""

from lockgate.providers.openai import OpenAIProvider


class VLLMProvider(OpenAIProvider):
    type_name = "vllm"
    default_base_url = "http://localhost:8000/v1"
    api_key_env = None  # a local server: never send it the OpenAI key from the environment
    default_model = None
