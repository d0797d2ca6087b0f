"""Probability of improvement against rliable's formula, computed independently here
(scipy's Mann-Whitney U over run pairs, as ``rliable.metrics.probability_of_improvement``
does), its bootstrap against a plain loop over the same draws, and the per-seed
differences of a 2 x 2 study by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import mannwhitneyu

from ablate.analysis.effects import effect_cells, effects_table
from ablate.analysis.improvement import (
    REPLICATES,
    SEED,
    improvement,
    per_seed_differences,
    probability_of_improvement,
    seed_columns,
)
from tests.analysis.test_effects import two_by_two


def rliable_poi(x_tasks: list[np.ndarray], y_tasks: list[np.ndarray]) -> float:
    """rliable: per task U / (N K) with U from scipy's Mann-Whitney (x greater, ties 1/2);
    identical score arrays count 1/2; the mean over tasks."""
    out = []
    for x, y in zip(x_tasks, y_tasks):
        if np.array_equal(x, y):
            out.append(0.5)
            continue
        u, _p = mannwhitneyu(x, y, alternative="greater")
        out.append(u / (len(x) * len(y)))
    return float(np.mean(out))


def test_matches_rliable_on_random_strata_with_ties_and_holes():
    rng = np.random.default_rng(7)
    for _ in range(200):
        tasks, runs = int(rng.integers(1, 5)), int(rng.integers(2, 7))
        new = rng.integers(0, 6, size=(tasks, runs)).astype(float)  # small ints: many ties
        old = rng.integers(0, 6, size=(tasks, runs)).astype(float)
        new[rng.random(new.shape) < 0.2] = np.nan  # runs that did not finish
        keep = [(a[~np.isnan(a)], b[~np.isnan(b)]) for a, b in zip(new, old)]
        keep = [(a, b) for a, b in keep if len(a) and len(b)]
        expected = rliable_poi([a for a, _ in keep], [b for _, b in keep]) if keep else math.nan
        assert probability_of_improvement(new, old) == pytest.approx(expected, nan_ok=True)


def test_by_hand():
    # cell 1: new 1, 2, 3 against old 2, 2: (0 + 0) + (1/2 + 1/2) + (1 + 1) over 6 = 1/2
    # cell 2: new 5 against old 4, 6: (1 + 0) / 2 = 1/2; mean 1/2
    new = np.array([[1.0, 2.0, 3.0], [5.0, np.nan, np.nan]])
    old = np.array([[2.0, 2.0, np.nan], [4.0, 6.0, np.nan]])
    assert probability_of_improvement(new, old) == pytest.approx(0.5)
    assert probability_of_improvement(np.array([[3.0, 4.0]]), np.array([[1.0, 2.0]])) == 1.0


def loop_paired(new: np.ndarray, old: np.ndarray, level: float, reps: int, seed: int):
    """The paired bootstrap as a loop: draw seed indices, resample every stratum's runs on
    both sides with them, rliable's P on the resample; percentiles."""
    complete = ~np.isnan(new).any(axis=0) & ~np.isnan(old).any(axis=0)
    x, y = new[:, complete], old[:, complete]
    n = x.shape[1]
    draws = np.random.default_rng(seed).integers(0, n, size=(reps, n))
    values = [rliable_poi(list(x[:, d]), list(y[:, d])) for d in draws]
    tail = (1 - level) / 2
    return rliable_poi(list(x), list(y)), *np.quantile(values, [tail, 1 - tail])


def loop_independent(new: np.ndarray, old: np.ndarray, level: float, reps: int, seed: int):
    """rliable's stratified independent bootstrap as a loop (draws: stratum by stratum,
    new then old, as the vectorised code takes them)."""
    rng = np.random.default_rng(seed)
    strata = [(a[~np.isnan(a)], b[~np.isnan(b)]) for a, b in zip(new, old)]
    draws = [(rng.integers(0, len(a), size=(reps, len(a))),
              rng.integers(0, len(b), size=(reps, len(b)))) for a, b in strata]
    values = [rliable_poi([a[da[r]] for (a, _), (da, _) in zip(strata, draws)],
                          [b[db[r]] for (_, b), (_, db) in zip(strata, draws)])
              for r in range(reps)]
    tail = (1 - level) / 2
    return (rliable_poi([a for a, _ in strata], [b for _, b in strata]),
            *np.quantile(values, [tail, 1 - tail]))


