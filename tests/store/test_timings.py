"""Trial times and run estimates in the store."""

from __future__ import annotations

from ablate.recipes.loader import parse_recipe
from ablate.store import Store
from ablate.trials.expand import expand
from ablate.trials.lifecycle import TrialResult, TrialStatus

RECIPE = """
name = "t"
seeds = [0, 1]
[base.model]
backbone = "mobilenet_v3_small"
head = "lraspp"
[base.data]
name = "shapes"
classes = 3
[base.train]
batch_size = 6
[grid]
"model.keep_last_expansion" = [true, false]
"""


def test_trial_times_by_study_architecture_and_status(tmp_path):
    store = Store(f"sqlite:///{tmp_path / 't.db'}")
    trials = expand(parse_recipe(RECIPE, "t.toml"))
    store.upsert_study("t")
    store.register_trials("t", trials)
    first, second, third = trials[:3]
    store.record(TrialResult("t", first.trial_id, TrialStatus.DONE,
                             started_at="2026-01-01T00:00:00", finished_at="2026-01-01T00:01:30",
                             final={"miou": 0.5, "steps": 12.0}, environment={"threads": 2}))
    store.record(TrialResult.failure("t", second.trial_id, "boom",
                                     started_at="2026-01-01T00:00:00",
                                     finished_at="2026-01-01T00:00:10"))
    done, failed = store.trial_times(study="t")
    assert (done.trial_id, done.seconds, done.steps, done.batch_size, done.environment) == (
        first.trial_id, 90.0, 12.0, 6, {"threads": 2})
    assert (failed.status, failed.seconds, failed.steps) == (TrialStatus.FAILED, 10.0, None)
    assert [t.trial_id for t in store.trial_times(arch_ids=[first.arch_id],
                                                  statuses=(TrialStatus.DONE,))] == \
        [first.trial_id]
    assert store.trial_times(arch_ids=[]) == []
    pending = store.trial_times(study="t", statuses=(TrialStatus.PENDING,))
    assert [t.trial_id for t in pending] == [third.trial_id, trials[3].trial_id]
    assert pending[0].seconds is None


def test_estimates_are_recorded_with_the_database_time(tmp_path):
    store = Store(f"sqlite:///{tmp_path / 't.db'}")
    store.upsert_study("a")
    store.upsert_study("b")
    one = store.record_estimate("a", {"left": {"trials": 3}})
    two = store.record_estimate("b", {"left": {"trials": 1}})
    three = store.record_estimate("a", {"left": {"trials": 2}})
    assert one.created_at <= three.created_at
    assert store.estimates(["a"]) == [one, three]
    assert store.estimates() == [one, three, two]  # by study, then time
