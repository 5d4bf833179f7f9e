"""The audit log becomes a hash chain: ``seq``, ``prev_hash`` and ``hash`` on every entry, and
the chain head (``audit_head``). Entries written before are chained in their id order.

Revision ID: 0009
Revises: 0006
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from lockgate.state.audit_chain import GENESIS, entry_hash

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    head = op.create_table(
        "audit_head",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("seq", sa.BigInteger, nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
    )
    with op.batch_alter_table("audit") as batch:
        batch.add_column(sa.Column("seq", sa.BigInteger, nullable=True))
        batch.add_column(sa.Column("prev_hash", sa.String(64), nullable=True))
        batch.add_column(sa.Column("hash", sa.String(64), nullable=True))
    seq, prev = _chain_existing()
    op.bulk_insert(head, [{"id": 1, "seq": seq, "hash": prev}])
    with op.batch_alter_table("audit") as batch:
        for column, kind in (("seq", sa.BigInteger()), ("prev_hash", sa.String(64)),
                             ("hash", sa.String(64))):
            batch.alter_column(column, existing_type=kind, nullable=False)
        batch.create_unique_constraint("uq_audit_seq", ["seq"])


def _chain_existing() -> tuple[int, str]:
    """Chains the entries already there; returns the head (their count, the last hash)."""
    audit = sa.table("audit", sa.column("id"), sa.column("ts"), sa.column("actor"),
                     sa.column("action"), sa.column("target"), sa.column("detail", sa.JSON),
                     sa.column("seq"), sa.column("prev_hash"), sa.column("hash"))
    bind = op.get_bind()
    rows = bind.execute(sa.select(audit).order_by(audit.c.id)).mappings().all()
    seq, prev = 0, GENESIS
    for row in rows:
        seq += 1
        entry = {**row, "seq": seq, "prev_hash": prev}
        prev = entry_hash(entry)
        bind.execute(audit.update().where(audit.c.id == row["id"])
                     .values(seq=seq, prev_hash=entry["prev_hash"], hash=prev))
    return seq, prev


def downgrade() -> None:
    with op.batch_alter_table("audit") as batch:
        batch.drop_constraint("uq_audit_seq", type_="unique")
        batch.drop_column("hash")
        batch.drop_column("prev_hash")
        batch.drop_column("seq")
    op.drop_table("audit_head")
