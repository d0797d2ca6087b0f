"""A study as it runs, for ``ablate watch``: trial states, what each running trial is doing,
the best configuration so far, an estimate of the time left, and the effects so far.

Everything comes from the database (opened read-only by the caller) except the running
trials' epoch, step and loss: those are in each run folder's ``progress.json``
(``ablate.dispatch.progress``).
"""

from __future__ import annotations

import contextlib
import math
import statistics
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import pandas as pd

from ablate.dispatch.progress import read_progress
from ablate.dispatch.results import recorded_run_dir
from ablate.trials.lifecycle import TrialStatus

EFFECT_FIELDS = ("axis", "change", "estimate", "ci_low", "ci_high", "n", "verdict")
MIN_PACED_FRACTION = 0.02


@dataclass(frozen=True)
class RunningTrial:
    name: str
    holder: str
    renewed_s: float | None  # seconds since its lease was last renewed
    elapsed_s: float | None  # since it was claimed
    epoch: int | None = None
    epochs: int | None = None
    step: int | None = None
    total_steps: int | None = None
    loss: float | None = None
    preemptions: int = 0  # times the cluster stopped its job and it resumed
    resumed_at_step: int | None = None  # the checkpoint's step this claim started from

    @property
    def fraction(self) -> float | None:
        if self.step is None or not self.total_steps:
            return None
        return min(1.0, self.step / self.total_steps)

    def paced_s(self) -> float | None:
        """This trial's training time at its pace since it was claimed (steps since then
        over the seconds since then), once it has trained ``MIN_PACED_FRACTION`` of its
        steps in this claim: before that the set-up (data, model) is most of the time."""
        if self.step is None or not self.total_steps or not self.elapsed_s:
            return None
        trained = (self.step - (self.resumed_at_step or 0)) / self.total_steps
        return self.elapsed_s / trained if trained >= MIN_PACED_FRACTION else None


@dataclass(frozen=True)
class Snapshot:
    study: str
    total: int
    counts: dict[TrialStatus, int]
    running: list[RunningTrial]
    best: dict[str, Any] | None  # config_name, miou_mean, miou_std, n, params
    # mean wall time of the done trials; before any is done, the running trials' paced
    # training time (``paced``: it leaves out evaluation and the steps not yet taken)
    mean_trial_s: float | None
    eta_s: float | None  # time left, at the current pace and parallelism
    effects: list[dict[str, Any]] = field(default_factory=list)
    effects_error: str | None = None
    preemptions: int = 0  # of every trial: times the cluster stopped a job
    paced: bool = False

    @property
    def complete(self) -> bool:
        """Every trial recorded: done, or failed (which a next ``ablate run`` retries)."""
        return all(status.finished for status, n in self.counts.items() if n)

    def signature(self) -> tuple:
        """What a reader would call a change (clock-driven fields left out)."""
        return (tuple(sorted(self.counts.items())),
                tuple((r.name, r.epoch, r.step) for r in self.running),
                None if self.best is None else (self.best["config_name"], self.best["n"]),
                len(self.effects))


def study_snapshot(store, study: str, runs_root: str | Path | None = None) -> Snapshot:
    """The state of ``study`` now; ``runs_root`` finds run folders the database names
    relative to another working directory."""
    from ablate.dispatch.claiming import describe_holder  # lazy: loads sqlalchemy

    records = store.trials(study, with_metrics=False)
    now = store.database_time()
    counts: dict[TrialStatus, int] = {}
    for r in records:
        counts[r.status] = counts.get(r.status, 0) + 1
    running = []
    for r in (r for r in records if r.status is TrialStatus.RUNNING):
        run_dir = r.run_dir
        if runs_root is not None and (not run_dir or not Path(run_dir).is_dir()):
            run_dir = str(recorded_run_dir(runs_root, study, r.trial_id, run_dir))
        info = read_progress(run_dir) or {}
        running.append(RunningTrial(
            name=r.name, holder=describe_holder(r.holder) if r.holder else "queued",
            renewed_s=_seconds(now, r.heartbeat_at), elapsed_s=_seconds(now, r.started_at),
            epoch=_int(info.get("epoch")), epochs=_int(info.get("epochs")),
            step=_int(info.get("step")), total_steps=_int(info.get("total_steps")),
            loss=_float(info.get("loss")), preemptions=r.preemptions,
            resumed_at_step=_int(info.get("resumed_at_step"))))
    durations = [(r.finished_at - r.started_at).total_seconds() for r in records
                 if r.status is TrialStatus.DONE and r.started_at and r.finished_at]
    mean = sum(durations) / len(durations) if durations else None
    paced = mean is None
    if paced:
        mean = paced_trial_s(running)
    best, effects, error = _report(store, study)
    waiting = sum(n for status, n in counts.items() if not status.finished
                  and status is not TrialStatus.RUNNING)  # pending, preempted, timed out
    return Snapshot(study, len(records), counts, running, best, mean,
                    estimate_left(mean, waiting, running), effects, error,
                    sum(r.preemptions for r in records), paced and mean is not None)


def paced_trial_s(running: list[RunningTrial]) -> float | None:
    """A trial's time before any is done: the median of the running trials' paced
    training times (``RunningTrial.paced_s``), None while none has trained enough. Hours
    of a long study's first trials are otherwise without any estimate."""
    paced = [t for t in (r.paced_s() for r in running) if t is not None]
    return statistics.median(paced) if paced else None


def estimate_left(mean_s: float | None, pending: int, running: list[RunningTrial]) -> float | None:
    """Seconds until the study is done: each pending trial takes the mean time of those
    done, each running one the rest of it (by its step count, else by its elapsed time),
    shared among as many trials at a time as run now (at least one)."""
    if mean_s is None:
        return None
    work = pending * mean_s
    for r in running:
        if r.fraction is not None:
            work += (1.0 - r.fraction) * mean_s
        else:
            work += max(mean_s - (r.elapsed_s or 0.0), 0.0)
    return work / max(1, len(running))


def _report(store, study: str) -> tuple[dict[str, Any] | None, list[dict[str, Any]], str | None]:
    """The best configuration so far and the effects table (read by column name: its
    columns change), or why there is none."""
    from ablate.report.build import build_report  # lazy: loads numpy, sqlalchemy

    try:
        report = build_report(store, [study], effects=True)
    except Exception as err:  # a study with too few trials for a statistic: show the rest
        with contextlib.suppress(Exception):
            report = build_report(store, [study])
            return _best(report.configs), [], f"{type(err).__name__}: {err}"
        return None, [], f"{type(err).__name__}: {err}"
    effects = report.effects if report.effects is not None else pd.DataFrame()
    rows = [{k: row[k] for k in EFFECT_FIELDS if k in row} for row in effects.to_dict("records")]
    return _best(report.configs), rows, None


def _best(configs: pd.DataFrame) -> dict[str, Any] | None:
    if configs.empty or configs["miou_mean"].notna().sum() == 0:
        return None
    row = configs.loc[configs["miou_mean"].astype(float).idxmax()]
    return {"config_name": str(row["config_name"]), "miou_mean": float(row["miou_mean"]),
            "miou_std": _float(row.get("miou_std")), "n": int(row["n"]),
            "params": _float(row.get("params"))}


def _seconds(now: datetime, then: datetime | None) -> float | None:
    return None if then is None else max(0.0, (now - then).total_seconds())


def _int(value: Any) -> int | None:
    return int(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _float(value: Any) -> float | None:
    try:
        out = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(out) else out
