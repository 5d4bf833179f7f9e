"""Putting redacted values back into a stream on its way to the client, in the client's format.

The stream is decoded event by event (``wire.sse``: an event split across reads is whole again
here). Each event's text deltas — OpenAI's ``delta.content`` and tool-call ``arguments``,
completions' ``text``, Anthropic's ``text`` / ``partial_json`` deltas, the Responses API's
``delta`` events — go through one ``Restorer`` per block of text, which holds back the end of a
delta that may be the start of a placeholder (``<EMAIL_`` ... ``1>`` in the next delta). What is
held goes out, restored, before the next event that is not a delta of that block, as a copy of
the block's last delta event carrying only the held text; so the client's SDK sees ordinary
deltas. Every other string of every event is restored whole.

An event with no ``<`` in it, while nothing is held, is passed on as the bytes that came.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import orjson

from lockgate.privacy.redact import Redaction, Restorer
from lockgate.wire.sse import SSEDecoder, SSEEvent

# Where a text delta sits in an event: (block key, the object holding the text, its field).
Slot = tuple[Any, dict[str, Any], str]


class _Block:
    __slots__ = ("event", "field", "holder", "name", "restorer")

    def __init__(self, restorer: Restorer) -> None:
        self.restorer = restorer
        self.name: str | None = None
        self.event: dict[str, Any] = {}
        self.holder: dict[str, Any] = {}
        self.field = ""


class StreamRestorer:
    """Per stream: ``feed`` bytes as they come, ``flush`` at the end."""

    def __init__(self, redaction: Redaction, dialect: str) -> None:
        self._redaction = redaction
        self._slots = _SLOTS.get(dialect, _no_slots)
        self._decoder = SSEDecoder()
        self._blocks: dict[Any, _Block] = {}

    def feed(self, chunk: bytes) -> bytes:
        return b"".join(self._event(e) for e in self._decoder.decode(chunk))

    def flush(self) -> bytes:
        out = [self._event(e) for e in self._decoder.flush()]
        out.extend(self._release(lambda _: True))
        return b"".join(out)

    def _holding(self) -> bool:
        return any(b.restorer.holding for b in self._blocks.values())

    def _event(self, event: SSEEvent) -> bytes:
        data = event.data
        if not data.startswith("{") or ("<" not in data and "\\u003c" not in data
                                        and not self._holding()):
            return event.raw
        try:
            obj = orjson.loads(data)
        except orjson.JSONDecodeError:  # not ours to judge: the relay checks what it passes
            return event.raw
        slots = self._slots(obj)
        keys = {key for key, _, _ in slots}
        released = list(self._release(lambda key: key not in keys))
        for key, holder, field in slots:
            block = self._blocks.get(key)
            if block is None:
                block = self._blocks[key] = _Block(Restorer(self._redaction))
            holder[field] = block.restorer.feed(holder[field])
            block.name, block.event, block.holder, block.field = event.event, obj, holder, field
        # The deltas' own text was restored by their blocks; the rest of the event is now.
        _restore_rest(obj, self._redaction, {id(h) for _, h, _ in slots})
        return b"".join([*released, _render(event.event, obj)])

    def _release(self, which: Callable[[Any], bool]) -> Iterator[bytes]:
        """The held text of the blocks ``which`` selects, each as a copy of its last delta."""
        for key, block in list(self._blocks.items()):
            if which(key) and block.restorer.holding:
                block.holder[block.field] = block.restorer.flush()
                yield _render(block.name, block.event)


def _restore_rest(obj: Any, redaction: Redaction, skip: set[int]) -> None:
    """Restores every string of ``obj`` in place, but those of the objects in ``skip`` (the
    deltas' holders: their text is restored by its block)."""
    if isinstance(obj, dict):
        is_holder = id(obj) in skip
        for k, v in obj.items():
            if isinstance(v, str):
                if not is_holder:
                    obj[k] = redaction.restore(v)
            elif isinstance(v, dict | list):
                _restore_rest(v, redaction, skip)
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            if isinstance(v, str):
                obj[i] = redaction.restore(v)
            elif isinstance(v, dict | list):
                _restore_rest(v, redaction, skip)


def _render(name: str | None, obj: Any) -> bytes:
    head = b"event: " + name.encode() + b"\n" if name else b""
    return head + b"data: " + orjson.dumps(obj) + b"\n\n"


# --- where each dialect puts its text deltas --------------------------------------------------


def _no_slots(obj: dict[str, Any]) -> list[Slot]:
    return []


def _openai_slots(obj: dict[str, Any]) -> list[Slot]:
    slots: list[Slot] = []
    for i, choice in enumerate(obj.get("choices") or ()):
        if not isinstance(choice, dict):
            continue
        delta = choice.get("delta")
        index = choice.get("index", i)
        if isinstance(delta, dict):
            if isinstance(delta.get("content"), str):
                slots.append((("content", index), delta, "content"))
            for j, call in enumerate(delta.get("tool_calls") or ()):
                function = call.get("function") if isinstance(call, dict) else None
                if isinstance(function, dict) and isinstance(function.get("arguments"), str):
                    slots.append((("tool", index, call.get("index", j)), function, "arguments"))
        elif isinstance(choice.get("text"), str):  # the legacy completions stream
            slots.append((("text", index), choice, "text"))
    return slots


def _anthropic_slots(obj: dict[str, Any]) -> list[Slot]:
    delta = obj.get("delta")
    if obj.get("type") != "content_block_delta" or not isinstance(delta, dict):
        return []
    for field in ("text", "partial_json", "thinking"):
        if isinstance(delta.get(field), str):
            return [(("block", obj.get("index")), delta, field)]
    return []


def _responses_slots(obj: dict[str, Any]) -> list[Slot]:
    kind = obj.get("type")
    if kind in ("response.output_text.delta", "response.function_call_arguments.delta",
                "response.refusal.delta") and isinstance(obj.get("delta"), str):
        return [((kind, obj.get("item_id"), obj.get("content_index")), obj, "delta")]
    return []


_SLOTS: dict[str, Callable[[dict[str, Any]], list[Slot]]] = {
    "openai": _openai_slots, "completions": _openai_slots, "anthropic": _anthropic_slots,
    "responses": _responses_slots,
}
