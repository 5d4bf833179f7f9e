"""What the dashboard reads: every query is bounded, whatever the number of records.

Charts over hours and days read the hourly rollup by dimension (``usage_hourly_by``: one
row per hour and value of one dimension, never a scan of the records). The live view and the
deployments' current rates read the newest records of the last minutes through the ``ts``
index, capped at ``LIVE_ROW_CAP`` rows (the answer says when it was cut). The request log pages
by a ``(ts, id)`` cursor, so page N costs what page 1 does; a request is found by its id
through ``ix_requests_request_id``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from lockgate.config import Config
from lockgate.state import schema
from lockgate.state.schema import HISTOGRAM_COLUMNS
from lockgate.state.store import Store, percentile

RANGES_S = {"1h": 3600, "24h": 86400, "7d": 7 * 86400, "30d": 30 * 86400}
SERIES_DIMENSIONS = ("model", "key_id", "team_id", "route")
TOP_GROUPS = 6  # series shown one by one; the rest are summed as "other"
LIVE_WINDOW_S = 900
LIVE_STEP_S = 15
LIVE_ROW_CAP = 20_000
MAX_PAGE = 200
SCAN_BUDGET = 20_000  # records one log page may read to apply filters that have no index
NEAR_QUOTA = 0.9  # a deployment past this share of its rpm or tpm counts as at its quota


class BadQuery(ValueError):
    """A filter the caller got wrong: answered with 400 and this message."""


@dataclass(frozen=True, slots=True)
class LogFilter:
    limit: int = 50
    key_id: str | None = None
    model: str | None = None
    status: str | None = None  # "404", or a class: "2xx", "4xx", "5xx"
    since: float | None = None
    until: float | None = None
    cursor: str | None = None  # "<ts>:<id>" of the last row of the previous page


class DashboardQueries:
    def __init__(self, store: Store, config: Config, clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.config = config
        self.clock = clock

    # --- charts over the rollup ------------------------------------------------------------

    async def series(self, range_s: int, by: str) -> dict[str, Any]:
        """Totals with latency percentiles and the top groups of ``by``, hour by hour (day by
        day past a week: a chart of 720 hourly points says no more than 30 daily ones)."""
        step_h = 24 if range_s > 7 * 86400 else 1
        now_h = int(self.clock() // 3600)
        first = (now_h - range_s // 3600 + 1) // step_h * step_h
        buckets = list(range(first // step_h, now_h // step_h + 1))
        u = schema.usage_hourly_by
        bucket = (u.c.hour // step_h).label("bucket") if step_h > 1 else u.c.hour.label("bucket")
        top_query = (sa.select(u.c.value).where(u.c.dim == by, u.c.hour >= first).group_by(u.c.value)
                     .order_by(sa.func.sum(u.c.requests).desc()).limit(TOP_GROUPS))
        total_query = (sa.select(bucket, *_sums(u, _TOTALS)).where(u.c.dim == "all", u.c.hour >= first)
                       .group_by(bucket))
        async with self.store.engine.connect() as conn:
            top = [row.value for row in await conn.execute(top_query)]
            totals = {row[0]: row for row in (await conn.execute(total_query)).all()}
            group_query = (sa.select(bucket, u.c.value, *_sums(u, (*_GROUPED, *HISTOGRAM_COLUMNS)))
                           .where(u.c.dim == by, u.c.hour >= first, u.c.value.in_(top))
                           .group_by(bucket, u.c.value))
            grouped = (await conn.execute(group_query)).all() if top else []
        return {"t": [b * step_h * 3600 for b in buckets], "step_s": step_h * 3600, "by": by,
                "total": _total_series(buckets, totals),
                "groups": _group_series(buckets, top, grouped, totals)}

    async def overview(self, range_s: int) -> dict[str, Any]:
        """Totals of the range: requests, errors, tokens, spend and latency percentiles."""
        u = schema.usage_hourly_by
        first = int((self.clock() - range_s) // 3600) + 1
        query = sa.select(*_sums(u, _TOTALS)).where(u.c.dim == "all", u.c.hour >= first)
        async with self.store.engine.connect() as conn:
            row = (await conn.execute(query)).one()
        figures = dict(zip(_TOTALS, row, strict=True))
        requests, errors = int(figures["requests"] or 0), int(figures["errors"] or 0)
        histogram = [int(figures[c] or 0) for c in HISTOGRAM_COLUMNS]
        return {"since": first * 3600, "requests": requests, "errors": errors,
                "error_rate": errors / requests if requests else 0.0,
                "cost_usd": round(float(figures["cost_usd"] or 0.0), 6),
                "tokens": int(figures["prompt_tokens"] or 0) + int(figures["completion_tokens"] or 0),
                "latency_ms": {f"p{q}": percentile(histogram, q / 100) for q in (50, 95, 99)}}

    # --- live, from the newest records -----------------------------------------------------

    async def live(self, window_s: int = LIVE_WINDOW_S, step_s: int = LIVE_STEP_S) -> dict[str, Any]:
        """Requests, errors and latency percentiles, ``step_s`` by ``step_s``."""
        now = self.clock()
        end = int(now // step_s) * step_s + step_s
        starts = list(range(end - window_s, end, step_s))
        rows, sampled = await self._recent(now - window_s)
        buckets: dict[int, list[tuple[int, float]]] = {s: [] for s in starts}
        for row in rows:
            bucket = buckets.get(int(row.ts // step_s) * step_s)
            if bucket is not None:
                bucket.append((row.status, row.latency_ms))
        return {"t": starts, "step_s": step_s, "sampled": sampled,
                "requests": [len(b) for b in buckets.values()],
                "errors": [sum(s >= 400 for s, _ in b) for b in buckets.values()],
                "p50": [_quantile([lat for _, lat in b], 0.5) for b in buckets.values()],
                "p95": [_quantile([lat for _, lat in b], 0.95) for b in buckets.values()]}

    async def _recent(self, since: float) -> tuple[list[Any], bool]:
        r = schema.requests
        query = (sa.select(r.c.ts, r.c.status, r.c.latency_ms, r.c.route, r.c.prompt_tokens,
                           r.c.completion_tokens)
                 .where(r.c.ts >= since).order_by(r.c.ts.desc()).limit(LIVE_ROW_CAP))
        async with self.store.engine.connect() as conn:
            rows = (await conn.execute(query)).all()
        return list(rows), len(rows) == LIVE_ROW_CAP

    # --- request log -----------------------------------------------------------------------

    async def logs(self, f: LogFilter) -> dict[str, Any]:
        """A page of records, newest first. Filters on columns without an index (model, status)
        read at most ``SCAN_BUDGET`` records a page: a rare match then gives a short (or empty)
        page with a cursor that carries on from where the scan stopped (``scanned_to``)."""
        r = schema.requests
        indexed = [c for c in (
            r.c.key_id == f.key_id if f.key_id else None,
            r.c.ts >= f.since if f.since is not None else None,
            r.c.ts <= f.until if f.until is not None else None,
        ) if c is not None]
        if f.cursor:
            ts, row_id = _cursor(f.cursor)
            indexed += [r.c.ts <= ts, sa.or_(r.c.ts < ts, r.c.id < row_id)]
        scanned = [c for c in (r.c.model == f.model if f.model else None, _status_condition(f.status))
                   if c is not None]
        limit = max(1, min(f.limit, MAX_PAGE))
        async with self.store.engine.connect() as conn:
            floor = None
            if scanned:
                # The oldest ts the budget reaches, read from the ts (or key_id, ts) index alone.
                floor = (await conn.execute(sa.select(r.c.ts).where(*indexed).order_by(r.c.ts.desc())
                                            .offset(SCAN_BUDGET - 1).limit(1))).scalar()
            window = [r.c.ts >= floor] if floor is not None else []
            query = (sa.select(r).where(*indexed, *window, *scanned)
                     .order_by(r.c.ts.desc(), r.c.id.desc()).limit(limit + 1))
            rows = [dict(row) for row in (await conn.execute(query)).mappings()]
        if len(rows) > limit:
            rows = rows[:limit]
            return {"rows": rows, "next_cursor": f"{rows[-1]['ts']!r}:{rows[-1]['id']}", "scanned_to": None}
        if floor is not None:  # the budget ran out before the page filled: go on below the floor
            return {"rows": rows, "next_cursor": f"{floor!r}:", "scanned_to": floor}
        return {"rows": rows, "next_cursor": None, "scanned_to": None}

    async def request(self, request_id: str) -> list[dict[str, Any]]:
        """Every record with this request id (a client may reuse one), newest first."""
        r = schema.requests
        query = sa.select(r).where(r.c.request_id == request_id).order_by(r.c.ts.desc()).limit(20)
        async with self.store.engine.connect() as conn:
            return [dict(row) for row in (await conn.execute(query)).mappings()]

    # --- provider and deployment health ----------------------------------------------------

    async def health(self, range_s: int) -> list[dict[str, Any]]:
        """Per route: requests, error rate, 429s and latency over the range; for the configured
        deployments, their rpm/tpm quota and the last minute's use of it."""
        u = schema.usage_hourly_by
        first = int((self.clock() - range_s) // 3600) + 1
        columns = ("requests", "errors", "rate_limited", *HISTOGRAM_COLUMNS)
        query = (sa.select(u.c.value, *_sums(u, columns))
                 .where(u.c.dim == "route", u.c.hour >= first, u.c.value != "").group_by(u.c.value)
                 .order_by(sa.func.sum(u.c.requests).desc()).limit(100))
        async with self.store.engine.connect() as conn:
            found = (await conn.execute(query)).all()
        rows = {row[0]: dict(zip(columns, row[1:], strict=True)) for row in found}
        recent, _ = await self._recent(self.clock() - 60)
        quotas = self._quotas()
        return [_health_row(route, rows.get(route), quotas.get(route), recent)
                for route in [*rows, *(q for q in quotas if q not in rows)]]

    def _quotas(self) -> dict[str, tuple[int | None, int | None]]:
        out: dict[str, tuple[int | None, int | None]] = {}
        for name, model in self.config.models.items():
            for version in (model, *model.versions.values()):
                for target in version.targets:
                    out.setdefault(f"{target.provider}/{target.model or name}", (target.rpm, target.tpm))
        return out


def _sums(table: sa.Table, columns: Iterable[str]) -> list[sa.Label[Any]]:
    return [sa.func.sum(table.c[c]).label(c) for c in columns]


def _quantile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    values.sort()
    return round(values[min(len(values) - 1, int(q * len(values)))], 2)


_GROUPED = ("requests", "errors", "cost_usd")
_TOTALS = ("requests", "errors", "cost_usd", "prompt_tokens", "completion_tokens", *HISTOGRAM_COLUMNS)


def _total_series(buckets: Sequence[int], totals: Mapping[int, Sequence[Any]]) -> dict[str, list[Any]]:
    rows = [dict(zip(_TOTALS, totals[b][1:], strict=True)) if b in totals else None for b in buckets]

    def column(name: str) -> list[float]:
        return [float(r[name] or 0) if r else 0.0 for r in rows]

    histograms = [[int(r[c] or 0) for c in HISTOGRAM_COLUMNS] if r else [] for r in rows]
    return {"requests": column("requests"), "errors": column("errors"), "cost_usd": column("cost_usd"),
            "tokens": [a + b for a, b in zip(column("prompt_tokens"), column("completion_tokens"),
                                             strict=True)],
            **{f"p{q}": [percentile(h, q / 100) if h else None for h in histograms] for q in (50, 95, 99)}}


def _group_series(buckets: Sequence[int], top: Sequence[str], grouped: Sequence[Sequence[Any]],
                  totals: Mapping[int, Sequence[Any]]) -> list[dict[str, Any]]:
    """The top groups, and "other" for what the rest add up to (totals minus the top), each
    with its p95 latency from its own histogram."""
    index = {b: i for i, b in enumerate(buckets)}
    width = len(_GROUPED) + len(HISTOGRAM_COLUMNS)
    # name -> one list of figures (the sums, then the histogram) per bucket
    figures: dict[str, list[list[float]]] = {name: [[0.0] * width for _ in buckets] for name in top}
    for bucket, name, *row in grouped:
        i = index.get(bucket)
        if i is not None:
            figures[name][i] = [float(x or 0) for x in row]
    total_columns = [1 + _TOTALS.index(c) for c in (*_GROUPED, *HISTOGRAM_COLUMNS)]
    other = [[0.0] * width for _ in buckets]
    for i, b in enumerate(buckets):
        if b in totals:
            top_sum = [sum(c) for c in zip(*(f[i] for f in figures.values()), strict=True)] or [0.0] * width
            other[i] = [max(0.0, float(totals[b][c] or 0) - s) for c, s in zip(total_columns, top_sum,
                                                                                strict=True)]
    out = [_group_view(name or "(none)", rows) for name, rows in figures.items()]
    if any(row[0] > 1e-9 for row in other):
        out.append(_group_view("other", other))
    return out


def _group_view(name: str, rows: Sequence[Sequence[float]]) -> dict[str, Any]:
    n = len(_GROUPED)
    view: dict[str, Any] = {"name": name, **{m: [row[k] for row in rows] for k, m in enumerate(_GROUPED)}}
    view["p95"] = [percentile([int(x) for x in row[n:]], 0.95) if row[0] else None for row in rows]
    return view


def _status_condition(status: str | None) -> sa.ColumnElement[bool] | None:
    c = schema.requests.c.status
    if not status:
        return None
    if len(status) == 3 and status[0] in "12345" and status[1:].lower() == "xx":
        low = int(status[0]) * 100
        return sa.and_(c >= low, c < low + 100)
    if status.isdigit():
        return c == int(status)
    raise BadQuery(f"status must be a code such as 404 or a class such as 5xx, not {status!r}")


def _cursor(cursor: str) -> tuple[float, str]:
    ts, _, row_id = cursor.partition(":")
    try:
        return float(ts), row_id
    except ValueError:
        raise BadQuery("cursor is not one this API returned") from None


def _health_row(route: str, row: Mapping[str, Any] | None, quota: tuple[int | None, int | None] | None,
                recent: Sequence[Any]) -> dict[str, Any]:
    requests = int(row["requests"] or 0) if row else 0
    errors = int(row["errors"] or 0) if row else 0
    histogram = [int(row[c] or 0) for c in HISTOGRAM_COLUMNS] if row else []
    mine = [r for r in recent if r.route == route]
    rpm, tpm = quota or (None, None)
    used_rpm = len(mine)
    used_tpm = sum(r.prompt_tokens + r.completion_tokens for r in mine)
    limited = int(row["rate_limited"] or 0) if row else 0
    at_quota = bool((rpm and used_rpm >= NEAR_QUOTA * rpm) or (tpm and used_tpm >= NEAR_QUOTA * tpm))
    return {"route": route, "configured": quota is not None, "requests": requests, "errors": errors,
            "error_rate": errors / requests if requests else 0.0, "upstream_429": limited,
            "latency_ms": {f"p{q}": percentile(histogram, q / 100) if histogram else None for q in (50, 95)},
            "rpm": rpm, "tpm": tpm, "last_minute": {"requests": used_rpm, "tokens": used_tpm},
            "at_quota": at_quota}
