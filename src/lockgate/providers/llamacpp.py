"""llama.cpp's ``llama-server``. It reads the output limit from ``max_tokens`` (or its own
``n_predict``), so ``max_completion_tokens`` is renamed; ``--api-key`` servers need ``api_key``."""

from lockgate.providers.openai import OpenAIProvider


class LlamaCppProvider(OpenAIProvider):
    type_name = "llamacpp"
    default_base_url = "http://localhost:8080/v1"
    api_key_env = None  # a local server: never send it the OpenAI key from the environment
    default_model = None
    rename_params = {"max_completion_tokens": "max_tokens"}
