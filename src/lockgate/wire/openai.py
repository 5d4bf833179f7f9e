"""OpenAI's Chat Completions wire format where a dialect and providers share it: the usage
object, content parts and function tools, as the OpenAI dialect renders them and the OpenAI,
Cohere and Mistral providers send and read them."""

from __future__ import annotations

from typing import Any

from lockgate.core.chat import ContentPart, TextPart, Tool, Usage


def usage_object(usage: Usage) -> dict[str, Any]:
    out: dict[str, Any] = {
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens,
        "total_tokens": usage.total_tokens,
    }
    if usage.cached_tokens:
        out["prompt_tokens_details"] = {"cached_tokens": usage.cached_tokens}
    if usage.reasoning_tokens:
        out["completion_tokens_details"] = {"reasoning_tokens": usage.reasoning_tokens}
    return out


def usage_from_object(raw: Any) -> Usage:
    if not isinstance(raw, dict):
        return Usage()
    prompt_details = raw.get("prompt_tokens_details") or {}
    completion_details = raw.get("completion_tokens_details") or {}
    return Usage(
        prompt_tokens=int(raw.get("prompt_tokens") or 0),
        completion_tokens=int(raw.get("completion_tokens") or 0),
        cached_tokens=int(prompt_details.get("cached_tokens") or 0),
        reasoning_tokens=int(completion_details.get("reasoning_tokens") or 0),
    )


def content_part(part: ContentPart) -> dict[str, Any]:
    """A text or image part in the Chat Completions shape, as OpenAI and Cohere v2 take it
    (Mistral's image part differs: its ``image_url`` is the URL itself)."""
    if isinstance(part, TextPart):
        return {"type": "text", "text": part.text}
    image: dict[str, Any] = {"url": part.as_data_url()}
    if part.detail:
        image["detail"] = part.detail
    return {"type": "image_url", "image_url": image}


def function_tool(tool: Tool) -> dict[str, Any]:
    """A tool declared in the Chat Completions shape, as the providers that borrow it (Cohere
    v2, Mistral) send it: a tool without a description goes without one, not with "" (which
    the OpenAI provider sends)."""
    function: dict[str, Any] = {"name": tool.name, "parameters": tool.parameters}
    if tool.description:
        function["description"] = tool.description
    return {"type": "function", "function": function}
