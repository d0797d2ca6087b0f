"""A tuned study's trials: the same draws for every configuration, mapped onto their ranges,
tuning trials that hold out part of the training set, confirmation trials at the chosen
draw (pure: no training, no database)."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

from ablate.recipes.loader import parse_recipe
from ablate.recipes.tune import Range
from ablate.trials.expand import expand
from ablate.trials.tuning import draws, map_unit, pin, plan_tuning

RECIPE = """
name = "tuned"
seeds = [0, 1]
[base.model]
backbone = "mobilenet_v3_small"
head = "lraspp"
[base.data]
name = "shapes"
classes = 3
image_size = 32
[base.eval_data]
name = "shapes"
classes = 3
image_size = 32
images = 8
[grid]
"model.keep_last_expansion" = [true, false]
[variants.a]
[variants.b]
"model.head" = "deeplabv3"
"model.aspp_channels" = 64
[tune]
budget = 8
seeds = [100, 101]
"train.lr" = { log_uniform = [1e-4, 1.0] }
"train.momentum" = { uniform = [0.8, 0.95] }
"train.warmup_steps" = { int = [0, 3] }
"train.optimizer" = { choice = ["sgd", "adamw"] }
"""


@pytest.fixture
def recipe():
    return parse_recipe(RECIPE, "tuned.toml")


def test_every_configuration_trains_the_identical_draws(recipe):
    plan = plan_tuning(recipe)
    assert len(plan.draws) == 8 and plan.configs == [
        "a[keep_last_expansion=true]", "a[keep_last_expansion=false]",
        "b[keep_last_expansion=true]", "b[keep_last_expansion=false]"]
    settings = {}  # (draw, seed) -> the nuisance values each configuration trained
    by_id = {t.trial_id: t for t in plan.trials}
    for config, draw, seed, trial_id in plan.cells:
        spec = by_id[trial_id].spec
        values = (spec.train.lr, spec.train.momentum, spec.train.warmup_steps, spec.train.optimizer)
        assert values == tuple(plan.draws[draw].values())
        settings.setdefault((draw, seed), set()).add(values)
        assert spec.seed == seed and by_id[trial_id].config_name == config
    assert len(settings) == 8 * 2 and all(len(v) == 1 for v in settings.values())
    assert len(plan.cells) == 4 * 8 * 2 and plan.confirmations == 4 * 2


def test_draws_are_one_scrambled_sobol_sequence_seeded_by_the_recipe(recipe):
    first = draws(recipe.tune)
    assert draws(recipe.tune) == first  # the same recipe, the same draws
    other = dataclasses.replace(recipe.tune, settings=recipe.tune.settings.model_copy(
        update={"draw_seed": 1}))
    assert draws(other) != first
    # a quasi-random sequence: 8 log-uniform learning rates fall one into each eighth of
    # the 4 decades (independent draws would leave about a third of the eighths empty)
    eighths = sorted(int((math.log10(d["train.lr"]) + 4) / 0.5) for d in first)
    assert eighths == list(range(8))
    for d in first:
        assert 0.8 <= d["train.momentum"] <= 0.95 and d["train.warmup_steps"] in (0, 1, 2, 3)
        assert d["train.optimizer"] in ("sgd", "adamw")
    assert {d["train.optimizer"] for d in first} == {"sgd", "adamw"}


def test_map_unit_onto_each_kind_of_range():
    log = Range("train.lr", "log_uniform", (1e-4, 1.0))
    assert map_unit(log, 0.0) == 1e-4 and map_unit(log, 0.5) == 0.01
    assert map_unit(log, 0.25) == 0.001 and map_unit(log, 0.999999) == 1.0
    assert map_unit(Range("k", "uniform", (0.8, 0.9)), 0.5) == 0.85
    ints = Range("k", "int", (0, 3))
    assert [map_unit(ints, u) for u in (0.0, 0.24, 0.25, 0.74, 0.75, 0.999)] == [0, 0, 1, 2, 3, 3]
    choice = Range("k", "choice", ("sgd", "adamw", "x"))
    assert [map_unit(choice, u) for u in (0.0, 0.34, 0.67)] == ["sgd", "adamw", "x"]
    # four significant digits: readable names, and ids no platform's last bit can move
    assert map_unit(log, 0.123456) == 0.0003118


def test_tuning_trials_hold_out_part_of_the_training_set_and_confirmations_do_not(recipe):
    plan = plan_tuning(recipe)
    names = {t.name for t in plan.trials}
    assert "b[keep_last_expansion=false]/draw=7/seed=101" in names
    for trial in plan.trials:
        assert trial.spec.data.holdout == 0.2 and trial.tuning_draw is not None
        assert trial.spec.eval_data.name is None  # the held-out images are the evaluation set
    chosen = {c: plan.draws[i % 8] for i, c in enumerate(plan.configs)}
    confirm = expand(pin(recipe, chosen))
    assert len(confirm) == 8 and {t.seed for t in confirm} == {0, 1}
    for trial in confirm:
        assert trial.spec.data.holdout == 0.0 and trial.spec.eval_data.name == "shapes"
        assert trial.spec.train.lr == chosen[trial.config_name]["train.lr"]
        assert trial.tuning_draw is None
    # a confirmation trial is the trial the same values set by hand would be
    flat = {k.removeprefix("train."): v for k, v in chosen["a[keep_last_expansion=true]"].items()}
    by_hand = dataclasses.replace(recipe, tune=None, base={**recipe.base, "train": flat})
    same = [t for t in expand(by_hand) if t.config_name == "a[keep_last_expansion=true]"]
    assert {t.trial_id for t in same} == {t.trial_id for t in confirm
                                          if t.config_name == "a[keep_last_expansion=true]"}


def test_validation_reuse_keeps_the_evaluation_set(recipe):
    tune = dataclasses.replace(recipe.tune, settings=recipe.tune.settings.model_copy(
        update={"select_on": "validation"}))
    plan = plan_tuning(dataclasses.replace(recipe, tune=tune))
    assert {t.spec.data.holdout for t in plan.trials} == {0.0}
    assert {t.spec.eval_data.name for t in plan.trials} == {"shapes"}


def test_a_setting_drawn_twice_trains_once_and_serves_both_draws():
    text = RECIPE.split("[tune]")[0] + (
        '[tune]\nbudget = 4\nseeds = [100]\n"train.optimizer" = { choice = ["sgd", "adamw"] }\n')
    plan = plan_tuning(parse_recipe(text, "t.toml"))
    assert len(plan.cells) == 4 * 4 and len(plan.trials) == 4 * 2
    for config in plan.configs:
        ids = [t for c, _d, _s, t in plan.cells if c == config]
        assert len(set(ids)) == 2  # four draws, two settings


def test_untuned_trial_ids_do_not_change(recipe):
    untuned = dataclasses.replace(recipe, tune=None)
    assert [t.trial_id for t in expand(untuned)] == [
        t.trial_id for t in expand(parse_recipe(RECIPE.split("[tune]")[0], "tuned.toml"))]
    assert np.all([t.spec.data.holdout == 0 for t in expand(untuned)])


def test_variants_a_set_makes_one_are_said_once_not_per_draw(recipe):
    merged: list[str] = []
    plan = plan_tuning(recipe, {"model.head": "deeplabv3", "model.aspp_channels": 64},
                       merged=merged)
    assert plan.configs == ["a[keep_last_expansion=true]", "a[keep_last_expansion=false]"]
    assert merged == ["--set model.head=deeplabv3 --set model.aspp_channels=64 make variants "
                      "a and b the same configuration; it runs once, as a"]
