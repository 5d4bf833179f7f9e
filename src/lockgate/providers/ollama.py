"""Ollama's OpenAI-compatible endpoint. Its request struct knows ``max_tokens`` only and silently
ignores unknown fields, so a ``max_completion_tokens`` limit would be lost: it is renamed."""

from lockgate.providers.openai import OpenAIProvider


class OllamaProvider(OpenAIProvider):
    type_name = "ollama"
    default_base_url = "http://localhost:11434/v1"
    api_key_env = None  # no key; never send it the OpenAI key from the environment
    default_model = None
    rename_params = {"max_completion_tokens": "max_tokens"}
