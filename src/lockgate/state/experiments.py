"""Experiments in storage: their shared state, each variant's figures summed by the database,
and feedback. Off the request path: the state is polled in the background, figures are read
by the admin API and the rollback monitor, feedback by its own endpoint."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from lockgate.state import schema
from lockgate.state.schema import LATENCY_BUCKETS_MS
from lockgate.state.store import Act, Store, append_audit

RUNNING = "running"
SHADOW_PREFIX = "shadow:"  # the variant a shadow copy's record names: ``shadow:<model ref>``


class ExperimentStore:
    def __init__(self, store: Store) -> None:
        self._store = store
        self._insert = postgresql.insert if store.engine.dialect.name == "postgresql" else sqlite.insert

    # --- state -------------------------------------------------------------------------------

    async def ensure(self, names: Sequence[str]) -> None:
        """A row for each configured experiment that has none yet: it starts now."""
        if not names:
            return
        now = time.time()
        rows = [{"name": n, "status": RUNNING, "started_at": now} for n in names]
        statement = self._insert(schema.experiments).on_conflict_do_nothing(index_elements=["name"])
        async with self._store.engine.begin() as conn:
            await conn.execute(statement, rows)

    async def states(self) -> dict[str, dict[str, Any]]:
        async with self._store.engine.connect() as conn:
            rows = (await conn.execute(sa.select(schema.experiments))).mappings().all()
        return {row["name"]: dict(row) for row in rows}

    async def decide(self, name: str, status: str, variant: str | None, reason: str,
                     only_if_running: bool = False, act: Act | None = None) -> bool:
        """Sets an experiment's state; with ``only_if_running``, only if nothing decided it
        first (of several workers that see a failing canary at once, one rolls it back). ``act``
        goes to the audit log in the same transaction, and only where the state changed."""
        e = schema.experiments
        statement = e.update().where(e.c.name == name).values(
            status=status, variant=variant, reason=reason[:500], changed_at=time.time())
        if only_if_running:
            statement = statement.where(e.c.status == RUNNING)
        async with self._store.engine.begin() as conn:
            result = await conn.execute(statement)
            if result.rowcount:
                await append_audit(conn, act, name)
        return bool(result.rowcount)

    # --- figures -----------------------------------------------------------------------------

    async def figures(self, model: str, variants: Sequence[str],
                      since: float) -> dict[str, dict[str, float]]:
        """Per variant, the sums the analysis needs, of the model's records since ``since``:
        counts, sums and sums of squares, and the latency histogram (``LATENCY_BUCKETS_MS``)."""
        r = schema.requests
        tokens = r.c.prompt_tokens + r.c.completion_tokens
        sums = {
            "requests": sa.func.count(),
            "errors": sa.func.sum(sa.case((r.c.status >= 500, 1), else_=0)),
            "latency_sum": sa.func.sum(r.c.latency_ms),
            "latency_squares": sa.func.sum(r.c.latency_ms * r.c.latency_ms),
            "cost_sum": sa.func.sum(r.c.cost_usd),
            "cost_squares": sa.func.sum(r.c.cost_usd * r.c.cost_usd),
            "tokens_sum": sa.func.sum(tokens),
            "tokens_squares": sa.func.sum(sa.cast(tokens, sa.Float) * tokens),
            "prompt_tokens": sa.func.sum(r.c.prompt_tokens),
            "completion_tokens": sa.func.sum(r.c.completion_tokens),
        }
        lower = (float("-inf"), *LATENCY_BUCKETS_MS)
        for i in range(len(LATENCY_BUCKETS_MS) + 1):
            inside = r.c.latency_ms > lower[i]
            if i < len(LATENCY_BUCKETS_MS):
                inside = sa.and_(inside, r.c.latency_ms <= LATENCY_BUCKETS_MS[i])
            sums[f"h{i}"] = sa.func.sum(sa.case((inside, 1), else_=0))
        statement = (sa.select(r.c.variant, *(v.label(k) for k, v in sums.items()))
                     .where(r.c.model == model, r.c.ts >= since, r.c.variant.in_(list(variants)))
                     .group_by(r.c.variant))
        async with self._store.engine.connect() as conn:
            rows = (await conn.execute(statement)).mappings().all()
        return {row["variant"]: {k: float(row[k] or 0) for k in sums} for row in rows}

    async def feedback_figures(self, model: str, variants: Sequence[str], since: float
                               ) -> dict[str, tuple[int, float, float, dict[str, int]]]:
        """Per variant: (scores, their sum, their sum of squares, label counts)."""
        f = schema.feedback
        where = (f.c.model == model, f.c.ts >= since, f.c.variant.in_(list(variants)))
        scores = sa.select(f.c.variant, sa.func.count(f.c.score), sa.func.sum(f.c.score),
                           sa.func.sum(f.c.score * f.c.score)).where(*where).group_by(f.c.variant)
        labels = (sa.select(f.c.variant, f.c.label, sa.func.count()).where(
            *where, f.c.label.is_not(None)).group_by(f.c.variant, f.c.label))
        out: dict[str, tuple[int, float, float, dict[str, int]]] = {}
        async with self._store.engine.connect() as conn:
            for variant, n, total, squares in (await conn.execute(scores)).all():
                out[variant] = (int(n or 0), float(total or 0), float(squares or 0), {})
            for variant, label, n in (await conn.execute(labels)).all():
                out.setdefault(variant, (0, 0.0, 0.0, {}))[3][label] = int(n)
        return out

    # --- feedback ----------------------------------------------------------------------------

    async def find_request(self, request_id: str, key_id: str | None) -> dict[str, Any] | None:
        """The newest live (not shadow) record with this request id made by ``key_id``."""
        r = schema.requests
        statement = (sa.select(r.c.id, r.c.model, r.c.variant)
                     .where(r.c.request_id == request_id,
                            r.c.key_id.is_(None) if key_id is None else r.c.key_id == key_id,
                            sa.or_(r.c.variant.is_(None), ~r.c.variant.startswith(SHADOW_PREFIX)))
                     .order_by(r.c.ts.desc()).limit(1))
        async with self._store.engine.connect() as conn:
            row = (await conn.execute(statement)).mappings().first()
        return dict(row) if row is not None else None

    async def put_feedback(self, row: Mapping[str, Any]) -> None:
        """Stores a request's feedback; a later score or label replaces the earlier one."""
        statement = self._insert(schema.feedback)
        given = {k: statement.excluded[k] for k in ("score", "label", "ts") if row.get(k) is not None}
        statement = statement.on_conflict_do_update(index_elements=["record_id"], set_=given)
        async with self._store.engine.begin() as conn:
            await conn.execute(statement, [dict(row)])
