"""Following, cancelling and waiting for Slurm jobs while other processes change the same
trials: each race played in its order by explicit calls, with sacct's and scancel's
answers given (tests/dispatch/test_slurm.py runs the real cluster)."""

from __future__ import annotations

from ablate.dispatch.slurm import cancel_study, follow_study, live_jobs
from ablate.dispatch.study import RunOptions, StudyRunner
from ablate.recipes.loader import parse_recipe
from ablate.store import Store
from ablate.store.claims import Claim
from ablate.train.events import Ended, JobCancelled, Submitted
from ablate.trials.expand import expand
from ablate.trials.lifecycle import JobDied, TrialResult, TrialStatus
from tests.conftest import TINY_RECIPE


def slurm_holder(job_id: str | None, pid: int = 1) -> dict:
    # another host: no runner here judges it dead by its pid
    return {"host": "node7", "pid": pid, "executor": "slurm" if job_id else "local",
            "job_id": job_id}


def tiny(tmp_path) -> tuple[Store, list[str]]:
    store = Store(f"sqlite:///{tmp_path / 'r.db'}")
    store.upsert_study("tiny")
    trials = expand(parse_recipe(TINY_RECIPE, "r.toml"))
    store.register_trials("tiny", trials)
    return store, [t.trial_id for t in trials]


class FakeSlurm:
    """sacct answers ``states``; scancel records the job ids; ``meanwhile`` runs once, as
    another process acting while sacct answers."""

    def __init__(self, monkeypatch, states: dict[str, str], meanwhile=None) -> None:
        self.states, self.meanwhile, self.cancelled = states, meanwhile, []
        monkeypatch.setattr("ablate.dispatch.slurm.job_states", self.job_states)
        monkeypatch.setattr("ablate.dispatch.slurm.scancel", self.cancelled.extend)
        monkeypatch.setattr("ablate.dispatch.slurm.shutil.which", lambda name: f"/bin/{name}")

    def job_states(self, job_ids: list[str]) -> dict[str, str]:
        if self.meanwhile is not None:
            self.meanwhile, meanwhile = None, self.meanwhile
            meanwhile()
        return {j: self.states.get(j, "UNKNOWN") for j in job_ids}


def test_cancel_stops_the_requeued_job_of_a_preempted_trial(tmp_path, monkeypatch):
    """A job preempted with USR2 hands its trial back (preempted) and is requeued: until it
    starts again (hours on a busy cluster) only its trial's state says it exists.
    ``ablate cancel`` must stop it, and ``ablate run`` must refuse to queue a second job."""
    store, (requeued, ended) = tiny(tmp_path)
    for tid, job_id in ((requeued, "9_0"), (ended, "8_0")):
        claim = store.claim("tiny", tid, slurm_holder(job_id), 600)
        assert store.interrupt(claim, TrialStatus.PREEMPTED)
    # 9_0 waits to start again; 8_0 was not requeued (PreemptMode=CANCEL): it resumes next run
    slurm = FakeSlurm(monkeypatch, {"9_0": "PENDING", "8_0": "PREEMPTED"})
    assert live_jobs(store, "tiny") == {requeued: "9_0"}
    assert cancel_study(store, "tiny", tmp_path / "runs") == [requeued]
    assert slurm.cancelled == ["9_0"]
    assert store.statuses("tiny") == {requeued: "pending", ended: "preempted"}
    # the requeued job, if it was starting when scancel came, cannot take the trial
    assert store.claim("tiny", requeued, slurm_holder("9_0", 2), 600).status == "cancelled"


