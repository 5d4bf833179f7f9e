"""Stored rows -> the JSON the admin API and ``lockgate keys --json`` show.

Each view lists the fields it shows, rather than dropping the ones it hides, so a column added
to the schema later (or the key's hash) can never leak by default. Times are ISO 8601, UTC.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from lockgate.pipeline.auth import STATIC

_LIMITS = ("models", "rpm", "tpm", "max_parallel", "budget_usd", "budget_period")
_LOG_FIELDS = ("key_id", "team_id", "model", "route", "status", "error_code",
               "prompt_tokens", "completion_tokens", "cost_usd", "latency_ms", "cache", "stream",
               "endpoint", "version", "variant", "pii")


def iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def team_view(row: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "id": row["id"],
        "name": row["name"],
        "source": row.get("source", "stored"),
        **{k: row[k] for k in _LIMITS},
        "metadata": row["metadata"],
        "created_at": iso(row["created_at"]),
        "updated_at": iso(row["updated_at"]),
    }


def key_view(row: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "id": row["id"],
        "name": row["name"],
        "source": row.get("source", "stored"),
        "key_prefix": row["key_prefix"],
        "status": key_status(row),
        "team_id": row["team_id"] or (STATIC + row["config_team"] if row.get("config_team") else None),
        **{k: row[k] for k in _LIMITS},
        "expires_at": iso(row["expires_at"]),
        "revoked_at": iso(row["revoked_at"]),
        "privacy": row["privacy"],
        "metadata": row["metadata"],
        "created_at": iso(row["created_at"]),
        "updated_at": iso(row["updated_at"]),
    }


def key_status(row: Mapping[str, Any]) -> str:
    if row["revoked_at"] is not None:
        return "revoked"
    if row["expires_at"] is not None and row["expires_at"] <= time.time():
        return "expired"
    return "active"


def spend_view(spent: float, since: float) -> dict[str, Any]:
    return {"spend_usd": round(spent, 8), "spend_since": iso(since)}


def log_view(row: Mapping[str, Any]) -> dict[str, Any]:
    return {"request_id": row["request_id"], "ts": iso(row["ts"]), **{k: row[k] for k in _LOG_FIELDS},
            "user": row["end_user"]}


def audit_view(row: Mapping[str, Any]) -> dict[str, Any]:
    return {"id": row["id"], "ts": iso(row["ts"]), "actor": row["actor"], "action": row["action"],
            "target": row["target"], "detail": row["detail"], "seq": row["seq"],
            "prev_hash": row["prev_hash"], "hash": row["hash"]}
