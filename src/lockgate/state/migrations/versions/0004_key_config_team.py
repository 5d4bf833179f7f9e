"""A stored key may join a team from the config file: ``keys.config_team`` names it (a config
team has no row, so ``team_id`` with its foreign key cannot).

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("keys", sa.Column("config_team", sa.String(200), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("keys") as batch:  # SQLite rebuilds the table to drop a column
        batch.drop_column("config_team")
