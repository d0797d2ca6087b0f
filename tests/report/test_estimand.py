"""One estimand per row: Δ mIoU and its interval from the same seeds; Pareto marks signed."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from ablate.report.build import baseline_intervals, pareto_marks
from ablate.report.frame import config_frame
from ablate.report.tables import add_baseline


def trial(config, seed, miou, params):
    return {"study": "u", "config_name": config, "variant": config, "seed": seed,
            "status": "done", "miou": miou, "pixel_acc": 0.9, "params": params, "gflops": 1.0,
            "flops_convention": "x", "resolution": "32x32", "latency_ms": 1.0}


def unbalanced() -> pd.DataFrame:
    """``small`` beats ``big`` by 2 points on the seeds both ran (0, 1, 2), but ``big``
    has an extra lucky seed 7, so its mean over all seeds is higher."""
    rows = [trial("small", s, v, 1000.0) for s, v in ((0, 52.0), (1, 54.1), (2, 56.0))]
    rows += [trial("big", s, v, 2000.0) for s, v in ((0, 50.0), (1, 52.0), (2, 54.1),
                                                      (7, 90.0))]
    return pd.DataFrame(rows)


def test_baseline_delta_and_interval_come_from_the_paired_seeds():
    trials = unbalanced()
    configs = baseline_intervals(add_baseline(config_frame(trials), "small"), trials, 0.05)
    big = configs.set_index("config_name").loc["big"]
    paired = np.array([50.0 - 52.0, 52.0 - 54.1, 54.1 - 56.0])
    from scipy import stats

    half = stats.t.ppf(0.975, 2) * paired.std(ddof=1) / math.sqrt(3)
    assert big["miou_delta"] == pytest.approx(paired.mean())  # -2.0, not the +6.7 of all means
    assert (big["miou_delta_low"], big["miou_delta_high"]) == pytest.approx(
        (paired.mean() - half, paired.mean() + half))
    assert big["miou_delta_low"] <= big["miou_delta"] <= big["miou_delta_high"] < 0


def test_a_pareto_lead_reversed_on_the_paired_seeds_is_marked():
    trials = unbalanced()
    configs = pareto_marks(config_frame(trials), trials, 0.05).set_index("config_name")
    # as is, both are on the front and big (more params) dominates nothing: no mark
    assert bool(configs.loc["big", "pareto"]) and configs.loc["big", "pareto_mark"] == ""
    # make big the cheaper one: it dominates small by its mean (66.5 > 54.0) only
    cheaper = trials.assign(params=np.where(trials["config_name"] == "big", 500.0, 1000.0))
    marked = pareto_marks(config_frame(cheaper), cheaper, 0.05).set_index("config_name")
    assert marked.loc["big", "pareto_mark"] == "✗"  # worse where both ran, better in the means
    assert marked.loc["big", "pareto_tie"] == "small"
