"""Effects, intervals and the Holm correction against closed-form values.

For 2 degrees of freedom Student's t has a closed form: the two-sided p-value of
``t`` is ``1 - t / sqrt(t^2 + 2)`` and the ``q`` quantile is
``(2q - 1) * sqrt(2 / (1 - (2q - 1)^2))``, so three-seed designs are checked by hand.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from ablate.analysis.effects import BEYOND, UNDECIDED, WITHIN, compare_configs, effects_table
from ablate.analysis.stats import PAIRED, WELCH, contrast, holm


def p_df2(t: float) -> float:
    return 1.0 - abs(t) / math.sqrt(t * t + 2.0)


def q_df2(q: float) -> float:
    x = 2.0 * q - 1.0
    return x * math.sqrt(2.0 / (1.0 - x * x))


def trial(study, config, seed, miou, *, variant="base", params=1000.0, gflops=1.0,
          latency=1.0, **axes):
    return {"study": study, "config_name": config, "variant": variant, "seed": seed,
            "status": "done", "miou": miou, "params": params, "gflops": gflops,
            "latency_ms": latency, **{f"axis:{k}": v for k, v in axes.items()}}


def two_by_two() -> pd.DataFrame:
    """y(a, b, s): y(0,0)=50, y(0,1)=80, y(1,0)=50+d0[s], y(1,1)=80+d1[s].

    Per seed: A = (d0+d1)/2 = [1, 2, 3], B = 30 + (d1-d0)/2 = [31, 30, 32],
    A x B = d1 - d0 = [2, 0, 4].
    """
    d0, d1 = [0.0, 2.0, 1.0], [2.0, 2.0, 5.0]
    rows = []
    for s in range(3):
        for a in (0, 1):
            for b in (0, 1):
                y = 50.0 + 30.0 * b + (d1[s] if b else d0[s]) * a
                rows.append(trial("s", f"a={a},b={b}", s, y, params=1000.0 * (1 + a),
                                  gflops=2.0 + b, a=a, b=b))
    return pd.DataFrame(rows)


def test_two_by_two_main_effects_interaction_and_holm_match_closed_form():
    table = effects_table(two_by_two()).set_index(["kind", "axis"])
    a, b, ab = table.loc[("main", "a")], table.loc[("main", "b")], table.loc[("interaction", "a x b")]
    assert a["change"] == "0 -> 1" and a["method"] == PAIRED and a["n"] == 3
    assert a["estimate"] == pytest.approx(2.0)
    half = q_df2(0.975) / math.sqrt(3.0)  # sd 1, n 3
    assert (a["ci_low"], a["ci_high"]) == pytest.approx((2.0 - half, 2.0 + half))
    p_a = p_df2(2.0 * math.sqrt(3.0))
    assert a["p"] == pytest.approx(p_a)
    assert b["estimate"] == pytest.approx(31.0)
    p_b = p_df2(31.0 * math.sqrt(3.0))
    assert b["p"] == pytest.approx(p_b)
    assert ab["estimate"] == pytest.approx(2.0)
    p_ab = p_df2(2.0 / (2.0 / math.sqrt(3.0)))
    assert ab["p"] == pytest.approx(p_ab)
    # Holm: B (smallest) x3, then A x2, then AxB x1, each at least the previous
    assert b["p_holm"] == pytest.approx(3 * p_b)
    assert a["p_holm"] == pytest.approx(2 * p_a)
    assert ab["p_holm"] == pytest.approx(max(2 * p_a, p_ab))
    # A's Holm interval is read at level alpha / 2
    half_holm = q_df2(1 - 0.025 / 2) / math.sqrt(3.0)
    assert (a["ci_holm_low"], a["ci_holm_high"]) == pytest.approx((2 - half_holm, 2 + half_holm))
    assert (b["verdict"], a["verdict"], ab["verdict"]) == (BEYOND, WITHIN, WITHIN)
    # costs in percent over the same cells: params double with a, GFLOPs 2 -> 3 with b
    assert a["params_pct"] == pytest.approx(100.0) and a["gflops_pct"] == pytest.approx(0.0)
    assert b["gflops_pct"] == pytest.approx(50.0) and b["params_pct"] == pytest.approx(0.0)
    assert math.isnan(ab["params_pct"])
    assert set(a["configs"]) == {"a=0,b=0", "a=0,b=1", "a=1,b=0", "a=1,b=1"}


def test_one_seed_is_undecided_with_null_interval():
    frame = two_by_two()
    table = effects_table(frame[frame["seed"] == 0])
    assert set(table["verdict"]) == {UNDECIDED}
    assert table["ci_low"].isna().all() and table["p_holm"].isna().all()
    main_a = table[(table["axis"] == "a") & (table["kind"] == "main")].iloc[0]
    assert main_a["estimate"] == pytest.approx((0.0 + 2.0) / 2)  # the estimate still shows


def test_welch_when_seeds_do_not_match():
    # side A seeds 0,1,2; side B seeds 3,4: no pairing possible
    rows = [trial("w", "x=0", s, v, x=0) for s, v in zip(range(3), (10.0, 12.0, 14.0))]
    rows += [trial("w", "x=1", s, v, x=1) for s, v in zip((3, 4), (20.0, 21.0))]
    row = effects_table(pd.DataFrame(rows)).iloc[0]
    assert row["method"] == WELCH and row["n"] == 5
    va, vb = 4.0 / 3, 0.5 / 2  # variance / n on each side
    df = (va + vb) ** 2 / (va**2 / 2 + vb**2 / 1)
    assert row["estimate"] == pytest.approx(20.5 - 12.0)
    from scipy import stats

    t = 8.5 / math.sqrt(va + vb)
    assert row["p"] == pytest.approx(2 * stats.t.sf(t, df))
    assert stats.ttest_ind([20, 21], [10, 12, 14], equal_var=False).pvalue == pytest.approx(row["p"])


def test_zip_group_is_one_axis_and_variants_compare_with_baseline():
    rows = []
    for variant, shift in (("small", 0.0), ("big", 5.0), ("huge", 6.0)):
        for (lr, bs), d in (((0.1, 8), 0.0), ((0.2, 16), 1.0)):
            for s in range(3):
                rows.append(trial("z", f"{variant}[lr={lr},bs={bs}]", s, 40 + shift + d + 0.1 * s
                                  + (0.3 if s == 1 and variant == "big" else 0.0),
                                  variant=variant, **{"train.lr": lr, "train.batch_size": bs}))
    table = effects_table(pd.DataFrame(rows), baseline="big", interactions=False)
    assert list(table["axis"]) == ["variant", "variant", "train.lr + train.batch_size"]
    assert list(table["change"]) == ["big -> small", "big -> huge", "0.1, 8 -> 0.2, 16"]
    assert table["estimate"].tolist() == pytest.approx([-5.1, 0.9, 1.0])


def test_holm_adjusts_and_skips_untested():
    adjusted, divisor = holm(np.array([0.01, np.nan, 0.04, 0.03]))
    assert adjusted[[0, 2, 3]] == pytest.approx([0.03, 0.06, 0.06])
    assert math.isnan(adjusted[1]) and divisor[[0, 3, 2]].tolist() == [3, 2, 1]


def test_null_design_is_within_seed_noise_at_the_stated_rate():
    """Nothing differs: a single test rejects at about alpha, Holm's family at most alpha."""
    rng = np.random.default_rng(7)
    reps = 2000
    single = 0
    for _ in range(reps):
        values = 60 + rng.normal(0, 1, size=(1, 4)) + rng.normal(0, 0.5, size=(2, 4))
        single += contrast(values, np.array([-1.0, 1.0])).p_value() < 0.05
    rate = single / reps
    assert 0.03 < rate < 0.07  # 0.05 +- 4 binomial standard errors
    family = 0
    for _ in range(150):
        frame = two_by_two()
        frame["miou"] = 60 + rng.normal(0, 1, size=len(frame))
        family += (effects_table(frame)["verdict"] == BEYOND).any()
    assert family / 150 <= 0.05 + 3 * math.sqrt(0.05 * 0.95 / 150)


