"""Plain, frozen records: what the rest of ablate sees of the database."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from ablate.trials.lifecycle import TrialStatus


@dataclass(frozen=True)
class StudyRecord:
    id: int
    name: str
    description: str
    recipe_path: str
    created_at: datetime


@dataclass(frozen=True)
class TrialRecord:
    study: str
    trial_id: str
    name: str
    config_name: str
    variant: str
    seed: int
    axes: dict[str, Any]
    spec: dict[str, Any]
    arch_id: str
    status: TrialStatus
    error: str | None = None
    published: dict[str, Any] | None = None
    run_dir: str | None = None
    attempts: int = 0  # claims that started it afresh or retried it
    preemptions: int = 0  # times the cluster stopped its job and it resumed
    job_id: str | None = None
    environment: dict[str, Any] | None = None
    weights_report: dict[str, Any] | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    metrics: dict[str, float] = field(default_factory=dict)  # final figures
    holder: dict[str, Any] | None = None  # host, pid, executor, job_id of the last claim
    heartbeat_at: datetime | None = None  # its last lease renewal
    lease_expires_at: datetime | None = None  # None once recorded, released or queued


@dataclass(frozen=True)
class EpochMetric:
    trial_id: str
    epoch: int
    step: int | None
    key: str
    value: float


@dataclass(frozen=True)
class CostRecord:
    arch_id: str
    params: int
    params_by_module: dict[str, int]
    flops: int | None
    flops_by_module: dict[str, int] | None
    flops_convention: str | None
    resolution: tuple[int, int]
    extra: dict[str, Any] | None = None

    @property
    def gflops(self) -> float | None:
        return None if self.flops is None else self.flops / 1e9


@dataclass(frozen=True)
class TrialTime:
    """How long a finished trial took, and on what: what time estimates and budgets read."""

    study: str
    trial_id: str
    config_name: str
    arch_id: str
    seed: int
    status: TrialStatus
    started_at: datetime | None
    finished_at: datetime | None
    steps: float | None  # the training steps it ran (its final ``steps`` figure)
    batch_size: int | None  # its spec's train.batch_size
    environment: dict[str, Any] | None  # device, gpus, threads (``dispatch.entry``)

    @property
    def seconds(self) -> float | None:
        """Claim to result: the time its holder spent on it (a resumed trial: since the
        resumption; a negative span from skewed clocks: None)."""
        if self.started_at is None or self.finished_at is None:
            return None
        seconds = (self.finished_at - self.started_at).total_seconds()
        return seconds if seconds >= 0.0 else None


@dataclass(frozen=True)
class EstimateRecord:
    """What one ``ablate run`` estimated before it started (``ablate.cost.estimate``)."""

    study: str
    created_at: datetime  # database time, UTC
    estimate: dict[str, Any]
