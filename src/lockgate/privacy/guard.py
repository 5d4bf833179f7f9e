"""The PII guard: the optional step (``pipeline.steps``) that applies the caller's privacy policy.

The step is on every model's plan, because the policy is the caller's (key, team, defaults) and
a stored key may get one at any time; what the step does is decided by the policy resolved
when the key was loaded (``Principal.privacy``). A caller whose policy is off pays one
attribute test in ``before`` and one in each of ``answer`` / ``stream``.

* ``before``: finds what the body's text holds (``bodies``). ``block``: refuses the request
  (400 ``pii_detected``, naming the kinds, never the values). ``redact``: replaces each value
  with its placeholder in the body itself, before any attempt is made, so that a relayed body
  (forwarded as it is) and a translated one (parsed from it) both carry the placeholders.
  ``detect``: only counts. The counts (kinds, never values) go on the request's record. A
  detector that fails refuses the request (500 ``privacy_guard_failed``): it never passes on
  unchecked.
* ``answer`` / ``stream``: with ``restore``, the placeholders in the answer are put back
  (``stream.StreamRestorer`` for streams); with ``log_bodies``, the answer is kept (bounded)
  for the record.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import orjson

from lockgate.errors import PIIDetected, PrivacyGuardFailed
from lockgate.pipeline.steps import Step
from lockgate.privacy.bodies import note_placeholders, redact_in_place, scan
from lockgate.privacy.logbook import BodyLog, RequestPrivacy
from lockgate.privacy.stream import StreamRestorer
from lockgate.providers.http import aclose

if TYPE_CHECKING:
    from lockgate.config import ModelConfig
    from lockgate.pipeline.context import RequestContext

log = logging.getLogger("lockgate")


class PrivacyGuard(Step):
    def __init__(self, bodies: BodyLog) -> None:
        self._bodies = bodies

    async def before(self, call: Any, ctx: RequestContext) -> bytes | None:
        policy = ctx.subject.principal.privacy if ctx.subject is not None else None
        if policy is None or not policy.active:
            return None
        state = RequestPrivacy(policy, self._bodies)
        if getattr(getattr(call, "dialect", None), "binds", False):
            # A body that refers to stored turns (Responses' previous_response_id) is resolved
            # first: what goes upstream is the whole conversation. Binding again later is a no-op.
            await call.bind()
        body = getattr(call, "body", None)
        if isinstance(body, dict):
            self._check(body, state, ctx)
            if policy.mode == "redact" and state.redaction.originals:
                changed = getattr(call, "body_changed", None)
                if changed is not None:
                    changed()  # a call that parsed the body before may need to again
            if policy.log_bodies:
                state.keep_request(body)
        ctx.privacy = state
        return None

    @staticmethod
    def _check(body: dict[str, Any], state: RequestPrivacy, ctx: RequestContext) -> None:
        policy, redaction = state.policy, state.redaction
        try:
            if policy.mode == "redact":
                note_placeholders(body, redaction)
                redact_in_place(body, redaction)
            else:  # detect, block; and off with log_bodies: what is stored is redacted anyway
                scan(body, redaction)
        except Exception as exc:
            # The detector's own failure: the reason goes to the log (no values: only the
            # exception's type), and the request is refused rather than sent on unchecked.
            log.error("request %s: the PII guard failed (%s); refusing the request",
                      ctx.request_id, type(exc).__name__)
            raise PrivacyGuardFailed("the privacy guard could not check this request; it was "
                                     "not sent to any model") from None
        counts = redaction.counts
        if counts and policy.mode != "off":
            ctx.pii = dict(counts)
            if policy.mode == "block":
                kinds = ", ".join(sorted(counts))
                raise PIIDetected(f"the request contains personal data ({kinds}), which this "
                                  "key's privacy policy does not allow to be sent to a model")

    def answer(self, call: Any, answer: bytes, ctx: RequestContext) -> bytes:
        state = ctx.privacy
        if state is None:
            return answer
        if state.policy.log_bodies:
            state.keep_answer(answer)
        if not state.restores:
            return answer
        try:
            restored = state.redaction.restore_all(orjson.loads(answer))
        except orjson.JSONDecodeError:
            return state.redaction.restore(answer.decode()).encode()
        return orjson.dumps(restored)

    def stream(self, call: Any, chunks: AsyncIterator[bytes],
               ctx: RequestContext) -> AsyncIterator[bytes]:
        state = ctx.privacy
        if state is None or not (state.restores or state.policy.log_bodies):
            return chunks
        dialect = getattr(getattr(call, "dialect", None), "name", "")
        restorer = StreamRestorer(state.redaction, dialect) if state.restores else None
        return _guarded(chunks, state, restorer)


async def _guarded(chunks: AsyncIterator[bytes], state: RequestPrivacy,
                   restorer: StreamRestorer | None) -> AsyncIterator[bytes]:
    keep = state.policy.log_bodies
    try:
        async for chunk in chunks:
            if keep:
                state.keep_answer(chunk)
            out = restorer.feed(chunk) if restorer is not None else chunk
            if out:
                yield out
        if restorer is not None:
            tail = restorer.flush()
            if tail:
                yield tail
    finally:
        await aclose(chunks)


class PrivacySteps:
    """The ``StepFactory`` of the guard: the same step on every model (the policy is the
    caller's, not the model's)."""

    def __init__(self, bodies: BodyLog) -> None:
        self._step = PrivacyGuard(bodies)

    def for_model(self, name: str, model: ModelConfig | None) -> Step | None:
        return self._step
