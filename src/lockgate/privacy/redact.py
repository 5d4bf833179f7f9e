"""One request's redaction: the values found, their placeholders, and the way back.

A value gets a placeholder named for its kind and numbered in order of appearance, the same
value always the same placeholder within the request (``<EMAIL_1>`` wherever that address
appears, ``<EMAIL_2>`` for the next one), so that the model can still tell who is who. The
mapping lives only as long as the request: nothing of it is stored.

``Restorer`` puts the originals back into text that arrives in pieces (a stream's deltas): a
piece that ends with what may be the start of a placeholder is held back until the next piece
says whether it is one (``feed``), and whatever is held is given back at the end (``flush``).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable
from typing import Any, Protocol

from lockgate.privacy.detect import Found

PLACEHOLDER = re.compile(r"<([A-Z_]{2,16})_(\d{1,6})>")
# The longest placeholder a piece of text could end in the middle of: ``<`` + kind + ``_``
# + number (``>`` missing).
_MAX_PARTIAL = 1 + 16 + 1 + 6
_PARTIAL_TAIL = re.compile(r"<(?:[A-Z_]{0,16}(?:_\d{0,6})?)?$")


class Finder(Protocol):
    """What finds values in text: the built-in ``Detector``, or that and Presidio."""

    def find(self, text: str) -> Iterable[Found]: ...


class Redaction:
    """The values found in one request and their placeholders."""

    __slots__ = ("_finder", "_numbers", "counts", "originals", "placeholders")

    def __init__(self, finder: Finder) -> None:
        self._finder = finder
        self.placeholders: dict[tuple[str, str], str] = {}  # (kind, value) -> placeholder
        self.originals: dict[str, str] = {}  # placeholder -> value
        self.counts: Counter[str] = Counter()  # occurrences per kind
        self._numbers: Counter[str] = Counter()  # the last number given per placeholder kind

    def taken(self, text: str) -> None:
        """Placeholders already in the request (earlier turns of a stored conversation, as
        they were redacted then) keep their numbers: new values are numbered after them, so
        that one placeholder never stands for two values."""
        if "<" in text:
            for match in PLACEHOLDER.finditer(text):
                kind, number = match.group(1), int(match.group(2))
                self._numbers[kind] = max(self._numbers[kind], number)

    def scan(self, text: str) -> list[Found]:
        found = list(self._finder.find(text))
        self.counts.update(f.kind for f in found)
        return found

    def redact(self, text: str) -> str:
        found = self.scan(text)
        if not found:
            return text
        parts: list[str] = []
        at = 0
        for item in found:
            parts.append(text[at:item.start])
            parts.append(self._placeholder(item.kind, item.value))
            at = item.end
        parts.append(text[at:])
        return "".join(parts)

    def _placeholder(self, kind: str, value: str) -> str:
        key = (kind, value)
        placeholder = self.placeholders.get(key)
        if placeholder is None:
            name = kind.upper()
            self._numbers[name] += 1
            placeholder = f"<{name}_{self._numbers[name]}>"
            self.placeholders[key] = placeholder
            self.originals[placeholder] = value
        return placeholder

    def restore(self, text: str) -> str:
        if "<" not in text:
            return text
        return PLACEHOLDER.sub(lambda m: self.originals.get(m.group(), m.group()), text)

    def restore_all(self, value: Any) -> Any:
        """Every string in a parsed JSON value, restored (a new value; the old one untouched)."""
        if isinstance(value, str):
            return self.restore(value)
        if isinstance(value, list):
            return [self.restore_all(v) for v in value]
        if isinstance(value, dict):
            return {k: self.restore_all(v) for k, v in value.items()}
        return value


class Restorer:
    """Restores one stream of text pieces (one content block, one tool call's arguments)."""

    __slots__ = ("_held", "_redaction")

    def __init__(self, redaction: Redaction) -> None:
        self._redaction = redaction
        self._held = ""

    def feed(self, piece: str) -> str:
        text = self._held + piece
        self._held = ""
        tail = _PARTIAL_TAIL.search(text, max(0, len(text) - _MAX_PARTIAL))
        if tail is not None:
            self._held = text[tail.start():]
            text = text[:tail.start()]
        return self._redaction.restore(text)

    def flush(self) -> str:
        held, self._held = self._held, ""
        return self._redaction.restore(held)

    @property
    def holding(self) -> bool:
        return bool(self._held)
