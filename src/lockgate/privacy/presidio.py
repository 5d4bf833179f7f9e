"""Person and location names through Microsoft Presidio (the ``[presidio]`` extra), beside the
built-in detector. Loaded only where a policy's entities name them: the analyzer and its spaCy
model take seconds and hundreds of MB to load, which no other gateway should pay."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from lockgate.privacy.detect import Detector, Found

_ENTITIES = {"person": "PERSON", "location": "LOCATION"}


class PresidioFinder:
    def __init__(self, detector: Detector, entities: Iterable[str]) -> None:
        from presidio_analyzer import AnalyzerEngine

        self._detector = detector
        self._analyzer: Any = AnalyzerEngine()
        self._entities = [_ENTITIES[k] for k in entities if k in _ENTITIES]
        self._kinds = {v: k for k, v in _ENTITIES.items()}

    def find(self, text: str) -> list[Found]:
        found = list(self._detector.find(text))
        taken = [(f.start, f.end) for f in found]
        for result in self._analyzer.analyze(text=text, entities=self._entities, language="en"):
            if not any(result.start < end and start < result.end for start, end in taken):
                found.append(Found(self._kinds[result.entity_type], result.start, result.end,
                                   text[result.start:result.end]))
        return sorted(found, key=lambda f: f.start)
