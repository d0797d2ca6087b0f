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


@pytest.mark.slow
def test_a_run_records_the_estimate_its_measured_trials_give_and_the_report_reads_it(
        tmp_path, tiny_recipe):
    """Seed 0 measures each architecture; the plan of seeds 0-1 gives each new trial its
    architecture's measured time; the run of seed 1 records that estimate, and the report
    sets it beside the run's own trials. Times are not pinned (the machine is shared):
    the quick-start's figures are in docs/benchmarks.md."""
    db = str(tmp_path / "q.db")
    base = [str(tiny_recipe), "--db", db]
    first = CliRunner().invoke(main, ["run", *base])
    assert first.exit_code == 0, first.output
    measured = {t.arch_id: t.seconds for t in Store(db).trial_times(study="tiny")}
    planned = CliRunner().invoke(main, ["plan", *base, "--set", "seeds=[0,1]", "--json",
                                        "--no-cost"])
    rows = json.loads(planned.output)
    pending = [r for r in rows if r["status"] == "pending"]
    assert [r["seed"] for r in pending] == [1, 1]
    assert all(r["time_source"] == "measured (1 trial)" for r in rows)
    assert [r["seconds"] for r in pending] == [measured[r["arch_id"]] for r in pending]
    second = CliRunner().invoke(main, ["run", *base, "--set", "seeds=[0,1]"])
    assert second.exit_code == 0, second.output
    assert "estimate: 2 trials," in second.output
    unmeasured, recorded = Store(db).estimates(["tiny"])  # the first run's, then this one's
    ran = [t for t in Store(db).trial_times(study="tiny") if t.seed == 1]
    report = CliRunner().invoke(main, ["report", "--db", db, "--estimates", "--json"])
    before, row = json.loads(report.output)
    assert unmeasured.estimate["left"]["unknown"] == 2
    assert before["trials"] == 2 and before["wall_ratio"] is None  # nothing to compare
    # one worker: the estimate is the two trials one after the other
    assert row["trials"] == 2 and row["wall_estimated_s"] == pytest.approx(
        sum(r["seconds"] for r in pending))
    wall = (max(t.finished_at for t in ran) - recorded.created_at).total_seconds()
    assert row["wall_s"] == pytest.approx(wall)
    assert row["wall_ratio"] == pytest.approx(wall / row["wall_estimated_s"])
