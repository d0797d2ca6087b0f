"""Tuned studies ([tune]): the study's tuning set-up and selection, and which trials are
tuning trials (their draw).

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # nullable: a study recorded before was not tuned, and none of its trials is a tuning trial
    with op.batch_alter_table("studies") as batch:
        batch.add_column(sa.Column("tuning", sa.JSON, nullable=True))
    with op.batch_alter_table("trials") as batch:
        batch.add_column(sa.Column("tuning_draw", sa.Integer, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("trials") as batch:
        batch.drop_column("tuning_draw")
    with op.batch_alter_table("studies") as batch:
        batch.drop_column("tuning")
