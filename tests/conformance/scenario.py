"""The suite's client-neutral vocabulary.

A feature check says what to ask in these terms (``Ask``); each client format renders it in its
own SDK's terms, and each provider case reads its upstream's recorded bodies back into them
(``Turn``, ``ToolSpec``, ``Image``, ``JsonMode``). So a check is written once and compares like
with like, whatever the client and the provider.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

Finish = Literal["stop", "length", "tool_calls", "other"]


@dataclass(frozen=True)
class Image:
    """By ``url``, or inline as base64 ``data`` with its ``media_type`` (None for a URL)."""

    url: str | None = None
    data: str | None = None
    media_type: str | None = None


@dataclass(frozen=True)
class Call:
    """A tool call. ``id`` is None where the wire format has none (Gemini)."""

    id: str | None
    name: str
    arguments: dict[str, Any]


@dataclass(frozen=True)
class Turn:
    """One conversation turn. A ``tool`` turn is a tool result: ``text`` answers the call named
    by ``call_id`` (or by the function ``name``, where the wire format pairs by name)."""

    role: Literal["user", "assistant", "tool"]
    text: str = ""
    images: tuple[Image, ...] = ()
    calls: tuple[Call, ...] = ()
    call_id: str | None = None
    name: str | None = None


@dataclass(frozen=True)
class ToolSpec:
    name: str
    description: str
    parameters: dict[str, Any]


@dataclass(frozen=True)
class JsonMode:
    """JSON output was asked for: any JSON (``schema`` None) or JSON following ``schema``."""

    schema: dict[str, Any] | None = None


@dataclass(frozen=True)
class Ask:
    """A request, before any client format renders it."""

    turns: tuple[Turn, ...]
    system: str | None = None
    tools: tuple[ToolSpec, ...] = ()
    stop: tuple[str, ...] = ()
    json_mode: JsonMode | None = None
    max_tokens: int = 256
    include_usage: bool = False  # streams: ask for usage where the format makes it optional

    @classmethod
    def say(cls, text: str, **options: Any) -> Ask:
        return cls(turns=(Turn("user", text),), **options)


@dataclass
class Answer:
    """What a client saw, in neutral terms. ``text_events`` counts the stream events that
    carried text (0 for a plain answer); ``usage`` is (prompt, completion) tokens, None when
    the answer carried none."""

    model: str
    text: str
    finish: Finish
    calls: list[Call] = field(default_factory=list)
    usage: tuple[int, int] | None = None
    text_events: int = 0
    models_seen: set[str] = field(default_factory=set)


@dataclass(frozen=True)
class Failure:
    """An error the client SDK raised: its class name, HTTP status, message and headers."""

    kind: str
    status: int | None
    message: str
    headers: dict[str, str]


@dataclass(frozen=True)
class Ending:
    """How a raw stream ended: how many ordinary events came before the first error event, the
    error object of the last event if it is an error, how many error events there were, and
    whether the format's normal end (OpenAI ``[DONE]``, Anthropic ``message_stop``) appeared."""

    events_before_error: int
    error: dict[str, Any] | None
    error_events: int
    normal_end: bool
