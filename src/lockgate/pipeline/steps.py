"""Optional steps of a model's request path: chosen once, when the router builds the model's
plan from the config, never per request, and never as a middleware stack around every model.

A step sees a request at three points of ``Frame.handle`` and may act at any of them:

* ``before``: after the reservation and before any upstream call. Returning bytes answers
  the request there (a cache hit: a whole JSON answer, or a whole SSE stream for a streamed
  request); raising ``GatewayError`` refuses it (a PII guard in ``block`` mode); changing the
  call in place changes what goes upstream (redaction).
* ``answer``: a whole answer on its way to the client (restore redacted values, store it in a
  cache); returns the bytes to send.
* ``stream``: a stream's chunks on their way to the client, the same for streams.

A step that has nothing to do at a point inherits the pass-through. The frame asks
``plan.steps`` (a tuple, usually empty) once per point, so a model without steps pays nothing.
Which steps a model gets is decided by ``StepFactory`` objects the router is given: each looks
at a model's config and returns its step or None.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import TYPE_CHECKING, Any, Protocol

from lockgate.providers.http import aclose

if TYPE_CHECKING:
    from lockgate.config import ModelConfig
    from lockgate.pipeline.context import RequestContext


class Step:
    """One optional step; every hook passes the request through unchanged unless overridden."""

    async def before(self, call: Any, ctx: RequestContext) -> bytes | None:
        return None

    def answer(self, call: Any, answer: bytes, ctx: RequestContext) -> bytes:
        return answer

    def stream(self, call: Any, chunks: AsyncIterator[bytes],
               ctx: RequestContext) -> AsyncIterator[bytes]:
        return chunks


class StepFactory(Protocol):
    """Builds a model's step from its config, or None where the model does not use it."""

    def for_model(self, name: str, model: ModelConfig | None) -> Step | None: ...


async def answer_early(steps: Sequence[Step], call: Any, ctx: RequestContext) -> bytes | None:
    """The answer of the first step that gives one (a cache hit), as the steps before it let it
    out: they saw the request, so they see its answer as they would an upstream's (a PII guard
    puts back the values it replaced with placeholders). ``call.stream``: a whole SSE stream."""
    for i, step in enumerate(steps):
        answer = await step.before(call, ctx)
        if answer is None:
            continue
        if i == 0:
            return answer
        if not call.stream:
            return wrap_answer(steps[:i], call, answer, ctx)
        head, chunks = wrap_stream(steps[:i], call, answer, _nothing(), ctx)
        return head + b"".join([chunk async for chunk in chunks])
    return None


async def _nothing() -> AsyncIterator[bytes]:
    return
    yield  # an async generator that yields nothing


def wrap_answer(steps: Sequence[Step], call: Any, answer: bytes, ctx: RequestContext) -> bytes:
    # The reverse order of ``before``: the step that saw the request first sees the answer last.
    for step in reversed(steps):
        answer = step.answer(call, answer, ctx)
    return answer


def wrap_stream(steps: Sequence[Step], call: Any, first: bytes, rest: AsyncIterator[bytes],
                ctx: RequestContext) -> tuple[bytes, AsyncIterator[bytes]]:
    """The stream as the steps pass it on; the first chunk is already received, so it goes
    through them as the head of the stream, and the frame sends what comes out first."""
    head = _prepend(first, rest)
    chunks: AsyncIterator[bytes] = head
    for step in reversed(steps):
        chunks = step.stream(call, chunks, ctx)
    if chunks is head:  # no step took the stream (a step with nothing to do for this caller)
        return first, rest  # the prepending generator, never started, needs no closing
    return b"", chunks


async def _prepend(first: bytes, rest: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    try:
        yield first
        async for chunk in rest:
            yield chunk
    finally:
        await aclose(rest)  # the frame closes what it holds; the upstream must close with it
