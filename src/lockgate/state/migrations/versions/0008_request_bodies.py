"""Privacy (issue 13): request and answer bodies where a privacy policy logs them (sealed), and
the kinds of personal data found in each request.

Revision ID: 0008
Revises: 0006
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("requests", sa.Column("pii", sa.JSON, nullable=True))
    op.create_table(
        "request_bodies",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("ts", sa.Float, nullable=False),
        sa.Column("key_id", sa.String(64), nullable=True),
        sa.Column("end_user", sa.String(256), nullable=True),
        sa.Column("body", sa.LargeBinary, nullable=False),
    )
    op.create_index("ix_request_bodies_ts", "request_bodies", ["ts"])


def downgrade() -> None:
    op.drop_index("ix_request_bodies_ts", table_name="request_bodies")
    op.drop_table("request_bodies")
    with op.batch_alter_table("requests") as batch:
        batch.drop_column("pii")
