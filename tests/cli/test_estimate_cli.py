"""``ablate plan``'s time estimate, ``ablate run --budget`` and ``ablate report
--estimates`` through the CLI, on databases whose trial times we write."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from click.testing import CliRunner

from ablate.cli import main
from ablate.recipes.loader import load_recipe
from ablate.store import Store
from ablate.trials.expand import expand
from ablate.trials.lifecycle import TrialResult, TrialStatus

# the slurm executor's figures do not depend on this machine's cores
SLURM2 = ["--executor", "slurm", "--cpus-per-trial", "2", "--array-parallelism", "2"]


def measured_db(tmp_path, tiny_recipe, seconds=(600, 300), start=None) -> str:
    """The tiny study's seed 0 done: its two architectures took ``seconds`` on 2 threads."""
    db = str(tmp_path / "m.db")
    store = Store(db)
    recipe = load_recipe(str(tiny_recipe))
    trials = expand(recipe)
    store.upsert_study(recipe.name)
    store.register_trials(recipe.name, trials)
    start = start or store.database_time()
    for trial, took in zip(trials, seconds, strict=True):
        store.record(TrialResult(
            recipe.name, trial.trial_id, TrialStatus.DONE,
            started_at=(start + timedelta(seconds=1)).isoformat(),
            finished_at=(start + timedelta(seconds=1 + took)).isoformat(),
            final={"miou": 0.5, "steps": 2.0}, environment={"device": "cpu", "threads": 2}))
    return db


def test_plan_estimates_from_done_trials_per_configuration_and_in_total(tmp_path, tiny_recipe):
    db = measured_db(tmp_path, tiny_recipe)
    result = CliRunner().invoke(main, ["plan", str(tiny_recipe), "--db", db, "--no-cost",
                                       "--set", "seeds=[0,1,2]", *SLURM2])
    assert result.exit_code == 0, result.output
    out = result.output
    assert "time on slurm, at most 2 trials at a time (--array-parallelism), 2 CPU threads" in out
    assert "keep_last_expansion=true" in out and "10 min 00 s" in out and "5 min 00 s" in out
    assert "measured (1 trial)" in out
    # every trial in order, 600 600 600 300 300 300 s on 2 slots: one slot runs
    # 600 + 600 + 300 = 1,500 s; 2,700 s x 2 threads = 1.5 cpu-h. Left: 600 600 300 300
    assert ("study: 6 trials, 25 min 00 s wall, 1.5 cpu-h; left to run: 4 trials, "
            "15 min 00 s wall, 1 cpu-h") in out
    rows = json.loads(CliRunner().invoke(main, [
        "plan", str(tiny_recipe), "--db", db, "--no-cost", "--json", *SLURM2]).output)
    assert [(r["seconds"], r["time_source"]) for r in rows] == [
        (600.0, "measured (1 trial)"), (300.0, "measured (1 trial)")]


def test_plan_without_a_measure_says_unknown_and_the_loop_cases(tmp_path, tiny_recipe):
    result = CliRunner().invoke(main, ["plan", str(tiny_recipe), "--no-cost", *SLURM2])
    assert result.exit_code == 0, result.output
    assert "study: 2 trials, time unknown (2 without an estimate)" in result.output
    assert "'ablate plan --probe' times a few training steps" in result.output
    db = measured_db(tmp_path, tiny_recipe)
    result = CliRunner().invoke(main, ["plan", str(tiny_recipe), "--db", db, "--no-cost",
                                       "--until-decided", "--max-seeds", "4", *SLURM2])
    assert result.exit_code == 0, result.output
    # worst: seeds 1..3 added, a round of 2 trials each (600 s wall, 0.5 cpu-h a round)
    assert ("--until-decided, to run at worst (every configuration to 4 seeds): 6 trials, "
            "30 min 00 s wall, 1.5 cpu-h") in result.output
    assert "--until-decided, to run if no effect (" in result.output


@pytest.mark.parametrize("value", [
    "", "20", "20gpu-hours", "2hr", "-1h", "0cpu-h", "inf", "infh", "nan", "nancpu-h",
    "1e999h", "5000000cpu-h", "20 gpuh",
])
def test_bad_budget_values_exit_2_with_one_line_and_record_nothing(tmp_path, tiny_recipe,
                                                                    value):
    db = tmp_path / "b.db"
    result = CliRunner().invoke(main, ["run", str(tiny_recipe), "--db", str(db),
                                       "--budget", value])
    assert result.exit_code == 2, result.output
    assert result.output.startswith(f"Error: --budget {value!r}: ")
    assert len(result.output.strip().splitlines()) == 1 and "Traceback" not in result.output
    assert not db.exists()


