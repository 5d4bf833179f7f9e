"""Fewer indexes on request records: each one is paid on every insert, and the queries need
only ``ts`` and ``(key_id, ts)``.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-26
"""

from __future__ import annotations

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

_DROPPED = (("ix_requests_model_ts", ["model", "ts"]), ("ix_requests_request_id", ["request_id"]),
            ("ix_requests_end_user", ["end_user"]))


def upgrade() -> None:
    for name, _ in _DROPPED:
        op.drop_index(name, table_name="requests")


def downgrade() -> None:
    for name, columns in _DROPPED:
        op.create_index(name, "requests", columns)
