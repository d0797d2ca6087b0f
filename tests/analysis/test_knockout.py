"""Knock-out axes read per component, each against the right baseline (hand-computed)."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from ablate.analysis.effects import PAIRED, effects_table, family_sizes
from ablate.analysis.knockout import component_columns, one_away, removed_set
from ablate.recipes.knockout import KnockoutSpec, design_axis

from .test_effects import q_df2, trial

SEEDS = (0, 1, 2)


def knockout_study(levels: dict[str, float], params: dict[str, float], **axes) -> list[dict]:
    """One trial per level and seed: mIoU = base(level) + seed; the axis value is the
    frame's text of the list (``str(list)``, as ``report.frame`` gives it)."""
    rows = []
    for text, miou in levels.items():
        for seed in SEEDS:
            bump = 0.5 * seed * seed if text == "['a']" else 0.0  # noise only on one level
            rows.append(trial("k", f"remove={text}", seed, miou + seed + bump,
                              params=params[text], **{"model.remove": text}, **axes))
    return rows


def test_designs_generate_the_baseline_first():
    spec = KnockoutSpec(design="leave-one-out", components=["a", "b"])
    assert design_axis(spec) == [[], ["a"], ["b"]]
    spec = KnockoutSpec(design="add-one", components=["a", "b", "c"])
    assert design_axis(spec) == [["a", "b", "c"], ["b", "c"], ["a", "c"], ["a", "b"]]
    spec = KnockoutSpec(design="factorial", components=["a", "b"])
    assert design_axis(spec) == [[], ["a"], ["b"], ["a", "b"]]
    nine = [f"m{i}" for i in range(9)]
    with pytest.raises(ValueError, match="a factorial over 9 components is 512 configurations"):
        KnockoutSpec(design="factorial", components=nine)
    assert len(design_axis(KnockoutSpec(design="add-one", components=nine))) == 10


def test_the_design_is_read_from_the_levels_in_any_order():
    assert removed_set("['x.y', 'z']") == frozenset({"x.y", "z"})
    assert removed_set("all") is None
    loo = one_away(pd.Series(["['a']", "[]", "['b']"]))
    assert loo is not None and loo.design == "leave-one-out"
    assert loo.levels == ("[]", "['a']", "['b']")
    assert loo.labels == ("full", "without a", "without b")
    add = one_away(pd.Series(["['b']", "['a', 'b']", "['a']"]))
    assert add is not None and add.design == "add-one"
    assert add.labels == ("minimal", "with a", "with b")
    # two components removed at once: neither design, so one axis per component
    assert one_away(pd.Series(["[]", "['a']", "['a', 'b']"])) is None


def test_leave_one_out_reads_each_component_against_the_full_model():
    levels = {"[]": 60.0, "['a']": 58.0, "['b']": 55.0, "['c']": 60.0}
    params = {"[]": 1000.0, "['a']": 900.0, "['b']": 750.0, "['c']": 1000.0}
    table = effects_table(pd.DataFrame(knockout_study(levels, params)))
    assert list(table["axis"]) == ["leave one out"] * 3
    assert list(table["change"]) == ["full -> without a", "full -> without b",
                                     "full -> without c"]
    assert list(table["kind"]) == ["main"] * 3
    # three effects, no interaction (no configuration removes two): family 3
    assert set(table["family"]) == {3}
    a, b, c = (table.iloc[i] for i in range(3))
    # without a - full per seed: -2 + 0.5 s^2 = [-2, -1.5, 0]: mean -7/6, sd 1.0408...
    diffs = [-2.0, -1.5, 0.0]
    mean = sum(diffs) / 3
    sd = math.sqrt(sum((d - mean) ** 2 for d in diffs) / 2)
    half = q_df2(1 - 0.05 / 6) * sd / math.sqrt(3)
    assert a["method"] == PAIRED and a["n"] == 3
    assert (a["estimate"], a["ci_low"], a["ci_high"]) == pytest.approx(
        (mean, mean - half, mean + half))
    assert a["params_pct"] == pytest.approx(-10.0) and b["params_pct"] == pytest.approx(-25.0)
    # b: -5 on every seed, no spread to estimate noise from; c: 0 likewise
    assert b["estimate"] == pytest.approx(-5.0) and c["params_pct"] == pytest.approx(0.0)
    assert b["verdict"] == "inconclusive (n=3, zero spread)"
    assert family_sizes(pd.DataFrame(knockout_study(levels, params))) == {"k": 3}


