"""A tuned study ([tune]) at its edges, end to end through ``ablate run``: the
``--until-decided`` loop growing the confirmation trials, ``--budget`` covering both
phases, and every draw of a configuration failing."""

from __future__ import annotations

import json
import os
import sys
from datetime import timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner

from ablate.cli import main
from ablate.recipes.loader import parse_recipe
from ablate.store import Store
from ablate.trials.expand import expand
from ablate.trials.lifecycle import TrialResult, TrialStatus

EXAMPLE = str(Path(__file__).resolve().parents[2] / "examples" / "fair_lr")

# two configurations that train the same function bit for bit (the variant changes only
# how often the loss is logged): their effect is exactly null, so no look can decide it.
# The tuning seed 2 is the seed --until-decided would add next if it did not skip it.
LOOP = """
name = "tuned"
seeds = [0, 1]
[base.model]
builder = "BUILDER"
[base.model.args]
width = 4
scale = 1.0
[base.data]
name = "shapes"
classes = 3
image_size = 16
train_images = 12
val_images = 8
[base.train]
optimizer = "sgd"
lr = 0.01
momentum = 0.9
iterations = 2
batch_size = 4
log_every = 1
[base.eval]
batch_size = 8
latency = false
flops = false
[variants.a]
"train.log_every" = 1
[variants.b]
"train.log_every" = 2
[tune]
budget = 2
seeds = [2]
"train.lr" = { log_uniform = [1e-3, 1.0] }
"""


def loop_recipe(builder: str = "fair_lr.model:build") -> str:
    return LOOP.replace("BUILDER", builder)


@pytest.fixture(autouse=True)
def example_on_path(monkeypatch):
    monkeypatch.syspath_prepend(EXAMPLE)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([EXAMPLE, os.environ.get("PYTHONPATH", "")]))


def trained(store: Store) -> dict[str, tuple[int, object]]:
    """Each finished trial's name -> (training losses recorded, when it finished): a
    trial trained again would record more losses and finish later."""
    return {r.name: ([e.key for e in store.epoch_metrics("tuned", r.trial_id)]
                     .count("train_loss"), r.finished_at)
            for r in store.trials("tuned") if r.status.finished}


@pytest.mark.slow
def test_until_decided_grows_the_confirmation_at_the_chosen_values_on_fresh_seeds(tmp_path):
    recipe = tmp_path / "tuned.toml"
    recipe.write_text(loop_recipe())
    db = str(tmp_path / "t.db")
    args = ["run", str(recipe), "--db", db, "--runs-dir", str(tmp_path / "runs")]
    first = CliRunner().invoke(main, args)  # both phases, no loop
    assert first.exit_code == 0, first.output
    store = Store(db)
    before = trained(store)
    assert sorted(before) == ["a/draw=0/seed=2", "a/draw=1/seed=2", "a/seed=0", "a/seed=1",
                              "b/draw=0/seed=2", "b/draw=1/seed=2", "b/seed=0", "b/seed=1"]

    grown = CliRunner().invoke(main, [*args, "--until-decided", "--max-seeds", "3"])
    assert grown.exit_code == 0, grown.output
    out = grown.output
    # the first look cannot decide a null effect; seed 3 is added (2 is the tuning seed)
    assert "open     variant: a -> b: inconclusive (n=2, zero spread)" in out
    assert "seed 3 for 2 configuration(s): a, b" in out
    assert "open     variant: a -> b: inconclusive (n=3, zero spread)" in out
    assert "stopped: --max-seeds 3 reached" in out

    after = trained(store)
    assert {n: after[n] for n in before} == before  # nothing retrained, tuning included
    assert sorted(set(after) - set(before)) == ["a/seed=3", "b/seed=3"]
    records = store.trials("tuned")
    tuning = [r for r in records if r.tuning_draw is not None]
    confirm = [r for r in records if r.tuning_draw is None]
    assert len(tuning) == 4 and {r.seed for r in tuning} == {2}  # no tuning trial added
    assert sorted(r.seed for r in confirm) == [0, 0, 1, 1, 3, 3]
    record = store.study_tunings(["tuned"])["tuned"]
    draws, chosen = record["setup"]["draws"], record["selection"]["chosen"]
    for r in confirm:  # the added seed trains each configuration's pinned choice
        assert r.spec["train"]["lr"] == draws[chosen[r.config_name]]["train.lr"]
        assert r.spec["data"].get("holdout") is None  # and is read on the study's own set

    # the effects are read on the confirmation trials only: seeds 0, 1, 3, never 2
    report = CliRunner().invoke(main, ["report", "--db", db, "--effects", "--json"])
    assert report.exit_code == 0, report.output
    (effect,) = json.loads(report.output)["effects"]
    assert effect["seeds"] == [0, 1, 3] and effect["n"] == 3
    assert effect["seed_diffs"] == [0.0, 0.0, 0.0]
    assert effect["method"] == "paired t (seeds); tuned (best of 2 draws)"


