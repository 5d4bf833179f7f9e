"""Groq's OpenAI-compatible API. Groq answers 400 to ``logprobs``, ``logit_bias``,
``top_logprobs`` and ``messages[].name`` (console.groq.com/docs/openai): they are dropped, so
a client that sends them gets its answer without them. ``n`` other than 1 is still refused.
Groq has no embeddings."""

from lockgate.providers.openai import OpenAIProvider


class GroqProvider(OpenAIProvider):
    type_name = "groq"
    default_base_url = "https://api.groq.com/openai/v1"
    api_key_env = "GROQ_API_KEY"
    default_model = "llama-3.3-70b-versatile"
    drop_params = frozenset({"logprobs", "logit_bias", "top_logprobs"})
    drop_message_fields = frozenset({"name"})
    supports_embeddings = False
