"""Claim, train, record: what every worker (local process or Slurm task) does per trial.

The worker claims its trial through the store before touching the run folder, so two
holders never write one run folder at once; a heartbeat thread renews the lease while it
trains; the result is recorded under the claim's epoch and the claim ends with it. A
trial held by someone else is left to them: the worker returns a ``held`` outcome and
trains nothing.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from ablate.clock import utc_now_iso
from ablate.dispatch.entry import run_trial
from ablate.dispatch.leases import CLAIMS_LOG, HEARTBEATS_PER_LEASE, LeaseLost
from ablate.dispatch.liveness import holder_is_dead, slurm_job_id, this_process
from ablate.errors import StoreError, one_line
from ablate.store import Store
from ablate.store.claims import Busy
from ablate.store.target import sqlite_path
from ablate.train.events import Claimed, Resumed, TrialEvent
from ablate.trials.lifecycle import (
    Held,
    Lost,
    Outcome,
    Trained,
    TrialStatus,
    Unclaimed,
)


def holder_identity(executor: str) -> dict[str, Any]:
    """Who claims: host, pid, executor and, under Slurm, the job id ("array_task")."""
    return {**this_process(), "executor": executor,
            "job_id": slurm_job_id() if executor == "slurm" else None}


def describe_holder(holder: dict[str, Any] | None) -> str:
    """``host:pid`` with the executor and job id, for status tables and summaries."""
    if not holder:
        return "-"
    text = f"{holder.get('host')}:{holder.get('pid')} {holder.get('executor', '?')}"
    return f"{text} job {holder['job_id']}" if holder.get("job_id") else text


class Heartbeat:
    """Renews a claim every ``lease / HEARTBEATS_PER_LEASE`` seconds on a daemon thread.

    A renewal that fails on a database error is retried at the next beat (the lease
    outlives three of them); one that finds the claim gone sets ``lost``.
    """

    def __init__(self, store, claim, every: float | None = None) -> None:
        self.store, self.claim = store, claim
        self.every = every or claim.lease_seconds / HEARTBEATS_PER_LEASE
        self.lost = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, daemon=True,
                                        name=f"heartbeat-{claim.trial_id}")

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _beat(self) -> None:
        while not self._stop.wait(self.every):
            try:
                if not self.store.renew(self.claim):
                    self.lost.set()
                    return
            except StoreError:
                continue


def _log_line(run_dir: str, text: str) -> None:
    path = Path(run_dir) / CLAIMS_LOG
    path.parent.mkdir(parents=True, exist_ok=True)
    stamp = utc_now_iso("seconds")
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(f"{stamp} {text}\n")


def _log_claim(run_dir: str, claim) -> None:
    line = f"epoch {claim.epoch} claimed by {describe_holder(claim.holder)}"
    if claim.taken_over:
        why = "its process is gone" if holder_is_dead(claim.taken_over) else "lease expired"
        line += f" (took over from {describe_holder(claim.taken_over)}, {why})"
    if claim.resumed:
        line += f" (resumes after its job was {claim.resumed.replace('_', ' ')})"
    _log_line(run_dir, line)


def claim_and_run(job, progress=None, executor: str = "local",
                  interrupted: Callable[[], TrialStatus | None] | None = None,
                  decided: Callable[[Outcome | None], None] | None = None) -> Outcome:
    """Claim ``job``'s trial, train it with a heartbeat, record the result: ``Trained``.
    A trial held elsewhere (or already done) is ``Held`` and not trained; one whose claim
    was taken over mid-training is ``Lost``; a database error while claiming is
    ``Unclaimed`` (nothing trained, nothing recorded: the trial stays as it was for the
    next run), the same in every executor.

    Training that stops with an exception (Ctrl-C, a job being stopped) hands the trial
    back: pending, or what ``interrupted()`` says the cluster is doing (preempted, timed
    out), so the next claim resumes it without counting an attempt. Without a database
    (``job.db`` None) the trial just runs, unclaimed.

    ``decided`` hears, before training starts, whether it does: None once the claim is
    this worker's (or the trial runs unclaimed), else the outcome that leaves the trial
    to others. Rank 0 of a Slurm trial with several tasks tells its other ranks through
    it; an error it raises after the claim hands the trial back like any other.
    """
    progress = progress or (lambda event: None)
    decided = decided or (lambda outcome: None)
    if job.db is None:
        decided(None)
        progress(Claimed())
        return Trained(run_trial(job, progress=progress))

    failed_before = datetime.fromisoformat(job.failed_before) if job.failed_before else None
    try:
        store = _store(job.db)
        claim = store.claim(job.study, job.trial_id, holder_identity(executor),
                            job.lease_seconds, run_dir=job.run_dir,
                            failed_before=failed_before, dead=holder_is_dead)
    except StoreError as err:
        return _left(Unclaimed(one_line(err)), decided)
    if isinstance(claim, Busy):
        return _left(Held(claim.status, claim.holder), decided)
    _log_claim(job.run_dir, claim)
    progress(Claimed(claim.holder, claim.taken_over, claim.resumed))
    with Heartbeat(store, claim) as beat:
        def guarded(event: TrialEvent) -> None:
            if beat.lost.is_set():  # stop writing a run folder that is no longer ours
                raise LeaseLost(f"trial {job.trial_id}: claim taken over")
            if isinstance(event, Resumed):
                _log_line(job.run_dir, f"epoch {claim.epoch} resumed from checkpoint "
                                       f"at step {event.step}")
            progress(event)

        try:
            decided(None)  # the trial is ours: train it
            result = run_trial(job, progress=guarded, claim_epoch=claim.epoch,
                               stopping=(lambda: interrupted() is not None) if interrupted
                               else None)
        except LeaseLost:
            return Lost()
        except BaseException:  # Ctrl-C, or the cluster stopping the job: hand it back now
            _hand_back(store, claim, job.run_dir, interrupted() if interrupted else None)
            raise
    with contextlib.suppress(StoreError):  # else it stays on disk, ingested later
        store.record(result)
    return Trained(result)


def _left(outcome: Outcome, decided: Callable[[Outcome | None], None]) -> Outcome:
    """An outcome that trains nothing here, told to ``decided`` first."""
    decided(outcome)
    return outcome


def _hand_back(store, claim, run_dir: str, status: TrialStatus | None) -> None:
    with contextlib.suppress(StoreError):
        if status is None:
            store.release(claim)
        elif store.interrupt(claim, status):
            _log_line(run_dir, f"epoch {claim.epoch} {status.replace('_', ' ')}: "
                               "resumes from its checkpoint when its job runs again")


_STORES: dict[str, Any] = {}


def _store(url: str):
    """One store (connection pool) per database and process, kept for its next trials:
    opening SQLite anew per trial churned its WAL files under many runners."""
    if url not in _STORES:
        _STORES[url] = Store(url)
    return _STORES[url]


def worker_url(url: str) -> str:
    """The database URL as workers elsewhere (Slurm jobs, other folders) must see it:
    a relative SQLite path made absolute."""
    path = sqlite_path(url)
    if path and not path.startswith("/"):
        return "sqlite:///" + str(Path(path).absolute())
    return url


def runner_report(store, study: str, summary) -> list[str]:
    """What this runner did, what it left to others, and the whole study's state."""
    records = store.trials(study, with_metrics=False)
    counts: dict[TrialStatus, int] = {}
    for r in records:
        counts[r.status] = counts.get(r.status, 0) + 1
    lines = []
    took = len(summary.done) + len(summary.failed)  # trained here (or by our Slurm jobs)
    queued = summary.queued()
    if took:
        lines.append(f"this runner took {took} trial(s)")
    if queued:
        lines.append(f"this runner queued {len(queued)} trial(s) on Slurm; each job claims "
                     "its trial when it starts")
    if summary.cancelled:
        lines.append(f"{len(summary.cancelled)} trial(s) pending again: their Slurm job was "
                     "cancelled (the next 'ablate run' runs them)")
    if not took and not queued and not summary.cancelled:
        lines.append("nothing left to take: every trial is done or held by another runner")
    # by their state now: one held when this runner came may be done (--wait: recorded)
    left = {**summary.left, **{tid: Held(TrialStatus.DONE.value) for tid in summary.waited}}
    if left:
        now = {r.trial_id: r.status.value for r in records}
        by_why: dict[str, int] = {}
        for tid, outcome in left.items():
            why = now.get(tid, outcome.why)
            by_why[why] = by_why.get(why, 0) + 1
        detail = ", ".join(f"{n} {s}" for s, n in sorted(by_why.items()))
        lines.append(f"left {len(left)} to other runners ({detail} now)")
    for trial_id, error in summary.unclaimed.items():
        lines.append(f"could not claim {trial_id}: {error}; run again to retry it")
    state = ", ".join(f"{counts[s]} {s}" for s in TrialStatus if counts.get(s))
    lines.append(f"study {study}: {state or 'no trials'} of {len(records)} trial(s)")
    preempted = sum(r.preemptions for r in records)
    if preempted:
        lines.append(f"the cluster stopped {preempted} job(s) of "
                     f"{sum(r.preemptions > 0 for r in records)} trial(s); each resumed from "
                     "its checkpoint (not counted as a failure)")
    held = [r for r in records if r.status is TrialStatus.RUNNING and r.holder]
    for r in held:
        renewed = r.heartbeat_at.isoformat(timespec="seconds") if r.heartbeat_at else "-"
        until = (f", lease until {r.lease_expires_at.isoformat(timespec='seconds')}"
                 if r.lease_expires_at else "")
        lines.append(f"  running {r.name}: {describe_holder(r.holder)}, renewed {renewed}{until}")
    if held and summary.left:
        lines.append("other runners hold these; run the same command again once they end "
                     "or their leases expire, or add --wait to wait for them here")
    return lines
