"""The study runner: everything ``ablate run`` does, as typed events the CLI renders.

One round (``StudyRunner.run``): cost every architecture (which also validates it),
record the study and its trials, ingest results left on disk by an earlier run, hand the
trials that are not done to the executor (each is claimed by the process that trains it),
ingest each result as it arrives, then take over the trials of holders that died. The
whole study (``StudyRunner.execute``): tracking set up, the recipe's round, what this
runner did, the ``--until-decided`` rounds (``dispatch.adaptive``), tracking finished.

The round's summary and the events it emits are in ``dispatch.events``. Inputs (data
roots, weights, class counts) are checked by ``validate`` before the database is
opened, so nothing is recorded for a study that cannot run.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from ablate.analysis.design import DEFAULT_SPENDING
from ablate.cost.estimate import Resources, StudyEstimate
from ablate.dispatch import (
    prepare,  # prepare.costs_for -> compute_costs: a seam tests replace
    tuning,  # a tuned study's phases ([tune])
)
from ablate.dispatch.adaptive import (
    DEFAULT_MAX_SEEDS,
    Round,
    run_until_decided,
    start_loop,
)
from ablate.dispatch.budget import Budget, begin, round_guard
from ablate.dispatch.claiming import runner_report, worker_url
from ablate.dispatch.entry import TrialJob
from ablate.dispatch.events import (
    Estimated,
    Planned,
    RoundEnded,
    RunnerReport,
    RunSummary,
    StudyEvent,
    TrialUpdate,
    Waiting,
)
from ablate.dispatch.executor import Executor
from ablate.dispatch.leases import DEFAULT_LEASE_SECONDS
from ablate.dispatch.liveness import holder_is_dead
from ablate.dispatch.preflight import require_inputs
from ablate.dispatch.results import StudyOwner, ingest_results, shown_database, study_root
from ablate.errors import StoreError
from ablate.recipes.loader import Recipe
from ablate.store import Store
from ablate.track import finish_study, start_study
from ablate.train.events import Claimed, Ended, JobCancelled, Submitted, TrialEvent
from ablate.trials.expand import Trial
from ablate.trials.ids import spec_dict
from ablate.trials.lifecycle import (
    DEFAULT_KEEP,
    Held,
    Interrupted,
    JobDied,
    Lost,
    Outcome,
    Trained,
    TrialStatus,
    Unclaimed,
)

WAIT_POLL_S = 5.0  # how often a waiting runner looks at the trials others hold
# after the round, trials freed meanwhile (a dead holder, a job the cluster stopped) run
# again up to this many times: enough for a take-over that itself loses a race, bounded
# so that a trial whose job is stopped every time does not keep the runner forever
TAKEOVER_ROUNDS = 3


@dataclass(frozen=True)
class RunOptions:
    """How trials run, the same for every round of a study."""

    runs_root: Path
    skip_failed: bool = False  # keep failed trials as they are (else they run again)
    force: bool = False  # the recipe's round runs every trial again, done ones included
    lease_seconds: float = DEFAULT_LEASE_SECONDS
    wait: bool = False  # wait for trials that live runners elsewhere hold
    tracking: tuple[str, ...] = ()  # ``ablate.track`` sinks
    # what the executor offers (``dispatch.estimate``): with it, each run estimates its
    # time before it starts and records the estimate; a budget needs it
    resources: Resources | None = None
    budget: Budget | None = None  # ``--budget``: refuse the recipe's round, stop the loop
    keep: str = DEFAULT_KEEP  # ``--keep``: what a done trial's run folder keeps (KEEP_CHOICES)


@dataclass(frozen=True)
class LoopSettings:
    """``--until-decided``: the group-sequential design's settings."""

    max_seeds: int = DEFAULT_MAX_SEEDS
    alpha: float = 0.05
    min_effect: float | None = None
    spending: str = DEFAULT_SPENDING


@dataclass
class StudyOutcome:
    summary: RunSummary  # the recipe's round (a tuned study's: its confirmation round)
    rounds: list[Round] = field(default_factory=list)  # --until-decided's looks
    # a tuned study's tuning round ([tune]): its failed trials are failed draws, not failures
    tuning: RunSummary | None = None

    @property
    def failed(self) -> list[str]:
        """Every round's failed trials."""
        return [*self.summary.failed, *(t for r in self.rounds for t in r.failed)]

    @property
    def ok(self) -> bool:
        """No trial failed, and every claim could be made."""
        return not self.failed and not self.summary.unclaimed


