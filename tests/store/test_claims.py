"""Trial claims on SQLite and the real PostgreSQL: one holder at a time, leases that
expire, epochs that keep a taken-over holder's late result out."""

from __future__ import annotations

import shutil
import threading
from pathlib import Path

from ablate.recipes.loader import parse_recipe
from ablate.store import Store
from ablate.store.claims import Busy, Claim
from ablate.trials.expand import expand
from ablate.trials.lifecycle import TrialResult, TrialStatus
from tests.conftest import TINY_RECIPE

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
MANY = TINY_RECIPE.replace('"model.keep_last_expansion" = [true, false]',
                           '"train.lr" = [' + ", ".join(f"0.00{i}" for i in range(1, 10)) + "]")


def holder(pid: int, executor: str = "local", job_id: str | None = None) -> dict:
    return {"host": "h", "pid": pid, "executor": executor, "job_id": job_id}


def study(store: Store, text: str = TINY_RECIPE) -> list[str]:
    trials = expand(parse_recipe(text, "r.toml"))
    store.upsert_study("tiny")
    store.register_trials("tiny", trials)
    return [t.trial_id for t in trials]


def expire_lease(store: Store, trial_id: str) -> None:
    """What a lease that was not renewed comes to, without waiting for it: expired."""
    from datetime import timedelta

    from sqlalchemy import update

    from ablate.store.models import TrialRow

    with store.session() as s:
        s.execute(update(TrialRow).where(TrialRow.trial_id == trial_id).values(
            lease_expires_at=store.database_time() - timedelta(seconds=1)))


def result(trial_id: str, epoch: int | None, miou: float) -> TrialResult:
    return TrialResult("tiny", trial_id, TrialStatus.DONE, final={"miou": miou},
                       epochs=[{"epoch": 1, "step": 2, "metrics": {"train_loss": 1.0}}],
                       claim_epoch=epoch)


def failure(trial_id: str, epoch: int | None, error: str) -> TrialResult:
    return TrialResult.failure("tiny", trial_id, error, claim_epoch=epoch)


def test_a_claimed_trial_is_busy_for_others_until_its_lease_expires(db_url):
    store = Store(db_url)
    tid = study(store)[0]
    first = store.claim("tiny", tid, holder(1), lease_seconds=600, run_dir="/runs/a")
    assert isinstance(first, Claim) and first.epoch == 1 and first.taken_over is None
    busy = store.claim("tiny", tid, holder(2), lease_seconds=600)
    assert isinstance(busy, Busy) and (busy.status, busy.holder) == ("running", holder(1))
    assert store.renew(first)
    (record,) = [r for r in store.trials("tiny") if r.trial_id == tid]
    assert (record.status, record.holder, record.run_dir) == ("running", holder(1), "/runs/a")
    assert record.heartbeat_at is not None and record.lease_expires_at > record.heartbeat_at

    assert store.claimable("tiny", [tid]) == []
    expire_lease(store, tid)  # holder 1 stopped renewing: its lease ran out
    assert store.claimable("tiny", [tid]) == [tid]
    second = store.claim("tiny", tid, holder(2, "slurm", "7_1"), lease_seconds=600)
    assert isinstance(second, Claim) and second.epoch == 2 and second.taken_over == holder(1)
    assert not store.renew(first)  # the old holder learns it lost the trial
    assert store.trials("tiny")[0].job_id == "7_1"

    # the old holder's late result is not recorded while the new holder's lease is live
    assert not store.record(result(tid, first.epoch, 0.1))
    assert store.statuses("tiny")[tid] == "running"
    assert store.record(result(tid, second.epoch, 0.2))
    (record,) = [r for r in store.trials("tiny") if r.trial_id == tid]
    assert (record.status, record.metrics, record.lease_expires_at) == ("done", {"miou": 0.2}, None)
    assert [e.key for e in store.epoch_metrics("tiny", tid)] == ["train_loss"]
    # done: nobody claims it again, and no result counts twice
    assert store.claim("tiny", tid, holder(3), 30).status == "done"
    assert not store.record(result(tid, second.epoch, 0.3))
    assert not store.renew(second)


def test_release_gives_the_trial_back_at_once(db_url):
    store = Store(db_url)
    tid = study(store)[0]
    claim = store.claim("tiny", tid, holder(1), lease_seconds=600)
    assert store.release(claim)
    assert store.statuses("tiny")[tid] == "pending"
    again = store.claim("tiny", tid, holder(2), lease_seconds=600)
    assert isinstance(again, Claim) and again.epoch == 2 and again.taken_over is None
    assert not store.release(claim)  # an old claim releases nothing