@pytest.mark.parametrize("case", range(6))
def test_bootstrap_matches_a_plain_loop_on_random_inputs(case):
    rng = np.random.default_rng(100 + case)
    tasks, seeds = int(rng.integers(1, 4)), int(rng.integers(3, 7))
    new = rng.normal(50.0, 2.0, size=(tasks, seeds)) + rng.normal(0, 1.0)
    old = rng.normal(50.0, 2.0, size=(tasks, seeds))
    level = 0.95 if case % 2 else 1 - 0.05 / 3
    got = improvement(new, old, level, reps=300, seed=case)
    assert got.paired
    assert (got.p, got.low, got.high) == pytest.approx(loop_paired(new, old, level, 300, case))
    # no seed pairs up on both sides: each configuration's runs resampled on their own
    new[:, 0] = np.nan
    old[:, 1:] = np.nan
    old = np.hstack([old, rng.normal(50.0, 2.0, size=(tasks, 3))])
    new = np.hstack([new, np.full((tasks, 3), np.nan)])
    got = improvement(new, old, level, reps=300, seed=case)
    assert not got.paired
    assert (got.p, got.low, got.high) == pytest.approx(
        loop_independent(new, old, level, 300, case))


def test_interval_is_missing_below_two_runs_and_deterministic():
    one = improvement(np.array([[1.0, np.nan]]), np.array([[0.0, 5.0]]), 0.95)
    assert one.p == 0.5 and math.isnan(one.low) and math.isnan(one.high)
    a = improvement(np.array([[3.0, 1.0, 2.0]]), np.array([[0.0, 2.0, 1.0]]), 0.95)
    b = improvement(np.array([[3.0, 1.0, 2.0]]), np.array([[0.0, 2.0, 1.0]]), 0.95)
    assert (a.low, a.high) == (b.low, b.high) and REPLICATES >= 1000 and SEED == 0


def test_per_seed_differences_and_columns_of_a_two_by_two_study():
    """two_by_two: per seed A = [1, 2, 3], B = [31, 30, 32], A x B = [2, 0, 4].

    P for A (0 -> 1): cell b=0 new 50, 52, 51 against old 50 x 3: (1/2 + 1 + 1) / 3 = 5/6;
    cell b=1 new 82, 82, 85 against 80 x 3: 1; mean 11/12. B: every run at b=1 (80+) beats
    every run at b=0 (<= 52): 1.
    """
    trials = two_by_two()
    effects = effects_table(trials)
    table = seed_columns(effects, effect_cells(trials)).set_index(["kind", "axis"])
    a, b, ab = table.loc[("main", "a")], table.loc[("main", "b")], table.loc[("interaction", "a x b")]
    assert a["seeds"] == [0, 1, 2] and a["seed_diffs"] == pytest.approx([1.0, 2.0, 3.0])
    assert b["seed_diffs"] == pytest.approx([31.0, 30.0, 32.0])
    assert ab["seed_diffs"] == pytest.approx([2.0, 0.0, 4.0])
    assert np.mean(a["seed_diffs"]) == pytest.approx(a["estimate"])
    assert a["p_improve"] == pytest.approx(11 / 12) and b["p_improve"] == 1.0
    assert (b["p_improve_low"], b["p_improve_high"]) == (1.0, 1.0)
    assert 0.5 <= a["p_improve_low"] <= 11 / 12 <= a["p_improve_high"] <= 1.0
    assert math.isnan(ab["p_improve"])  # a difference of differences has no "run at B"
    # the JSON names every column; lists come out as lists
    assert list(table.columns[-5:]) == ["p_improve", "p_improve_low", "p_improve_high", "seeds",
                                        "seed_diffs"]


def test_welch_effect_has_no_seed_points():
    trials = two_by_two()
    trials.loc[trials["axis:a"] == 1, "seed"] += 10  # the two levels share no seed
    effects = effects_table(trials)
    table = seed_columns(effects, effect_cells(trials)).set_index(["kind", "axis"])
    a = table.loc[("main", "a")]
    assert a["method"] == "Welch t" and a["seeds"] == [] and a["seed_diffs"] == []
    assert 0.0 <= a["p_improve_low"] <= a["p_improve"] <= a["p_improve_high"] <= 1.0


def test_per_seed_differences_weights_cells_alike():
    # two cells of B and of A; seed 1 missing in one cell: only seeds 0 and 2 pair
    new = np.array([[3.0, 5.0, 4.0], [6.0, np.nan, 8.0]])
    old = np.array([[1.0, 1.0, 1.0], [2.0, 2.0, 2.0]])
    seeds, diffs = per_seed_differences([(new, 1.0), (old, -1.0)], np.array([10, 11, 12]))
    assert seeds == [10, 12]
    assert diffs == pytest.approx([((3 - 1) + (6 - 2)) / 2, ((4 - 1) + (8 - 2)) / 2])
