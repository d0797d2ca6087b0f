"""What the study runner (``dispatch.study``) says: a round's summary and the typed events
``ablate run`` renders. The ``--until-decided`` loop's own events are in
``dispatch.adaptive``; a trial's events (``Claimed`` ... ``Ended``) in ``train.events``.

A leaf module: the CLI imports it at start-up, so it loads nothing heavy.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from ablate.cost.estimate import StudyEstimate
from ablate.dispatch.adaptive import LoopEvent
from ablate.dispatch.budget import Budget
from ablate.dispatch.entry import TrialJob
from ablate.train.events import TrialEvent
from ablate.trials.lifecycle import Held


@dataclass
class RunSummary:
    """One round: what ran, what was skipped, what others hold."""

    total: int
    skipped: int = 0
    retried: int = 0  # failed before, run again now
    done: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    recovered: list[str] = field(default_factory=list)  # results found on disk and ingested
    corrupt: list[str] = field(default_factory=list)
    # result files of this round's trials written for another database's study: not ingested
    foreign: list[str] = field(default_factory=list)
    foreign_db: str = ""  # the database they were written for
    unrecorded: list[str] = field(default_factory=list)  # result on disk, database failed
    taken: list[str] = field(default_factory=list)  # claimed and trained by this runner
    submitted: list[str] = field(default_factory=list)  # queued as Slurm jobs by this runner
    left: dict[str, Held] = field(default_factory=dict)  # held by other runners
    interrupted: list[str] = field(default_factory=list)  # preempted or timed out for good
    unclaimed: dict[str, str] = field(default_factory=dict)  # the claim's database error
    cancelled: list[str] = field(default_factory=list)  # its Slurm job scancel'ed: pending
    # held by other runners, recorded by them while this one waited (--wait)
    waited: list[str] = field(default_factory=list)

    def queued(self) -> list[str]:
        """Trials this runner queued on Slurm that have not ended in this round (all of
        them with ``--detach``)."""
        ended = {*self.done, *self.failed, *self.interrupted, *self.left, *self.unrecorded,
                 *self.cancelled, *self.waited}
        return [tid for tid in self.submitted if tid not in ended]


@dataclass(frozen=True)
class Estimated:
    """Before anything runs: the study's time estimate (``dispatch.estimate``) and the
    budget it is held to (``dispatch.budget``; None: none)."""

    estimate: StudyEstimate
    budget: Budget | None = None


@dataclass(frozen=True)
class Planned:
    """A round is about to run ``trials`` trials; ``skipped`` are done (or failed, with
    ``skip_failed``), ``retried`` failed before and run again."""

    study: str
    trials: int
    skipped: int
    retried: int


@dataclass(frozen=True)
class TrialUpdate:
    """One trial's event (``ablate.train.events``), after the runner has recorded it."""

    job: TrialJob
    event: TrialEvent


@dataclass(frozen=True)
class Waiting:
    """``wait``: ``held`` trials are held by live runners; the first lease may expire at
    ``expiry`` (database time, UTC; None when unknown)."""

    held: int
    expiry: datetime | None


@dataclass(frozen=True)
class RoundEnded:
    study: str
    trial_ids: tuple[str, ...]  # the round's trials, in the recipe's order
    summary: RunSummary


@dataclass(frozen=True)
class RunnerReport:
    """After the recipe's round: what this runner did, what it left, the study's state."""

    lines: tuple[str, ...]


# -- a tuned study's phases ([tune], dispatch.tuning) ------------------------------------


@dataclass(frozen=True)
class TuningStarted:
    """The tuning phase: ``trials`` tuning trials, ``draws`` draws per configuration on
    each of ``seeds`` tuning seeds."""

    study: str
    method: str  # Tune.describe()
    draws: int
    configs: int
    trials: int
    seeds: int


@dataclass(frozen=True)
class DrawsChosen:
    """Each configuration's chosen draw: config -> (draw, its values, its score)."""

    chosen: dict[str, tuple[int, dict, float]]
    metric: str
    recorded: bool  # chosen by this run (False: read back from an earlier one)
    failed_draws: dict[str, int]  # config -> its draws with a failed tuning trial (no score)
    budget: int  # draws per configuration


@dataclass(frozen=True)
class TuningWaiting:
    """The confirmation phase waits on ``unfinished`` tuning trials (held elsewhere,
    queued on Slurm, or cut short)."""

    unfinished: int


@dataclass(frozen=True)
class TuningRetried:
    """Before the selection, ``trials`` tuning trials that failed in this run's tuning
    round are run once more: their errors (``errors``: each kind's count, e.g.
    ``RuntimeError``) are not known to be deterministic (a killed worker, out of memory on
    a shared GPU), and a failed draw would cut its configuration's tuning budget."""

    trials: int
    errors: dict[str, int]


@dataclass(frozen=True)
class TuningStopped:
    """No selection can be made (every draw of a configuration failed)."""

    reason: str


TuningEvent = TuningStarted | TuningRetried | DrawsChosen | TuningWaiting | TuningStopped
StudyEvent = (Estimated | Planned | TrialUpdate | Waiting | RoundEnded | RunnerReport | LoopEvent
              | TuningEvent)
