from __future__ import annotations

import sqlite3

import pytest

from ablate.errors import SchemaVersionError, StoreError
from ablate.recipes.loader import parse_recipe
from ablate.store import CostRecord, Store
from ablate.trials.expand import expand
from ablate.trials.lifecycle import TrialResult, TrialStatus

RECIPE = """
name = "s"
seeds = [0, 1]
[grid]
"model.keep_last_expansion" = [true, false]
"""


@pytest.fixture
def store(tmp_path):
    return Store(f"sqlite:///{tmp_path / 'a.db'}")


@pytest.fixture
def trials():
    return expand(parse_recipe(RECIPE, "s.toml"))


def result(trial, status="done", miou=0.5, **fields):
    values = {"final": {"miou": miou, "iou/cat": 0.25},
              "epochs": [{"epoch": 1, "step": 4, "metrics": {"train_loss": 1.5}}],
              "environment": {"torch": "x"}, "started_at": "2026-01-01T00:00:00",
              "finished_at": "2026-01-01T00:01:00", **fields}
    return TrialResult("s", trial.trial_id, TrialStatus(status), **values)


def test_round_trip(store, trials):
    store.upsert_study("s", "desc", "s.toml", RECIPE)
    assert store.register_trials("s", trials) == 4
    assert store.register_trials("s", trials) == 0  # idempotent
    assert set(store.statuses("s").values()) == {"pending"}
    store.submitted("s", trials[0].trial_id, "/runs/x")
    assert store.record(result(trials[0])) is True
    assert store.record(result(trials[0], miou=0.9)) is False  # done stays done
    rec = {r.trial_id: r for r in store.trials("s")}[trials[0].trial_id]
    assert rec.status == "done" and rec.metrics == {"miou": 0.5, "iou/cat": 0.25}
    assert rec.environment == {"torch": "x"} and rec.run_dir == "/runs/x"
    assert rec.spec["model"]["keep_last_expansion"] is True
    epochs = store.epoch_metrics("s", trials[0].trial_id)
    assert [(e.epoch, e.step, e.key, e.value) for e in epochs] == [(1, 4, "train_loss", 1.5)]


def test_failed_then_rerun_replaces_figures(store, trials):
    store.upsert_study("s")
    store.register_trials("s", trials[:1])
    store.record(result(trials[0], "failed", error="boom", final={}))
    assert store.trials("s")[0].status == "failed" and store.trials("s")[0].error == "boom"
    assert store.record(result(trials[0])) is True
    assert store.trials("s")[0].status == "done"


def test_cost_cache(store):
    cost = CostRecord("abc", 10, {"a": 10}, 2_000_000_000, {"a": 2}, "fvcore-mac", (64, 64))
    store.put_cost(cost)
    store.put_cost(cost)  # second writer: no error
    got = store.get_costs(["abc", "zzz"])
    assert list(got) == ["abc"] and got["abc"].gflops == 2.0 and got["abc"].resolution == (64, 64)


def test_sqlite_is_in_wal_mode(tmp_path):
    Store(f"sqlite:///{tmp_path / 'w.db'}")
    con = sqlite3.connect(tmp_path / "w.db")
    assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_old_schema_is_refused_with_the_upgrade_command(tmp_path):
    path = tmp_path / "old.db"
    Store(f"sqlite:///{path}")
    con = sqlite3.connect(path)
    con.execute("UPDATE alembic_version SET version_num = '0000'")
    con.commit()
    with pytest.raises(SchemaVersionError) as info:
        Store(f"sqlite:///{path}")
    assert f"run: ablate db upgrade --db sqlite:///{path}" in str(info.value)


def test_unknown_study_is_a_clear_error(store):
    with pytest.raises(StoreError, match="no study named 'nope'"):
        store.register_trials("nope", [])


def test_schema_head_constant_is_alembic_head():
    from ablate.store.schema import SCHEMA_HEAD, head_revision

    assert SCHEMA_HEAD == head_revision()
