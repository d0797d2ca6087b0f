"""The store contract, against SQLite and the real PostgreSQL alike.

Also: a database of the released schema (0001) is upgraded by ``ablate db upgrade`` with
its data intact.
"""

from __future__ import annotations

import shutil
from datetime import datetime
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import create_engine, text

from ablate.cli import main
from ablate.errors import SchemaVersionError, StoreError
from ablate.recipes.loader import parse_recipe
from ablate.store import CostRecord, Store
from ablate.store.schema import current_revision, head_revision
from ablate.trials.expand import expand
from ablate.trials.lifecycle import TrialResult, TrialStatus

FIXTURES = Path(__file__).parent.parent / "fixtures"
RECIPE = """
name = "c"
description = "contract"
seeds = [0, 1]
[grid]
"model.keep_last_expansion" = [true, false]
"""


@pytest.fixture
def trials():
    return expand(parse_recipe(RECIPE, "c.toml"))


@pytest.fixture
def store(db_url):
    store = Store(db_url)
    yield store
    store.close()


def result(trial, status="done", miou=0.5, error=None):
    return TrialResult(
        "c", trial.trial_id, TrialStatus(status), error=error,
        run_dir=f"/runs/{trial.trial_id}",
        final={"miou": miou, "iou/cat": 0.25} if status == "done" else {},
        epochs=[{"epoch": 1, "step": 4, "metrics": {"train_loss": 1.5, "val_miou": 0.4}},
                {"epoch": 2, "step": 8, "metrics": {"train_loss": 1.0}}],
        environment={"torch": "2.14.1", "host": "n1"},
        weights_report={"loaded": 3}, started_at="2026-01-01T00:00:00",
        finished_at="2026-01-01T00:01:30")


def test_study_and_trials_round_trip(store, trials):
    study = store.upsert_study("c", "contract", "c.toml", RECIPE)
    assert (study.name, study.description, study.recipe_path) == ("c", "contract", "c.toml")
    again = store.upsert_study("c")  # no recipe text: an existing study is left as it was
    assert again.id == study.id and again.description == "contract"
    assert [s.name for s in store.studies()] == ["c"]
    assert store.register_trials("c", trials) == 4
    assert store.register_trials("c", trials) == 0
    records = store.trials("c")
    assert [r.trial_id for r in records] == [t.trial_id for t in trials]
    first = records[0]
    assert (first.name, first.config_name, first.variant, first.seed) == (
        trials[0].name, trials[0].config_name, trials[0].variant, 0)
    assert first.axes == trials[0].axes and first.arch_id == trials[0].arch_id
    assert first.spec["model"]["keep_last_expansion"] is True
    assert first.status == "pending" and first.metrics == {} and first.job_id is None


def test_statuses_move_pending_running_done_failed_and_back(store, trials):
    store.upsert_study("c")
    store.register_trials("c", trials)
    a, b, c = (t.trial_id for t in trials[:3])
    assert store.submitted("c", a, "/runs/a", "17_0")
    assert store.submitted("c", b)
    store.record(TrialResult.failure("c", c, "boom"))
    assert store.statuses("c") == {a: "running", b: "running", c: "failed",
                                   trials[3].trial_id: "pending"}
    rec = {r.trial_id: r for r in store.trials("c")}
    assert (rec[a].run_dir, rec[a].job_id) == ("/runs/a", "17_0")
    assert rec[c].error == "boom" and isinstance(rec[c].finished_at, datetime)
    assert [r.trial_id for r in store.trials("c", status=TrialStatus.RUNNING)] == [a, b]
    store.reset("c", [a, c])
    assert store.statuses("c")[a] == "pending" and store.statuses("c")[c] == "pending"
    assert {r.trial_id: r.error for r in store.trials("c")}[c] is None


