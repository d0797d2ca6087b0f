"""A trial's preemptions: how often the cluster stopped its job and it resumed. The status
column keeps its values (ablate.trials.lifecycle.TrialStatus, two new ones: preempted,
timed_out), stored as before in 16 characters.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # a server default: existing rows read 0, and SQLite adds it with a plain ALTER TABLE
    with op.batch_alter_table("trials") as batch:
        batch.add_column(sa.Column("preemptions", sa.Integer, nullable=False,
                                   server_default="0"))


def downgrade() -> None:
    with op.batch_alter_table("trials") as batch:
        batch.drop_column("preemptions")
