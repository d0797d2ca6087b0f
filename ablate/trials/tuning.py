"""A tuned study's trials (``[tune]``): the shared draws, the tuning trials, and the
confirmation trials at each configuration's chosen draw (pure).

The draws are one scrambled Sobol sequence (``scipy.stats.qmc.Sobol``, seeded by
``tune.draw_seed``) of ``budget`` points in ``[0, 1)^d``, one dimension per nuisance key, each
mapped onto its range. Every configuration trains the identical draws, so the tuning
phase is itself a paired comparison: draw j of one configuration and draw j of another
differ only in the configuration. A quasi-random sequence covers the ranges more evenly
than independent draws (8 points of one key fall one into each eighth of its range).

A tuning trial is an ordinary trial (an id, a claim, a result) whose spec holds the draw's
values, a tuning seed and, with ``select_on = "holdout"``, ``data.holdout``: it trains on
the rest of the training set and is evaluated on the held-out slice. Its name is
``CONFIG/draw=J/seed=S``; its configuration name is the configuration's own.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import re
import warnings
from dataclasses import dataclass
from typing import Any

from ablate.errors import RecipeError
from ablate.recipes.loader import Recipe
from ablate.recipes.tree import related, set_dotted
from ablate.recipes.tune import Range, Tune, check_holdout
from ablate.trials.expand import (
    DEFAULT_MAX_TRIALS,
    Trial,
    count_trials,
    expand,
    narrow_to_set,
)

SIGNIFICANT = 4  # digits a drawn number keeps: readable names, ids stable across platforms


def draws(tune: Tune) -> list[dict[str, Any]]:
    """The ``budget`` settings every configuration trains, in the sequence's order."""
    import numpy as np  # lazy: loads numpy
    from scipy.stats import qmc  # lazy: loads scipy

    sobol = qmc.Sobol(len(tune.ranges), scramble=True, rng=tune.settings.draw_seed)
    with warnings.catch_warnings():  # any budget is fine; a power of two is best balanced
        warnings.simplefilter("ignore", UserWarning)
        points = np.asarray(sobol.random(tune.settings.budget), dtype=float)
    return [{r.key: map_unit(r, float(u)) for r, u in zip(tune.ranges, row)} for row in points]


def map_unit(rng: Range, u: float) -> Any:
    """A point ``u`` in [0, 1) mapped onto a range (pure)."""
    if rng.kind == "choice":
        return rng.values[min(int(u * len(rng.values)), len(rng.values) - 1)]
    low, high = rng.values
    if rng.kind == "int":
        return min(low + int(u * (high - low + 1)), high)
    if rng.kind == "log_uniform":
        value = math.exp(math.log(low) + u * (math.log(high) - math.log(low)))
    else:
        value = low + u * (high - low)
    return min(max(_round(value), low), high)


def _round(value: float) -> float:
    if value == 0:
        return 0.0
    digits = SIGNIFICANT - 1 - math.floor(math.log10(abs(value)))
    return float(round(value, digits))


@dataclass(frozen=True)
class TuningPlan:
    """A tuned study's first phase: its draws, its tuning trials, and which trial trains
    each (configuration, draw, tuning seed) cell (two draws with one setting share one)."""

    tune: Tune
    draws: list[dict[str, Any]]
    trials: list[Trial]
    cells: list[tuple[str, int, int, str]]  # (configuration, draw, seed, trial id)
    configs: list[str]  # the study's configurations, in the recipe's order
    confirmations: int  # configurations x the study's seeds: the second phase's trials

    def to_json(self) -> dict[str, Any]:
        """What the study records of its tuning set-up: an edit of the section, of a drawn
        value or of any tuning trial shows as a change."""
        return {"section": self.tune.to_json(), "draws": self.draws,
                "cells": [list(cell) for cell in self.cells]}


