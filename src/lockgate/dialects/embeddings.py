"""The ``input`` of an OpenAI Embeddings request: ``string | string[] | int[] | int[][]``.

Token ids (what LangChain's ``OpenAIEmbeddings`` sends by default, having tokenized the text
itself) mean something only to the tokenizer of the model they were made for: they are relayed
as they are to OpenAI-compatible upstreams and never turned back into text for another
provider, which refuses them with a 400 naming it (``needs_text``).
"""

from __future__ import annotations

from typing import Any

from lockgate.errors import InvalidRequest

_INPUT_SHAPES = "a string, an array of strings, an array of token ids or an array of such arrays"


def parse_input(raw: Any) -> tuple[list[str], list[list[int]] | None]:
    """The texts, or the token-id arrays (then the texts are empty)."""
    if isinstance(raw, str):
        return [raw], None
    if not isinstance(raw, list) or not raw:
        raise InvalidRequest(f"input: {_INPUT_SHAPES} is required")
    if all(isinstance(x, str) for x in raw):
        return list(raw), None
    if _token_ids(raw):
        return [], [list(raw)]
    if all(isinstance(x, list) and x and _token_ids(x) for x in raw):
        return [], [list(x) for x in raw]
    raise InvalidRequest(f"input: must be {_INPUT_SHAPES}, not a mix")


def _token_ids(values: list[Any]) -> bool:
    return all(type(v) is int and v >= 0 for v in values)


def needs_text(route: str, provider_type: str) -> InvalidRequest:
    """The refusal of token ids by a provider that embeds text only."""
    return InvalidRequest(
        f"input: {route} (provider type {provider_type!r}) embeds text only and cannot take "
        "token arrays; send the input as strings, or use a model whose target is "
        "OpenAI-compatible")
