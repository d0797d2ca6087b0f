"""A trial's life in one place: its states, the one table of transitions between them,
the result it ends with (``result.json``), and what an executor reports of it.

::

    pending ──submit/claim──► running ──record──► done | failed
       ▲                       │ │ │
       └──────release/reset────┘ │ └──time out──► timed_out ──claim──► running
                                 └────preempt───► preempted ──claim──► running

A claim takes a trial to ``running`` from any state but ``done``: from ``failed`` it is a
retry, from ``running`` a take-over (an expired lease, a dead holder, a requeued Slurm
job taking its own claim back), from ``preempted`` or ``timed_out`` a resumption from the
checkpoint, which is not a new attempt. ``record`` ends a trial with its result, once;
``reset`` (``--force``, a cancelled job) makes any trial pending again. Every module that
changes a trial's state asks :func:`advance`, so an illegal change fails loudly with both
states named instead of being stored.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from ablate import atomic
from ablate.errors import AblateError


class TrialStatus(StrEnum):
    """What a trial is now; also the database column's type (its values are stored).
    Listed in the order counts are shown (``ablate status``, ``watch``, run summaries)."""

    DONE = "done"  # recorded with its figures
    RUNNING = "running"  # claimed (a live lease), or queued on Slurm and not yet claimed
    PENDING = "pending"  # registered; nobody trains it
    FAILED = "failed"  # recorded with its error: an exception, NaN loss, out of memory
    PREEMPTED = "preempted"  # its job was preempted: resumes from its checkpoint
    TIMED_OUT = "timed_out"  # its job reached its time limit: resumes from its checkpoint

    @property
    def finished(self) -> bool:
        """Recorded with a result (done or failed)."""
        return self in (TrialStatus.DONE, TrialStatus.FAILED)

    @property
    def interrupted(self) -> bool:
        """Stopped by the cluster, not by itself: the next claim resumes it and is not
        counted as an attempt."""
        return self in (TrialStatus.PREEMPTED, TrialStatus.TIMED_OUT)


class Verb(StrEnum):
    """What can happen to a trial."""

    SUBMIT = "submit"  # a Slurm job was queued for it
    CLAIM = "claim"  # a holder takes it, with a lease
    RENEW = "renew"  # the holder's heartbeat extends the lease
    RELEASE = "release"  # the holder gives it back unfinished (Ctrl-C)
    PREEMPT = "preempt"  # the cluster stopped its job, to run it again later
    TIME_OUT = "time_out"  # its job reached its time limit
    RECORD_DONE = "record_done"  # its result is recorded: done
    RECORD_FAILED = "record_failed"  # its result is recorded: failed
    RESET = "reset"  # its outcome is forgotten (--force, a cancelled job)


S = TrialStatus
_UNFINISHED = frozenset({S.PENDING, S.RUNNING, S.FAILED, S.PREEMPTED, S.TIMED_OUT})

# verb -> (the states it is allowed from, the state it leads to): the whole life
TRANSITIONS: dict[Verb, tuple[frozenset[TrialStatus], TrialStatus]] = {
    Verb.SUBMIT: (_UNFINISHED, S.RUNNING),
    Verb.CLAIM: (_UNFINISHED, S.RUNNING),
    Verb.RENEW: (frozenset({S.RUNNING}), S.RUNNING),
    Verb.RELEASE: (frozenset({S.RUNNING}), S.PENDING),
    Verb.PREEMPT: (frozenset({S.RUNNING}), S.PREEMPTED),
    Verb.TIME_OUT: (frozenset({S.RUNNING}), S.TIMED_OUT),
    Verb.RECORD_DONE: (_UNFINISHED, S.DONE),
    Verb.RECORD_FAILED: (_UNFINISHED, S.FAILED),
    Verb.RESET: (frozenset(S), S.PENDING),
}


class IllegalTransition(AblateError):
    """A state change the table does not allow: a bug, never stored."""


def sources(verb: Verb) -> frozenset[TrialStatus]:
    """The states ``verb`` is allowed from (for the store's guarded updates)."""
    return TRANSITIONS[verb][0]


def advance(current: TrialStatus | str, verb: Verb, trial: str = "") -> TrialStatus:
    """The state ``verb`` leads to from ``current``; raises :class:`IllegalTransition`."""
    allowed, target = TRANSITIONS[verb]
    state = TrialStatus(current)
    if state not in allowed:
        raise IllegalTransition(
            f"trial {trial or '?'}: cannot {verb} it when {state} ({state} -> {target} is not "
            f"a transition; {verb} is allowed from {', '.join(sorted(allowed))})")
    return target


def interruption(status: TrialStatus) -> Verb:
    """The verb that leads to an interrupted state."""
    return {S.PREEMPTED: Verb.PREEMPT, S.TIMED_OUT: Verb.TIME_OUT}[status]


def table_text() -> str:
    """The transition table as text: one line per verb (docs, closing notes)."""
    width = max(len(v) for v in Verb)
    lines = []
    for verb, (allowed, target) in TRANSITIONS.items():
        origin = "any state" if allowed == frozenset(S) else " | ".join(
            s.value for s in S if s in allowed)
        lines.append(f"{verb.value:<{width}}  {origin} -> {target.value}")
    return "\n".join(lines)


# -- the result a trial ends with ------------------------------------------------------

RESULT_NAME = "result.json"
# what a done trial's run folder keeps of its training checkpoint (``ablate run --keep``,
# ``ablate.train.checkpoint.keep_finished``): the whole resumable checkpoint, the trained
# model's weights alone (the default: a done trial is never resumed), or nothing
KEEP_CHOICES = ("checkpoint", "weights", "none")
DEFAULT_KEEP = "weights"
RESULT_FORMAT = 1
_REQUIRED = ("format", "study", "trial_id", "status")


class CorruptResult(Exception):
    """A result file that cannot be read as one (never ingested)."""


@dataclass(frozen=True)
class TrialResult:
    """How a trial ended: done with its figures, or failed with its error. Written by the
    process that trained it as ``result.json`` in its run folder (atomically), ingested
    into the store from there or directly."""

    study: str
    trial_id: str
    status: TrialStatus  # DONE or FAILED
    name: str = ""
    run_dir: str | None = None
    started_at: str | None = None  # ISO times, UTC
    finished_at: str | None = None
    error: str | None = None  # the failure and its traceback
    final: Mapping[str, float] = field(default_factory=dict)  # the figures the report uses
    epochs: tuple[Mapping[str, Any], ...] = ()  # {"epoch", "step", "metrics"} per epoch
    environment: Mapping[str, Any] | None = None  # versions, host, device, timing, code
    weights_report: Mapping[str, Any] | None = None
    # the claim it was trained under: a late result of a holder whose claim was taken over
    # is not recorded while the new holder's lease is live (None: trained unclaimed)
    claim_epoch: int | None = None

    def __post_init__(self) -> None:
        if not TrialStatus(self.status).finished:
            raise ValueError(f"a result is done or failed, not {self.status}")
        if not isinstance(self.final, Mapping) or not all(
                isinstance(e, Mapping) and "epoch" in e for e in self.epochs):
            raise TypeError("a result's final is a mapping and its epochs are mappings with "
                            "an epoch")
        object.__setattr__(self, "status", TrialStatus(self.status))
        object.__setattr__(self, "epochs", tuple(self.epochs))

    @property
    def done(self) -> bool:
        return self.status is TrialStatus.DONE

    def replace(self, **changes: Any) -> TrialResult:
        return dataclasses.replace(self, **changes)

    @classmethod
    def failure(cls, study: str, trial_id: str, error: str, **fields: Any) -> TrialResult:
        return cls(study, trial_id, TrialStatus.FAILED, error=error, **fields)

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"format": RESULT_FORMAT}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name == "claim_epoch" and value is None:
                continue
            if f.name == "epochs":
                value = [dict(e) for e in value]
            elif isinstance(value, Mapping):
                value = dict(value)
            data[f.name] = value.value if isinstance(value, TrialStatus) else value
        return data

    @classmethod
    def from_json(cls, data: Any, where: str = "result") -> TrialResult:
        if not isinstance(data, dict) or any(k not in data for k in _REQUIRED):
            raise CorruptResult(f"{where}: result file lacks {', '.join(_REQUIRED)}")
        if data["format"] != RESULT_FORMAT or data["status"] not in (S.DONE, S.FAILED):
            raise CorruptResult(f"{where}: unknown result format or status")
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})

    def write(self, run_dir: str | Path) -> Path:
        """Whole or not at all, and on disk before it counts (``ablate.atomic``): readers
        see one writer's whole file, never two writers' mixed."""
        run_dir = Path(run_dir)
        run_dir.mkdir(parents=True, exist_ok=True)
        path = run_dir / RESULT_NAME
        atomic.write_text(path, json.dumps(self.to_json(), indent=1, default=_jsonable),
                          durable=True)
        return path

    @classmethod
    def read(cls, path: str | Path) -> TrialResult:
        try:
            with open(path, encoding="utf-8") as fh:
                data = json.load(fh)
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
            raise CorruptResult(f"{path}: unreadable result file ({err})") from None
        try:
            return cls.from_json(data, str(path))
        except (TypeError, ValueError) as err:
            raise CorruptResult(f"{path}: {err}") from None