def plan_tuning(recipe: Recipe, overrides: dict[str, Any] | None = None,
                max_trials: int | None = DEFAULT_MAX_TRIALS,
                merged: list[str] | None = None) -> TuningPlan:
    """The tuning trials of ``recipe`` (which has a ``[tune]`` section) with ``--set``
    ``overrides``; the study's size (both phases) is checked against ``max_trials``.
    Configurations that resolve to one spec are said in ``merged``, as ``expand`` says
    them (once, not once per draw)."""
    tune = recipe.tune
    assert tune is not None, "plan_tuning needs a recipe with [tune]"
    overrides = dict(overrides or {})
    recipe = narrow_to_set(recipe, overrides)  # a --set of an axis key: that point alone
    _check_overrides(recipe, tune, overrides)
    study_seeds = overrides.pop("seeds", recipe.seeds)
    rows = count_trials(dataclasses.replace(recipe, seeds=[0]))  # configurations
    budget, tune_seeds = tune.settings.budget, tune.settings.seeds
    total = rows * budget * len(tune_seeds) + rows * len(study_seeds)
    if max_trials is not None and total > max_trials:
        raise RecipeError(
            recipe.path, f"{total:,} trials ({rows:,} configurations x {budget:,} draws x "
            f"{len(tune_seeds)} tuning seed(s), plus {rows:,} x {len(study_seeds)} seed(s)) "
            f"is more than --max-trials {max_trials:,}; lower the budget or raise "
            "--max-trials", "tune.budget")
    settings = draws(tune)
    base = _tuning_base(recipe, tune)
    trials: list[Trial] = []
    cells: list[tuple[str, int, int, str]] = []
    seen: set[str] = set()
    configs: dict[str, None] = {}
    for index, values in enumerate(settings):
        drawn = copy.deepcopy(base)
        for key, value in values.items():
            set_dotted(drawn, key, value)
        phase = dataclasses.replace(recipe, base=drawn, seeds=list(tune_seeds), tune=None,
                                    pinned={})
        lines: list[str] = []
        for trial in _expand_draw(phase, overrides, tune, index, values, lines):
            configs.setdefault(trial.config_name)
            cells.append((trial.config_name, index, trial.seed, trial.trial_id))
            if trial.trial_id in seen:  # the same setting drawn twice: trained once
                continue
            seen.add(trial.trial_id)
            trials.append(dataclasses.replace(
                trial, name=f"{trial.config_name}/draw={index}/seed={trial.seed}",
                tuning_draw=index))
        if merged is not None:
            merged += [line for line in lines if line not in merged]
    return TuningPlan(tune, settings, trials, cells, list(configs), rows * len(study_seeds))


def _check_overrides(recipe: Recipe, tune: Tune, overrides: dict[str, Any]) -> None:
    for key in overrides:
        if key in tune.keys:
            raise RecipeError(recipe.path, f"--set {key}: tuned by [tune]; to fix it, remove "
                              "it from [tune]", f'tune."{key}"')
    check_holdout(tune, recipe.path, {f"--set {key}": (key, value)
                                      for key, value in overrides.items()})
    seeds = overrides.get("seeds", recipe.seeds)
    overlap = sorted(set(seeds) & set(tune.settings.seeds))
    if overlap:
        raise RecipeError(recipe.path, f"{', '.join(map(str, overlap))} also in the study's "
                          f"seeds {seeds} (--set seeds); tuning seeds must be others",
                          "tune.seeds")


def _tuning_base(recipe: Recipe, tune: Tune) -> dict[str, Any]:
    """The recipe's base as the tuning trials train it: with ``select_on = "holdout"``,
    evaluated on a held-out slice of the training set (and no separate evaluation set)."""
    base = copy.deepcopy(recipe.base)
    if tune.settings.select_on == "holdout":
        base.pop("eval_data", None)
        set_dotted(base, "data.holdout", tune.settings.holdout)
    return base


def _expand_draw(recipe: Recipe, overrides: dict[str, Any], tune: Tune, index: int,
                 values: dict[str, Any], merged: list[str]) -> list[Trial]:
    """One draw's trials; an error a drawn value causes names its ``[tune]`` key."""
    try:
        return expand(recipe, overrides, max_trials=None, merged=merged)
    except RecipeError as err:
        key = (err.key or "").removeprefix("base.")
        # the drawn key itself, a list or table it holds, or a table above it (model.args)
        hit = next((k for k in tune.keys if related(re.sub(r"\[\d+\]", "", key), k)), None)
        if hit is None:
            raise
        raise RecipeError(recipe.path, f"{err.detail} (draw {index}: {values[hit]!r})",
                          f'tune."{hit}"') from None


def fractional_draws(tune: Tune, draw: int) -> list[tuple[Range, float]]:
    """The ``model.args.*`` keys that draw ``draw`` gives a float (from a uniform or log
    range), with their values: what a builder that needs an int there refuses. Model
    arguments have no schema, so only the builder can say; ``dispatch.prepare.blame``
    asks it."""
    values = draws(tune)[draw]
    return [(r, values[r.key]) for r in tune.ranges
            if r.key.startswith("model.args.") and r.kind in ("uniform", "log_uniform")]


def pin(recipe: Recipe, chosen: dict[str, dict[str, Any]]) -> Recipe:
    """``recipe`` with each configuration at its chosen nuisance values: expanding it
    gives the confirmation trials (the study's seeds, the study's evaluation set)."""
    return dataclasses.replace(recipe, pinned={c: dict(v) for c, v in chosen.items()})