def test_a_gpu_budget_for_a_cpu_run_is_refused_before_the_database(tmp_path, tiny_recipe):
    db = tmp_path / "b.db"
    result = CliRunner().invoke(main, ["run", str(tiny_recipe), "--db", str(db),
                                       "--budget", "20gpu-h"])
    assert result.exit_code == 2
    assert result.output.startswith("Error: --budget 20gpu-h: this run trains on the CPU")
    assert not db.exists()


def test_a_study_over_budget_is_refused_with_its_estimate(tmp_path, tiny_recipe):
    db = measured_db(tmp_path, tiny_recipe)
    before = [t.trial_id for t in Store(db).trials("tiny")]
    result = CliRunner().invoke(main, ["run", str(tiny_recipe), "--db", db, "--set",
                                       "seeds=[0,1]", "--budget", "0.5cpu-h", *SLURM2])
    assert result.exit_code == 2
    # (600 + 300) s x 2 threads spent = 0.5 cpu-h; seed 1 needs as much again
    assert result.output == ("Error: --budget 0.5 cpu-h: the study needs about 0.5 cpu-h "
                             "more (2 trial(s)) and 0.5 cpu-h are spent, over 0.5 cpu-h; "
                             "nothing ran\n")
    assert [t.trial_id for t in Store(db).trials("tiny")] == before


def test_report_sets_each_runs_estimate_beside_its_actual_time(tmp_path, tiny_recipe):
    store = Store(str(tmp_path / "m.db"))
    store.upsert_study("tiny")
    recorded = store.record_estimate("tiny", {
        "resources": {"executor": "local", "kind": "cpu", "slots": 1, "devices_per_trial": 2},
        "left": {"trials": 2, "unknown": 0, "wall_s": 1000.0, "device_h": 0.5},
        "worst": None, "unit": "cpu-h"})
    db = measured_db(tmp_path, tiny_recipe, start=recorded.created_at)
    result = CliRunner().invoke(main, ["report", "--db", db, "--estimates", "--json"])
    assert result.exit_code == 0, result.output
    (row,) = json.loads(result.output)
    # the run's trials finished 601 s after its start; 900 s x 2 threads = 0.5 cpu-h
    assert row["trials"] == 2 and row["wall_s"] == pytest.approx(601.0)
    assert row["wall_ratio"] == pytest.approx(0.601)
    assert row["device_h"] == pytest.approx(0.5) and row["device_h_estimated"] == 0.5
    table = CliRunner().invoke(main, ["report", "--db", db, "--estimates"]).output
    assert "estimate against actual" in table and "16 min 40 s" in table and "0.60" in table


@pytest.mark.slow
def test_a_probe_is_timed_once_and_then_read_from_the_cache(tiny_recipe):
    args = ["plan", str(tiny_recipe), "--no-cost", "--json", *SLURM2]
    probed = CliRunner().invoke(main, [*args, "--probe"])
    assert probed.exit_code == 0, probed.output
    assert "probing" in probed.output  # on stderr, mixed in by CliRunner
    rows = json.loads(probed.output[probed.output.index("["):])
    assert all(r["time_source"] == "probe" and r["seconds"] > 0 for r in rows)
    again = CliRunner().invoke(main, args)
    assert [r["seconds"] for r in json.loads(again.output)] == [r["seconds"] for r in rows]


SMALL_QUICKSTART = ["--set", "data.train_images=48", "--set", "data.val_images=16",
                    "--set", "train.epochs=1"]


@pytest.mark.slow
def test_the_estimate_from_done_trials_holds_within_30_percent_on_a_small_quickstart(
        tmp_path):
    """The quick-start at 12 steps a trial: seed 0 measures each architecture, then the
    run of seed 1 records its estimate and takes within 30% of it (in this process, one
    trial at a time: the same conditions for the measure and the run)."""
    db = str(tmp_path / "q.db")
    base = ["recipes/quickstart.toml", "--db", db, *SMALL_QUICKSTART]
    first = CliRunner().invoke(main, ["run", *base, "--set", "seeds=[0]"])
    assert first.exit_code == 0, first.output
    planned = CliRunner().invoke(main, ["plan", *base, "--set", "seeds=[0,1]", "--json",
                                        "--no-cost"])
    rows = json.loads(planned.output)
    assert all(r["time_source"] == "measured (1 trial)" for r in rows)
    left = sum(r["seconds"] for r in rows if r["status"] == "pending")
    second = CliRunner().invoke(main, ["run", *base, "--set", "seeds=[0,1]"])
    assert second.exit_code == 0, second.output
    assert "estimate: 4 trials," in second.output
    report = CliRunner().invoke(main, ["report", "--db", db, "--estimates", "--json"])
    row = json.loads(report.output)[-1]
    assert row["trials"] == 4 and row["wall_estimated_s"] == pytest.approx(left)
    assert 0.7 <= row["wall_ratio"] <= 1.3, row