def test_status_leaves_a_trial_queued_again_while_it_asked_sacct(tmp_path, monkeypatch):
    """``ablate status`` reads two running trials, then asks sacct; meanwhile ``ablate
    cancel`` and ``ablate run`` queue them again as new jobs. The old jobs' ends
    (cancelled, died) must not reset or fail the trials the new jobs are about to train."""
    store, (cancelled, died) = tiny(tmp_path)
    store.submitted("tiny", cancelled, str(tmp_path / "a"), job_id="5_0")
    store.submitted("tiny", died, str(tmp_path / "b"), job_id="5_1")

    def cancel_and_run_again() -> None:
        store.reset("tiny", [cancelled, died])
        store.submitted("tiny", cancelled, str(tmp_path / "a"), job_id="9_0")
        store.submitted("tiny", died, str(tmp_path / "b"), job_id="9_1")

    FakeSlurm(monkeypatch, {"5_0": "CANCELLED", "5_1": "FAILED"}, cancel_and_run_again)
    follow = follow_study(store, "tiny", tmp_path / "runs")
    assert (follow.requeue, follow.died, follow.interrupted) == ([], [], [])
    assert store.statuses("tiny") == {cancelled: "running", died: "running"}
    for tid, job_id in ((cancelled, "9_0"), (died, "9_1")):
        assert isinstance(store.claim("tiny", tid, slurm_holder(job_id), 600), Claim)


class CancelledWhileHeld:
    """A job queued for a trial that a local runner holds, then scancel'ed by the user."""

    name = "slurm"

    def run(self, jobs, on_event) -> None:
        for job in jobs:
            on_event(job, Submitted("7_0"))
            on_event(job, JobCancelled("7_0"))


def test_a_cancelled_job_leaves_the_trial_another_runner_holds(tmp_path):
    recipe = parse_recipe(TINY_RECIPE, "r.toml")
    trials = expand(recipe)[:1]
    store = Store(f"sqlite:///{tmp_path / 'r.db'}")
    runner = StudyRunner(store, CancelledWhileHeld(), RunOptions(tmp_path / "runs"))
    store.upsert_study(recipe.name)
    store.register_trials(recipe.name, trials)
    local = store.claim(recipe.name, trials[0].trial_id, slurm_holder(None), 600)
    runner.run(recipe, trials)
    assert store.renew(local)  # the local runner still holds it and trains on
    assert store.statuses(recipe.name) == {trials[0].trial_id: "running"}


def test_a_round_whose_job_was_cancelled_says_its_trial_is_pending_not_queued(tmp_path):
    """scancel of a job 'ablate run' waited for: its trial is pending again, and the round
    said '1 queued on Slurm; each job claims its trial when it starts'."""
    from ablate.dispatch.claiming import runner_report

    recipe = parse_recipe(TINY_RECIPE, "r.toml")
    trials = expand(recipe)[:1]
    store = Store(f"sqlite:///{tmp_path / 'r.db'}")
    runner = StudyRunner(store, CancelledWhileHeld(), RunOptions(tmp_path / "runs"))
    summary = runner.run(recipe, trials)
    assert store.statuses(recipe.name) == {trials[0].trial_id: "pending"}
    assert summary.cancelled == [trials[0].trial_id] and summary.queued() == []
    assert runner_report(store, recipe.name, summary)[0] == (
        "1 trial(s) pending again: their Slurm job was cancelled (the next 'ablate run' "
        "runs them)")



class FoundHeld:
    """The job queued for a trial finds it held by a local runner elsewhere and exits."""

    name = "slurm"

    def run(self, jobs, on_event) -> None:
        from ablate.trials.lifecycle import Held

        for job in jobs:
            on_event(job, Submitted("7_0"))
            on_event(job, Ended(Held("running", slurm_holder(None))))


def test_a_trial_recorded_by_its_holder_while_wait_waited_is_not_called_queued(
        tmp_path, monkeypatch):
    """'ablate run --executor slurm --wait' beside a local runner: once the local runner
    recorded the trial, the round said '1 queued on Slurm' for it."""
    from ablate.dispatch.claiming import runner_report

    recipe = parse_recipe(TINY_RECIPE, "r.toml")
    trials = expand(recipe)[:1]
    tid = trials[0].trial_id
    store = Store(f"sqlite:///{tmp_path / 'r.db'}")
    store.upsert_study(recipe.name)
    store.register_trials(recipe.name, trials)
    local = store.claim(recipe.name, tid, slurm_holder(None), 600)

    def holder_records(seconds: float) -> None:  # while the runner waits
        store.record(TrialResult(recipe.name, tid, "done", final={"miou": 0.5},
                                 claim_epoch=local.epoch))

    monkeypatch.setattr("ablate.dispatch.study.time.sleep", holder_records)
    runner = StudyRunner(store, FoundHeld(), RunOptions(tmp_path / "runs", wait=True))
    summary = runner.run(recipe, trials)
    assert store.statuses(recipe.name) == {tid: "done"}
    assert summary.queued() == [] and summary.waited == [tid]
    assert runner_report(store, recipe.name, summary)[:2] == [
        "nothing left to take: every trial is done or held by another runner",
        "left 1 to other runners (1 done now)"]


