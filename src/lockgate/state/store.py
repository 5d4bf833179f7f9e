"""Storage: teams, keys, request records, usage and audit, on SQLite or PostgreSQL.

One implementation serves both through SQLAlchemy Core (async: aiosqlite, asyncpg); the few
statements that differ (INSERT ... ON CONFLICT) use each dialect's own construct. The request
path never calls this module: keys are served from memory (``pipeline.keycache``) and records
are written in batches by a background writer (``telemetry.writer``).
"""

from __future__ import annotations

import base64
import bisect
import secrets
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from lockgate.core.record import RequestRecord
from lockgate.state import audit_chain, schema
from lockgate.state.migrate import migrate
from lockgate.state.schema import HISTOGRAM_COLUMNS, LATENCY_BUCKETS_MS, ROLLUP_DIMENSIONS

LIMIT_FIELDS = ("models", "rpm", "tpm", "max_parallel", "budget_usd", "budget_period", "metadata")
GROUP_BY_FIELDS = ("key_id", "team_id", "model", "route", "status", "day", "hour")


def async_url(url: str) -> str:
    """``sqlite:///x.db`` / ``postgresql://...`` as the async drivers want them."""
    if url.startswith("sqlite://") and "+" not in url.split("://")[0]:
        return "sqlite+aiosqlite://" + url[len("sqlite://"):]
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+asyncpg://" + url[len(prefix):]
    return url


def new_id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(8)}"


@dataclass(frozen=True, slots=True)
class UsageQuery:
    key_id: str | None = None
    team_id: str | None = None
    model: str | None = None
    since: float | None = None
    until: float | None = None
    group_by: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class LogQuery:
    limit: int = 100
    key_id: str | None = None
    model: str | None = None
    status: int | None = None
    user: str | None = None


@dataclass(frozen=True, slots=True)
class Act:
    """An admin act to record in the audit log, in the same transaction as the change it
    describes: both are kept, or neither. ``target`` None: the id of the row changed."""

    actor: str
    action: str
    detail: Any = None
    target: str | None = None


@dataclass(frozen=True, slots=True)
class AuditPage:
    entries: list[dict[str, Any]]
    next_before: int | None  # the ``before`` that reads the page after this one; None: last page


@dataclass(frozen=True, slots=True)
class AuthSnapshot:
    """Everything auth needs, and a marker that changes whenever any of it does."""

    marker: tuple[Any, ...]
    teams: list[dict[str, Any]] = field(default_factory=list)
    keys: list[dict[str, Any]] = field(default_factory=list)


