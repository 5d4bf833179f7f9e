"""What the dashboard (``/ui``) reads at millions of records.

* ``ix_requests_request_id``: the request detail finds a record by the id the client saw in
  ``x-request-id``; without it, a scan of every record (seconds at a few million).
* ``usage_hourly_by``: the hourly rollup one dimension at a time (see ``state.schema``), filled
  here from ``usage_hourly`` so the charts show the history recorded before it.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

_HISTOGRAM = [f"h{i}" for i in range(27)]
_DIMENSIONS = {"all": "''", "model": "model", "key_id": "key_id", "team_id": "team_id", "route": "route"}


def upgrade() -> None:
    op.create_index("ix_requests_request_id", "requests", ["request_id"])
    op.create_table(
        "usage_hourly_by",
        sa.Column("dim", sa.String(16), nullable=False),
        sa.Column("hour", sa.BigInteger, nullable=False),
        sa.Column("value", sa.String(300), nullable=False),
        sa.Column("requests", sa.BigInteger, nullable=False),
        sa.Column("errors", sa.BigInteger, nullable=False),
        sa.Column("rate_limited", sa.BigInteger, nullable=False),
        sa.Column("prompt_tokens", sa.BigInteger, nullable=False),
        sa.Column("completion_tokens", sa.BigInteger, nullable=False),
        sa.Column("cost_usd", sa.Float, nullable=False),
        *(sa.Column(h, sa.BigInteger, nullable=False, server_default="0") for h in _HISTOGRAM),
        sa.UniqueConstraint("dim", "hour", "value", name="uq_usage_hourly_by"),
    )
    sums = ", ".join(f"SUM({c})" for c in ("requests", "errors", "prompt_tokens",
                                           "completion_tokens", "cost_usd", *_HISTOGRAM))
    columns = ", ".join(("requests", "errors", "prompt_tokens", "completion_tokens", "cost_usd",
                         *_HISTOGRAM))
    for dim, expression in _DIMENSIONS.items():
        group = "hour" if dim == "all" else f"hour, {expression}"  # PostgreSQL: no constant in GROUP BY
        op.execute(
            f"INSERT INTO usage_hourly_by (dim, hour, value, rate_limited, {columns}) "
            f"SELECT '{dim}', hour, {expression}, SUM(CASE WHEN status = 429 THEN requests ELSE 0 END), "
            f"{sums} FROM usage_hourly GROUP BY {group}")


def downgrade() -> None:
    op.drop_table("usage_hourly_by")
    op.drop_index("ix_requests_request_id", table_name="requests")
