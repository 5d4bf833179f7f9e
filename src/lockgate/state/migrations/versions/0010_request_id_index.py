"""Records found by request id again: the dashboard's request detail (``/ui/api/requests/{id}``)
looks a request up by the id the client saw in ``x-request-id``; without an index that is a
scan of every record (seconds at a few million rows).

Revision ID: 0010
Revises: 0006
Create Date: 2026-12-07
"""

from __future__ import annotations

from alembic import op

revision = "0010"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_requests_request_id", "requests", ["request_id"])


def downgrade() -> None:
    op.drop_index("ix_requests_request_id", table_name="requests")
