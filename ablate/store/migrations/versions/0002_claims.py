"""Claims with leases: who holds a running trial, until when, and under which epoch.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # nullable columns (claim_epoch has a server default): existing rows need no rewrite,
    # and SQLite adds them with a plain ALTER TABLE
    with op.batch_alter_table("trials") as batch:
        batch.add_column(sa.Column("holder", sa.JSON, nullable=True))
        batch.add_column(sa.Column("claim_epoch", sa.Integer, nullable=False,
                                   server_default="0"))
        batch.add_column(sa.Column("heartbeat_at", sa.DateTime, nullable=True))
        batch.add_column(sa.Column("lease_expires_at", sa.DateTime, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("trials") as batch:
        for column in ("lease_expires_at", "heartbeat_at", "claim_epoch", "holder"):
            batch.drop_column(column)