class DiedAfterItsTrialWasQueuedAgain:
    """This runner's job 5_0 dies; before its wait sees that, another process cancels the
    trial and queues it again as job 9_0."""

    name = "slurm"

    def __init__(self, store: Store) -> None:
        self.store = store

    def run(self, jobs, on_event) -> None:
        for job in jobs:
            on_event(job, Submitted("5_0"))
            self.store.reset(job.study, [job.trial_id])
            self.store.submitted(job.study, job.trial_id, job.run_dir, job_id="9_0")
            on_event(job, Ended(JobDied("5_0", TrialResult.failure(
                job.study, job.trial_id, "Slurm job 5_0 ended FAILED without a result"))))


def test_a_runner_does_not_count_a_failure_its_dead_job_no_longer_owns(tmp_path):
    recipe = parse_recipe(TINY_RECIPE, "r.toml")
    trials = expand(recipe)[:1]
    store = Store(f"sqlite:///{tmp_path / 'r.db'}")
    runner = StudyRunner(store, DiedAfterItsTrialWasQueuedAgain(store),
                         RunOptions(tmp_path / "runs"))
    summary = runner.run(recipe, trials)
    assert summary.failed == [] and list(summary.left) == [trials[0].trial_id]
    assert store.statuses(recipe.name) == {trials[0].trial_id: "running"}


def test_waiting_ignores_the_late_result_of_the_job_cancelled_before_it(tmp_path, monkeypatch):
    """``ablate cancel`` stopped job 8_0 a moment before ``ablate run`` queued 9_0 for the
    same trial; the submission removed the stale result file, but 8_0, still stopping,
    wrote its result after. The runner waiting for 9_0 must go on waiting for 9_0's own
    result (the store refuses 8_0's), not stop at 8_0's."""
    from ablate.dispatch.entry import TrialJob
    from ablate.dispatch.slurm import JobInfo, wait_for_results
    from ablate.trials.lifecycle import Trained

    run_dir = tmp_path / "runs" / "t0"
    job = TrialJob("w", "t0", "trial 0", {}, str(run_dir))
    TrialResult("w", "t0", "done", final={"miou": 0.1}, claim_epoch=1,
                environment={"slurm_job_id": "8_0"}).write(run_dir)
    passes = []

    def sleep(seconds: float) -> None:  # 9_0 trains, then writes its result
        passes.append(seconds)
        if len(passes) == 2:
            TrialResult("w", "t0", "done", final={"miou": 0.5}, claim_epoch=3,
                        environment={"slurm_job_id": "9_0"}).write(run_dir)

    FakeSlurm(monkeypatch, {"9_0": "RUNNING"})
    events = []
    wait_for_results([(job, JobInfo("9_0", str(tmp_path)))], lambda j, e: events.append(e),
                     sleep=sleep)
    ended = [e.outcome for e in events if isinstance(e, Ended)]
    assert len(passes) == 2 and len(ended) == 1 and isinstance(ended[0], Trained)
    assert ended[0].result.final == {"miou": 0.5}


