"""A tuned study ([tune]) end to end: one ``ablate run`` trains the tuning trials, records
the selection, then the confirmation trials at each configuration's chosen draw; a second
run (or one after a kill) retrains nothing done; an edited [tune] is refused."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from ablate.cli import main
from ablate.dispatch.adaptive import next_seed
from ablate.store import Store
from ablate.trials.lifecycle import TrialStatus

EXAMPLE = str(Path(__file__).resolve().parents[2] / "examples" / "fair_lr")

# the flagship's model, shrunk: 2 configurations x 4 draws x 1 tuning seed + 2 x 2 seeds
RECIPE = """
name = "tuned"
seeds = [0, 1]
[base.model]
builder = "fair_lr.model:build"
[base.model.args]
width = 4
[base.data]
name = "shapes"
classes = 3
image_size = 16
train_images = 20
val_images = 8
[base.train]
optimizer = "sgd"
lr = 0.01
momentum = 0.9
iterations = 6
batch_size = 4
log_every = 3
[base.eval]
batch_size = 8
latency = false
flops = false
[variants.plain]
"model.args.scale" = 1.0
[variants.scaled]
"model.args.scale" = 10.0
[tune]
budget = 4
seeds = [100]
"train.lr" = { log_uniform = [1e-3, 1.0] }
"""


@pytest.fixture(autouse=True)
def example_on_path(monkeypatch):
    monkeypatch.syspath_prepend(EXAMPLE)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([EXAMPLE, os.environ.get("PYTHONPATH", "")]))


LOSSES = 2  # iterations / log_every: the training losses one training records


def trained(store: Store) -> dict[str, tuple[int, object]]:
    """Each done trial's name -> (training losses recorded, when it finished): a trial
    trained again would record more losses and finish later."""
    return {r.name: ([e.key for e in store.epoch_metrics("tuned", r.trial_id)]
                     .count("train_loss"), r.finished_at)
            for r in store.trials("tuned") if r.status == TrialStatus.DONE}


def check_finished(store: Store) -> dict:
    records = store.trials("tuned")
    tuning = [r for r in records if r.tuning_draw is not None]
    confirm = [r for r in records if r.tuning_draw is None]
    assert len(tuning) == 8 and sorted(r.tuning_draw for r in tuning) == [0, 0, 1, 1, 2, 2, 3, 3]
    assert {r.seed for r in tuning} == {100} and {r.seed for r in confirm} == {0, 1}
    assert sorted(r.name for r in confirm) == ["plain/seed=0", "plain/seed=1",
                                                "scaled/seed=0", "scaled/seed=1"]
    assert all(r.status == TrialStatus.DONE for r in confirm)
    # each arm's tuning trials trained on the held-out slice, its confirmations did not
    assert {r.spec["data"].get("holdout") for r in tuning} == {0.2}
    assert {r.spec["data"].get("holdout") for r in confirm} == {None}
    record = store.study_tunings(["tuned"])["tuned"]
    draws, chosen = record["setup"]["draws"], record["selection"]["chosen"]
    for r in confirm:  # each confirmation trains its configuration's chosen learning rate
        assert r.spec["train"]["lr"] == draws[chosen[r.config_name]]["train.lr"]
    # the chosen draw is the best-scoring one of each arm
    for config, scores in record["selection"]["scores"].items():
        finite = [(s, -j) for j, s in enumerate(scores) if s is not None]
        assert chosen[config] == -max(finite)[1]
    return record


@pytest.mark.slow
def test_one_run_does_both_phases_and_a_second_run_retrains_nothing(tmp_path):
    recipe = tmp_path / "tuned.toml"
    recipe.write_text(RECIPE)
    db = str(tmp_path / "t.db")
    args = ["run", str(recipe), "--db", db, "--runs-dir", str(tmp_path / "runs")]
    out = CliRunner().invoke(main, args)
    assert out.exit_code == 0, out.output  # a diverged draw would be a failed draw, not a failure
    assert "tuning: best of 4 draws (train.lr)" in out.output
    store = Store(db)
    record = check_finished(store)
    before = trained(store)
    assert {losses for losses, _ in before.values()} == {LOSSES}

    again = CliRunner().invoke(main, args)
    assert "chosen before (recorded with the study)" in again.output, again.output
    assert trained(store) == before  # nothing retrained, nothing new
    assert store.study_tunings(["tuned"])["tuned"] == record

    # an edited [tune] is refused before anything runs: its draws would mix
    recipe.write_text(RECIPE.replace("budget = 4", "budget = 5"))
    edited = CliRunner().invoke(main, args)
    assert edited.exit_code == 2
    (line,) = edited.output.strip().splitlines()
    assert line == (f"Error: {recipe}: tune: study 'tuned' was tuned with another set-up "
                    "(tune.budget: 4 -> 5); its draws and selection hold for that set-up "
                    "only. Restore it, or give the study a new name")
    assert trained(store) == before


def test_plan_warns_of_an_edited_tune_that_run_refuses(tmp_path):
    """``ablate plan`` shows what ``ablate run`` would do: an edited [tune] of a recorded
    study is a warning there (it planned the edited study without a word)."""
    from ablate.dispatch.tuning import RECORD_VERSION, tuning_plan
    from ablate.recipes.loader import load_recipe

    recipe = tmp_path / "tuned.toml"
    recipe.write_text(RECIPE)
    db = str(tmp_path / "t.db")
    store = Store(db)  # the set-up a first run records before it trains
    loaded = load_recipe(recipe)
    store.upsert_study(loaded.name, loaded.description, loaded.path, loaded.text)
    setup = json.loads(json.dumps(tuning_plan(loaded, {}).to_json()))
    store.set_study_tuning("tuned", {"version": RECORD_VERSION, "setup": setup,
                                     "selection": None})
    args = ["plan", str(recipe), "--db", db, "--no-cost"]
    same = CliRunner().invoke(main, args)
    assert same.exit_code == 0 and "another set-up" not in same.output, same.output
    recipe.write_text(RECIPE.replace("budget = 4", "budget = 5"))
    edited = CliRunner().invoke(main, args)
    assert edited.exit_code == 0, edited.output
    assert (f"Warning: {recipe}: tune: study 'tuned' was tuned with another set-up "
            "(tune.budget: 4 -> 5);") in edited.stderr
    assert "(`ablate run` refuses this recipe)" in edited.stderr


def done_count(db: Path) -> int:
    try:
        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
        try:
            return con.execute("SELECT count(*) FROM trials WHERE status = 'done'").fetchone()[0]
        finally:
            con.close()
    except sqlite3.Error:  # not created yet
        return 0


@pytest.mark.slow
@pytest.mark.parametrize("kill_after", [2, 9])  # mid-tuning; mid-confirmation
def test_killed_anywhere_the_same_command_finishes_without_retraining(tmp_path, kill_after):
    recipe = tmp_path / "tuned.toml"
    recipe.write_text(RECIPE)
    db = tmp_path / "k.db"
    command = [sys.executable, "-m", "ablate", "run", str(recipe), "--db", str(db),
               "--runs-dir", str(tmp_path / "runs")]
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    try:
        deadline = time.monotonic() + 300
        while done_count(db) < kill_after:
            assert proc.poll() is None, "the run ended before it could be killed"
            assert time.monotonic() < deadline, f"{kill_after} trials not done within 300 s"
            time.sleep(0.05)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    store = Store(str(db))
    done_before = trained(store)
    assert len(done_before) >= kill_after
    again = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert again.returncode in (0, 1), again.stdout + again.stderr
    check_finished(store)
    after = trained(store)
    assert all(after[name] == done for name, done in done_before.items())  # none retrained
    assert {losses for losses, _ in after.values()} == {LOSSES}


def test_plan_shows_both_phases_and_the_count(tmp_path):
    recipe = tmp_path / "tuned.toml"
    recipe.write_text(RECIPE)
    out = CliRunner().invoke(main, ["plan", str(recipe), "--no-cost", "--json"])
    assert out.exit_code == 0, out.output
    rows = json.loads(out.output)
    phases = [(r["name"], r["phase"], r["status"]) for r in rows]
    assert phases[:2] == [("plain/draw=0/seed=100", "tune", "pending"),
                          ("scaled/draw=0/seed=100", "tune", "pending")]
    assert sum(p == "tune" for _, p, _ in phases) == 8  # 4 draws x 2 configurations x 1 seed
    assert phases[8:] == [(f"{c}/seed={s}", "confirm", "waiting on selection")
                          for c in ("plain", "scaled") for s in (0, 1)]
    table = CliRunner().invoke(main, ["plan", str(recipe), "--no-cost"])
    assert ("Two phases: 8 tuning trial(s) (4 draws x 2 configuration(s) x 1 tuning seed(s);"
            in " ".join(table.output.split()))


@pytest.mark.parametrize("cost", [[], ["--no-cost"]])
def test_plan_names_the_tune_key_whose_fractional_draws_the_model_refuses(tmp_path, cost):
    recipe = tmp_path / "tuned.toml"
    recipe.write_text(RECIPE + '"model.args.width" = { uniform = [2.0, 8.0] }\n')
    db = tmp_path / "t.db"
    out = CliRunner().invoke(main, ["plan", str(recipe), "--db", str(db), *cost])
    assert out.exit_code == 2, out.output
    # before: "trial plain/draw=0/seed=100: model.builder: fair_lr.model:build raised
    # ValueError: out_channels must be divisible by groups", with no word of [tune]
    assert out.output == (
        f'Error: {recipe}: tune."model.args.width": uniform [2, 8] draws 7.785 (draw 0), and '
        "with it model.builder: fair_lr.model:build raised ValueError: out_channels must be "
        "divisible by groups; with 8 it builds: the builder needs an int there, give "
        "{ int = [2, 8] }\n")
    assert not db.exists()


def test_a_run_refused_for_a_draw_records_nothing_so_the_fixed_range_is_not_refused(
        tmp_path):
    recipe = tmp_path / "tuned.toml"
    recipe.write_text(RECIPE + '"model.args.width" = { uniform = [2.0, 8.0] }\n')
    db = str(tmp_path / "t.db")
    args = ["run", str(recipe), "--db", db, "--runs-dir", str(tmp_path / "runs")]
    out = CliRunner().invoke(main, args)
    assert out.exit_code == 2, out.output
    assert out.output.splitlines()[-1].startswith(f'Error: {recipe}: tune."model.args.width": ')
    # before: the study and its [tune] set-up were recorded, and the run with the range
    # the error asks for was refused as "tuned with another set-up"
    store = Store(db)
    assert store.studies() == [] and store.study_tunings(["tuned"]) == {}


def test_plan_keeps_the_builders_error_when_integers_fail_too(tmp_path):
    recipe = tmp_path / "tuned.toml"
    recipe.write_text(RECIPE.replace("width = 4", "width = 4\ndepth = 2")
                      + '"model.args.width" = { uniform = [2.0, 8.0] }\n')
    out = CliRunner().invoke(main, ["plan", str(recipe), "--no-cost"])
    assert out.exit_code == 2, out.output
    # the rounded draw fails as well: the draw is not to blame, the builder's line stays
    assert out.output == (f"Error: {recipe}: trial plain/draw=0/seed=100: model.args.depth: "
                          "fair_lr.model:build has no argument 'depth'; allowed: width, scale\n")


def test_a_fractional_draw_the_model_takes_plans(tmp_path):
    recipe = tmp_path / "tuned.toml"
    recipe.write_text(RECIPE.replace('[variants.plain]\n"model.args.scale" = 1.0\n', "")
                      .replace('[variants.scaled]\n"model.args.scale" = 10.0\n', "")
                      + '"model.args.scale" = { log_uniform = [1.0, 10.0] }\n')
    out = CliRunner().invoke(main, ["plan", str(recipe), "--no-cost", "--json"])
    assert out.exit_code == 0, out.output
    assert len(json.loads(out.output)) == 4 + 2  # 4 draws x 1 configuration, 2 seeds


def test_until_decided_adds_seeds_the_selection_never_saw():
    assert next_seed([0, 1]) == 2
    assert next_seed([0, 1], reserved=[2, 3, 100]) == 4  # tuning seeds 2, 3 skipped
    assert next_seed([0, 5], reserved=[100]) == 6