# --budget: the loop recipe's architecture measured in another study at 600 s a trial on
# 2 threads (1/3 cpu-h), so every figure is exact and no clock is read
SLURM2 = ["--executor", "slurm", "--cpus-per-trial", "2", "--array-parallelism", "2"]


def measured_elsewhere(db: str) -> None:
    """A study without [tune] that trained both architectures: their measured time."""
    store = Store(db)
    recipe = parse_recipe(loop_recipe().replace('name = "tuned"', 'name = "measured"')
                          .split("[tune]")[0], "measured.toml")
    trials = expand(recipe)
    store.upsert_study(recipe.name)
    store.register_trials(recipe.name, trials)
    start = store.database_time()
    for trial in trials:
        store.record(TrialResult(
            recipe.name, trial.trial_id, TrialStatus.DONE,
            started_at=(start + timedelta(seconds=1)).isoformat(),
            finished_at=(start + timedelta(seconds=601)).isoformat(),
            final={"miou": 0.5, "steps": 2.0}, environment={"device": "cpu", "threads": 2}))


def test_a_budget_too_small_for_both_phases_is_refused_before_anything_runs(tmp_path):
    recipe = tmp_path / "tuned.toml"
    recipe.write_text(loop_recipe().replace("seeds = [0, 1]", "seeds = [0, 1, 3]"))
    db = str(tmp_path / "b.db")
    measured_elsewhere(db)
    args = ["run", str(recipe), "--db", db, "--runs-dir", str(tmp_path / "runs"), *SLURM2]
    # 4 tuning trials (2 draws x 2 configurations) + 6 confirmation trials (2 x 3 seeds),
    # 1/3 cpu-h each = 3.33 cpu-h: either phase alone (1.33, 2) fits 3 cpu-h, both do not
    over = CliRunner().invoke(main, [*args, "--budget", "3cpu-h"])
    assert over.exit_code == 2, over.output
    assert over.output == ("Error: --budget 3 cpu-h: the study needs about 3.33 cpu-h "
                           "more (10 trial(s)) and 0 cpu-h are spent, over 3 cpu-h; "
                           "nothing ran\n")
    store = Store(db)
    # nothing recorded: no study, trial, set-up or estimate
    assert [s.name for s in store.studies()] == ["measured"]
    assert store.trials("tuned") == [] and store.study_tunings(["tuned"]) == {}
    assert store.estimates(["tuned"]) == []
    assert not (tmp_path / "runs").exists()

    # the plan counts the same trials; --until-decided grows the confirmation from its 3
    # seeds (the tuning seed is not one of them): to 4 seeds, the 10 trials and one round
    # of 2
    plan = CliRunner().invoke(main, ["plan", str(recipe), "--db", db, "--no-cost", *SLURM2,
                                     "--until-decided", "--max-seeds", "4"])
    assert plan.exit_code == 0, plan.output
    out = " ".join(plan.output.split())
    assert ("study: 10 trials, 50 min 00 s wall, 3.33 cpu-h; left to run: 10 trials, "
            "50 min 00 s wall, 3.33 cpu-h") in out, out
    assert ("--until-decided, to run at worst (every configuration to 4 seeds): 12 trials, "
            "1 h 00 min wall, 4 cpu-h") in out, out