def test_status_settles_a_cancelled_job_beside_the_late_result_of_an_older_one(
        tmp_path, monkeypatch):
    """Job 9_0 was scancel'ed outside ablate; its trial's run folder holds the late result
    of job 8_0, cancelled before 9_0 was queued (its claim is void). ``ablate status``
    must queue the trial again, not leave it running under a job that is gone because it
    found a result file the store refuses."""
    store, (tid, _other) = tiny(tmp_path)
    run_dir = tmp_path / "runs" / "tiny" / tid
    stale = store.claim("tiny", tid, slurm_holder("8_0"), 600)
    store.reset("tiny", [tid])
    store.submitted("tiny", tid, str(run_dir), job_id="9_0")
    TrialResult("tiny", tid, "done", final={"miou": 0.1}, claim_epoch=stale.epoch,
                environment={"slurm_job_id": "8_0"}).write(run_dir)
    FakeSlurm(monkeypatch, {"9_0": "CANCELLED"})
    follow = follow_study(store, "tiny", tmp_path / "runs")
    assert follow.requeue == [tid] and follow.ingested == []
    assert store.statuses("tiny")[tid] == "pending"


def test_a_job_whose_claim_failed_on_the_database_leaves_its_trial_pending(
        tmp_path, monkeypatch):
    """A Slurm job's claim hit a database error (``Unclaimed``: nothing trained). The runner
    waiting for it and ``ablate status`` must not record the trial failed (``JobDied``, an
    attempt spent, skipped by ``--skip-failed``): it stays for the next run to claim."""
    from submitit.core.utils import cloudpickle_dump

    from ablate.dispatch.entry import TrialJob
    from ablate.dispatch.slurm import JobInfo, wait_for_results, write_job_info
    from ablate.trials.lifecycle import Unclaimed

    store, (tid, _other) = tiny(tmp_path)
    run_dir, folder = tmp_path / "runs" / "tiny" / tid, tmp_path / "slurm"
    folder.mkdir()
    info = JobInfo("9_0", str(folder))
    write_job_info(run_dir, info)
    store.submitted("tiny", tid, str(run_dir), job_id="9_0")
    cloudpickle_dump(("success", Unclaimed("OperationalError: database is locked")),
                     folder / "9_0_0_result.pkl")
    FakeSlurm(monkeypatch, {"9_0": "COMPLETED"})
    monkeypatch.setattr("ablate.dispatch.slurm.RESULT_GRACE_S", 0.0)

    events = []
    job = TrialJob("tiny", tid, "trial 0", {}, str(run_dir))
    wait_for_results([(job, info)], lambda j, e: events.append(e), sleep=lambda s: None)
    assert [e.outcome for e in events if isinstance(e, Ended)] == [
        Unclaimed("OperationalError: database is locked")]

    follow = follow_study(store, "tiny", tmp_path / "runs")
    assert (follow.unclaimed, follow.died, follow.requeue) == ([tid], [], [])
    assert store.statuses("tiny")[tid] == "pending"


def test_status_shows_the_state_of_the_last_job_of_a_trial_that_waits(tmp_path, monkeypatch):
    """After ``ablate cancel`` a pending trial keeps its last job's id (it fences that job
    out), so ``ablate status`` lists the id: beside it, the job's state says it was
    cancelled (the column was empty, which read as a job still queued). A done trial's
    job is not asked about."""
    store, (cancelled, done) = tiny(tmp_path)
    store.submitted("tiny", cancelled, str(tmp_path / "a"), job_id="5_0")
    claim = store.claim("tiny", done, slurm_holder("5_1"), 600)
    store.record(TrialResult("tiny", done, "done", final={"miou": 0.5},
                             claim_epoch=claim.epoch))
    slurm = FakeSlurm(monkeypatch, {"5_0": "PENDING", "5_1": "COMPLETED"})
    assert cancel_study(store, "tiny", tmp_path / "runs") == [cancelled]
    slurm.states["5_0"] = "CANCELLED"
    asked = []
    monkeypatch.setattr("ablate.dispatch.slurm.job_states",
                        lambda ids: asked.append(ids) or slurm.job_states(ids))
    follow = follow_study(store, "tiny", tmp_path / "runs")
    assert store.statuses("tiny") == {cancelled: "pending", done: "done"}
    assert follow.slurm_states == {cancelled: "CANCELLED"}
    assert follow.requeue == [] and asked == [["5_0"]]
