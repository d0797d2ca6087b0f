"""Claims with leases: every trial is trained by one holder at a time, across processes,
machines and executors.

A runner *claims* a trial before training it: one short transaction that checks the
trial is free and marks it ``running`` with the holder (host, pid, executor, job id), a
lease expiry and a new ``claim_epoch``. While training, a heartbeat *renews* the lease;
a lease that is not renewed (the holder was killed, its machine lost) expires and the
trial can be claimed again. The epoch tells results apart: a result carries the epoch it
was trained under, and only a result of the trial's latest claim is ingested: one from a
holder whose claim was taken over, or that was reset since, is not (``superseded``). A
reset (``Store.reset``) bumps the epoch too, so the claims made before it can no longer
renew, hand back or record anything.

Per dialect: PostgreSQL locks the trial's row with ``SELECT ... FOR UPDATE SKIP LOCKED``
(a row another claimer is deciding on is skipped, never waited for) and takes the time
from the server, so the machines' clocks need not agree; SQLite runs every transaction
as ``BEGIN IMMEDIATE`` (see ``store._make_engine``), so claims are serialised by the
file's write lock and the time is this machine's.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select, text, update
from sqlalchemy.orm import Session

from ablate.clock import utc_now
from ablate.store.models import StudyRow, TrialRow
from ablate.trials.lifecycle import TrialStatus, Verb, advance, interruption, sources

CANCELLED = "cancelled"  # a Busy status: the claimer's job was cancelled (``_cancelled_job``)


@dataclass(frozen=True)
class Claim:
    """A trial this runner holds; pass it to ``renew``, ``release`` and ``interrupt``."""

    study: str
    trial_id: str
    epoch: int
    holder: dict[str, Any]
    lease_seconds: float
    pk: int
    taken_over: dict[str, Any] | None = None  # the earlier holder whose lease had expired
    # the trial resumes after the cluster stopped its job: preempted, timed_out, or
    # requeued (the same job started again before it could say which); None otherwise
    resumed: str | None = None


@dataclass(frozen=True)
class Busy:
    """Why a trial could not be claimed: ``status`` is done, failed (retried by another
    runner since this one started), running (``holder`` has a live lease), locked
    (another runner is claiming it this very moment) or cancelled (the claimer is a Slurm
    job whose trial was reset after it was submitted: ``ablate cancel`` stopped it)."""

    study: str
    trial_id: str
    status: str
    holder: dict[str, Any] | None = None
    lease_expires_at: datetime | None = None


def db_now(session: Session) -> datetime:
    """The database's clock (UTC, naive) on PostgreSQL; this machine's on SQLite."""
    if session.get_bind().dialect.name == "postgresql":
        return session.execute(text("SELECT timezone('UTC', clock_timestamp())")).scalar_one()
    return utc_now()


def lease_is_live(row: TrialRow, at: datetime) -> bool:
    return row.status == TrialStatus.RUNNING and row.lease_expires_at is not None \
        and row.lease_expires_at > at


def trial_job(row: TrialRow) -> str | None:
    """The Slurm job the trial is now for: its holder's, else the job queued for it (after a
    reset, the job last submitted for it). None for a trial a local runner holds."""
    return (row.holder or {}).get("job_id") or row.job_id


def superseded(row: TrialRow, claim_epoch: int | None, at: datetime,
               dead_job: str | None = None) -> bool:
    """True for a result that must not end the trial now. One trained under a claim other
    than the trial's latest: the trial was taken over or reset since (``--force``,
    ``ablate cancel``), and only its latest claim's result counts. The failure of a Slurm
    job (``dead_job``) the trial no longer runs for: it was reset, queued as another job or
    claimed by another holder since (the failure of the holder's own job counts, live
    lease or not: its claim died with it). A result with no epoch (an unclaimed run) while
    a holder's lease is live."""
    if dead_job:
        return row.status != TrialStatus.RUNNING or trial_job(row) != dead_job
    if claim_epoch is not None:
        return claim_epoch != row.claim_epoch
    return lease_is_live(row, at)


def _claimable(row: TrialRow, at: datetime, failed_before: datetime | None,
               holder: dict[str, Any] | None = None,
               dead: Callable[[dict[str, Any] | None], bool] | None = None) -> str | None:
    """None if ``row`` may be claimed now, else the reason (a ``Busy`` status)."""
    if row.status == TrialStatus.DONE:
        return TrialStatus.DONE
    if row.status == TrialStatus.FAILED:
        # failed before this runner started: its to retry; failed since: another runner
        # retried it meanwhile, and one retry per study run is enough
        if failed_before is None or (row.finished_at is not None
                                     and row.finished_at >= failed_before):
            return TrialStatus.FAILED
        return None
    if _cancelled_job(row, holder):
        return CANCELLED
    if lease_is_live(row, at) and not _same_job(row.holder, holder) \
            and not (dead is not None and dead(row.holder)):
        return TrialStatus.RUNNING
    # pending, preempted, timed out, a queued Slurm trial (no lease yet), an expired lease
    return None


def _same_job(held: dict[str, Any] | None, claimer: dict[str, Any] | None) -> bool:
    """A requeued Slurm job (same job id, new process) takes its own claim back at once:
    Slurm ended the earlier process before it started this one."""
    return bool(held and claimer and claimer.get("job_id")
                and held.get("job_id") == claimer.get("job_id"))