def test_failed_trials_are_retried_once_per_study_run(db_url):
    store = Store(db_url)
    tid = study(store)[0]
    store.record(failure(tid, None, "boom"))
    started = store.database_time()
    # every runner started after the failure may retry it; the first claims it
    assert store.claim("tiny", tid, holder(1), 600, failed_before=None).status == "failed"
    claim = store.claim("tiny", tid, holder(1), 600, failed_before=started)
    assert isinstance(claim, Claim)
    store.record(failure(tid, claim.epoch, "again"))
    # a runner started before that retry failed leaves it: one retry per study run
    assert store.claim("tiny", tid, holder(2), 600, failed_before=started).status == "failed"


def test_a_queued_slurm_trial_is_claimed_by_whoever_starts_first(db_url):
    store = Store(db_url)
    tid = study(store)[0]
    store.submitted("tiny", tid, "/runs/x", job_id="9_0")  # submitted, not started
    claim = store.claim("tiny", tid, holder(1), 600)
    assert isinstance(claim, Claim) and store.trials("tiny")[0].job_id is None
    store.submitted("tiny", tid, "/runs/x", job_id="9_1")  # a later submission: held
    assert store.trials("tiny")[0].job_id is None
    assert store.claim("tiny", tid, holder(2, "slurm", "9_1"), 600).status == "running"


def test_a_slurm_job_whose_trial_was_reset_since_it_was_submitted_cannot_claim_it(db_url):
    """``ablate cancel`` resets the trial while its job is still starting (importing torch
    after scancel's SIGTERM, which submitit ignores): the job must not take the trial."""
    store = Store(db_url)
    tid, other = study(store)
    store.submitted("tiny", tid, "/runs/x", job_id="9_0")
    store.reset("tiny", [tid])  # ablate cancel, before the job claimed
    got = store.claim("tiny", tid, holder(1, "slurm", "9_0"), 600)
    assert isinstance(got, Busy) and got.status == "cancelled"
    assert store.statuses("tiny")[tid] is TrialStatus.PENDING
    # a job cancelled after it claimed: its process, requeued or late, cannot take it back
    store.submitted("tiny", other, "/runs/y", job_id="9_1")
    assert isinstance(store.claim("tiny", other, holder(2, "slurm", "9_1"), 600), Claim)
    store.reset("tiny", [other])
    assert store.claim("tiny", other, holder(3, "slurm", "9_1"), 600).status == "cancelled"
    # the next submission's job, or any other runner, takes it
    assert isinstance(store.claim("tiny", tid, holder(1, "slurm", "12_0"), 600), Claim)
    assert isinstance(store.claim("tiny", other, holder(4), 600), Claim)


def test_a_slurm_job_takes_back_a_trial_it_released(db_url):
    store = Store(db_url)
    tid = study(store)[0]
    store.submitted("tiny", tid, "/runs/x", job_id="9_0")
    claim = store.claim("tiny", tid, holder(1, "slurm", "9_0"), 600)
    assert store.release(claim)
    assert isinstance(store.claim("tiny", tid, holder(2, "slurm", "9_0"), 600), Claim)


