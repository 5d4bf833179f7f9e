#!/usr/bin/env python3
"""The PII guard's own cost, on one core: detecting and redacting a prompt, restoring an answer.

    .venv/bin/python bench/pii.py            # a few seconds; figures on stdout

Prompts of 2 KB and 16 KB of ordinary chat text (with numbers: ids, prices, dates), with and
without personal data in them, through ``Redaction.redact`` with every built-in kind on; and a
2 KB answer through ``Redaction.restore``. The target is redaction of a 2 KB prompt under 0.5 ms.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from types import SimpleNamespace

import orjson

from lockgate.pipeline.auth import Principal
from lockgate.pipeline.context import RequestContext
from lockgate.pipeline.route import Subject
from lockgate.pipeline.steps import answer_early, wrap_answer
from lockgate.privacy.detect import BUILT_IN, Detector
from lockgate.privacy.guard import PrivacyGuard
from lockgate.privacy.logbook import BodyLog
from lockgate.privacy.redact import Redaction

FILLER = ("Please summarise this support ticket for the on-call engineer. The customer says "
          "that order 1234567890 shipped on 2026-12-07 but never arrived; they paid $1,234.56 "
          "for 3 items and want a refund or a new delivery before Friday. ")
# The same text with a digit every few characters: the detector's worst case.
DENSE = ("order 1234567890 shipped 2026-12-07 10:15, total $1,234.56 for 3 items, v1.2.3, "
         "15234 tokens, 842 out, 1765102530 unix. ")
PERSONAL = ("Contact alice.smith@example.com or +1 415 555 2671, card 4111 1111 1111 1111, "
            "IBAN GB82 WEST 1234 5698 7654 32, SSN 078-05-1120, from 192.168.1.20. ")


def text_of(size: int, with_pii: bool, filler: str = FILLER) -> str:
    unit = filler + (PERSONAL if with_pii else filler)
    return (unit * (size // len(unit) + 1))[:size]


def per_call_us(fn: Callable[[], object], seconds: float = 0.4) -> float:
    """The best of 5 rounds of the mean CPU time of one call, in microseconds (as ``timeit``
    advises): CPU time, not wall time, and the best round, so that other processes on a shared
    machine count as little as they can."""
    rounds = []
    for _ in range(5):
        n, start = 0, time.process_time()
        while time.process_time() - start < seconds / 5:
            fn()
            n += 1
        rounds.append((time.process_time() - start) / n * 1e6)
    return min(rounds)


def _guard_off_path() -> None:
    """What the guard costs a request whose key's policy is off: its three hooks, as the
    request frame calls them (the same step is on every model's plan)."""
    steps = (_GUARD,)
    early = answer_early(steps, _CALL, _CTX)
    with contextlib.suppress(StopIteration):  # driven by hand: a loop's own cost would hide it
        early.send(None)
    wrap_answer(steps, _CALL, b"{}", _CTX)


_GUARD = PrivacyGuard(BodyLog(None, 1024))
_CALL = SimpleNamespace(body={"model": "m", "messages": []})
_CTX = RequestContext(request_id="r", started=0.0, ts=0.0, endpoint="/v1/chat/completions",
                      subject=Subject(Principal(key_id="k", name="k")))


def main() -> None:
    detector = Detector(BUILT_IN)
    print(f"{'case':<40} {'us/call':>9}")
    for size in (2048, 16384):
        for with_pii in (False, True):
            text = text_of(size, with_pii)
            label = f"redact {size // 1024} KB, {'with' if with_pii else 'no'} PII"
            print(f"{label:<40} {per_call_us(lambda t=text: Redaction(detector).redact(t)):>9.1f}")
    dense = text_of(2048, False, DENSE)
    print(f"{'redact 2 KB, no PII, digit-dense':<40} "
          f"{per_call_us(lambda: Redaction(detector).redact(dense)):>9.1f}")
    body = orjson.dumps({"messages": [{"role": "user", "content": text_of(2048, True)}]})
    print(f"{'(reference: orjson.loads of that body)':<40} {per_call_us(lambda: orjson.loads(body)):>9.1f}")
    print(f"{'guard for a key with privacy off':<40} {per_call_us(_guard_off_path):>9.2f}")
    redaction = Redaction(detector)
    answer = redaction.redact(text_of(2048, True))
    print(f"{'restore 2 KB answer with placeholders':<40} "
          f"{per_call_us(lambda: redaction.restore(answer)):>9.1f}")


if __name__ == "__main__":
    main()