def test_compare_configs_is_paired_when_seeds_match():
    frame = two_by_two()
    out = compare_configs(frame, [("s", "a=0,b=0", "a=1,b=0"), ("s", "a=0,b=0", "missing")])
    first = out.iloc[0]
    assert first["estimate"] == pytest.approx(1.0) and first["method"] == PAIRED
    sd = float(np.std([0.0, 2.0, 1.0], ddof=1))
    half = q_df2(0.975) * sd / math.sqrt(3)
    assert (first["ci_low"], first["ci_high"]) == pytest.approx((1 - half, 1 + half))
    assert out.iloc[1]["verdict"] == UNDECIDED and math.isnan(out.iloc[1]["estimate"])


def test_t_functions_agree_with_scipy_stats():
    from scipy import stats

    from ablate.analysis.stats import intervals, p_values

    estimate, se, df = np.array([2.0, -1.0, 0.3]), np.array([0.5, 0.25, 1.0]), np.array([2.0, 5.5, 30])
    assert p_values(estimate, se, df) == pytest.approx(2 * stats.t.sf(np.abs(estimate) / se, df))
    low, high = intervals(estimate, se, df, np.full(3, 0.05))
    assert high - estimate == pytest.approx(stats.t.ppf(0.975, df) * se)
    assert estimate - low == pytest.approx(stats.t.ppf(0.975, df) * se)
