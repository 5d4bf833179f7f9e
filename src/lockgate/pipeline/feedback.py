"""``POST /v1/feedback``: a numeric ``score`` or a ``label`` tied to a request the same key
made, for the experiment analysis (``feedback mean`` per variant).

Records are written off the request path (``telemetry.writer``), so feedback may arrive
before its request's record is in storage. The request is looked for, in order: among the
records this process finished recently (still in the writer's memory, written or not), in
storage, and then in storage again for up to ``WAIT_S`` while the writers flush (another
worker's record is stored within its flush interval, a quarter of a second). Only a record
made with the caller's key counts: another key's request is answered like one that does not
exist (404), so a key cannot learn which request ids others used.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

import orjson

from lockgate.asgi import Receive, Scope, Send, send_body
from lockgate.core.record import RequestRecord
from lockgate.errors import GatewayError, InvalidRequest
from lockgate.pipeline.body import parse_object, read_body
from lockgate.pipeline.context import RequestContext
from lockgate.pipeline.endpoint import Endpoint
from lockgate.pipeline.services import Services
from lockgate.state.experiments import SHADOW_PREFIX, ExperimentStore

WAIT_S = 1.0
RETRY_S = 0.2
MAX_BODY_BYTES = 16 * 1024
MAX_LABEL = 200


class NoSuchRequest(GatewayError):
    status = 404
    code = "request_not_found"


class FeedbackEndpoint(Endpoint):
    def __init__(self, services: Services, rows: ExperimentStore,
                 recent: Callable[[], Iterable[RequestRecord]],
                 flush: Callable[[], Awaitable[None]]) -> None:
        super().__init__(services)
        self._rows = rows
        self._recent = recent
        self._flush = flush

    def error_body(self, err: GatewayError) -> bytes:
        return err.openai_body()

    async def handle(self, scope: Scope, receive: Receive, send: Send, ctx: RequestContext) -> None:
        principal = await self.s.auth.authenticate(scope)
        ctx.key_id, ctx.team_id = principal.key_id, principal.team_id
        raw = await read_body(scope, receive, MAX_BODY_BYTES)
        request_id, score, label = parse_feedback(parse_object(raw))
        found = await self._find(request_id, principal.key_id)
        if found is None:
            raise NoSuchRequest(f"request_id: no request {request_id!r} was made with this key")
        await self._rows.put_feedback({
            "record_id": found["id"], "request_id": request_id, "key_id": principal.key_id,
            "model": found["model"], "variant": found["variant"], "score": score, "label": label,
            "ts": time.time()})
        answer = {"object": "feedback", "request_id": request_id, "model": found["model"],
                  "variant": found["variant"], "score": score, "label": label}
        await send_body(send, 200, orjson.dumps(answer), self.headers(ctx))

    async def _find(self, request_id: str, key_id: str | None) -> dict[str, Any] | None:
        for record in reversed(list(self._recent())):  # newest first
            if (record.request_id == request_id and record.key_id == key_id
                    and not (record.variant or "").startswith(SHADOW_PREFIX)):
                return {"id": record.id, "model": record.model, "variant": record.variant}
        found = await self._rows.find_request(request_id, key_id)
        if found is not None:
            return found
        await self._flush()  # this process's records, written now rather than at the next turn
        deadline = time.monotonic() + WAIT_S
        while found is None and time.monotonic() < deadline:
            found = await self._rows.find_request(request_id, key_id)
            if found is None:
                await asyncio.sleep(RETRY_S)
        return found


def parse_feedback(body: dict[str, Any]) -> tuple[str, float | None, str | None]:
    """(request_id, score, label), or a 400 naming the field."""
    unknown = sorted(set(body) - {"request_id", "score", "label"})
    if unknown:
        raise InvalidRequest(f"{unknown[0]}: unknown field (feedback takes request_id, and "
                             "score or label)")
    request_id, score, label = body.get("request_id"), body.get("score"), body.get("label")
    if not isinstance(request_id, str) or not request_id or len(request_id) > 128:
        raise InvalidRequest("request_id: the x-request-id of the request, a string of 1 to "
                             "128 characters, is required")
    if score is None and label is None:
        raise InvalidRequest("score or label is required: a number, or a string")
    if score is not None and (isinstance(score, bool) or not isinstance(score, int | float)
                              or not math.isfinite(score)):
        raise InvalidRequest("score: must be a finite number")
    if label is not None and (not isinstance(label, str) or not label or len(label) > MAX_LABEL):
        raise InvalidRequest(f"label: must be a string of 1 to {MAX_LABEL} characters")
    return request_id, float(score) if score is not None else None, label