def test_a_rerun_after_the_selection_estimates_only_the_confirmation_trials(tmp_path):
    """Once the selection is recorded the tuning trials run no more, failed draws
    included; the estimate had counted those draws (`estimate: 2 trials`, then `0 run`)."""
    from ablate.dispatch.tuning import _plain, tuning_plan
    from ablate.trials.tuning import pin

    path = tmp_path / "tuned.toml"
    path.write_text(loop_recipe())
    recipe = parse_recipe(loop_recipe(), str(path))
    plan = tuning_plan(recipe, {})
    confirm = expand(pin(recipe, {c: plan.draws[0] for c in plan.configs}), {})
    db = str(tmp_path / "s.db")
    store = Store(db)
    store.upsert_study(recipe.name, recipe.description, recipe.path, recipe.text)
    store.register_trials(recipe.name, [*plan.trials, *confirm])
    start = store.database_time()
    for trial in [*plan.trials, *confirm[:-1]]:  # draw 1 diverged; b/seed=1 still to run
        ok = trial.tuning_draw != 1
        store.record(TrialResult(
            recipe.name, trial.trial_id, TrialStatus.DONE if ok else TrialStatus.FAILED,
            started_at=start.isoformat(), finished_at=(start + timedelta(seconds=60)).isoformat(),
            final={"miou": 0.5, "steps": 2.0} if ok else {}, error=None if ok else "diverged",
            environment={"device": "cpu", "threads": 2}))
    store.set_study_tuning(recipe.name, {
        "version": 1, "setup": _plain(plan.to_json()),
        "selection": {"metric": "miou", "chosen": {c: 0 for c in plan.configs},
                      "scores": {c: [0.5, None] for c in plan.configs}}})

    plan_out = CliRunner().invoke(main, ["plan", str(path), "--db", db, "--no-cost"])
    assert plan_out.exit_code == 0, plan_out.output
    out = " ".join(plan_out.output.split())
    assert "left to run: 1 trial, 1 min 00 s wall" in out, out
    assert "the tuning trials run no more (2 failed, not retried)" in out, out
    run = CliRunner().invoke(main, ["run", str(path), "--db", db, "--budget", "0.5min",
                                    "--runs-dir", str(tmp_path / "runs")])
    assert run.exit_code == 2, run.output
    # b/seed=1 alone (the failed draws made it 3 min 00 s)
    assert "the study needs about 1 min 00 s more on local" in run.output, run.output


BROKEN = '''
"""The scaled arm's model, with a bug: it fails as soon as it trains (with gradients: the
pre-run check runs it in training mode without them, so the bug is found by the trials)."""
import torch
from fair_lr.model import build as plain_build
from torch import nn


class Broken(nn.Module):
    def __init__(self, inner):
        super().__init__()
        self.inner = inner

    def forward(self, x):
        if self.training and torch.is_grad_enabled():
            raise RuntimeError("the bug: this arm cannot train")
        return self.inner(x)


def build(*, num_classes, width=16, scale=1.0):
    return Broken(plain_build(num_classes=num_classes, width=width, scale=scale))
'''
FIXED = BROKEN.replace('raise RuntimeError("the bug: this arm cannot train")', "pass  # fixed")


