"""Scripted answers for the fake upstreams, provider-neutral.

A test enqueues scripts on a fake; each scripted request takes the next one and the fake renders
it in its own provider's wire format. Whether an answer streams is decided by the request, never
by the script, so the same ``Reply`` serves a plain and a streaming call.

Token counts follow OpenAI's meaning: ``prompt_tokens`` includes ``cached_tokens``. A fake whose
provider counts them apart (Anthropic's ``input_tokens`` excludes cache reads) converts.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import struct
from dataclasses import dataclass, field
from typing import Any, Literal

FinishReason = Literal["stop", "length", "tool_calls"]


@dataclass(frozen=True)
class FakeToolCall:
    """A tool call the fake model makes. An empty ``id`` gets a provider-style generated one."""

    id: str
    name: str
    arguments: dict[str, Any]

    def arguments_json(self) -> str:
        """The arguments as the providers write them: compact JSON."""
        return json.dumps(self.arguments, separators=(",", ":"), ensure_ascii=False)


@dataclass(frozen=True)
class Reply:
    """A successful answer.

    ``finish`` defaults to ``tool_calls`` when there are tool calls, else ``stop``.
    ``headers_delay_s`` sleeps before the status line is sent (timeout tests);
    ``chunk_delay_s`` sleeps between stream events; ``cut_after`` (streams only) drops the TCP
    connection after that many events, without the stream's proper end.
    """

    text: str = "Hello from the fake!"
    tool_calls: list[FakeToolCall] = field(default_factory=list)
    finish: FinishReason | None = None
    prompt_tokens: int = 11
    completion_tokens: int = 7
    model: str | None = None
    headers_delay_s: float = 0.0
    chunk_delay_s: float = 0.0
    cut_after: int | None = None
    cached_tokens: int = 0

    @property
    def finish_reason(self) -> FinishReason:
        if self.finish is not None:
            return self.finish
        return "tool_calls" if self.tool_calls else "stop"

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


@dataclass(frozen=True)
class Fail:
    """An error answer in the provider's exact error shape, with ``retry-after`` when given.

    ``error_type`` overrides the provider's type for the status (OpenAI ``type``, Anthropic
    ``error.type``, Gemini ``status``). ``after_events`` (streams only) makes it a mid-stream
    failure instead: status 200, that many events of a default ``Reply``, then the provider's
    in-stream error event and the end of the body.
    """

    status: int
    message: str = "The fake upstream failed on purpose."
    retry_after: float | None = None
    error_type: str | None = None
    after_events: int | None = None


@dataclass(frozen=True)
class Hang:
    """Accept the request, send nothing for ``seconds``, then drop the connection."""

    seconds: float


@dataclass(frozen=True)
class Raw:
    """Misbehaviour, whatever the provider: ``status`` and exactly these body ``pieces``,
    written one by one with no regard for the wire format (garbage, an event that never ends,
    a huge answer). ``repeat`` writes the last piece that many more times (endless bytes
    without holding them in memory); ``silence_s`` then keeps the connection open and silent
    (a stalled upstream) before the body ends; ``content_length`` announces that length;
    ``gap_s`` sleeps between two pieces, so that each reaches the gateway as its own read;
    ``cut`` drops the TCP connection after the pieces instead of ending the body (an upstream
    that dies in the middle of a plain answer)."""

    pieces: tuple[bytes, ...]
    content_type: str = "text/event-stream"
    repeat: int = 0
    silence_s: float = 0.0
    content_length: int | None = None
    gap_s: float = 0.0
    status: int = 200
    cut: bool = False


Script = Reply | Fail | Hang | Raw


def text_pieces(text: str) -> list[str]:
    """Splits text into word-sized deltas, each keeping its leading whitespace."""
    return re.findall(r"\s*\S+\s*$|\s*\S+", text) or ([text] if text else [])


def json_pieces(text: str) -> list[str]:
    """Splits JSON text into token-like fragments (``{"``, ``city``, ``":"``, ...), the way
    OpenAI and Anthropic stream tool arguments. Never splits inside a multi-byte character."""
    return re.findall(r"\w+|\W+", text)


def fake_vector(text: str, dimensions: int = 8) -> list[float]:
    """A deterministic unit vector for ``text``. Every component is exactly representable as a
    float32, so the base64 (float32) and the plain JSON encodings carry the same numbers."""
    digest = hashlib.shake_256(text.encode()).digest(4 * dimensions)
    raw = [int.from_bytes(digest[i : i + 4], "big") / 2**31 - 1.0 for i in range(0, len(digest), 4)]
    norm = math.sqrt(sum(x * x for x in raw)) or 1.0
    return [_as_float32(x / norm) for x in raw]


def word_vector(text: str, dimensions: int = 64) -> list[float]:
    """A bag-of-words unit vector: each lower-cased word adds 1 to a dimension its hash picks.
    Texts that share most words are close by cosine, texts that share none are not: what a
    semantic cache needs from an embedding model to be tested."""
    counts = [0.0] * dimensions
    for word in re.findall(r"[a-z0-9]+", text.lower()):
        counts[int.from_bytes(hashlib.sha256(word.encode()).digest()[:4], "big") % dimensions] += 1.0
    norm = math.sqrt(sum(x * x for x in counts)) or 1.0
    return [_as_float32(x / norm) for x in counts]


def _as_float32(value: float) -> float:
    return float(struct.unpack("<f", struct.pack("<f", value))[0])
