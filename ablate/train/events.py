"""What a trial says while it runs: typed events, from the training loop up to the CLI.

The training loop emits :class:`Resumed`, :class:`Stepped` and :class:`EpochEnded`; the
executors add :class:`Claimed` and :class:`Ended` (local and Slurm) and
:class:`Submitted`, :class:`JobStateChanged` and :class:`JobCancelled` (Slurm). Run-folder progress files,
trackers (``ablate.track``) and ``ablate run``'s view read them by type. They are frozen
dataclasses of plain values, so a local worker can send them through a process queue.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ablate.trials.lifecycle import Outcome


@dataclass(frozen=True)
class Claimed:
    """The process that trains the trial claimed it (``holder``; None when it runs
    without a database); ``taken_over`` is the earlier holder whose claim it took, and
    ``resumed`` says the cluster had stopped the trial's job (preempted, timed_out,
    requeued)."""

    holder: dict[str, Any] | None = None
    taken_over: dict[str, Any] | None = None
    resumed: str | None = None


@dataclass(frozen=True)
class Submitted:
    """Slurm: a job was queued for the trial; it claims the trial when it starts."""

    job_id: str


@dataclass(frozen=True)
class Resumed:
    """Training continues from a checkpoint at ``step``."""

    step: int


@dataclass(frozen=True)
class Stepped:
    """Every ``train.log_every`` steps: the running loss of the epoch so far."""

    step: int
    total_steps: int
    epoch: int  # 1-based
    epochs: int
    loss: float
    lr: float


@dataclass(frozen=True)
class EpochEnded:
    """An epoch ended: its history entry (``train_loss``, throughput, ``val_*`` when it
    was evaluated)."""

    epoch: int  # 1-based
    epochs: int
    step: int
    metrics: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class Ended:
    """The executor is done with the trial: what became of it (``lifecycle.Outcome``:
    trained to a result, held by another runner, its claim lost or never made, its
    Slurm job dead or stopped by the cluster)."""

    outcome: Outcome


@dataclass(frozen=True)
class JobStateChanged:
    """Slurm: the trial's job changed state (PENDING, RUNNING, ...)."""

    job_id: str
    state: str


@dataclass(frozen=True)
class JobCancelled:
    """Slurm: the trial's job was cancelled before it wrote a result; back to pending."""

    job_id: str


TrialEvent = (Claimed | Submitted | Resumed | Stepped | EpochEnded | Ended | JobStateChanged
              | JobCancelled)
Progress = Callable[[TrialEvent], None]  # what a trial calls as it runs