class Store:
    def __init__(self, url: str) -> None:
        self.url = url
        self.engine: AsyncEngine = create_async_engine(async_url(url), pool_pre_ping=True)
        self._dialect = self.engine.dialect.name
        if self._dialect == "sqlite":
            event.listen(self.engine.sync_engine, "connect", _sqlite_pragmas)

    async def migrate(self) -> None:
        await migrate(self.engine)

    async def close(self) -> None:
        await self.engine.dispose()

    async def ping(self) -> bool:
        try:
            async with self.engine.connect() as conn:
                await conn.execute(sa.text("SELECT 1"))
            return True
        except Exception:
            return False

    # --- teams and keys ------------------------------------------------------------------

    async def create_team(self, values: Mapping[str, Any], act: Act | None = None) -> dict[str, Any]:
        now = time.time()
        row = {"id": new_id("team"), "created_at": now, "updated_at": now, **_limits_of(values),
               "name": values["name"]}
        async with self.engine.begin() as conn:
            await conn.execute(schema.teams.insert().values(row))
            await _changed(conn)
            await _append_audit(conn, act, row["id"])
        return await self._one(schema.teams, row["id"])  # type: ignore[return-value]

    async def list_teams(self) -> list[dict[str, Any]]:
        return await self._all(sa.select(schema.teams).order_by(schema.teams.c.created_at))

    async def get_team(self, team_id: str) -> dict[str, Any] | None:
        return await self._one(schema.teams, team_id)

    async def find_team(self, id_or_name: str) -> dict[str, Any] | None:
        t = schema.teams
        rows = await self._all(sa.select(t).where(sa.or_(t.c.id == id_or_name, t.c.name == id_or_name)))
        return rows[0] if rows else None

    async def update_team(self, team_id: str, values: Mapping[str, Any],
                          act: Act | None = None) -> dict[str, Any] | None:
        return await self._update(schema.teams, team_id, values, act)

    async def delete_team(self, team_id: str, act: Act | None = None) -> bool:
        async with self.engine.begin() as conn:
            # Keys of the team stay, without it (SQLite enforces ON DELETE only with a pragma).
            await conn.execute(schema.keys.update().where(schema.keys.c.team_id == team_id)
                               .values(team_id=None, updated_at=time.time()))
            result = await conn.execute(schema.teams.delete().where(schema.teams.c.id == team_id))
            await _changed(conn)
            if result.rowcount:
                await _append_audit(conn, act, team_id)
        return bool(result.rowcount)

    async def create_key(self, values: Mapping[str, Any], key_hash: str, key_prefix: str,
                         act: Act | None = None) -> dict[str, Any]:
        now = time.time()
        row = {"id": new_id("key"), "name": values["name"], "key_hash": key_hash,
               "key_prefix": key_prefix, "team_id": values.get("team_id"),
               "config_team": values.get("config_team"),
               "expires_at": values.get("expires_at"), "privacy": values.get("privacy"),
               "created_at": now, "updated_at": now, **_limits_of(values)}
        async with self.engine.begin() as conn:
            await conn.execute(schema.keys.insert().values(row))
            await _changed(conn)
            await _append_audit(conn, act, row["id"])
        return await self._one(schema.keys, row["id"])  # type: ignore[return-value]

    async def list_keys(self) -> list[dict[str, Any]]:
        return await self._all(sa.select(schema.keys).order_by(schema.keys.c.created_at))

    async def get_key(self, key_id: str) -> dict[str, Any] | None:
        return await self._one(schema.keys, key_id)

    async def update_key(self, key_id: str, values: Mapping[str, Any],
                         act: Act | None = None) -> dict[str, Any] | None:
        return await self._update(schema.keys, key_id, values, act)

    async def revoke_key(self, key_id: str, act: Act | None = None) -> bool:
        now = time.time()
        async with self.engine.begin() as conn:
            result = await conn.execute(
                schema.keys.update().where(schema.keys.c.id == key_id, schema.keys.c.revoked_at.is_(None))
                .values(revoked_at=now, updated_at=now))
            await _changed(conn)
            if result.rowcount:
                await _append_audit(conn, act, key_id)
        return bool(result.rowcount)

    async def find_key(self, key_hash: str) -> AuthSnapshot | None:
        """One live key by its hash, with its team (an ``AuthSnapshot`` of just that key), or
        None: the lookup a worker makes for a key newer than its last poll."""
        k, t = schema.keys, schema.teams
        async with self.engine.connect() as conn:
            key = (await conn.execute(sa.select(k).where(
                k.c.key_hash == key_hash, k.c.revoked_at.is_(None)))).mappings().first()
            if key is None:
                return None
            teams = [] if key["team_id"] is None else [dict(r) for r in (await conn.execute(
                sa.select(t).where(t.c.id == key["team_id"]))).mappings()]
        return AuthSnapshot(marker=(), teams=teams, keys=[dict(key)])

    async def key_count(self) -> int:
        """Every key ever stored, revoked ones included (0 where the schema is not there yet):
        what decides whether a gateway without config keys is open (§2)."""
        async with self.engine.connect() as conn:
            if not await conn.run_sync(lambda sync: sa.inspect(sync).has_table("keys")):
                return 0
            return int((await conn.execute(sa.select(sa.func.count()).select_from(schema.keys)))
                       .scalar_one())

    async def auth_snapshot(self, since_marker: tuple[Any, ...] | None = None) -> AuthSnapshot | None:
        """The live keys and all teams, or None when nothing changed since ``since_marker``
        (one primary-key read of the revision counter, so it can be polled every half second).
        The counter is read first: a change landing between it and the rows is loaded now and
        loaded again on the next poll, never missed."""
        k, t, rev = schema.keys, schema.teams, schema.control_revision
        async with self.engine.connect() as conn:
            marker = ((await conn.execute(sa.select(rev.c.value).where(rev.c.id == 1))).scalar_one(),)
            if since_marker is not None and marker == since_marker:
                return None
            teams = [dict(r) for r in (await conn.execute(sa.select(t))).mappings()]
            keys = [dict(r) for r in (await conn.execute(
                sa.select(k).where(k.c.revoked_at.is_(None)))).mappings()]
        return AuthSnapshot(marker=marker, teams=teams, keys=keys)

    # --- records ---------------------------------------------------------------------------

    async def insert_records(self, records: Sequence[RequestRecord]) -> int:
        """Writes records that are not there yet (by record id) and adds exactly those to the
        hourly rollup, in one transaction: replaying a batch changes nothing. Returns how many
        were new."""
        if not records:
            return 0
        rows = [_record_row(r) for r in records]
        unique = len({r["id"] for r in rows}) == len(rows)
        if unique:
            # The usual batch: all new. One plain executemany (a single driver call, one SQL
            # text) and the rollup; a duplicate makes it fail, and the careful path below runs.
            try:
                async with self.engine.begin() as conn:
                    await conn.execute(schema.requests.insert(), rows)
                    await self._roll_up(conn, records)
                    await _insert_bodies(conn, records)
                return len(records)
            except IntegrityError:
                pass
        async with self.engine.begin() as conn:
            inserted = await self._insert_new(conn, rows)
            # by id: a record that appears twice in one batch is still one new record
            fresh = list({r.id: r for r in records if r.id in inserted}.values())
            await self._roll_up(conn, fresh)
            await _insert_bodies(conn, fresh)
        return len(fresh)

    async def _insert_new(self, conn: AsyncConnection, rows: list[dict[str, Any]]) -> set[str]:
        insert = (postgresql.insert if self._dialect == "postgresql" else sqlite.insert)(schema.requests)
        statement = insert.on_conflict_do_nothing(index_elements=["id"]).returning(
            schema.requests.c.id)
        # The rows go as executemany parameters, not .values(rows), so the statement is compiled
        # once (a multi-row VALUES was compiled anew for every batch: ~200 us of CPU per
        # record). The driver still prepares one SQL text per distinct row count and keeps it
        # in its statement cache (128 per connection, up to ~0.5 MB each), so batches go in
        # power-of-two chunks: at most 10 distinct texts, where any batch size made RSS grow
        # by ~80 MB per connection under load (bench/results/profile-2026-11-26.md).
        new: set[str] = set()
        for chunk in _power_of_two_chunks(rows):
            new.update(row[0] for row in (await conn.execute(statement, chunk)).all())
        return new

    async def _roll_up(self, conn: AsyncConnection, records: Iterable[RequestRecord]) -> None:
        records = list(records)
        groups: dict[tuple[Any, ...], dict[str, Any]] = {}
        by_dimension: dict[tuple[Any, ...], dict[str, Any]] = {}
        for r in records:
            hour = int(r.ts // 3600)
            dims = (hour, r.key_id or "", r.team_id or "", r.model or "", r.route or "", r.status)
            g = groups.get(dims)
            if g is None:
                g = groups[dims] = {"hour": dims[0], "key_id": dims[1], "team_id": dims[2],
                                    "model": dims[3], "route": dims[4], "status": dims[5],
                                    **_zero_sums()}
            _add(g, r)
            for dim, value in zip(ROLLUP_DIMENSIONS, ("", *dims[1:5]), strict=True):
                d = by_dimension.get((dim, hour, value))
                if d is None:
                    d = by_dimension[(dim, hour, value)] = {"dim": dim, "hour": hour, "value": value,
                                                            "rate_limited": 0, **_zero_sums()}
                _add(d, r)
                d["rate_limited"] += 1 if r.status == 429 else 0
        if not groups:
            return
        await self._upsert(conn, schema.usage_hourly, list(groups.values()),
                           ["hour", "key_id", "team_id", "model", "route", "status"], ())
        await self._upsert(conn, schema.usage_hourly_by, list(by_dimension.values()),
                           ["dim", "hour", "value"], ("rate_limited",))

    async def _upsert(self, conn: AsyncConnection, table: sa.Table, rows: list[dict[str, Any]],
                      keys: list[str], extra: tuple[str, ...]) -> None:
        """Adds ``rows``' sums to the rows with the same ``keys``, or inserts them."""
        insert = (postgresql.insert if self._dialect == "postgresql" else sqlite.insert)(table)
        statement = insert.on_conflict_do_update(
            index_elements=keys,
            set_={c: table.c[c] + insert.excluded[c] for c in (*_ADDITIVE, *extra)})
        await conn.execute(statement, rows)

    async def spend(self, owner_column: str, owner_id: str, since: float) -> float:
        """What a key (``key_id``) or team (``team_id``) spent since ``since`` (hour-aligned)."""
        u = schema.usage_hourly
        query = sa.select(sa.func.coalesce(sa.func.sum(u.c.cost_usd), 0.0)).where(
            u.c[owner_column] == owner_id, u.c.hour >= int(since // 3600))
        async with self.engine.connect() as conn:
            return float((await conn.execute(query)).scalar_one())

    async def usage(self, query: UsageQuery) -> list[dict[str, Any]]:
        u = schema.usage_hourly
        # Integer division for the day: PostgreSQL rounds a cast of a true division, to the next day.
        dims = {"key_id": u.c.key_id, "team_id": u.c.team_id, "model": u.c.model, "route": u.c.route,
                "status": u.c.status, "hour": u.c.hour, "day": u.c.hour // 24}
        groups = [dims[g].label(g) for g in query.group_by]
        sums = [sa.func.sum(u.c[c]).label(c) for c in
                ("requests", "errors", "prompt_tokens", "completion_tokens", "cost_usd", *HISTOGRAM_COLUMNS)]
        statement = sa.select(*groups, *sums).where(*_usage_filters(query))
        if groups:
            statement = statement.group_by(*groups).order_by(*groups)
        async with self.engine.connect() as conn:
            rows = (await conn.execute(statement)).mappings().all()
        return [_usage_row(dict(row), query.group_by) for row in rows if row["requests"]]

    async def logs(self, query: LogQuery) -> list[dict[str, Any]]:
        r = schema.requests
        conditions = [c for c in (
            r.c.key_id == query.key_id if query.key_id else None,
            r.c.model == query.model if query.model else None,
            r.c.status == query.status if query.status is not None else None,
            r.c.end_user == query.user if query.user else None,
        ) if c is not None]
        statement = sa.select(r).where(*conditions).order_by(r.c.ts.desc()).limit(query.limit)
        return await self._all(statement)

    async def log_bodies(self, record_ids: Sequence[str]) -> dict[str, bytes]:
        """The sealed bodies stored for these records, by record id."""
        if not record_ids:
            return {}
        b = schema.request_bodies
        rows = await self._all(sa.select(b.c.id, b.c.body).where(b.c.id.in_(list(record_ids))))
        return {row["id"]: bytes(row["body"]) for row in rows}

    async def log_entry(self, request_id: str) -> dict[str, Any] | None:
        """The newest record with this request id (a client may send the same id twice)."""
        r = schema.requests
        rows = await self._all(sa.select(r).where(r.c.request_id == request_id)
                               .order_by(r.c.ts.desc()).limit(1))
        return rows[0] if rows else None

    async def erase_user(self, user: str, act: Act | None = None) -> tuple[int, int]:
        """Deletes an end-user's request records, their stored bodies and the feedback given on
        their requests (a label may hold what they said; the rollups keep only anonymous
        totals): (records, bodies). The audit entry, in the same transaction, gets
        ``deleted`` and ``stored_bodies``: how many."""
        r, b, f = schema.requests, schema.request_bodies, schema.feedback
        async with self.engine.begin() as conn:
            await conn.execute(f.delete().where(f.c.record_id.in_(
                sa.select(r.c.id).where(r.c.end_user == user))))
            records = int((await conn.execute(r.delete().where(r.c.end_user == user))).rowcount or 0)
            bodies = int((await conn.execute(b.delete().where(b.c.end_user == user))).rowcount or 0)
            if act is not None:
                detail = {"deleted": records, "stored_bodies": bodies, **(act.detail or {})}
                await _append_audit(conn, replace(act, detail=detail))
        return records, bodies

    async def purge(self, cutoff: float | None,
                    by_key: Mapping[str, float | None]) -> tuple[int, int]:
        """Retention: deletes records and bodies older than ``cutoff`` (epoch seconds), or for
        the keys in ``by_key`` older than their own cutoff (None: kept for ever). Idempotent:
        workers and replicas may run it at once. Returns (records, bodies) deleted."""
        deleted = [0, 0]
        own = list(by_key)
        async with self.engine.begin() as conn:
            # Feedback goes with its requests (the third table; its count is not reported).
            for i, table in enumerate((schema.requests, schema.request_bodies, schema.feedback)):
                rules = []
                if cutoff is not None:  # the default retention: every key without its own
                    others = table.c.key_id.is_(None) | table.c.key_id.notin_(own)
                    rules.append((table.c.ts < cutoff) & others if own else table.c.ts < cutoff)
                for limit, keys in _by_cutoff(by_key).items():
                    rules.append((table.c.ts < limit) & table.c.key_id.in_(keys))
                for rule in rules:
                    result = await conn.execute(table.delete().where(rule))
                    if i < len(deleted):
                        deleted[i] += int(result.rowcount or 0)
        return deleted[0], deleted[1]

    # --- audit -----------------------------------------------------------------------------

    async def audit(self, actor: str, action: str, target: str | None, detail: Any = None) -> None:
        """Records an act that changes nothing in this store (else pass ``act`` to the change)."""
        async with self.engine.begin() as conn:
            await _append_audit(conn, Act(actor, action, detail, target))

    async def audit_log(self, limit: int = 100, before: int | None = None) -> AuditPage:
        """Entries newest first, ``limit`` of them, older than ``seq`` ``before`` where given."""
        a = schema.audit
        statement = sa.select(a).order_by(a.c.seq.desc()).limit(limit + 1)
        if before is not None:
            statement = statement.where(a.c.seq < before)
        rows = await self._all(statement)
        more = len(rows) > limit
        return AuditPage(rows[:limit], rows[limit - 1]["seq"] if more else None)

    async def verify_audit(self, batch: int = 1000) -> audit_chain.Verdict:
        """Checks the whole chain, reading it in ``seq`` order ``batch`` rows at a time."""
        a, h = schema.audit, schema.audit_head
        async with self.engine.connect() as conn:
            # One snapshot for the head and the entries where the database offers it.
            found = (await conn.execute(sa.select(h.c.seq, h.c.hash).where(h.c.id == 1))).mappings().first()
            head = dict(found) if found is not None else None
            entries: list[dict[str, Any]] = []
            last = 0
            while True:
                rows = (await conn.execute(sa.select(a).where(a.c.seq > last).order_by(a.c.seq)
                                           .limit(batch))).mappings().all()
                entries.extend(dict(r) for r in rows)
                if len(rows) < batch:
                    break
                last = rows[-1]["seq"]
        return audit_chain.verify(entries, head)

    # --- helpers ---------------------------------------------------------------------------

    async def _all(self, statement: sa.Select[Any]) -> list[dict[str, Any]]:
        async with self.engine.connect() as conn:
            return [dict(row) for row in (await conn.execute(statement)).mappings()]

    async def _one(self, table: sa.Table, row_id: str) -> dict[str, Any] | None:
        rows = await self._all(sa.select(table).where(table.c.id == row_id))
        return rows[0] if rows else None

    async def _update(self, table: sa.Table, row_id: str, values: Mapping[str, Any],
                      act: Act | None) -> dict[str, Any] | None:
        changes = {k: v for k, v in values.items() if k in table.c and k not in ("id", "key_hash")}
        changes["updated_at"] = time.time()
        async with self.engine.begin() as conn:
            result = await conn.execute(table.update().where(table.c.id == row_id).values(changes))
            await _changed(conn)
            if result.rowcount:
                await _append_audit(conn, act, row_id)
        if not result.rowcount:
            return None
        return await self._one(table, row_id)


async def _changed(conn: AsyncConnection) -> None:
    """Bumps the keys-and-teams revision in the caller's transaction."""
    rev = schema.control_revision
    await conn.execute(rev.update().where(rev.c.id == 1).values(value=rev.c.value + 1))


async def _append_audit(conn: AsyncConnection, act: Act | None, target: str | None = None) -> None:
    """Appends ``act`` to the audit chain in the caller's transaction. Advancing the head row
    comes first: it is the lock that makes concurrent writers (workers, replicas) take turns,
    and on PostgreSQL a writer that waited for it reads the head its predecessor committed."""
    if act is None:
        return
    h = schema.audit_head
    head = (await conn.execute(h.update().where(h.c.id == 1).values(seq=h.c.seq + 1)
                               .returning(h.c.seq, h.c.hash))).one()
    entry = {"seq": int(head.seq), "ts": time.time(), "actor": act.actor, "action": act.action,
             "target": act.target if act.target is not None else target,
             "detail": audit_chain.normalise_detail(act.detail), "prev_hash": head.hash}
    entry["hash"] = audit_chain.entry_hash(entry)
    await conn.execute(schema.audit.insert().values(entry))
    await conn.execute(h.update().where(h.c.id == 1).values(hash=entry["hash"]))


# For the other stores over the same database (experiments): their changes are audited in
# their own transaction, as the control plane's are.
append_audit = _append_audit


_ADDITIVE = ("requests", "errors", "prompt_tokens", "completion_tokens", "cost_usd", *HISTOGRAM_COLUMNS)


def _zero_sums() -> dict[str, Any]:
    return {"requests": 0, "errors": 0, "prompt_tokens": 0, "completion_tokens": 0, "cost_usd": 0.0,
            **dict.fromkeys(HISTOGRAM_COLUMNS, 0)}


def _add(sums: dict[str, Any], r: RequestRecord) -> None:
    sums["requests"] += 1
    sums["errors"] += 1 if r.status >= 400 else 0
    sums["prompt_tokens"] += r.prompt_tokens
    sums["completion_tokens"] += r.completion_tokens
    sums["cost_usd"] += r.cost_usd
    sums[HISTOGRAM_COLUMNS[bisect.bisect_left(LATENCY_BUCKETS_MS, r.latency_ms)]] += 1


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")  # readers do not block the writer
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=5000")
    cursor.close()


def _limits_of(values: Mapping[str, Any]) -> dict[str, Any]:
    out = {k: values.get(k) for k in LIMIT_FIELDS}
    out["budget_period"] = values.get("budget_period") or "total"
    return out


def _power_of_two_chunks(rows: list[dict[str, Any]]) -> Iterator[list[dict[str, Any]]]:
    """``rows`` in consecutive slices whose lengths are powers of two, largest first."""
    start = 0
    while start < len(rows):
        size = 1 << ((len(rows) - start).bit_length() - 1)
        yield rows[start:start + size]
        start += size


async def _insert_bodies(conn: AsyncConnection, records: Iterable[RequestRecord]) -> None:
    rows = [{"id": r.id, "ts": r.ts, "key_id": r.key_id, "end_user": r.user,
             "body": base64.b64decode(r.body)} for r in records if r.body]
    if rows:
        await conn.execute(schema.request_bodies.insert(), rows)


def _by_cutoff(by_key: Mapping[str, float | None]) -> dict[float, list[str]]:
    """The keys with a cutoff, grouped by it (one statement per distinct retention)."""
    groups: dict[float, list[str]] = {}
    for key, cutoff in by_key.items():
        if cutoff is not None:
            groups.setdefault(cutoff, []).append(key)
    return groups


def _record_row(r: RequestRecord) -> dict[str, Any]:
    return {"id": r.id, "request_id": r.request_id, "ts": r.ts, "endpoint": r.endpoint,
            "key_id": r.key_id, "team_id": r.team_id, "model": r.model, "route": r.route,
            "status": r.status, "error_code": r.error_code, "prompt_tokens": r.prompt_tokens,
            "completion_tokens": r.completion_tokens, "cost_usd": r.cost_usd,
            "latency_ms": r.latency_ms, "stream": r.stream, "end_user": r.user, "cache": r.cache,
            "version": r.version, "variant": r.variant, "pii": r.pii}


def _usage_filters(query: UsageQuery) -> list[sa.ColumnElement[bool]]:
    u = schema.usage_hourly
    out: list[sa.ColumnElement[bool]] = []
    if query.key_id:
        out.append(u.c.key_id == query.key_id)
    if query.team_id:
        out.append(u.c.team_id == query.team_id)
    if query.model:
        out.append(u.c.model == query.model)
    if query.since is not None:
        out.append(u.c.hour >= int(query.since // 3600))
    if query.until is not None:
        out.append(u.c.hour <= int(query.until // 3600))
    return out


def _usage_row(row: Mapping[str, Any], group_by: Sequence[str]) -> dict[str, Any]:
    histogram = [int(row[c] or 0) for c in HISTOGRAM_COLUMNS]
    prompt, completion = int(row["prompt_tokens"] or 0), int(row["completion_tokens"] or 0)
    group = {g: _group_value(g, row[g]) for g in group_by}
    return {
        "group": group,
        "requests": int(row["requests"] or 0),
        "errors": int(row["errors"] or 0),
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "cost_usd": round(float(row["cost_usd"] or 0.0), 8),
        "latency_ms": {f"p{q}": percentile(histogram, q / 100) for q in (50, 95, 99)},
    }


def _group_value(name: str, value: Any) -> Any:
    if name == "hour":
        return time.strftime("%Y-%m-%dT%H:00:00Z", time.gmtime(int(value) * 3600))
    if name == "day":
        return time.strftime("%Y-%m-%d", time.gmtime(int(value) * 86400))
    if name in ("key_id", "team_id", "model", "route"):
        return value or None
    return value


def percentile(histogram: Sequence[int], q: float) -> float | None:
    """The ``q`` quantile estimated from bucket counts: the upper bound of the bucket where it
    falls (an over-estimate by at most one bucket's width)."""
    total = sum(histogram)
    if not total:
        return None
    rank = q * total
    seen = 0
    for i, count in enumerate(histogram):
        seen += count
        if seen >= rank:
            return float(LATENCY_BUCKETS_MS[i]) if i < len(LATENCY_BUCKETS_MS) else float(
                LATENCY_BUCKETS_MS[-1])
    return float(LATENCY_BUCKETS_MS[-1])
