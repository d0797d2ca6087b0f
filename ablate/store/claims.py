"""Claims with leases: every trial is trained by one holder at a time, across processes,
machines and executors.

A runner *claims* a trial before training it: one short transaction that checks the
trial is free and marks it ``running`` with the holder (host, pid, executor, job id), a
lease expiry and a new ``claim_epoch``. While training, a heartbeat *renews* the lease;
a lease that is not renewed (the holder was killed, its machine lost) expires and the
trial can be claimed again. The epoch tells results apart: a result carries the epoch it
was trained under, and one from a holder whose claim was taken over is not ingested while
the new holder's lease is live (``superseded``).

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


@dataclass(frozen=True)
class Claim:
    """A trial this runner holds; pass it to ``renew`` and ``release``."""

    study: str
    trial_id: str
    epoch: int
    holder: dict[str, Any]
    lease_seconds: float
    pk: int
    taken_over: dict[str, Any] | None = None  # the earlier holder whose lease had expired


@dataclass(frozen=True)
class Busy:
    """Why a trial could not be claimed: ``status`` is done, failed (retried by another
    runner since this one started), running (``holder`` has a live lease) or locked
    (another runner is claiming it this very moment)."""

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
    return row.status == "running" and row.lease_expires_at is not None \
        and row.lease_expires_at > at


def superseded(row: TrialRow, result: dict[str, Any], at: datetime) -> bool:
    """True for a result trained under an older claim while a newer holder's lease is live:
    that holder's own result will count, this one must not. A result with no epoch (a
    Slurm job found dead, an unclaimed run) never holds the live lease either."""
    if result.get("dead_job_id") and (row.holder or {}).get("job_id") == result["dead_job_id"]:
        return False  # the holder's own Slurm job ended without a result: its claim died
    return lease_is_live(row, at) and result.get("claim_epoch") != row.claim_epoch


def _claimable(row: TrialRow, at: datetime, failed_before: datetime | None,
               holder: dict[str, Any] | None = None,
               dead: Callable[[dict[str, Any] | None], bool] | None = None) -> str | None:
    """None if ``row`` may be claimed now, else the reason (a ``Busy`` status)."""
    if row.status == "done":
        return "done"
    if row.status == "failed":
        # failed before this runner started: its to retry; failed since: another runner
        # retried it meanwhile, and one retry per study run is enough
        if failed_before is None or (row.finished_at is not None
                                     and row.finished_at >= failed_before):
            return "failed"
        return None
    if lease_is_live(row, at) and not _same_job(row.holder, holder) \
            and not (dead is not None and dead(row.holder)):
        return "running"
    return None  # pending, a queued Slurm trial (no lease yet), or an expired lease


def _same_job(held: dict[str, Any] | None, claimer: dict[str, Any] | None) -> bool:
    """A requeued Slurm job (same job id, new process) takes its own claim back at once:
    Slurm ended the earlier process before it started this one."""
    return bool(held and claimer and claimer.get("job_id")
                and held.get("job_id") == claimer.get("job_id"))


class ClaimsMixin:
    """The claim API of ``Store`` (which provides ``session``)."""

    def claim(self, study: str, trial_id: str, holder: dict[str, Any], lease_seconds: float,
              *, run_dir: str | None = None, failed_before: datetime | None = None,
              dead: Callable[[dict[str, Any] | None], bool] | None = None) -> Claim | Busy:
        """Take ``trial_id`` for ``holder`` unless someone holds it; one transaction.

        ``dead(holder)``: True for a holder known to be gone (its process ended on this
        host): its live lease does not protect the trial.
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
            taken_over = row.holder if row.status == "running" and row.holder else None
            row.status, row.error, row.finished_at = "running", None, None
            row.holder = dict(holder)
            row.claim_epoch = (row.claim_epoch or 0) + 1
            row.heartbeat_at, row.started_at = at, at
            row.lease_expires_at = at + timedelta(seconds=lease_seconds)
            row.attempts += 1
            row.job_id = holder.get("job_id")
            row.run_dir = run_dir or row.run_dir
            return Claim(study, trial_id, row.claim_epoch, dict(holder), lease_seconds, row.id,
                         taken_over)

    def renew(self, claim: Claim) -> bool:
        """Extend the lease by ``lease_seconds``; False if the claim was lost (taken over
        after it expired, reset, or the trial recorded meanwhile)."""
        with self.session() as s:  # type: ignore[attr-defined]
            at = db_now(s)
            done = s.execute(
                update(TrialRow)
                .where(TrialRow.id == claim.pk, TrialRow.claim_epoch == claim.epoch,
                       TrialRow.status == "running")
                .values(heartbeat_at=at,
                        lease_expires_at=at + timedelta(seconds=claim.lease_seconds)))
            return done.rowcount == 1

    def release(self, claim: Claim) -> bool:
        """Give an unfinished trial back (Ctrl-C): pending, free for the next runner at once."""
        with self.session() as s:  # type: ignore[attr-defined]
            done = s.execute(
                update(TrialRow)
                .where(TrialRow.id == claim.pk, TrialRow.claim_epoch == claim.epoch,
                       TrialRow.status == "running")
                .values(status="pending", lease_expires_at=None))
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
                TrialRow.status == "running", TrialRow.lease_expires_at.is_not(None)))
            return min(rows, default=None)

    def database_time(self) -> datetime:
        """Now by the clock that leases are measured with."""
        with self.session() as s:  # type: ignore[attr-defined]
            return db_now(s)
