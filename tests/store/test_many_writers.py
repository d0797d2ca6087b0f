"""Many processes finish trials at the same moment: nothing lost, nothing locked."""

from __future__ import annotations

import multiprocessing as mp
import traceback

import pytest

from ablate.recipes.loader import parse_recipe
from ablate.store import CostRecord, Store
from ablate.trials.expand import expand
from ablate.trials.lifecycle import TrialResult, TrialStatus

WRITERS = 8
TRIALS_PER_WRITER = 3
RECIPE = f"""
name = "many"
seeds = {list(range(WRITERS * TRIALS_PER_WRITER // 2))}
[grid]
"model.keep_last_expansion" = [true, false]
"""


def _result(trial_id: str, writer: int) -> TrialResult:
    return TrialResult("many", trial_id, TrialStatus.DONE,
                       final={"miou": writer / 100, "latency_ms": 1.0},
                       epochs=[{"epoch": e, "step": 2 * e, "metrics": {"train_loss": 1.0 / e}}
                               for e in (1, 2, 3)],
                       environment={"writer": writer}, started_at="2026-01-01T00:00:00",
                       finished_at="2026-01-01T00:01:00")


def _writer(url: str, writer: int, trial_ids: list[str], barrier, errors) -> None:
    try:
        store = Store(url)
        barrier.wait(timeout=300)  # everyone writes at the same moment
        for trial_id in trial_ids:
            store.upsert_study("many", f"by writer {writer}", "many.toml", RECIPE)
            store.put_cost(CostRecord("shared-arch", 10, {"a": 10}, 20, {"a": 20}, "fvcore-mac",
                                      (8, 8)))
            store.put_cost(CostRecord(f"arch-{trial_id}", writer, {}, None, None, None, (8, 8)))
            store.submitted("many", trial_id, f"/runs/{trial_id}", f"{writer}_0")
            assert store.record(_result(trial_id, writer)) is True
        store.close()
    except BaseException:
        errors.put(f"writer {writer}: {traceback.format_exc()}")


def _context():
    # fork: the writers only use the store (no torch), and spawning 8 interpreters that
    # import ablate costs seconds on a small machine
    return mp.get_context("fork")


@pytest.mark.slow
def test_many_writers_lose_nothing(db_url):
    trials = expand(parse_recipe(RECIPE, "many.toml"))
    assert len(trials) == WRITERS * TRIALS_PER_WRITER
    store = Store(db_url)
    store.upsert_study("many", "", "many.toml", RECIPE)
    store.register_trials("many", trials)

    ctx = _context()
    barrier, errors = ctx.Barrier(WRITERS), ctx.Queue()
    ids = [t.trial_id for t in trials]
    workers = [ctx.Process(target=_writer, args=(
        db_url, w, ids[w * TRIALS_PER_WRITER:(w + 1) * TRIALS_PER_WRITER], barrier, errors))
        for w in range(WRITERS)]
    for p in workers:
        p.start()
    for p in workers:
        p.join(timeout=300)
    failures = []
    while not errors.empty():
        failures.append(errors.get())
    assert not failures, "\n".join(failures)
    assert [p.exitcode for p in workers] == [0] * WRITERS

    records = store.trials("many")
    assert len(records) == len(ids) and {r.status for r in records} == {"done"}
    by_id = {r.trial_id: r for r in records}
    for w in range(WRITERS):
        for tid in ids[w * TRIALS_PER_WRITER:(w + 1) * TRIALS_PER_WRITER]:
            assert by_id[tid].metrics == {"miou": w / 100, "latency_ms": 1.0}
            assert by_id[tid].job_id == f"{w}_0"
            assert len(store.epoch_metrics("many", tid)) == 3
    costs = store.get_costs(["shared-arch", *[f"arch-{tid}" for tid in ids]])
    assert len(costs) == len(ids) + 1
    assert [s.name for s in store.studies()] == ["many"]


def _same_result_writer(url: str, writer: int, trial_ids: list[str], barrier, outcomes) -> None:
    try:
        store = Store(url)
        barrier.wait(timeout=300)
        for trial_id in trial_ids:
            outcomes.put((trial_id, store.record(_result(trial_id, 7))))
        store.close()
    except BaseException:
        outcomes.put(("error", f"writer {writer}: {traceback.format_exc()}"))


def test_the_same_result_ingested_at_once_is_recorded_once(db_url):
    """``ablate run`` and ``ablate status`` may ingest one result file at the same moment."""
    trials = expand(parse_recipe(RECIPE, "many.toml"))[:4]
    store = Store(db_url)
    store.upsert_study("many")
    store.register_trials("many", trials)
    ids = [t.trial_id for t in trials]
    ctx = _context()
    barrier, outcomes = ctx.Barrier(WRITERS), ctx.Queue()
    workers = [ctx.Process(target=_same_result_writer, args=(db_url, w, ids, barrier, outcomes))
               for w in range(WRITERS)]
    for p in workers:
        p.start()
    got = [outcomes.get(timeout=300) for _ in range(WRITERS * len(ids))]
    for p in workers:
        p.join(timeout=60)
    assert [g for g in got if g[0] == "error"] == []
    assert sorted(tid for tid, recorded in got if recorded) == sorted(ids)  # once each
    for tid in ids:
        assert len(store.epoch_metrics("many", tid)) == 3
    assert all(r.metrics == {"miou": 0.07, "latency_ms": 1.0} for r in store.trials("many"))


def _register(store, study, trials, start, added, errors):
    start.wait()
    try:
        added.append(store.register_trials(study, trials))
    except Exception as err:  # the test reports what broke
        errors.append(repr(err))


def test_runners_registering_one_study_at_once_never_insert_a_trial_twice(db_url):
    """Runners started together register the same trials in the same moment (it broke
    a runner on PostgreSQL with a unique-key error): each takes its turn."""
    import threading

    trials = expand(parse_recipe(RECIPE, "many.toml"))
    for attempt in range(5):  # a new study each time: every round races the first insert
        study = f"many{attempt}"
        Store(db_url).upsert_study(study)
        stores = [Store(db_url) for _ in range(4)]
        start, added, errors = threading.Barrier(len(stores)), [], []
        threads = [threading.Thread(target=_register,
                                    args=(s, study, trials, start, added, errors))
                   for s in stores]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
        assert errors == []
        assert sorted(added) == [0, 0, 0, len(trials)]
        assert len(Store(db_url).trials(study, with_metrics=False)) == len(trials)
