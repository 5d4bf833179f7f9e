"""DeepSeek's API, whose root is ``https://api.deepseek.com`` (``/v1`` works too). Its output
limit is ``max_tokens``. ``deepseek-reasoner`` streams its thinking as ``reasoning_content``
deltas: relayed to OpenAI clients as is, left out of translations (the answer is ``content``).
DeepSeek has no embeddings."""

from lockgate.providers.openai import OpenAIProvider


class DeepSeekProvider(OpenAIProvider):
    type_name = "deepseek"
    default_base_url = "https://api.deepseek.com"
    api_key_env = "DEEPSEEK_API_KEY"
    default_model = "deepseek-chat"
    rename_params = {"max_completion_tokens": "max_tokens"}
    supports_embeddings = False