def test_add_one_reads_each_component_against_the_minimal_model():
    levels = {"['a', 'b']": 40.0, "['b']": 47.0, "['a']": 41.0}
    params = {"['a', 'b']": 500.0, "['b']": 800.0, "['a']": 600.0}
    rows = knockout_study(levels, params)
    for row in rows:  # noise on "with a" so that its interval has a width
        if row["config_name"] == "remove=['b']":
            row["miou"] += [0.0, 1.0, 2.0][row["seed"]] * 0.5
    table = effects_table(pd.DataFrame(rows))
    assert list(table["axis"]) == ["add one"] * 2
    assert list(table["change"]) == ["minimal -> with a", "minimal -> with b"]
    with_a, with_b = table.iloc[0], table.iloc[1]
    assert with_a["estimate"] == pytest.approx(7.5)  # 7 + mean(0, 0.5, 1)
    assert with_a["params_pct"] == pytest.approx(60.0)
    # with b is the level ['a'], which carries the 0.5 s^2 noise: 1 + mean(0, 0.5, 2)
    assert with_b["estimate"] == pytest.approx(1.0 + 2.5 / 3)
    assert with_b["params_pct"] == pytest.approx(20.0)
    assert with_a["verdict"] == "better" and with_a["family"] == 2


def test_a_factorial_is_one_two_level_axis_per_component_with_their_interaction():
    levels = {"[]": 60.0, "['a']": 58.0, "['b']": 57.0, "['a', 'b']": 50.0}
    params = dict.fromkeys(levels, 1.0)
    table = effects_table(pd.DataFrame(knockout_study(levels, params)))
    rows = {(k, axis): r for k, axis, r in zip(table["kind"], table["axis"],
                                               table.itertuples())}
    assert sorted(rows) == [("interaction", "remove a x remove b"), ("main", "remove a"),
                            ("main", "remove b")]
    a = rows[("main", "remove a")]
    assert a.change == "kept -> removed"
    # (58 - 60 + 50 - 57) / 2 = -4.5, plus the 0.5 s^2 noise on ['a'] halved
    assert a.estimate == pytest.approx(-4.5 + (0 + 0.5 + 2.0) / 3 / 2)
    assert rows[("interaction", "remove a x remove b")].change == (
        "(kept -> removed) x (kept -> removed)")


def test_nested_removals_test_only_what_their_cells_define():
    levels = {"[]": 60.0, "['a']": 58.0, "['a', 'b']": 50.0}
    params = dict.fromkeys(levels, 1.0)
    frame = pd.DataFrame(knockout_study(levels, params))
    table = effects_table(frame)
    # b is only removed where a is: its effect is ['a', 'b'] - ['a']; no interaction,
    # since no configuration removes b alone, and the family is the two mains
    assert list(table["axis"]) == ["remove a", "remove b"]
    assert table.iloc[1]["estimate"] == pytest.approx(-8.0 - (0 + 0.5 + 2.0) / 3)
    assert set(table["family"]) == {2} and family_sizes(frame) == {"k": 2}
    columns = component_columns(frame.groupby("config_name", sort=False).first())
    assert list(columns["axis:remove b"]) == ["kept", "kept", "removed"]


def test_leave_one_out_crossed_with_another_axis_has_interactions_with_the_baseline():
    rows = []
    for lr, shift in ((0.1, 0.0), (0.2, 3.0)):
        levels = {"[]": 60.0 + shift, "['a']": 58.0, "['b']": 55.0 + shift}
        params = dict.fromkeys(levels, 1.0)
        for row in knockout_study(levels, params, **{"train.lr": lr}):
            row["config_name"] += f",lr={lr}"
            rows.append(row)
    table = effects_table(pd.DataFrame(rows))
    inter = table[table["kind"] == "interaction"]
    assert list(inter["change"]) == ["(full -> without a) x (0.1 -> 0.2)",
                                     "(full -> without b) x (0.1 -> 0.2)"]
    # without a loses the lr gain of 3: (58 - 63) - (58 - 60) = -3
    assert inter.iloc[0]["estimate"] == pytest.approx(-3.0)
    assert inter.iloc[1]["estimate"] == pytest.approx(0.0)
