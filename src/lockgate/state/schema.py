"""The storage schema, as SQLAlchemy Core tables. Alembic migrations (``state/migrations``)
create and change it; this module is what the queries are written against.

* ``teams`` and ``keys``: the control plane. Keys are stored only as a SHA-256 digest.
* ``requests``: one row per request. ``id`` is the record's own id, written once: a record
  replayed after a storage outage is ignored if it is already there (``request_id`` comes from
  the client and may repeat).
* ``usage_hourly``: a rollup per hour, key, team, model, route and status, with a latency
  histogram, maintained as records are written, so usage queries stay fast at millions of rows.
* ``usage_hourly_by``: the same per hour and one dimension at a time, for the dashboard.
* ``audit``: every admin act, append-only and hash-chained (``audit_head``: the chain's head).
* ``experiments``: each experiment's state (running, stopped, promoted, rolled back), shared
  by every worker and replica; ``feedback``: a score or label per request (its record's id).
* ``request_bodies``: a request's body and answer where its privacy policy logs bodies,
  redacted and sealed (``lockgate.privacy.logbook``), by the record's id; apart from
  ``requests`` so that records stay small and most requests have no row here.
* ``responses``: stored Responses answers (``store: true``) with their input, for the key that
  made them (``owner``), until ``expires_at``; ``body`` is sealed (``lockgate.sealing``).
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    UniqueConstraint,
)

metadata = MetaData()

# Upper bounds (ms) of the latency histogram's buckets; the last bucket is open-ended.
LATENCY_BUCKETS_MS: tuple[float, ...] = (
    1, 2, 5, 10, 20, 35, 50, 75, 100, 150, 200, 300, 500, 750, 1000, 1500, 2000, 3000, 5000,
    7500, 10000, 15000, 20000, 30000, 60000, 120000)
HISTOGRAM_COLUMNS = tuple(f"h{i}" for i in range(len(LATENCY_BUCKETS_MS) + 1))


def _limits() -> list[Column[object]]:
    return [
        Column("models", JSON, nullable=True),
        Column("rpm", Integer, nullable=True),
        Column("tpm", Integer, nullable=True),
        Column("max_parallel", Integer, nullable=True),
        Column("budget_usd", Float, nullable=True),
        Column("budget_period", String(16), nullable=False, server_default="total"),
        Column("metadata", JSON, nullable=True),
        Column("created_at", Float, nullable=False),
        Column("updated_at", Float, nullable=False),
    ]


teams = Table(
    "teams", metadata,
    Column("id", String(40), primary_key=True),
    Column("name", String(200), nullable=False, unique=True),
    *_limits(),
)

keys = Table(
    "keys", metadata,
    Column("id", String(40), primary_key=True),
    Column("name", String(200), nullable=False),
    Column("key_hash", String(64), nullable=False, unique=True),
    Column("key_prefix", String(16), nullable=False),
    Column("team_id", String(40), ForeignKey("teams.id", ondelete="SET NULL"), nullable=True),
    Column("config_team", String(200), nullable=True),  # the name of a team from the config
    Column("expires_at", Float, nullable=True),
    Column("revoked_at", Float, nullable=True),
    Column("privacy", JSON, nullable=True),
    *_limits(),
    Index("ix_keys_updated_at", "updated_at"),
)

requests = Table(
    "requests", metadata,
    Column("id", String(32), primary_key=True),
    Column("request_id", String(128), nullable=False),
    Column("ts", Float, nullable=False),
    Column("endpoint", String(64), nullable=False),
    Column("key_id", String(64), nullable=True),
    Column("team_id", String(64), nullable=True),
    Column("model", String(200), nullable=True),
    Column("route", String(300), nullable=True),
    Column("status", Integer, nullable=False),
    Column("error_code", String(64), nullable=True),
    Column("prompt_tokens", Integer, nullable=False),
    Column("completion_tokens", Integer, nullable=False),
    Column("cost_usd", Float, nullable=False),
    Column("latency_ms", Float, nullable=False),
    Column("stream", Boolean, nullable=False),
    Column("end_user", String(256), nullable=True),
    Column("cache", String(8), nullable=True),
    Column("version", String(64), nullable=True),  # the model version that served
    Column("variant", String(64), nullable=True),  # the experiment variant assigned
    Column("pii", JSON, nullable=True),  # kinds of personal data found: {"email": 2}, no values
    # Few indexes: every one is paid on each of the many inserts. Logs read the newest rows
    # (by ts, or a key's by key_id + ts); the dashboard finds a request by its id; erasing a
    # user's rows is rare and may scan.
    Index("ix_requests_ts", "ts"),
    Index("ix_requests_key_ts", "key_id", "ts"),
    Index("ix_requests_request_id", "request_id"),
)

# Dimensions are '' rather than NULL: NULLs never conflict in a unique index, and the rollup
# is kept with INSERT ... ON CONFLICT DO UPDATE.
usage_hourly = Table(
    "usage_hourly", metadata,
    Column("hour", BigInteger, nullable=False),  # epoch seconds // 3600
    Column("key_id", String(64), nullable=False),
    Column("team_id", String(64), nullable=False),
    Column("model", String(200), nullable=False),
    Column("route", String(300), nullable=False),
    Column("status", Integer, nullable=False),
    Column("requests", BigInteger, nullable=False),
    Column("errors", BigInteger, nullable=False),
    Column("prompt_tokens", BigInteger, nullable=False),
    Column("completion_tokens", BigInteger, nullable=False),
    Column("cost_usd", Float, nullable=False),
    *(Column(name, BigInteger, nullable=False, server_default="0") for name in HISTOGRAM_COLUMNS),
    UniqueConstraint("hour", "key_id", "team_id", "model", "route", "status",
                     name="uq_usage_hourly_dims"),
    Index("ix_usage_hourly_key_hour", "key_id", "hour"),
    Index("ix_usage_hourly_team_hour", "team_id", "hour"),
)

# The same figures per hour and ONE dimension at a time (``dim``: all, model, key_id, team_id,
# route; ``value``: '' for all). ``usage_hourly`` has a row per combination of every dimension,
# often nearly one per record on a busy multi-tenant gateway; the dashboard's charts ask one
# dimension at a time, and read here about a hundred rows per hour whatever the traffic.
ROLLUP_DIMENSIONS = ("all", "key_id", "team_id", "model", "route")  # in the rollup key's order
usage_hourly_by = Table(
    "usage_hourly_by", metadata,
    Column("dim", String(16), nullable=False),
    Column("hour", BigInteger, nullable=False),
    Column("value", String(300), nullable=False),
    Column("requests", BigInteger, nullable=False),
    Column("errors", BigInteger, nullable=False),
    Column("rate_limited", BigInteger, nullable=False),  # answered 429
    Column("prompt_tokens", BigInteger, nullable=False),
    Column("completion_tokens", BigInteger, nullable=False),
    Column("cost_usd", Float, nullable=False),
    *(Column(name, BigInteger, nullable=False, server_default="0") for name in HISTOGRAM_COLUMNS),
    UniqueConstraint("dim", "hour", "value", name="uq_usage_hourly_by"),
)

# One row whose value every change to keys or teams increments, inside the change's own
# transaction: replicas poll it to know when to reload, whatever the writers' clocks say.
control_revision = Table(
    "control_revision", metadata,
    Column("id", Integer, primary_key=True),
    Column("value", BigInteger, nullable=False),
)

# Append-only and hash-chained (``state.audit_chain``): ``seq`` counts entries from 1 without
# gaps, ``prev_hash`` is the hash of entry ``seq - 1``, ``hash`` covers this entry and it.
audit = Table(
    "audit", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("ts", Float, nullable=False),
    Column("actor", String(200), nullable=False),
    Column("action", String(64), nullable=False),
    Column("target", String(200), nullable=True),
    Column("detail", JSON, nullable=True),
    Column("seq", BigInteger, nullable=False),
    Column("prev_hash", String(64), nullable=False),
    Column("hash", String(64), nullable=False),
    Index("ix_audit_ts", "ts"),
    UniqueConstraint("seq", name="uq_audit_seq"),
)

# The chain head: one row (id 1) with the newest entry's seq and hash. Every writer updates it
# first in its transaction, which serialises writers (a row lock on PostgreSQL, the write lock
# on SQLite) so that the chain never forks, and lets ``verify`` see entries dropped at the end.
audit_head = Table(
    "audit_head", metadata,
    Column("id", Integer, primary_key=True),
    Column("seq", BigInteger, nullable=False),
    Column("hash", String(64), nullable=False),
)


# Owner is the key id ('' on an open gateway). Read by id; purged by expires_at; erased by
# end_user (rare: it may scan, as for requests).
responses = Table(
    "responses", metadata,
    Column("id", String(64), primary_key=True),
    Column("owner", String(64), nullable=False),
    Column("end_user", String(256), nullable=True),
    Column("created_at", Float, nullable=False),
    Column("expires_at", Float, nullable=False),
    Column("body", LargeBinary, nullable=False),
    Index("ix_responses_expires_at", "expires_at"),
)


# One row per configured experiment, created when a gateway first serves it (``started_at``
# bounds its analysis); ``variant`` is the one that takes all its traffic once it is decided.
experiments = Table(
    "experiments", metadata,
    Column("name", String(200), primary_key=True),
    Column("status", String(16), nullable=False),  # running | stopped | promoted | rolled_back
    Column("variant", String(64), nullable=True),
    Column("reason", String(500), nullable=True),
    Column("started_at", Float, nullable=False),
    Column("changed_at", Float, nullable=True),
)

# The latest feedback on a request (one row per request record: a later score replaces an
# earlier one), with the request's model and variant copied in so analysis needs no join.
feedback = Table(
    "feedback", metadata,
    Column("record_id", String(32), primary_key=True),
    Column("request_id", String(128), nullable=False),
    Column("key_id", String(64), nullable=True),
    Column("model", String(200), nullable=True),
    Column("variant", String(64), nullable=True),
    Column("score", Float, nullable=True),
    Column("label", String(200), nullable=True),
    Column("ts", Float, nullable=False),
    Index("ix_feedback_model_ts", "model", "ts"),
)

# Read by id (the record's); purged by ts (retention, with key_id for per-key retention);
# erased by end_user (rare: it may scan).
request_bodies = Table(
    "request_bodies", metadata,
    Column("id", String(32), primary_key=True),
    Column("ts", Float, nullable=False),
    Column("key_id", String(64), nullable=True),
    Column("end_user", String(256), nullable=True),
    Column("body", LargeBinary, nullable=False),
    Index("ix_request_bodies_ts", "ts"),
)
