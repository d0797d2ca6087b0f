"""ORM tables. These rows never leave the store package: callers get records."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    JSON,
    BigInteger,
    DateTime,
    Enum,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from ablate.trials.lifecycle import TrialStatus

# the enum's values, stored as text (no native enum type): the column is as it was
STATUS_TYPE = Enum(TrialStatus, native_enum=False, length=16, validate_strings=True,
                   values_callable=lambda enum: [member.value for member in enum])


class Base(DeclarativeBase):
    pass


class StudyRow(Base):
    __tablename__ = "studies"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    description: Mapped[str] = mapped_column(Text, default="")
    recipe_path: Mapped[str] = mapped_column(Text, default="")
    recipe_text: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(DateTime)
    # ablate.analysis.design.Design as JSON: how the study's seeds were chosen (None: fixed)
    design: Mapped[dict | None] = mapped_column(JSON, nullable=True)

    trials: Mapped[list[TrialRow]] = relationship(back_populates="study")


class TrialRow(Base):
    __tablename__ = "trials"
    __table_args__ = (UniqueConstraint("study_id", "trial_id", name="uq_trial_in_study"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("studies.id", ondelete="CASCADE"), index=True)
    trial_id: Mapped[str] = mapped_column(String(64), index=True)
    name: Mapped[str] = mapped_column(Text)
    config_name: Mapped[str] = mapped_column(Text)
    variant: Mapped[str] = mapped_column(String(200))
    seed: Mapped[int] = mapped_column(Integer)
    axes: Mapped[dict] = mapped_column(JSON)
    spec: Mapped[dict] = mapped_column(JSON)
    arch_id: Mapped[str] = mapped_column(String(64), index=True)
    published: Mapped[dict | None] = mapped_column(JSON, nullable=True)
    status: Mapped[TrialStatus] = mapped_column(STATUS_TYPE, default=TrialStatus.PENDING,
                                                index=True)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    run_dir: Mapped[str | None] = mapped_column(Text, nullable=True)
    job_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    # claims that started the trial afresh or retried it; a resumption after the cluster
    # stopped its job is not an attempt but a preemption
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    preemptions: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    environment: Mapped[dict | None] = mapped_column(JSON, nullable=True)
    weights_report: Mapped[dict | None] = mapped_column(JSON, nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime)
    started_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    # the claim (ablate.store.claims): who trains the trial now, under which epoch (bumped by
    # every claim, so a late result of an earlier holder is told apart) and until when
    holder: Mapped[dict | None] = mapped_column(JSON, nullable=True)
    claim_epoch: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    heartbeat_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    lease_expires_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)

    study: Mapped[StudyRow] = relationship(back_populates="trials")
    metrics: Mapped[list[MetricRow]] = relationship(back_populates="trial", cascade="all")


class MetricRow(Base):
    """One figure of a trial. ``epoch`` is None for final figures."""

    __tablename__ = "metrics"
    __table_args__ = (Index("ix_metrics_trial_key", "trial_pk", "key"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    trial_pk: Mapped[int] = mapped_column(ForeignKey("trials.id", ondelete="CASCADE"))
    epoch: Mapped[int | None] = mapped_column(Integer, nullable=True)
    step: Mapped[int | None] = mapped_column(Integer, nullable=True)
    key: Mapped[str] = mapped_column(String(200))
    value: Mapped[float] = mapped_column(Float)

    trial: Mapped[TrialRow] = relationship(back_populates="metrics")


class EstimateRow(Base):
    """What one ``ablate run`` estimated before it started (``ablate.cost.estimate``)."""

    __tablename__ = "estimates"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("studies.id", ondelete="CASCADE"),
                                          index=True)
    created_at: Mapped[datetime] = mapped_column(DateTime)  # database time: the run's start
    estimate: Mapped[dict] = mapped_column(JSON)


class CostRow(Base):
    """Parameters and FLOPs of one architecture at one resolution (cache, keyed by arch id)."""

    __tablename__ = "costs"

    arch_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    params: Mapped[int] = mapped_column(BigInteger)
    params_by_module: Mapped[dict] = mapped_column(JSON)
    flops: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    flops_by_module: Mapped[dict | None] = mapped_column(JSON, nullable=True)
    flops_convention: Mapped[str | None] = mapped_column(String(64), nullable=True)
    resolution_h: Mapped[int] = mapped_column(Integer)
    resolution_w: Mapped[int] = mapped_column(Integer)
    extra: Mapped[dict | None] = mapped_column(JSON, nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime)