def test_racing_claimers_take_every_trial_exactly_once(db_url):
    first = Store(db_url)
    ids = study(first, MANY)
    stores = [Store(db_url) for _ in range(6)]  # a connection pool each, like processes
    taken: list[tuple[int, str]] = []
    barrier = threading.Barrier(len(stores))

    def runner(n: int, store: Store) -> None:
        barrier.wait()
        for tid in ids:
            outcome = store.claim("tiny", tid, holder(n), lease_seconds=600)
            if isinstance(outcome, Claim):
                taken.append((n, tid))

    threads = [threading.Thread(target=runner, args=(n, s)) for n, s in enumerate(stores)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(tid for _, tid in taken) == sorted(ids)
    records = first.trials("tiny")
    assert {r.status for r in records} == {"running"}
    assert all(r.holder == holder(n) for n, tid in taken for r in records if r.trial_id == tid)


def test_released_schema_0001_database_upgrades_to_claims(tmp_path):
    from click.testing import CliRunner

    from ablate.cli import main

    copy = tmp_path / "old.db"
    shutil.copy(FIXTURES / "schema_0001.db", copy)
    out = CliRunner().invoke(main, ["db", "upgrade", "--db", str(copy)])
    assert out.exit_code == 0, out.output
    store = Store(f"sqlite:///{copy}")
    (trial,) = store.trials("released")
    assert (trial.status, trial.holder, trial.lease_expires_at) == ("done", None, None)
    assert store.claim("released", trial.trial_id, holder(1), 60).status == "done"


def test_a_requeued_slurm_job_takes_its_own_claim_back(db_url):
    store = Store(db_url)
    tid = study(store)[0]
    first = store.claim("tiny", tid, holder(10, "slurm", "5_0"), lease_seconds=600)
    assert store.claim("tiny", tid, holder(11, "slurm", "5_1"), 600).status == "running"
    again = store.claim("tiny", tid, holder(12, "slurm", "5_0"), 600)  # same job, requeued
    assert isinstance(again, Claim) and again.epoch == first.epoch + 1
    # the cluster stopped and restarted the job: a preemption, not another attempt
    assert (again.resumed, again.taken_over) == ("requeued", None)
    (record,) = [r for r in store.trials("tiny") if r.trial_id == tid]
    assert (record.attempts, record.preemptions) == (1, 1)


def test_a_result_without_an_epoch_never_overwrites_a_live_holder(db_url):
    # a Slurm job found dead by sacct after its trial was taken over: its "failed" result
    # carries no claim epoch and must not end the new holder's training
    store = Store(db_url)
    tid = study(store)[0]
    live = store.claim("tiny", tid, holder(2), lease_seconds=600)
    dead = failure(tid, None, "job 7_1 TIMEOUT")
    assert not store.record(dead, dead_job="7_1")
    assert store.statuses("tiny")[tid] == "running" and store.renew(live)
    assert store.record(result(tid, live.epoch, 0.4))
    assert store.statuses("tiny")[tid] == "done"


def test_the_holder_s_own_dead_slurm_job_records_the_trial_failed_at_once(db_url):
    """A Slurm job killed after it claimed its trial leaves a live lease; the follow-up's
    'ended without a result' for that very job is recorded at once, another job's is not."""
    store = Store(db_url)
    tid = study(store)[0]
    claim = store.claim("tiny", tid, holder(11, "slurm", "9_0"), 600.0)
    assert not isinstance(claim, Busy)
    other = failure(tid, None, "Slurm job 8_0 ended FAILED without a result")
    assert store.record(other, dead_job="8_0") is False  # not the holder: its lease stands
    own = failure(tid, None, "Slurm job 9_0 ended FAILED without a result")
    assert store.record(own, dead_job="9_0") is True
    (record,) = [r for r in store.trials("tiny") if r.trial_id == tid]
    assert record.status == "failed" and record.error.startswith("Slurm job 9_0 ended FAILED")


def test_a_reset_voids_every_claim_made_before_it(db_url):
    """``ablate cancel`` (or ``--force``) resets a trial whose job still runs (submitit
    ignores scancel's SIGTERM until KillWait's SIGKILL), and ``ablate run`` queues it again
    at once: the old job's heartbeat, hand-back and result must not touch the new run."""
    store = Store(db_url)
    tid = study(store)[0]
    store.submitted("tiny", tid, "/runs/x", job_id="5_0")
    old = store.claim("tiny", tid, holder(1, "slurm", "5_0"), 600)
    store.reset("tiny", [tid])  # ablate cancel
    store.submitted("tiny", tid, "/runs/x", job_id="9_0")  # ablate run: queued again
    assert not store.renew(old)  # no lease for a job that was cancelled
    assert not store.interrupt(old, TrialStatus.PREEMPTED)
    assert not store.release(old)
    assert not store.record(result(tid, old.epoch, 0.1))
    (record,) = [r for r in store.trials("tiny") if r.trial_id == tid]
    assert (record.status, record.holder, record.lease_expires_at, record.job_id) == (
        "running", None, None, "9_0")
    new = store.claim("tiny", tid, holder(2, "slurm", "9_0"), 600)
    assert isinstance(new, Claim) and new.taken_over is None
    assert store.record(result(tid, new.epoch, 0.2))
    assert store.trials("tiny")[0].metrics == {"miou": 0.2}


def test_a_result_recorded_late_by_its_job_after_force_does_not_count(db_url):
    """The driver ingests a job's result file while the job still thins its checkpoint;
    ``--force`` then resets the trial and queues it again before the job records the
    same result itself: the forced rerun must train it anew."""
    store = Store(db_url)
    tid = study(store)[0]
    old = store.claim("tiny", tid, holder(1, "slurm", "5_0"), 600)
    late = result(tid, old.epoch, 0.1)
    assert store.record(late)  # ingested from result.json by the driver
    store.reset("tiny", [tid])  # --force
    store.submitted("tiny", tid, "/runs/x", job_id="9_0")
    assert not store.record(late)  # the old job's own record, late
    assert store.statuses("tiny")[tid] == "running"
    assert isinstance(store.claim("tiny", tid, holder(2, "slurm", "9_0"), 600), Claim)


def test_a_dead_job_s_failure_ends_only_the_trial_still_queued_or_held_for_it(db_url):
    """``ablate status`` or a runner's wait finds job 5_0 ended without a result after
    ``--force`` (or cancel and run) queued the trial as job 9_0: 5_0's failure must not
    fail the trial that 9_0 is about to train, nor one reset since."""
    store = Store(db_url)
    tid, other = study(store)
    store.submitted("tiny", tid, "/runs/x", job_id="5_0")
    store.reset("tiny", [tid])
    started = store.database_time()
    store.submitted("tiny", tid, "/runs/x", job_id="9_0")
    assert not store.record(failure(tid, None, "Slurm job 5_0 ended FAILED"), dead_job="5_0")
    assert store.statuses("tiny")[tid] == "running"
    assert isinstance(store.claim("tiny", tid, holder(2, "slurm", "9_0"), 600,
                                  failed_before=started), Claim)
    store.submitted("tiny", other, "/runs/y", job_id="6_0")
    store.reset("tiny", [other])  # ablate cancel
    assert not store.record(failure(other, None, "Slurm job 6_0 ended FAILED"), dead_job="6_0")
    assert store.statuses("tiny")[other] == "pending"


def test_a_cancelled_job_resets_only_the_trial_still_queued_or_held_for_it(db_url):
    store = Store(db_url)
    tid, other = study(store)
    store.submitted("tiny", tid, "/runs/x", job_id="5_0")
    store.reset("tiny", [tid])  # ablate cancel ...
    store.submitted("tiny", tid, "/runs/x", job_id="9_0")  # ... and ablate run
    assert not store.reset_job("tiny", tid, "5_0")  # 5_0 seen CANCELLED late
    assert isinstance(store.claim("tiny", tid, holder(2, "slurm", "9_0"), 600), Claim)
    # a job queued while a local runner held the trial, then scancel'ed: the runner keeps it
    local = store.claim("tiny", other, holder(3), 600)
    assert not store.submitted("tiny", other, "/runs/y", job_id="7_0")
    assert not store.reset_job("tiny", other, "7_0")
    assert store.renew(local)
    assert store.record(result(other, local.epoch, 0.3))
    assert not store.reset_job("tiny", other, "7_0")
    assert store.statuses("tiny") == {tid: "running", other: "done"}
    # the trial's own job, queued or holding it: pending, and that job cannot claim it
    store.submitted("tiny", tid, "/runs/x", job_id="9_0")
    assert store.reset_job("tiny", tid, "9_0")
    assert store.claim("tiny", tid, holder(4, "slurm", "9_0"), 600).status == "cancelled"


def test_a_job_s_late_submitted_event_leaves_the_trial_it_claimed_alone(db_url):
    """A task of a large array starts, claims and ends (preempted, failed) before the
    driver has recorded its ``Submitted`` event: the event changes nothing."""
    store = Store(db_url)
    tid, other = study(store)
    first = store.claim("tiny", tid, holder(1, "slurm", "9_0"), 600)
    assert store.interrupt(first, TrialStatus.PREEMPTED)  # USR2: handed back
    assert not store.submitted("tiny", tid, "/runs/x", job_id="9_0")
    assert store.statuses("tiny")[tid] == "preempted"
    again = store.claim("tiny", tid, holder(2, "slurm", "9_0"), 600)  # requeued
    assert again.resumed == "preempted"
    quick = store.claim("tiny", other, holder(3, "slurm", "9_1"), 600)
    assert store.record(failure(other, quick.epoch, "boom"))
    assert not store.submitted("tiny", other, "/runs/y", job_id="9_1")
    records = {r.trial_id: r for r in store.trials("tiny")}
    assert records[other].status == "failed" and records[other].error == "boom"
    assert (records[tid].attempts, records[tid].preemptions) == (1, 1)
