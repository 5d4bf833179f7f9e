"""What the answer cache keys on: a request in a canonical form, its tenant, and what its
client says about caching (``cache-control``). Pure functions of the request; no I/O.

Two requests share an answer only if they come from the same tenant (the team, else the key:
never across tenants), in the same dialect (an Anthropic client gets an Anthropic answer),
for the same model version, both streamed or both not, and their bodies are equal as sorted
JSON once the fields that do not change the answer are left out (``stream``, ``user``,
``metadata``, and ``stream_options`` of a request that does not stream). A streamed request
and a whole one are cached apart: each is replayed exactly as its first answer was sent.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence
from typing import Any

import orjson

from lockgate.pipeline.context import RequestContext

# Fields that change nothing in the answer: who the end user is, and tags for the client.
_IGNORED = frozenset({"stream", "user", "metadata"})
# Where a request's prompt is, in each dialect (OpenAI chat, Anthropic, legacy completions,
# Responses); the semantic cache embeds their text and keys the rest exactly.
_PROMPT_FIELDS = ("system", "instructions", "messages", "prompt", "input")
_TEXT_PARTS = frozenset({"text", "input_text", "output_text"})
# Fields that make an answer depend on more than the prompt's meaning: never semantic.
_TOOL_FIELDS = ("tools", "functions", "tool_choice", "function_call")


def tenant(ctx: RequestContext) -> str:
    """Whose answers these are: the team's, else the key's (an open gateway has one tenant)."""
    if ctx.team_id is not None:
        return f"team:{ctx.team_id}"
    return f"key:{ctx.key_id}" if ctx.key_id is not None else "open"


def cache_control(headers: Sequence[tuple[bytes, bytes]]) -> tuple[bool, bool]:
    """(no_cache, no_store) from the request's ``cache-control``: ``no-cache`` skips the
    lookup, ``no-store`` the write."""
    no_cache = no_store = False
    for name, value in headers:
        if name == b"cache-control":
            directives = {d.strip().lower() for d in value.split(b",")}
            no_cache = no_cache or b"no-cache" in directives
            no_store = no_store or b"no-store" in directives
    return no_cache, no_store


def exact_key(dialect: str, body: dict[str, Any], stream: bool, ctx: RequestContext) -> str:
    return f"{tenant(ctx)}:{_digest(dialect, _answer_fields(body, stream), stream, ctx)}"


def semantic_parts(dialect: str, body: dict[str, Any], stream: bool, ctx: RequestContext,
                   max_temperature: float) -> tuple[str, str] | None:
    """(bucket, prompt text) for the semantic cache, or None where it is not safe: tools
    (the answer is a call, whose arguments a near-duplicate must not reuse), a temperature
    above ``max_temperature``, or content that is not text (an image)."""
    if any(body.get(field) for field in _TOOL_FIELDS):
        return None
    temperature = body.get("temperature")
    if temperature is not None and (not isinstance(temperature, int | float)
                                    or temperature > max_temperature):
        return None
    texts: list[str] = []
    for field in _PROMPT_FIELDS:
        if field in body and not _collect_text(body[field], texts):
            return None
    if not texts:
        return None
    rest = {k: v for k, v in _answer_fields(body, stream).items() if k not in _PROMPT_FIELDS}
    bucket = f"{tenant(ctx)}:{_digest(dialect, rest, stream, ctx)}"
    return bucket, "\n".join(texts)


def _answer_fields(body: dict[str, Any], stream: bool) -> dict[str, Any]:
    ignored = _IGNORED if stream else _IGNORED | {"stream_options"}
    return {k: v for k, v in body.items() if k not in ignored}


def _digest(dialect: str, fields: dict[str, Any], stream: bool, ctx: RequestContext) -> str:
    # The plan's model, version and experiment variant, not only the name asked for: ``chat``
    # served by a new default version must not get the old one's answers.
    material = (dialect, ctx.model, ctx.version, ctx.variant, stream, fields)
    return hashlib.sha256(orjson.dumps(material, option=orjson.OPT_SORT_KEYS)).hexdigest()


def _collect_text(value: Any, out: list[str]) -> bool:
    """Appends every string in ``value`` (roles and texts, in order); False where a content
    part is not text."""
    for item in _walk(value):
        if item is None:
            return False
        out.append(item)
    return True


def _walk(value: Any) -> Iterator[str | None]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, list):
        for item in value:
            yield from _walk(item)
    elif isinstance(value, dict):
        kind = value.get("type")
        if isinstance(kind, str) and kind not in _TEXT_PARTS and "role" not in value:
            yield None  # an image, a document, a tool result: not for a near-duplicate
            return
        for key, item in value.items():
            if key not in ("type", "cache_control"):
                yield from _walk(item)