@pytest.mark.slow
def test_every_draw_of_a_configuration_failing_stops_and_a_rerun_after_the_fix_finishes(
        tmp_path, monkeypatch):
    models = tmp_path / "models"
    models.mkdir()
    (models / "flaky_model.py").write_text(BROKEN)
    monkeypatch.syspath_prepend(str(models))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(models), os.environ["PYTHONPATH"]]))
    monkeypatch.setenv("PYTHONDONTWRITEBYTECODE", "1")  # the fixed file is read afresh
    recipe = tmp_path / "tuned.toml"
    # arm a: the example's model; arm b: the same at scale 10, through the broken builder
    recipe.write_text(loop_recipe()
                      .replace('"train.log_every" = 1', '"model.args.scale" = 1.0')
                      .replace('"train.log_every" = 2', '"model.args.scale" = 10.0\n'
                               '"model.builder" = "flaky_model:build"'))
    db = str(tmp_path / "f.db")
    args = ["run", str(recipe), "--db", db, "--runs-dir", str(tmp_path / "runs")]
    stopped = CliRunner().invoke(main, args)
    assert stopped.exit_code == 1, stopped.output
    assert ("tuning stopped: every draw of configuration 'b' failed; nothing to choose. Fix "
            "what fails and run the same command again (the failed tuning trials run "
            "again); other ranges are another set-up: give that study another name"
            in " ".join(stopped.output.split())), stopped.output
    assert "Traceback" not in stopped.output
    # a RuntimeError is not known to be deterministic: b's draws were run once more first
    assert ("retrying 2 failed tuning trial(s) once before the selection (2 RuntimeError)"
            in " ".join(stopped.output.split())), stopped.output
    store = Store(db)
    assert sorted((r.name, r.attempts) for r in store.trials("tuned")) == [
        ("a/draw=0/seed=2", 1), ("a/draw=1/seed=2", 1),
        ("b/draw=0/seed=2", 2), ("b/draw=1/seed=2", 2)]
    first = {r.trial_id: (r.name, r.status, r.finished_at) for r in store.trials("tuned")}
    assert sorted((n, s) for n, s, _ in first.values()) == [
        ("a/draw=0/seed=2", TrialStatus.DONE), ("a/draw=1/seed=2", TrialStatus.DONE),
        ("b/draw=0/seed=2", TrialStatus.FAILED), ("b/draw=1/seed=2", TrialStatus.FAILED)]
    assert all("the bug: this arm cannot train" in (r.error or "")
               for r in store.trials("tuned") if r.status == TrialStatus.FAILED)
    assert store.study_tunings(["tuned"])["tuned"]["selection"] is None  # none recorded

    # a rerun without a fix trains the failed draws again and stops the same way
    again = CliRunner().invoke(main, args)
    assert again.exit_code == 1 and "tuning stopped: every draw of configuration 'b'" in \
        " ".join(again.output.split())
    assert {t: (n, s) for t, (n, s, _) in first.items()} == \
        {r.trial_id: (r.name, r.status) for r in store.trials("tuned")}

    # other ranges are refused (they would mix draws), as the line says
    text = recipe.read_text()
    recipe.write_text(text.replace("[1e-3, 1.0]", "[1e-3, 0.1]"))
    refused = CliRunner().invoke(main, args)
    assert refused.exit_code == 2 and "was tuned with another set-up" in refused.output
    recipe.write_text(text)

    # the bug fixed: b's tuning trials are new trials (their code changed), a's stay done
    (models / "flaky_model.py").write_text(FIXED)
    monkeypatch.delitem(sys.modules, "flaky_model", raising=False)
    fixed = CliRunner().invoke(main, args)
    assert fixed.exit_code == 0, fixed.output
    assert "chosen: each configuration's best draw" in fixed.output
    after = {r.trial_id: (r.name, r.status, r.finished_at) for r in store.trials("tuned")}
    a_done = {t: v for t, v in first.items() if v[1] == TrialStatus.DONE}
    assert {t: after[t] for t in a_done} == a_done  # not retrained
    new = sorted((n, s) for t, (n, s, _) in after.items() if t not in first)
    assert new == [("a/seed=0", TrialStatus.DONE), ("a/seed=1", TrialStatus.DONE),
                   ("b/draw=0/seed=2", TrialStatus.DONE), ("b/draw=1/seed=2", TrialStatus.DONE),
                   ("b/seed=0", TrialStatus.DONE), ("b/seed=1", TrialStatus.DONE)]
    record = store.study_tunings(["tuned"])["tuned"]
    cells = {trial_id for *_, trial_id in record["setup"]["cells"]}
    assert cells == {t for t, (n, *_) in after.items() if "/draw=" in n and t not in
                     {t for t, v in first.items() if v[1] == TrialStatus.FAILED}}
    assert all(v is not None for row in record["selection"]["scores"].values() for v in row)


