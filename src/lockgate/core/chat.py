"""Canonical chat types: the hub every client dialect parses into and every provider reads from.

They are plain, typed and I/O-free. A dialect turns its wire format into a ``ChatRequest``; a
provider turns a ``ChatRequest`` into its own wire format and its answer back into a
``ChatResponse`` or a stream of ``StreamEvent``. N dialects and M providers cost N+M modules.

Vocabulary follows OpenAI where the providers disagree (finish reasons, tool-call ids, usage
names) because it is the most widely spoken; each dialect maps to and from it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

Role = Literal["system", "user", "assistant", "tool"]

# "stop" covers a natural end and a matched stop sequence (see ChatResponse.stop_sequence).
FinishReason = Literal["stop", "length", "tool_calls", "content_filter"]


@dataclass(slots=True)
class TextPart:
    text: str
    type: Literal["text"] = "text"


@dataclass(slots=True)
class ImagePart:
    """An image given either by URL or inline as base64 ``data`` with its ``media_type``."""

    url: str | None = None
    data: str | None = None
    media_type: str | None = None
    detail: str | None = None
    type: Literal["image"] = "image"

    @classmethod
    def from_url(cls, url: str, detail: str | None = None) -> ImagePart:
        """Splits a ``data:`` URL into its base64 payload; keeps any other URL as it is."""
        if url.startswith("data:") and ";base64," in url:
            head, _, data = url.partition(";base64,")
            return cls(data=data, media_type=head[5:] or "image/png", detail=detail)
        return cls(url=url, detail=detail)

    def as_data_url(self) -> str:
        if self.data is not None:
            return f"data:{self.media_type or 'image/png'};base64,{self.data}"
        return self.url or ""


ContentPart = TextPart | ImagePart


@dataclass(slots=True)
class ToolCall:
    """A call the model asks for; ``arguments`` is the JSON text exactly as the model wrote it."""

    id: str
    name: str
    arguments: str


@dataclass(slots=True)
class Message:
    """One turn. ``content`` holds text and images; an assistant turn may add ``tool_calls``; a
    ``tool`` turn answers the call named by ``tool_call_id`` (``name`` is the tool's name where
    the client gave it, which Gemini needs)."""

    role: Role
    content: list[ContentPart] = field(default_factory=list)
    tool_calls: list[ToolCall] = field(default_factory=list)
    tool_call_id: str | None = None
    name: str | None = None

    def text(self) -> str:
        return "".join(p.text for p in self.content if isinstance(p, TextPart))


@dataclass(slots=True)
class Tool:
    name: str
    description: str | None = None
    parameters: dict[str, Any] = field(default_factory=lambda: {"type": "object", "properties": {}})


@dataclass(slots=True)
class ToolChoice:
    """``auto`` lets the model decide, ``none`` forbids tools, ``required`` forces some tool,
    ``tool`` forces the one named."""

    mode: Literal["auto", "none", "required", "tool"] = "auto"
    name: str | None = None


@dataclass(slots=True)
class ResponseFormat:
    """``text`` (default), ``json_object`` (any JSON) or ``json_schema`` (``schema`` given)."""

    type: Literal["text", "json_object", "json_schema"] = "text"
    schema: dict[str, Any] | None = None
    name: str | None = None
    strict: bool | None = None


@dataclass(slots=True)
class ChatRequest:
    """What the client asked for, in canonical form. ``model`` is the upstream model id once
    routed; before that it is the name the client used. ``system`` gathers every system
    instruction (Anthropic and Gemini keep it apart from the turns)."""

    model: str
    messages: list[Message]
    system: str | None = None
    stream: bool = False
    max_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    stop: list[str] = field(default_factory=list)
    tools: list[Tool] = field(default_factory=list)
    tool_choice: ToolChoice | None = None
    parallel_tool_calls: bool | None = None
    response_format: ResponseFormat | None = None
    seed: int | None = None
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    n: int | None = None
    user: str | None = None
    include_usage: bool = False

    def system_text(self, *extra: str) -> str:
        """Every system instruction as one text, for upstreams that take one system prompt:
        ``system``, then the system turns some clients leave among the messages, then ``extra``
        (what a provider adds, such as a JSON-mode instruction), a blank line between each."""
        parts = [self.system or ""]
        parts.extend(m.text() for m in self.messages if m.role == "system")
        parts.extend(extra)
        return "\n\n".join(p for p in parts if p)


@dataclass(slots=True)
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0
    reasoning_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


@dataclass(slots=True)
class ChatResponse:
    id: str
    model: str
    content: str | None
    tool_calls: list[ToolCall] = field(default_factory=list)
    finish_reason: FinishReason = "stop"
    stop_sequence: str | None = None
    usage: Usage = field(default_factory=Usage)
    created: int = 0


# --- stream events -------------------------------------------------------------------------
# A provider's stream is an async iterator of these, in this order: one StreamStart, then any
# mix of TextDelta / ToolCallStart / ToolCallDelta, then one StreamFinish, then at most one
# UsageEvent (some providers report usage before the finish; providers hold it until after).
# A failure mid-stream is raised from the iterator as an UpstreamError.


@dataclass(slots=True)
class StreamStart:
    id: str
    model: str
    created: int = 0
    # Some providers report prompt tokens at the start (Anthropic's message_start).
    usage: Usage | None = None


@dataclass(slots=True)
class TextDelta:
    text: str


@dataclass(slots=True)
class ToolCallStart:
    """A new tool call at position ``index`` (0-based, in order of appearance)."""

    index: int
    id: str
    name: str


@dataclass(slots=True)
class ToolCallDelta:
    """A fragment of the JSON arguments of the call at ``index``."""

    index: int
    arguments: str


@dataclass(slots=True)
class StreamFinish:
    finish_reason: FinishReason
    stop_sequence: str | None = None


@dataclass(slots=True)
class UsageEvent:
    usage: Usage


StreamEvent = StreamStart | TextDelta | ToolCallStart | ToolCallDelta | StreamFinish | UsageEvent
