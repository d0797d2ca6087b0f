"""What a trial says while it runs: typed events, from the training loop up to the CLI.

The training loop emits :class:`Resumed`, :class:`Stepped` and :class:`EpochEnded`; the
executors add :class:`Started` and :class:`Finished` (local and Slurm) and
:class:`JobStateChanged` and :class:`JobCancelled` (Slurm). Run-folder progress files,
trackers (``ablate.track``) and ``ablate run``'s view read them by type. They are frozen
dataclasses of plain values, so a local worker can send them through a process queue.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Started:
    """The trial started: claimed by this runner (``claimed``), or submitted to Slurm
    (``job_id``, not yet running)."""

    claimed: bool = False
    job_id: str | None = None
    holder: dict[str, Any] | None = None  # the claim's holder identity
    taken_over: dict[str, Any] | None = None  # the previous holder, when taken over


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
class Finished:
    """The trial's result (``dispatch.results``): done, failed, or ``held``/``lost`` when
    another runner holds it."""

    result: dict[str, Any]

    @property
    def status(self) -> str:
        return str(self.result.get("status"))


@dataclass(frozen=True)
class JobStateChanged:
    """Slurm: the trial's job changed state (PENDING, RUNNING, ...)."""

    job_id: str
    state: str


@dataclass(frozen=True)
class JobCancelled:
    """Slurm: the trial's job was cancelled before it wrote a result; back to pending."""

    job_id: str


TrialEvent = Started | Resumed | Stepped | EpochEnded | Finished | JobStateChanged | JobCancelled
Progress = Callable[[TrialEvent], None]  # what a trial calls as it runs