def _jsonable(value: Any) -> Any:
    if hasattr(value, "item"):  # numpy and torch scalars
        return value.item()
    return str(value)


# -- what an executor reports of a trial -------------------------------------------------

@dataclass(frozen=True)
class Trained:
    """Trained here (or by this runner's job) to a result, done or failed."""

    result: TrialResult


@dataclass(frozen=True)
class Held:
    """Not trained here: ``why`` is the trial's state elsewhere (done, failed since this
    run started, running under a live lease) or ``locked`` (claimed this very moment)."""

    why: str
    holder: Mapping[str, Any] | None = None


@dataclass(frozen=True)
class Lost:
    """The claim was taken over while training (its lease had expired): the new holder
    records the trial; this run folder was left to it."""


@dataclass(frozen=True)
class Unclaimed:
    """The database failed while claiming: nothing was trained or recorded. The trial
    stays as it was, and the next run claims it (the same in every executor)."""

    error: str


@dataclass(frozen=True)
class JobDied:
    """A Slurm job ended without a result (killed, out of memory, a crash outside
    Python): the trial fails with what its logs say. ``result`` is that failure."""

    job_id: str
    result: TrialResult


@dataclass(frozen=True)
class Interrupted:
    """The cluster stopped the trial's job for good (preempted, timed out) before it
    wrote a result: the trial is ``status`` and resumes from its checkpoint next run."""

    job_id: str | None
    status: TrialStatus  # PREEMPTED or TIMED_OUT
    detail: str = ""


Outcome = Trained | Held | Lost | Unclaimed | JobDied | Interrupted