def validate(recipe: Recipe, trials: list[Trial]) -> None:
    """Data roots, weights files and class counts: raise before anything is recorded."""
    require_inputs(trials, recipe.path)


class StudyRunner:
    """Runs a study's rounds on ``executor``, records them in ``store``, and tells ``emit``."""

    def __init__(self, store: Store, executor: Executor, options: RunOptions,
                 emit: Callable[[StudyEvent], None] = lambda event: None) -> None:
        self.store, self.executor, self.options, self.emit = store, executor, options, emit
        self.tracking_options: dict[str, Any] = {}
        self._estimate: StudyEstimate | None = None  # recorded with the first round

    def execute(self, recipe: Recipe, trials: list[Trial], overrides: dict | None = None,
                loop: LoopSettings | None = None) -> StudyOutcome:
        """The recipe's round, then (``loop``) rounds of new seeds until every effect is
        decided; tracking around them."""
        start, plan, recorded, keeper = self.check_start(recipe, trials, overrides, loop)
        resources = self.options.resources
        guard = round_guard(keeper, self.store, resources) if keeper and resources else None
        self.tracking_options = start_study(self.options.tracking, recipe.name)
        if plan is not None:  # tuning, selection, confirmation: dispatch.tuning
            tuned = tuning.run_tuned(self, recipe, trials, dict(overrides or {}), start, plan,
                                     recorded, guard=guard)
            outcome = StudyOutcome(tuned.summary, tuned.rounds, tuned.tuning)
        else:
            summary = self.run(recipe, trials, force=self.options.force)
            outcome = StudyOutcome(summary)
            self.emit(RunnerReport(tuple(runner_report(self.store, recipe.name, summary))))
            if start is not None and outcome.ok:
                outcome.rounds = run_until_decided(start, self.store, self.run, emit=self.emit,
                                                   guard=guard)
        finish_study(self.tracking_options, self.store, recipe.name, failed=not outcome.ok)
        return outcome

    def check_start(self, recipe: Recipe, trials: list[Trial], overrides: dict | None = None,
                    loop: LoopSettings | None = None):
        """What ``execute`` checks before anything runs: a study grown before under other
        loop settings, or tuned with another [tune] set-up, is refused; so is a budget the
        recipe's round cannot keep (``OverBudget``), and trials the executor would refuse
        (``check``: a job array sbatch refuses). Writes nothing but architecture costs.
        Returns the loop's start, the tuning plan, the recorded tuning and the budget's
        keeper. (``ablate run`` calls it on an in-memory stand-in first when the database
        does not exist yet, so that a refused budget or submission does not create it.)"""
        start = (start_loop(self.store, recipe, dict(overrides or {}),
                            **dataclasses.asdict(loop)) if loop is not None else None)
        plan = tuning.tuning_plan(recipe, overrides)
        recorded = tuning.check_recorded(self.store, recipe, plan)
        if plan is not None:
            tuning.check_selected(plan, trials, recipe.path)
        keeper = None
        resources = self.options.resources
        if resources is not None:  # a budget the recipe's round cannot keep is refused here
            # a tuned study's estimate covers both phases: its tuning trials, then its
            # confirmation trials (configurations x seeds)
            every, settled = ((trials, set()) if plan is None else tuning.estimated_trials(
                self.store, recipe, dict(overrides or {}), plan))
            if self.options.budget is not None:  # a bad architecture says so, not "no estimate"
                prepare.costs_for(self.store, every, source=recipe.path, tune=recipe.tune)
            self._estimate, keeper = begin(self.store, recipe, every, resources,
                                           self.options.budget,
                                           start.design if start is not None else None,
                                           force=self.options.force,
                                           skip_failed=self.options.skip_failed,
                                           settled=settled)
        check = getattr(self.executor, "check", None)  # optional: Executor's docstring
        if check is not None and self._runs_any(recipe.name, trials, plan, start):
            check(recipe.name, len(trials), recipe.path)
        return start, plan, recorded, keeper

    def _runs_any(self, study: str, trials: list[Trial], plan, start) -> bool:
        """Whether the first round may run a trial: False only when it would skip every
        one (and neither ``--force``, tuning nor the until-decided loop adds any)."""
        if self.options.force or plan is not None or start is not None:
            return True
        return bool(self._to_run(trials, self.store.statuses(study)))

    def _to_run(self, trials: list[Trial], statuses: dict[str, TrialStatus]) -> list[Trial]:
        """The trials a round runs, given their stored ``statuses``: those not done, less
        the failed ones under ``--skip-failed``."""
        skipped = {TrialStatus.DONE}
        if self.options.skip_failed:
            skipped.add(TrialStatus.FAILED)
        return [t for t in trials if statuses.get(t.trial_id) not in skipped]

    def run(self, recipe: Recipe, trials: list[Trial], *, force: bool = False) -> RunSummary:
        """One round: record the study and ``trials``, run those not done (failed ones
        again unless ``skip_failed``), ingest every result.

        Trials whose holder died on this host are taken over at once. With ``wait``,
        trials that live runners elsewhere hold are waited for until they are recorded,
        or their leases expire and this runner takes them over.
        """
        store, study = self.store, recipe.name
        prepare.costs_for(store, trials, source=recipe.path,  # validates every architecture
                          tune=recipe.tune)
        record = store.upsert_study(study, recipe.description, recipe.path, recipe.text)
        store.register_trials(study, trials)
        # the study's folder in the runs folder, marked as this database's study: another
        # database's results there are never ingested, nor its run folders written
        root = study_root(self.options.runs_root, study, StudyOwner(
            study, record.created_at.isoformat(), shown_database(store)))
        if self._estimate is not None:  # what this run expects, shown and kept once the
            # architectures are valid (a bad one is the run's only line), before its first trial
            self.emit(Estimated(self._estimate, self.options.budget))
            if self._estimate.left.trials or self._estimate.worst is not None:
                store.record_estimate(study, self._estimate.to_json())
            self._estimate = None

        summary = RunSummary(total=len(trials))
        started = store.database_time()  # failed before this: ours to retry (claims)
        report = ingest_results(store, study, self.options.runs_root, {t.trial_id for t in trials})
        summary.recovered, summary.corrupt = report.ingested, report.corrupt
        summary.foreign, summary.foreign_db = report.foreign, report.foreign_db
        todo = self._todo(study, trials, summary, force)
        jobs = [self._job(study, t, started, root) for t in todo]
        if force:
            for job in jobs:  # a forced rerun starts from scratch, not from a checkpoint
                _remove_run_state(Path(job.run_dir))
        self.emit(Planned(study, len(jobs), summary.skipped, summary.retried))
        self._run_jobs(study, jobs, summary, started)
        self.emit(RoundEnded(study, tuple(t.trial_id for t in trials), summary))
        return summary

    # -- one round's parts ------------------------------------------------------------------

    def _todo(self, study: str, trials: list[Trial], summary: RunSummary,
              force: bool) -> list[Trial]:
        statuses = self.store.statuses(study)
        if force:
            self.store.reset(study, [t.trial_id for t in trials])
            statuses = {t.trial_id: TrialStatus.PENDING for t in trials}
        todo = self._to_run(trials, statuses)
        summary.skipped = len(trials) - len(todo)
        summary.retried = sum(statuses.get(t.trial_id) is TrialStatus.FAILED for t in todo)
        return todo

    def _job(self, study: str, trial: Trial, started: datetime, root: Path) -> TrialJob:
        options = self.options
        return TrialJob(study, trial.trial_id, trial.name, spec_dict(trial.spec),
                        str(root / trial.trial_id),
                        db=worker_url(self.store.url), lease_seconds=options.lease_seconds,
                        failed_before=started.isoformat(), tracking=tuple(options.tracking),
                        track_info=(_track_info(trial, self.tracking_options)
                                    if options.tracking else None), keep=options.keep)

    def _run_jobs(self, study: str, jobs: list[TrialJob], summary: RunSummary,
                  started: datetime) -> None:
        """Run ``jobs``; then take over what dead holders left (and what the cluster
        stopped for good) and, with ``wait``, what live holders hold once they let go."""
        store = self.store

        def handle(job: TrialJob, event: TrialEvent) -> None:
            self._record(job, event, summary)
            self.emit(TrialUpdate(job, event))

        def run_free() -> bool:
            unfinished = [*summary.left, *summary.interrupted]
            free = set(store.claimable(study, unfinished, started, holder_is_dead))
            summary.interrupted[:] = [t for t in summary.interrupted if t not in free]
            if free:
                self.executor.run([job for job in jobs if job.trial_id in free], handle)
            return bool(free)

        self.executor.run(jobs, handle)
        # a holder that died meanwhile (its process gone here, or its lease expired), or a
        # job the cluster stopped: run those trials again now, a bounded number of times
        for _ in range(TAKEOVER_ROUNDS):
            if not run_free():
                break
        while self.options.wait and summary.left:
            self._wait_for_holders(study, summary)
            run_free()

    def _record(self, job: TrialJob, event: TrialEvent, summary: RunSummary) -> None:
        """What an event changes in the database and in the round's summary."""
        store, tid = self.store, job.trial_id
        if isinstance(event, Claimed):
            summary.taken.append(tid)
            summary.left.pop(tid, None)
        elif isinstance(event, Submitted):
            store.submitted(job.study, tid, job.run_dir, event.job_id)
            summary.submitted.append(tid)
        elif isinstance(event, JobCancelled):  # scancel'ed: run it again later, unless the
            # trial is no longer that job's (held by another runner, recorded, queued again)
            if store.reset_job(job.study, tid, event.job_id):
                summary.cancelled.append(tid)
            else:
                summary.left[tid] = Held(store.statuses(job.study)[tid])
        elif isinstance(event, Ended):
            self._ended(job, event.outcome, summary)

    def _ended(self, job: TrialJob, outcome: Outcome, summary: RunSummary) -> None:
        store, tid = self.store, job.trial_id
        match outcome:
            case Held() | Lost():  # another runner holds it, or took it over from us
                summary.left[tid] = outcome if isinstance(outcome, Held) \
                    else Held(TrialStatus.RUNNING)
            case Unclaimed(error=error):
                summary.unclaimed[tid] = error
            case Interrupted(job_id=job_id, status=status):
                if job_id is not None:
                    store.interrupt_job(job.study, tid, job_id, status)
                summary.interrupted.append(tid)
            case JobDied(job_id=job_id, result=result):
                try:
                    recorded = store.record(result, dead_job=job_id)
                except StoreError:
                    recorded = True  # the failure stands; the next follow-up records it
                    summary.unrecorded.append(tid)
                if recorded:
                    summary.failed.append(tid)
                else:  # no longer this job's trial: cancelled, queued again, held elsewhere
                    summary.left[tid] = Held(self.store.statuses(job.study)[tid])
            case Trained(result=result):
                (summary.done if result.done else summary.failed).append(tid)
                try:
                    store.record(result)  # False: its job recorded it first (or a newer claim)
                except StoreError:
                    summary.unrecorded.append(tid)  # safe on disk; ingested next time

    def _wait_for_holders(self, study: str, summary: RunSummary) -> None:
        """Sleep until a held trial is recorded elsewhere or its lease can expire; drop
        the recorded ones from ``summary.left``."""
        store = self.store
        statuses = store.statuses(study)
        for trial_id in [t for t in summary.left if statuses.get(t, TrialStatus.PENDING).finished]:
            summary.left.pop(trial_id)  # its holder recorded it
            summary.waited.append(trial_id)
        if not summary.left:
            return
        expiry = store.lease_expiry(study, list(summary.left))
        self.emit(Waiting(len(summary.left), expiry))
        now = store.database_time()
        seconds = WAIT_POLL_S if expiry is None else (expiry - now).total_seconds() + 0.5
        time.sleep(min(max(seconds, 0.2), WAIT_POLL_S))


def _track_info(trial: Trial, options: dict[str, Any] | None) -> dict[str, Any]:
    """What trackers record of a trial (``ablate.track``): plain data, it is pickled."""
    return {"axes": dict(trial.axes), "seed": trial.seed, "variant": trial.variant,
            "config_name": trial.config_name, "options": dict(options or {})}


def _remove_run_state(run_dir: Path) -> None:
    for name in ("checkpoint.pt", "weights.pt", "result.json"):
        (run_dir / name).unlink(missing_ok=True)
