"""The design a study's seeds follow (fixed, or sequential with its looks), for its tests.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # nullable: a study recorded before has no design and is read as fixed-seed
    with op.batch_alter_table("studies") as batch:
        batch.add_column(sa.Column("design", sa.JSON, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("studies") as batch:
        batch.drop_column("design")
