"""Initial schema: studies, trials, metrics, costs.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "studies",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("name", sa.String(200), nullable=False, unique=True),
        sa.Column("description", sa.Text, nullable=False),
        sa.Column("recipe_path", sa.Text, nullable=False),
        sa.Column("recipe_text", sa.Text, nullable=False),
        sa.Column("created_at", sa.DateTime, nullable=False),
    )
    op.create_table(
        "trials",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("study_id", sa.Integer, sa.ForeignKey("studies.id", ondelete="CASCADE"),
                  nullable=False),
        sa.Column("trial_id", sa.String(64), nullable=False),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("config_name", sa.Text, nullable=False),
        sa.Column("variant", sa.String(200), nullable=False),
        sa.Column("seed", sa.Integer, nullable=False),
        sa.Column("axes", sa.JSON, nullable=False),
        sa.Column("spec", sa.JSON, nullable=False),
        sa.Column("arch_id", sa.String(64), nullable=False),
        sa.Column("published", sa.JSON, nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("error", sa.Text, nullable=True),
        sa.Column("run_dir", sa.Text, nullable=True),
        sa.Column("job_id", sa.String(64), nullable=True),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("environment", sa.JSON, nullable=True),
        sa.Column("weights_report", sa.JSON, nullable=True),
        sa.Column("created_at", sa.DateTime, nullable=False),
        sa.Column("started_at", sa.DateTime, nullable=True),
        sa.Column("finished_at", sa.DateTime, nullable=True),
        sa.UniqueConstraint("study_id", "trial_id", name="uq_trial_in_study"),
    )
    op.create_index("ix_trials_study_id", "trials", ["study_id"])
    op.create_index("ix_trials_trial_id", "trials", ["trial_id"])
    op.create_index("ix_trials_arch_id", "trials", ["arch_id"])
    op.create_index("ix_trials_status", "trials", ["status"])
    op.create_table(
        "metrics",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("trial_pk", sa.Integer, sa.ForeignKey("trials.id", ondelete="CASCADE"),
                  nullable=False),
        sa.Column("epoch", sa.Integer, nullable=True),
        sa.Column("step", sa.Integer, nullable=True),
        sa.Column("key", sa.String(200), nullable=False),
        sa.Column("value", sa.Float, nullable=False),
    )
    op.create_index("ix_metrics_trial_key", "metrics", ["trial_pk", "key"])
    op.create_table(
        "costs",
        sa.Column("arch_id", sa.String(64), primary_key=True),
        sa.Column("params", sa.BigInteger, nullable=False),
        sa.Column("params_by_module", sa.JSON, nullable=False),
        sa.Column("flops", sa.BigInteger, nullable=True),
        sa.Column("flops_by_module", sa.JSON, nullable=True),
        sa.Column("flops_convention", sa.String(64), nullable=True),
        sa.Column("resolution_h", sa.Integer, nullable=False),
        sa.Column("resolution_w", sa.Integer, nullable=False),
        sa.Column("extra", sa.JSON, nullable=True),
        sa.Column("created_at", sa.DateTime, nullable=False),
    )


def downgrade() -> None:
    for table in ("costs", "metrics", "trials", "studies"):
        op.drop_table(table)
