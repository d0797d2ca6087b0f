"""Per-class effects of a 3-class study, checked by hand.

One axis ``a`` (0 -> 1), seeds 0, 1, 2. Per-seed IoU change (points):
sky [1, 2, 3] (mean 2, sd 1), road [-4, -5, -6] (mean -5, sd 1),
car [2, 4, -] (seed 2 has no car IoU at a=1: paired over seeds 0 and 1, mean 3, sd sqrt 2).
Family: 3 classes x 1 main effect, each interval at 1 - 0.05/3.
Student's t quantiles in closed form: df 1 (Cauchy) tan(pi (q - 1/2)); df 2 as in
test_effects.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from ablate.analysis.design import Design
from ablate.analysis.per_class import PER_CLASS_COLUMNS, per_class_effects
from ablate.analysis.stats import PAIRED
from tests.analysis.test_effects import q_df2

BASE = {"sky": [80.0, 81.0, 79.0], "road": [60.0, 62.0, 61.0], "car": [30.0, 31.0, 32.0]}
DELTA = {"sky": [1.0, 2.0, 3.0], "road": [-4.0, -5.0, -6.0], "car": [2.0, 4.0, np.nan]}


def study(axes: int = 1) -> pd.DataFrame:
    rows = []
    for s in range(3):
        for a in (0, 1):
            for b in range(axes):  # a second axis b that changes nothing
                iou = {f"iou/{c}": BASE[c][s] + (DELTA[c][s] if a else 0.0) for c in BASE}
                present = [v for v in iou.values() if v == v]
                rows.append({"study": "s", "config_name": f"a={a},b={b}", "variant": "base",
                             "seed": s, "status": "done", "miou": float(np.mean(present)),
                             "params": 1.0, "gflops": 1.0, "latency_ms": 1.0, "axis:a": a,
                             "axis:b": b, **iou})
    return pd.DataFrame(rows)


def test_three_classes_by_hand():
    table = per_class_effects(study())
    assert list(table.columns) == PER_CLASS_COLUMNS
    assert list(table["class"]) == ["sky", "road", "car"]  # the frame's column order
    assert set(table["axis"]) == {"a"} and set(table["change"]) == {"0 -> 1"}
    assert (table["family"] == 3).all() and (table["unit"] == "IoU points").all()
    level = 1 - 0.05 / 3
    assert table["ci_level"].tolist() == pytest.approx([level] * 3)
    rows = table.set_index("class")
    sky, road, car = rows.loc["sky"], rows.loc["road"], rows.loc["car"]
    half2 = q_df2(1 - 0.05 / 6) / math.sqrt(3.0)  # sd 1 over 3 seeds, df 2
    assert sky["estimate"] == pytest.approx(2.0) and sky["n"] == 3 and sky["method"] == PAIRED
    assert (sky["ci_low"], sky["ci_high"]) == pytest.approx((2.0 - half2, 2.0 + half2))
    assert (road["ci_low"], road["ci_high"]) == pytest.approx((-5.0 - half2, -5.0 + half2))
    half1 = math.tan(math.pi * (1 - 0.05 / 6 - 0.5)) * 1.0  # se sqrt(2)/sqrt(2), df 1
    assert car["estimate"] == pytest.approx(3.0) and car["n"] == 2
    assert (car["ci_low"], car["ci_high"]) == pytest.approx((3.0 - half1, 3.0 + half1))
    # road's interval [-9.42, -0.58] excludes 0; sky's [-2.42, 6.42] and car's do not
    assert road["ci_high"] < 0 < sky["ci_high"] and sky["ci_low"] < 0
    assert rows["excludes_zero"].to_dict() == {"car": False, "road": True, "sky": False}
    p_road = 1.0 - 5.0 * math.sqrt(3) / math.sqrt(75.0 + 2.0)  # two-sided, df 2, t = 5 sqrt 3
    assert road["p"] == pytest.approx(p_road) and road["p_adj"] == pytest.approx(3 * p_road)


def test_family_is_classes_times_main_effects_and_keeps_a_recorded_alpha():
    table = per_class_effects(study(axes=2))
    # axes a and b: 2 main effects x 3 classes = 6 (the interaction is not estimated)
    assert set(table["family"]) == {6} and len(table) == 6
    assert table["ci_level"].iloc[0] == pytest.approx(1 - 0.05 / 6)
    b = table[table["axis"] == "b"]
    assert b["estimate"].tolist() == pytest.approx([0.0, 0.0, 0.0])
    recorded = {"s": Design(kind="sequential", alpha=0.1, max_seeds=5, start_seeds=2)}
    loose = per_class_effects(study(), designs=recorded)
    assert loose["ci_level"].iloc[0] == pytest.approx(1 - 0.1 / 3)
    assert (loose["method"] == PAIRED).all()  # a fixed design: classes were not looked at


def test_no_class_columns_gives_an_empty_frame():
    plain = study().drop(columns=["iou/sky", "iou/road", "iou/car"])
    assert per_class_effects(plain).empty