def _cancelled_job(row: TrialRow, claimer: dict[str, Any] | None) -> bool:
    """The claimer is the Slurm job last submitted for a trial that was reset since
    (``Store.reset`` leaves ``job_id`` and clears the holder): ``ablate cancel`` reset it
    while the job was still starting, before the job's SIGKILL came. A trial released by
    its own job keeps that job as holder and stays the job's to take back."""
    return bool(row.status == TrialStatus.PENDING and row.holder is None and row.job_id
                and claimer and claimer.get("job_id") == row.job_id)


class ClaimsMixin:
    """The claim API of ``Store`` (which provides ``session``)."""

    def claim(self, study: str, trial_id: str, holder: dict[str, Any], lease_seconds: float,
              *, run_dir: str | None = None, failed_before: datetime | None = None,
              dead: Callable[[dict[str, Any] | None], bool] | None = None) -> Claim | Busy:
        """Take ``trial_id`` for ``holder`` unless someone holds it; one transaction.

        ``dead(holder)``: True for a holder known to be gone (its process ended on this
        host): its live lease does not protect the trial. A claim that resumes a trial the
        cluster stopped (preempted, timed out, or its own requeued job) is not an attempt.
        """
        with self.session() as s:  # type: ignore[attr-defined]
            row = s.scalar(
                select(TrialRow).join(StudyRow)
                .where(StudyRow.name == study, TrialRow.trial_id == trial_id)
                .with_for_update(of=TrialRow, skip_locked=True))
            if row is None:
                return Busy(study, trial_id, "locked")
            at = db_now(s)
            reason = _claimable(row, at, failed_before, holder, dead)
            if reason is not None:
                return Busy(study, trial_id, reason, row.holder, row.lease_expires_at)
            before = TrialStatus(row.status)
            requeued = before is TrialStatus.RUNNING and _same_job(row.holder, holder)
            taken_over = row.holder if before is TrialStatus.RUNNING and row.holder \
                and not requeued else None
            row.status = advance(before, Verb.CLAIM, trial_id)
            if requeued:  # its job was stopped and started again: a preemption, unannounced
                row.preemptions += 1
            elif not before.interrupted:
                row.attempts += 1
            row.error, row.finished_at = None, None
            row.holder = dict(holder)
            row.claim_epoch = (row.claim_epoch or 0) + 1
            row.heartbeat_at, row.started_at = at, at
            row.lease_expires_at = at + timedelta(seconds=lease_seconds)
            row.job_id = holder.get("job_id")
            row.run_dir = run_dir or row.run_dir
            resumed = "requeued" if requeued else before.value if before.interrupted else None
            return Claim(study, trial_id, row.claim_epoch, dict(holder), lease_seconds, row.id,
                         taken_over, resumed)

    def renew(self, claim: Claim) -> bool:
        """Extend the lease by ``lease_seconds``; False if the claim was lost (taken over
        after it expired, reset, or the trial recorded meanwhile)."""
        with self.session() as s:  # type: ignore[attr-defined]
            at = db_now(s)
            done = s.execute(
                update(TrialRow)
                .where(TrialRow.id == claim.pk, TrialRow.claim_epoch == claim.epoch,
                       TrialRow.status.in_(sources(Verb.RENEW)))
                .values(heartbeat_at=at,
                        lease_expires_at=at + timedelta(seconds=claim.lease_seconds)))
            return done.rowcount == 1

    def release(self, claim: Claim) -> bool:
        """Give an unfinished trial back (Ctrl-C): pending, free for the next runner at once."""
        return self._end_claim(claim, Verb.RELEASE)

    def interrupt(self, claim: Claim, status: TrialStatus) -> bool:
        """The cluster is stopping the claim's job (``status``: preempted or timed out): the
        trial waits for its next claim, which resumes it from its checkpoint and is not an
        attempt. The holder stays on record, so its requeued job takes it back at once."""
        return self._end_claim(claim, interruption(status), preemptions=TrialRow.preemptions + 1)

    def _end_claim(self, claim: Claim, verb: Verb, **values: Any) -> bool:
        with self.session() as s:  # type: ignore[attr-defined]
            done = s.execute(
                update(TrialRow)
                .where(TrialRow.id == claim.pk, TrialRow.claim_epoch == claim.epoch,
                       TrialRow.status.in_(sources(verb)))
                .values(status=advance(TrialStatus.RUNNING, verb, claim.trial_id),
                        lease_expires_at=None, **values))
            return done.rowcount == 1

    def claimable(self, study: str, trial_ids: list[str],
                  failed_before: datetime | None = None,
                  dead: Callable[[dict[str, Any] | None], bool] | None = None) -> list[str]:
        """Which of ``trial_ids`` a claim would get now (a read; claims may still race)."""
        with self.session() as s:  # type: ignore[attr-defined]
            at = db_now(s)
            rows = s.scalars(select(TrialRow).join(StudyRow).where(StudyRow.name == study))
            free = {r.trial_id for r in rows
                    if _claimable(r, at, failed_before, dead=dead) is None}
            return [tid for tid in trial_ids if tid in free]

    def lease_expiry(self, study: str, trial_ids: list[str]) -> datetime | None:
        """The earliest lease expiry among ``trial_ids`` still running (None: none is)."""
        with self.session() as s:  # type: ignore[attr-defined]
            rows = s.scalars(select(TrialRow.lease_expires_at).join(StudyRow).where(
                StudyRow.name == study, TrialRow.trial_id.in_(trial_ids),
                TrialRow.status == TrialStatus.RUNNING,
                TrialRow.lease_expires_at.is_not(None)))
            return min(rows, default=None)

    def database_time(self) -> datetime:
        """Now by the clock that leases are measured with."""
        with self.session() as s:  # type: ignore[attr-defined]
            return db_now(s)