def test_other_tuning_trials_are_new_trials_before_the_selection_and_refused_after(tmp_path):
    from ablate.dispatch.tuning import check_recorded, tuning_plan
    from ablate.errors import RecipeError

    recipe = parse_recipe(loop_recipe(), "tuned.toml")
    plan = tuning_plan(recipe, {})
    setup = json.loads(json.dumps(plan.to_json()))
    old_cells = [[c, d, s, "0" * 12 + t[12:]] for c, d, s, t in setup["cells"]]  # other ids
    store = Store(str(tmp_path / "r.db"))
    store.upsert_study("tuned")

    def recorded(selection, **changes):
        record = {"version": 1, "setup": {**setup, "cells": old_cells, **changes},
                  "selection": selection}
        store.set_study_tuning("tuned", record)
        return record

    record = recorded(None)  # before the selection: the new cells are new trials
    assert check_recorded(store, recipe, plan) == record
    recorded({"metric": "miou", "chosen": {"a": 0, "b": 0}, "scores": {}})
    with pytest.raises(RecipeError, match=r"another set-up \(the recipe or --set changed "
                                          r"what a tuning trial trains\)"):
        check_recorded(store, recipe, plan)
    recorded(None, draws=[{"train.lr": 0.5}, setup["draws"][1]])  # other draws: refused
    with pytest.raises(RecipeError, match=r"the same section drew other values"):
        check_recorded(store, recipe, plan)


def test_the_chosen_lines_say_how_many_draws_of_each_configuration_failed():
    # the count was one figure over every configuration's cells ("4 draw(s) failed" for
    # two of four draws failing in each arm), which hid whose budget the failures cut
    from ablate.cli.study_view import tuning_lines
    from ablate.dispatch.events import DrawsChosen

    event = DrawsChosen({"plain": (0, {"train.batch_size": 4}, 23.83),
                         "scaled": (2, {"train.batch_size": 8}, 30.5)}, "miou", True,
                        {"plain": 2, "scaled": 0}, 4)
    assert tuning_lines(event)[1:] == [
        "  plain: draw 0 (train.batch_size=4), miou 23.83; 2 of its 4 draws failed (no "
        "score, never chosen)",
        "  scaled: draw 2 (train.batch_size=8), miou 30.50"]


DIVERGING = '''
"""The example's model, whose loss becomes NaN when it trains with ``poison`` set (with
gradients: the pre-run check runs it in training mode without them)."""
import torch
from fair_lr.model import build as plain_build
from torch import nn


class Poisoned(nn.Module):
    def __init__(self, inner, poison):
        super().__init__()
        self.inner, self.poison = inner, poison

    def forward(self, x):
        out = self.inner(x)
        return out * float("nan") if self.poison and torch.is_grad_enabled() else out


def build(*, num_classes, width=16, scale=1.0, poison=False):
    return Poisoned(plain_build(num_classes=num_classes, width=width, scale=scale), poison)
'''


@pytest.mark.slow
def test_a_diverged_draw_is_a_failed_draw_and_the_run_exits_0(tmp_path, monkeypatch):
    """docs/fair-comparisons.md said the flagship's tuned run exits 1 because two draws
    diverge; a diverged draw is a failed draw (no score, never chosen), not a failure of
    the run: it exits 0 once the confirmation trials are done."""
    models = tmp_path / "models"
    models.mkdir()
    (models / "poisoned_model.py").write_text(DIVERGING)
    monkeypatch.syspath_prepend(str(models))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(models), os.environ["PYTHONPATH"]]))
    recipe = tmp_path / "tuned.toml"
    # the same 2 draws for both arms: one poisoned (its loss NaN), one not
    recipe.write_text(loop_recipe("poisoned_model:build").replace(
        '"train.lr" = { log_uniform = [1e-3, 1.0] }',
        '"model.args.poison" = { choice = [false, true] }'))
    db = str(tmp_path / "d.db")
    out = CliRunner().invoke(main, ["run", str(recipe), "--db", db,
                                    "--runs-dir", str(tmp_path / "runs")])
    text = " ".join(out.output.split())
    assert out.exit_code == 0, out.output
    assert "retrying" not in text  # a diverged loss is not retried
    assert text.count("1 of its 2 draws failed (no score, never chosen)") == 2, text  # a, b
    store = Store(db)
    statuses = sorted((r.name, r.status) for r in store.trials("tuned"))
    assert [s for n, s in statuses if "/draw=" in n].count(TrialStatus.FAILED) == 2
    assert all(s == TrialStatus.DONE for n, s in statuses if "/draw=" not in n), statuses
    assert all((r.error or "").startswith("TrialFailed: loss became")
               for r in store.trials("tuned") if r.status == TrialStatus.FAILED)
