"""A tuned study's statistics against hand-computed values."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pandas as pd
import pytest

from ablate.analysis.tuning import (
    NoDrawLeft,
    choose,
    draw_scores,
    edge_gap,
    edge_of_range,
    expected_best,
    sign_agreement,
    tuning_curve,
)


def test_expected_best_of_n_by_hand():
    # k = 3 draws scoring 1, 3, 2: the best of one draw is their mean, of all three the max;
    # of two (subsets {1,3} {1,2} {3,2}: bests 3, 2, 3) it is 8/3
    scores = np.array([1.0, 3.0, 2.0])
    assert expected_best(scores, 1) == (pytest.approx(2.0), pytest.approx(math.sqrt(2 / 3)))
    mean, sd = expected_best(scores, 2)
    assert mean == pytest.approx(8 / 3)
    assert sd == pytest.approx(math.sqrt(((3 - 8 / 3) ** 2 * 2 + (2 - 8 / 3) ** 2) / 3))
    assert expected_best(scores, 3) == (pytest.approx(3.0), pytest.approx(0.0))


def test_expected_best_is_the_mean_over_every_subset_without_replacement():
    rng = np.random.default_rng(3)
    scores = rng.normal(40, 5, size=7)
    for n in range(1, 8):
        bests = [max(c) for c in itertools.combinations(scores, n)]
        mean, sd = expected_best(scores, n)
        assert mean == pytest.approx(np.mean(bests), rel=1e-12)
        assert sd == pytest.approx(np.std(bests), rel=1e-9, abs=1e-12)


def test_the_with_replacement_estimate_would_be_lower_at_small_n():
    # Dodge et al.'s plug-in estimator draws with replacement; at n = k it still averages
    # over repeats of lower scores, while the unbiased one is the maximum
    scores = np.array([1.0, 2.0, 3.0, 4.0])
    k = len(scores)
    plugin = sum(s * ((i / k) ** k - ((i - 1) / k) ** k) for i, s in enumerate(scores, 1))
    assert plugin < expected_best(scores, k)[0] == 4.0


def test_failed_draws_rank_lowest_and_leave_the_curve_undefined_where_all_could_fail():
    scores = np.array([np.nan, 10.0, np.nan, 20.0])
    assert all(math.isnan(v) for v in expected_best(scores, 2))
    # n = 3: subsets of 3 of 4 always hold a score; the best is 20 unless {nan, 10, nan}
    mean, _ = expected_best(scores, 3)
    assert mean == pytest.approx((10 + 3 * 20) / 4)
    curve = tuning_curve(scores)
    assert curve["draws"].tolist() == [1, 2, 3, 4]
    assert curve["expected"].isna().tolist() == [True, True, False, False]
    assert curve.loc[3, ["expected", "low", "high"]].tolist() == [20.0, 20.0, 20.0]


def test_the_band_stays_within_the_scores():
    curve = tuning_curve(np.array([0.0, 0.0, 0.0, 100.0]))
    assert (curve["low"] >= 0.0).all() and (curve["high"] <= 100.0).all()
    assert curve.loc[0, "expected"] == pytest.approx(25.0)


def test_scores_are_means_over_tuning_seeds_and_a_failed_seed_fails_the_draw():
    cells = pd.DataFrame([
        ("a", 0, 100, 10.0), ("a", 0, 101, 12.0), ("a", 1, 100, 30.0), ("a", 1, 101, np.nan),
        ("b", 0, 100, 5.0), ("b", 0, 101, 7.0), ("b", 1, 100, 1.0), ("b", 1, 101, 3.0),
    ], columns=["config", "draw", "seed", "value"])
    scores = draw_scores(cells)
    assert scores.loc["a"].tolist()[0] == 11.0 and math.isnan(scores.loc["a", 1])
    assert scores.loc["b"].tolist() == [6.0, 2.0]
    assert choose(scores) == {"a": 0, "b": 0}


def test_ties_go_to_the_earlier_draw_and_no_score_left_is_an_error():
    scores = pd.DataFrame([[1.0, 3.0, 3.0]], index=["a"], columns=[0, 1, 2])
    assert choose(scores) == {"a": 1}
    with pytest.raises(NoDrawLeft, match="every draw of configuration 'b' failed"):
        choose(pd.DataFrame([[np.nan, np.nan]], index=["b"], columns=[0, 1]))


def test_sign_agreement():
    assert sign_agreement(-0.5, np.array([-1.0, 2.0, -3.0, np.nan, 0.0])) == (2, 4)
    assert sign_agreement(0.0, np.array([1.0, -1.0])) == (0, 2)
    assert sign_agreement(float("nan"), np.array([1.0])) == (0, 1)


def test_edge_gap_is_a_share_of_the_range_on_the_scale_the_draws_are_spread_on():
    log = {"log_uniform": [1e-4, 1.0]}  # four decades
    assert edge_gap(log, 0.1, "highest") == pytest.approx(0.25)  # a decade below the top
    assert edge_gap(log, 1e-3, "lowest") == pytest.approx(0.25)
    assert edge_gap(log, 1.0, "highest") == 0.0
    assert edge_gap({"uniform": [0.0, 0.5]}, 0.45, "highest") == pytest.approx(0.1)
    assert edge_gap({"int": [1, 9]}, 3, "lowest") == pytest.approx(0.25)
    assert edge_gap({"choice": [64, 16, 32]}, 32, "highest") == pytest.approx(0.5)
    assert edge_gap({"choice": [64, 16, 32]}, 64, "highest") == 0.0


def test_edge_of_range_flags_the_extreme_draws_of_numeric_keys_only():
    draws = [{"lr": 0.1, "opt": "sgd"}, {"lr": 0.01, "opt": "adamw"}, {"lr": 0.5, "opt": "sgd"}]
    assert edge_of_range(draws, 2, "lr") == "highest"
    assert edge_of_range(draws, 1, "lr") == "lowest"
    assert edge_of_range(draws, 0, "lr") is None
    assert edge_of_range(draws, 1, "opt") is None
    assert edge_of_range(draws[:2], 1, "lr") is None  # two values: every pick is an edge
