"""The seeds --until-decided is expected to use, simulated with the loop's own rule."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest
from scipy import stats

from ablate.analysis.design import FUTILITY_POWER, SEQUENTIAL, Design
from ablate.analysis.expected import contrast_sd, detectable, expected_seeds
from ablate.analysis.stats import PAIRED, WELCH

K10 = Design(SEQUENTIAL, alpha=0.05, max_seeds=10, start_seeds=2)


def test_one_effect_matches_the_reviewed_simulation():
    # the review's 200,000 paths per row (issue 29): 9.91 seeds under no effect, 8.23 at
    # the effect with 80% power by 10 seeds; 2,000 studies here (se about 0.01 and 0.05)
    assert expected_seeds(K10, 1, 0.0) == pytest.approx(9.91, abs=0.06)
    assert expected_seeds(K10, 1, detectable(K10, 1)) == pytest.approx(8.23, abs=0.15)


def test_a_study_stops_with_its_last_effect():
    effect = detectable(K10, 1)
    one, three = expected_seeds(K10, 1, effect), expected_seeds(K10, 3, effect)
    assert three > one  # the largest of three stops, each at alpha / 3
    # an effect no interval can miss is decided at the first look (2 seeds); Pocock's
    # first critical value is finite enough for it (O'Brien-Fleming's at 1 df is ~1e8)
    pocock = Design(SEQUENTIAL, alpha=0.05, max_seeds=10, start_seeds=2, spending="pocock")
    assert expected_seeds(pocock, 4, 1e7) == 2.0


def test_a_margin_brings_the_futility_stop_and_fewer_seeds_under_no_effect():
    with_margin = Design(SEQUENTIAL, alpha=0.05, max_seeds=10, start_seeds=2, min_effect=1.0,
                         futility_power=FUTILITY_POWER)
    null = expected_seeds(with_margin, 1, 0.0, margin=1.0)
    assert null < expected_seeds(K10, 1, 0.0) - 2.0
    # the margin is ignored by a design without one
    assert expected_seeds(K10, 1, 0.0, margin=1.0) == expected_seeds(K10, 1, 0.0)


def test_contrast_sd_inverts_a_paired_interval():
    per_seed = np.array([1.0, 3.0, 2.0, 6.0])
    n, sd = len(per_seed), float(per_seed.std(ddof=1))
    level = 0.05 / 3
    half = stats.t.ppf(1 - level / 2, n - 1) * sd / math.sqrt(n)
    row = SimpleNamespace(n=n, method=PAIRED, ci_low=per_seed.mean() - half,
                          ci_high=per_seed.mean() + half, ci_level=1 - level)
    assert contrast_sd(row) == pytest.approx(sd, rel=1e-9)
    assert contrast_sd(SimpleNamespace(**{**vars(row), "method": WELCH})) is None
    assert contrast_sd(SimpleNamespace(**{**vars(row), "ci_low": math.nan})) is None