def test_ingest_is_idempotent_and_keeps_every_figure(store, trials):
    store.upsert_study("c")
    store.register_trials("c", trials)
    assert store.record(result(trials[0])) is True
    assert store.record(result(trials[0], miou=0.9)) is False  # done stays done
    assert not store.submitted("c", trials[0].trial_id)  # a late "start" cannot undo done
    rec = store.trials("c")[0]
    assert rec.status == "done" and rec.metrics == {"miou": 0.5, "iou/cat": 0.25}
    assert rec.environment == {"torch": "2.14.1", "host": "n1"}
    assert rec.weights_report == {"loaded": 3} and rec.run_dir == f"/runs/{trials[0].trial_id}"
    assert rec.started_at == datetime(2026, 1, 1, 0, 0, 0)
    assert rec.finished_at == datetime(2026, 1, 1, 0, 1, 30)
    epochs = store.epoch_metrics("c", trials[0].trial_id)
    assert [(e.epoch, e.step, e.key, e.value) for e in epochs] == [
        (1, 4, "train_loss", 1.5), (1, 4, "val_miou", 0.4), (2, 8, "train_loss", 1.0)]
    assert store.trials("c", with_metrics=False)[0].metrics == {}


def test_failed_result_then_a_rerun_replaces_it(store, trials):
    store.upsert_study("c")
    store.register_trials("c", trials[:1])
    tid = trials[0].trial_id
    assert store.record(result(trials[0], "failed", error="Traceback: boom")) is True
    rec = store.trials("c")[0]
    assert (rec.status, rec.error, rec.metrics) == ("failed", "Traceback: boom", {})
    assert len(store.epoch_metrics("c", tid)) == 3
    assert store.record(result(trials[0], miou=0.75)) is True
    rec = store.trials("c")[0]
    assert (rec.status, rec.error, rec.metrics["miou"]) == ("done", None, 0.75)
    assert len(store.epoch_metrics("c", tid)) == 3  # replaced, not added


def test_costs_round_trip_and_a_second_writer_is_harmless(store):
    cost = CostRecord("arch1", 1234, {"backbone": 1000, "head": 234}, 3_000_000_000,
                      {"backbone": 2_000_000_000}, "fvcore-mac", (512, 1024), {"note": "x"})
    store.put_cost(cost)
    store.put_cost(cost)
    got = store.get_costs(["arch1", "missing"])
    assert list(got) == ["arch1"] and got["arch1"] == cost and got["arch1"].gflops == 3.0
    store.put_cost(CostRecord("arch2", 1, {}, None, None, None, (8, 8)))
    assert store.get_costs(["arch2"])["arch2"].gflops is None


def test_unknown_study_and_trial_are_clear_errors(store):
    with pytest.raises(StoreError, match="no study named 'nope'"):
        store.register_trials("nope", [])
    store.upsert_study("c")
    with pytest.raises(StoreError, match="no trial abc in study 'c'"):
        store.submitted("c", "abc")


def test_another_schema_is_refused_with_the_upgrade_command(db_url):
    Store(db_url).close()
    engine = create_engine(db_url)
    with engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = '0000'"))
    engine.dispose()
    with pytest.raises(SchemaVersionError) as info:
        Store(db_url)
    assert str(info.value) == (
        f"database {db_url} has schema 0000, this ablate needs {head_revision()}; "
        f"run: ablate db upgrade --db {db_url}")


def test_released_schema_0001_database_upgrades_with_its_data(tmp_path):
    copy = tmp_path / "old.db"
    shutil.copy(FIXTURES / "schema_0001.db", copy)
    url = f"sqlite:///{copy}"
    engine = create_engine(url)
    assert current_revision(engine) == "0001"
    engine.dispose()

    out = CliRunner().invoke(main, ["db", "upgrade", "--db", str(copy)])
    assert out.exit_code == 0, out.output
    assert out.output == f"{url}: schema 0001 -> {head_revision()}\n"

    store = Store(url)
    assert [(s.name, s.description) for s in store.studies()] == [
        ("released", "written by ablate 0.1.0 (schema 0001)")]
    (trial,) = store.trials("released")
    assert (trial.trial_id, trial.status, trial.metrics) == ("7fa5eb647608", "done", {"miou": 0.42})
    assert trial.environment == {"ablate": "0.1.0"}
    assert [(e.epoch, e.key, e.value) for e in store.epoch_metrics("released", trial.trial_id)] == [
        (1, "train_loss", 1.25)]
