"""The trial lifecycle through the real store, under random interleavings of several
runners (each its own connection pool, as processes are), on SQLite and PostgreSQL.

A Hypothesis state machine claims, renews, records, crashes (its claims are then taken
over at once, as a dead local holder's are), restarts a Slurm job (the requeued job takes
its own claim back), preempts, times out, releases, resets and submits. After every step:
each stored change of state is the one the transition table gives for what was done, no
trial is recorded done twice, only the trial's latest claim (not one taken over, reset or
queued again since) renews, hands back or records it, and attempts and preemptions are what the steps imply: a
trial stopped by the cluster is never counted as failed nor as a new attempt.
"""

from __future__ import annotations

import uuid

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule, run_state_machine_as_test

from ablate.recipes.loader import parse_recipe
from ablate.store import Store
from ablate.store.claims import Claim
from ablate.trials.expand import expand
from ablate.trials.lifecycle import TrialResult, TrialStatus, Verb, advance
from tests.conftest import TINY_RECIPE

RUNNERS = 3
RECIPE = TINY_RECIPE.replace('"model.keep_last_expansion" = [true, false]',
                             '"train.lr" = [0.001, 0.002, 0.003]')
S = TrialStatus


def _machine(url: str):
    stores = [Store(url) for _ in range(RUNNERS)]  # one pool per runner, like processes
    trials = expand(parse_recipe(RECIPE, "r.toml"))

    class Lifecycle(RuleBasedStateMachine):
        def __init__(self) -> None:
            super().__init__()
            self.study = f"p{uuid.uuid4().hex[:10]}"
            stores[0].upsert_study(self.study)
            stores[0].register_trials(self.study, trials)
            self.ids = [t.trial_id for t in trials]
            self.crashed: set[int] = set()  # pids of runners whose process died
            self.generation = [0] * RUNNERS  # a crashed runner restarts as a new pid
            self.claims: list[Claim] = []
            self.done_records = dict.fromkeys(self.ids, 0)
            self.attempts = dict.fromkeys(self.ids, 0)
            self.preemptions = dict.fromkeys(self.ids, 0)
            # the claim whose result counts: the latest, unless a reset came after it
            self.latest: dict[str, int | None] = dict.fromkeys(self.ids)
            self.started = [stores[0].database_time()] * RUNNERS

        # -- helpers -------------------------------------------------------------------

        def pid(self, runner: int) -> int:
            return 100 * self.generation[runner] + runner

        def holder(self, runner: int, job: bool) -> dict:
            return {"host": "h", "pid": self.pid(runner), "executor": "slurm" if job else "local",
                    "job_id": f"{runner}_0" if job else None}

        def status(self, trial_id: str) -> TrialStatus:
            return stores[0].statuses(self.study)[trial_id]

        def changed(self, trial_id: str, before: TrialStatus, verb: Verb) -> TrialStatus:
            """The state after the step: unchanged, or exactly the table's target."""
            after = self.status(trial_id)
            if after != before:
                assert advance(before, verb, trial_id) == after, (before, verb, after)
                if after is S.FAILED:  # only a recorded failure fails a trial
                    assert verb is Verb.RECORD_FAILED
            return after

        def current(self, claim: Claim) -> bool:
            """The trial's latest claim, not voided by a reset or submission since."""
            return claim.epoch == self.latest[claim.trial_id]

        def dead(self, holder) -> bool:
            return bool(holder) and holder.get("pid") in self.crashed

        # -- what runners do -----------------------------------------------------------

        @rule(runner=st.integers(0, RUNNERS - 1), index=st.integers(0, 2), job=st.booleans())
        def claim(self, runner, index, job):
            tid = self.ids[index]
            before = self.status(tid)
            record = next(r for r in stores[0].trials(self.study) if r.trial_id == tid)
            got = stores[runner].claim(self.study, tid, self.holder(runner, job), 600,
                                       failed_before=self.started[runner], dead=self.dead)
            self.changed(tid, before, Verb.CLAIM)
            if not isinstance(got, Claim):
                return
            assert self.status(tid) is S.RUNNING
            requeued = before is S.RUNNING and job and (record.holder or {}).get(
                "job_id") == f"{runner}_0"
            if requeued:
                self.preemptions[tid] += 1
            elif not before.interrupted:
                self.attempts[tid] += 1
            self.claims.append(got)
            self.latest[tid] = got.epoch

        @rule(data=st.data())
        def renew(self, data):
            if self.claims:
                claim = data.draw(st.sampled_from(self.claims))
                before = self.status(claim.trial_id)
                renewed = stores[0].renew(claim)
                assert self.changed(claim.trial_id, before, Verb.RENEW) == before
                assert renewed == (before is S.RUNNING and self.current(claim))

        @rule(data=st.data(), done=st.booleans())
        def record(self, data, done):
            if not self.claims:
                return
            claim = data.draw(st.sampled_from(self.claims))
            tid = claim.trial_id
            before = self.status(tid)
            result = (TrialResult(self.study, tid, S.DONE, final={"miou": 0.5},
                                  claim_epoch=claim.epoch) if done else
                      TrialResult.failure(self.study, tid, "boom", claim_epoch=claim.epoch))
            verb = Verb.RECORD_DONE if done else Verb.RECORD_FAILED
            recorded = stores[claim.pk % RUNNERS].record(result)
            after = self.changed(tid, before, verb)
            # only the latest claim's result counts: not one taken over, reset or queued since
            assert recorded == (before is not S.DONE and self.current(claim))
            assert after == (advance(before, verb, tid) if recorded else before)
            if recorded and done:
                self.done_records[tid] += 1

        @rule(runner=st.integers(0, RUNNERS - 1))
        def crash(self, runner):
            """The runner's process dies; it restarts as a new process (a new pid)."""
            self.crashed.add(self.pid(runner))
            self.generation[runner] += 1
            self.started[runner] = stores[0].database_time()

        @rule(data=st.data(), timed_out=st.booleans())
        def interrupt(self, data, timed_out):
            if not self.claims:
                return
            claim = data.draw(st.sampled_from(self.claims))
            tid = claim.trial_id
            before = self.status(tid)
            target = S.TIMED_OUT if timed_out else S.PREEMPTED
            verb = Verb.TIME_OUT if timed_out else Verb.PREEMPT
            interrupted = stores[0].interrupt(claim, target)
            if interrupted:
                self.preemptions[tid] += 1
            self.changed(tid, before, verb)
            assert interrupted == (before is S.RUNNING and self.current(claim))

        @rule(data=st.data())
        def release(self, data):
            if self.claims:
                claim = data.draw(st.sampled_from(self.claims))
                before = self.status(claim.trial_id)
                released = stores[0].release(claim)
                self.changed(claim.trial_id, before, Verb.RELEASE)
                assert released == (before is S.RUNNING and self.current(claim))

        @rule(index=st.integers(0, 2))
        def reset(self, index):
            tid = self.ids[index]
            before = self.status(tid)
            stores[0].reset(self.study, [tid])
            assert self.changed(tid, before, Verb.RESET) is S.PENDING
            self.done_records[tid] = 0
            self.latest[tid] = None  # the claims made before are void

        @rule(index=st.integers(0, 2), runner=st.integers(0, RUNNERS - 1))
        def submit(self, index, runner):
            tid = self.ids[index]
            before = self.status(tid)
            if stores[0].submitted(self.study, tid, job_id=f"{runner}_0"):
                self.latest[tid] = None  # queued: the claims made before are void
            self.changed(tid, before, Verb.SUBMIT)

        # -- what must always hold -----------------------------------------------------

        @invariant()
        def done_once_and_counted(self):
            records = {r.trial_id: r for r in stores[0].trials(self.study)}
            for tid in self.ids:
                assert self.done_records[tid] <= 1
                rec = records[tid]
                assert (rec.attempts, rec.preemptions) == (self.attempts[tid],
                                                           self.preemptions[tid])
                if rec.status is S.DONE:
                    assert rec.metrics == {"miou": 0.5} and self.done_records[tid] == 1

    return Lifecycle, stores


@pytest.mark.slow
def test_random_interleavings_of_runners_keep_the_lifecycle(db_url):
    machine, stores = _machine(db_url)
    try:
        run_state_machine_as_test(machine, settings=settings(
            max_examples=25, stateful_step_count=25, deadline=None, derandomize=True,
            suppress_health_check=list(HealthCheck)))
    finally:
        for store in stores:
            store.close()
