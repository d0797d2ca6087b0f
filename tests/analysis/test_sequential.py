"""Group-sequential boundaries against published values; the loop's error rate by simulation."""

from __future__ import annotations

import math

import numpy as np
import pytest

from ablate.analysis.design import Design
from ablate.analysis.sequential import (
    calibrated_alpha,
    look_statistics,
    looks_for,
    repeated_interval,
    running_intervals,
    t_critical,
    z_boundaries,
)


@pytest.mark.parametrize(("spending", "fractions", "published"), [
    # Lan-DeMets O'Brien-Fleming type, two-sided 0.05 (0.025 a side), equally spaced looks:
    # Jennison & Turnbull (2000), Table 7.6; gsDesign / ldbounds give the same
    ("obrien-fleming", (0.2, 0.4, 0.6, 0.8, 1.0), (4.8769, 3.3569, 2.6803, 2.2898, 2.0310)),
    ("obrien-fleming", (0.25, 0.5, 0.75, 1.0), (4.3326, 2.9631, 2.3590, 2.0141)),
    # Lan-DeMets Pocock type, two-sided 0.05
    ("pocock", (0.2, 0.4, 0.6, 0.8, 1.0), (2.4380, 2.4268, 2.4101, 2.3966, 2.3859)),
])
def test_boundaries_match_published_values(spending, fractions, published):
    assert z_boundaries(fractions, 0.05, spending) == pytest.approx(published, abs=2e-4)


def test_one_look_is_the_fixed_design():
    assert z_boundaries((1.0,), 0.05, "obrien-fleming") == pytest.approx((1.959964,), abs=1e-5)
    from scipy import stats

    assert t_critical((10,), 10, 0.05) == pytest.approx((stats.t.ppf(0.975, 9),), rel=1e-6)


def test_calibration_gives_the_stated_error_rate_on_fresh_paths():
    """Independent paths (another generator seed): the t-read boundaries at the calibrated
    level reject a true null at alpha; read at the nominal level they reject more often."""
    first, max_n, alpha = 1, 10, 0.05
    looks = looks_for(max_n, first, max_n)
    n = np.asarray(looks)
    x = np.random.default_rng(99).standard_normal((100_000, max_n))
    sums, squares = np.cumsum(x, axis=1)[:, n - 1], np.cumsum(x * x, axis=1)[:, n - 1]
    mean = sums / n
    t = np.abs(mean) / np.sqrt((squares - n * mean * mean) / (n - 1) / n)

    def rate(level):
        return float((t > np.asarray(t_critical(looks, max_n, level))).any(axis=1).mean())

    se = math.sqrt(alpha * (1 - alpha) / len(x))
    calibrated = calibrated_alpha(first, max_n, alpha)
    assert calibrated < alpha
    assert abs(rate(calibrated) - alpha) < 3 * se
    assert rate(alpha) > alpha + 3 * se  # the uncalibrated approximation errs


def test_repeated_interval_is_the_running_intersection_and_skips_zero_spread():
    values = np.array([4.0, 4.0, 5.0, 3.0, 4.5])
    rep = repeated_interval(values, 2, 10, 0.05)
    looks = (2, 3, 4, 5)
    crit = t_critical(looks, 10, calibrated_alpha(2, 10, 0.05))
    bounds = [(values[:k].mean() - c * values[:k].std(ddof=1) / math.sqrt(k),
               values[:k].mean() + c * values[:k].std(ddof=1) / math.sqrt(k))
              for k, c in zip(looks, crit) if values[:k].std() > 0]  # look 2: zero spread
    assert len(bounds) == 3
    assert (rep.low, rep.high) == pytest.approx((max(b[0] for b in bounds),
                                                 min(b[1] for b in bounds)))
    assert rep.n == 5 and rep.estimate == pytest.approx(values.mean())
    # seeds past the design's last look are not part of it
    assert repeated_interval(np.r_[values, 100.0], 2, 5, 0.05).n == 5
    assert math.isnan(repeated_interval(np.array([1.0]), 1, 10, 0.05).low)


def test_an_intersection_that_leaves_out_the_looks_mean_reads_the_looks_own_interval():
    """Two seeds that agree by chance make look 2's interval narrow; seeds 3 and 4 move
    the mean outside it. The intersection then holds no estimate the data give (or is
    empty), and the look's own interval, never narrower and as valid, is read."""
    futility = np.array([2.63, 1.83, 1.57])  # the futility stop's at --max-seeds 4
    for values, crit in (([1.0, 1.2, 4.0, 4.0], futility),  # [1.24, 1.36] beside 2.55
                         ([2.0, 2.4, -3.14, -3.14], futility),  # [1.67, 1.95] beside -0.47
                         ([1.0, 1.1, 3.0, 3.0], np.array([2.63, 0.5, 0.5]))):  # empty
        mean, se = look_statistics(np.array(values), (2, 3, 4))
        low, high = running_intervals(mean, se, crit)
        assert (low <= mean).all() and (mean <= high).all(), values
        assert low[1:] == pytest.approx((mean - crit * se)[1:]), values
        assert high[1:] == pytest.approx((mean + crit * se)[1:]), values
    # where the intersection holds the mean it stands, narrower than the look's own
    mean, se = look_statistics(np.array([1.0, 3.0, 2.0, 2.5]), (2, 3, 4))
    low, high = running_intervals(mean, se, np.array([2.63, 1.83, 5.0]))
    assert low[-1] == pytest.approx(mean[1] - 1.83 * se[1]) and low[-1] > mean[-1] - 5.0 * se[-1]
    assert high[-1] < mean[-1] + 5.0 * se[-1]


@pytest.mark.slow
def test_the_loop_keeps_its_error_rate_in_simulated_null_studies():
    """A fast, seeded version of bench/bench_decisions.py: studies grown by the loop's
    real decision code where nothing differs; the share with any 'better'/'worse' must
    stay at alpha. The same studies tested at the full level after every seed (the old
    loop) err far more often, so the simulation can tell the two apart."""
    from ablate.dispatch.simulate import simulate, standard_designs

    one_axis = standard_designs()[0]
    loop = Design("sequential", alpha=0.05, max_seeds=8, start_seeds=1)
    sequential = simulate(one_axis, loop, 1500, seed=11)
    bound = 0.05 + 2 * math.sqrt(0.05 * 0.95 / 1500)
    assert sequential.fwer <= bound, sequential.fwer
    naive = simulate(one_axis, Design("fixed", alpha=0.05, max_seeds=8), 600, seed=11)
    assert naive.fwer > 0.1, naive.fwer
    assert sequential.stops.get("--max-seeds 8 reached", 0) > 1300  # null: runs to the end
