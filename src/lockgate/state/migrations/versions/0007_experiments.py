"""Experiments (§8): each experiment's state, shared by every worker and replica (running,
stopped, promoted, rolled back), and the feedback clients tie to their requests.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "experiments",
        sa.Column("name", sa.String(200), primary_key=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("variant", sa.String(64), nullable=True),
        sa.Column("reason", sa.String(500), nullable=True),
        sa.Column("started_at", sa.Float, nullable=False),
        sa.Column("changed_at", sa.Float, nullable=True),
    )
    op.create_table(
        "feedback",
        sa.Column("record_id", sa.String(32), primary_key=True),
        sa.Column("request_id", sa.String(128), nullable=False),
        sa.Column("key_id", sa.String(64), nullable=True),
        sa.Column("model", sa.String(200), nullable=True),
        sa.Column("variant", sa.String(64), nullable=True),
        sa.Column("score", sa.Float, nullable=True),
        sa.Column("label", sa.String(200), nullable=True),
        sa.Column("ts", sa.Float, nullable=False),
    )
    op.create_index("ix_feedback_model_ts", "feedback", ["model", "ts"])


def downgrade() -> None:
    op.drop_index("ix_feedback_model_ts", table_name="feedback")
    op.drop_table("feedback")
    op.drop_table("experiments")
