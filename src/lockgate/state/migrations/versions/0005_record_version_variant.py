"""Records say which model version served a request and which experiment variant it was
assigned: ``requests.version`` and ``requests.variant`` (NULL where the model has neither).

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("requests", sa.Column("version", sa.String(64), nullable=True))
    op.add_column("requests", sa.Column("variant", sa.String(64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("requests") as batch:  # SQLite rebuilds the table to drop a column
        batch.drop_column("variant")
        batch.drop_column("version")
