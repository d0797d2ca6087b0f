"""Claim, train, record: what every worker (local process or Slurm task) does per trial.

The worker claims its trial through the store before touching the run folder, so two
holders never write one run folder at once; a heartbeat thread renews the lease while it
trains; the result is recorded under the claim's epoch and the claim ends with it. A
trial held by someone else is left to them: the worker returns a ``held`` outcome and
trains nothing.
"""

from __future__ import annotations

import contextlib
import os
import threading
from datetime import datetime
from pathlib import Path
from typing import Any

from ablate.clock import utc_now_iso
from ablate.dispatch.entry import run_trial
from ablate.dispatch.leases import CLAIMS_LOG, HEARTBEATS_PER_LEASE, LeaseLost
from ablate.dispatch.liveness import holder_is_dead, this_process
from ablate.errors import StoreError
from ablate.store import Store
from ablate.store.claims import Busy
from ablate.store.target import sqlite_path
from ablate.train.events import Resumed, Started, TrialEvent


def holder_identity(executor: str) -> dict[str, Any]:
    """Who claims: host, pid, executor and, under Slurm, the job id ("array_task")."""
    job = os.environ.get("SLURM_JOB_ID")
    array, task = os.environ.get("SLURM_ARRAY_JOB_ID"), os.environ.get("SLURM_ARRAY_TASK_ID")
    if array and task:
        job = f"{array}_{task}"
    return {**this_process(), "executor": executor,
            "job_id": job if executor == "slurm" else None}


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
    _log_line(run_dir, line)


def claim_and_run(job, progress=None, executor: str = "local") -> dict[str, Any]:
    """Claim ``job``'s trial, train it with a heartbeat, record the result; or, when it is
    held elsewhere (or already done), return ``{"status": "held", ...}`` untrained.

    Without a database (``job.db`` None) the trial just runs, as before claims existed.
    """
    progress = progress or (lambda event: None)
    if job.db is None:
        progress(Started())
        return run_trial(job, progress=progress)

    failed_before = datetime.fromisoformat(job.failed_before) if job.failed_before else None
    store = _store(job.db)
    outcome = store.claim(job.study, job.trial_id, holder_identity(executor),
                          job.lease_seconds, run_dir=job.run_dir,
                          failed_before=failed_before, dead=holder_is_dead)
    if isinstance(outcome, Busy):
        return {"study": job.study, "trial_id": job.trial_id, "status": "held",
                "held_status": outcome.status, "holder": outcome.holder}
    _log_claim(job.run_dir, outcome)
    progress(Started(claimed=True, holder=outcome.holder, taken_over=outcome.taken_over))
    with Heartbeat(store, outcome) as beat:
        def guarded(event: TrialEvent) -> None:
            if beat.lost.is_set():  # stop writing a run folder that is no longer ours
                raise LeaseLost(f"trial {job.trial_id}: claim taken over")
            if isinstance(event, Resumed):
                _log_line(job.run_dir, f"epoch {outcome.epoch} resumed from checkpoint "
                                       f"at step {event.step}")
            progress(event)

        try:
            result = run_trial(job, progress=guarded, claim_epoch=outcome.epoch)
        except LeaseLost:
            return {"study": job.study, "trial_id": job.trial_id, "status": "lost",
                    "held_status": "running", "holder": None}
        except BaseException:  # Ctrl-C: hand the trial back at once
            with contextlib.suppress(StoreError):
                store.release(outcome)
            raise
    with contextlib.suppress(StoreError):  # else it stays on disk, ingested later
        store.ingest_result(result)
    return result


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
    counts: dict[str, int] = {}
    for r in records:
        counts[r.status] = counts.get(r.status, 0) + 1
    lines = []
    took = len(summary.done) + len(summary.failed)  # trained here (or by our Slurm jobs)
    if not took:
        lines.append("nothing left to take: every trial is done or held by another runner")
    else:
        lines.append(f"this runner took {took} trial(s)")
    if summary.left:
        by_status: dict[str, int] = {}
        for outcome in summary.left.values():
            status = outcome.get("held_status") or "held"
            by_status[status] = by_status.get(status, 0) + 1
        detail = ", ".join(f"{n} {s}" for s, n in sorted(by_status.items()))
        lines.append(f"left {len(summary.left)} to other runners ({detail})")
    state = ", ".join(f"{counts[s]} {s}" for s in ("done", "running", "failed", "pending")
                      if counts.get(s))
    lines.append(f"study {study}: {state or 'no trials'} of {len(records)} trial(s)")
    held = [r for r in records if r.status == "running" and r.holder]
    for r in held:
        renewed = r.heartbeat_at.isoformat(timespec="seconds") if r.heartbeat_at else "-"
        until = (f", lease until {r.lease_expires_at.isoformat(timespec='seconds')}"
                 if r.lease_expires_at else "")
        lines.append(f"  running {r.name}: {describe_holder(r.holder)}, renewed {renewed}{until}")
    if held and summary.left:
        lines.append("other runners hold these; run the same command again once they end "
                     "or their leases expire, or add --wait to wait for them here")
    return lines
