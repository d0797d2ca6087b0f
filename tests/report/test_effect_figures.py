"""The effect figures drawn from studies with known values: the positions read back from
the matplotlib artists equal the numbers (interval ends, estimates, every seed's point,
P(B > A), per-class deltas and their marks, the curves' band), and the pictures stay
readable (nothing cut or overlapping) at 3 effects and at 40, at 4 classes and at 30."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from ablate.analysis.effects import effect_cells, effects_table
from ablate.analysis.improvement import seed_columns
from ablate.analysis.per_class import per_class_effects
from ablate.report.figures.classes import class_effects_figure
from ablate.report.figures.curves import curves_figure
from ablate.report.figures.effects import (
    effect_labels,
    forest_figure,
    improvement_figure,
    seeds_figure,
)
from ablate.report.figures.style import MARKS, OKABE_ITO, TEXT_WIDTH
from ablate.report.frame import config_frame
from tests.analysis.test_effects import q_df2, two_by_two
from tests.analysis.test_per_class import study as three_classes
from tests.report.readable import problems


def by_gid(fig, prefix: str) -> dict[str, object]:
    return {a.get_gid(): a for a in fig.findobj() if str(a.get_gid() or "").startswith(prefix)}


def effects_of(trials: pd.DataFrame, margin: float | None = None) -> pd.DataFrame:
    return seed_columns(effects_table(trials, min_effect=margin), effect_cells(trials))


def test_forest_plot_draws_the_numbers_of_a_two_by_two_study():
    """two_by_two: A = 2 (per seed 1, 2, 3), B = 31 (31, 30, 32), A x B = 2 (2, 0, 4);
    intervals at 1 - 0.05/3 with df 2; B is better, A and A x B inconclusive."""
    effects = effects_of(two_by_two(), margin=1.5)
    fig = forest_figure(effects, margin=1.5)
    ax = fig.axes[0]
    half = q_df2(1 - 0.05 / 6) / math.sqrt(3.0)
    expected = [(2.0, half, [1.0, 2.0, 3.0]), (31.0, half, [31.0, 30.0, 32.0]),
                (2.0, 2.0 * half, [2.0, 0.0, 4.0])]
    intervals, estimates = by_gid(fig, "interval:"), by_gid(fig, "estimate:")
    for i, (estimate, width, seeds) in enumerate(expected):
        line = intervals[f"interval:{i}"]
        assert list(line.get_xdata()) == pytest.approx([estimate - width, estimate + width])
        assert list(line.get_ydata()) == [i, i]
        assert list(estimates[f"estimate:{i}"].get_xdata()) == pytest.approx([estimate])
        points = by_gid(fig, f"points:{i}:")
        xs = np.concatenate([p.get_xdata() for p in points.values()])
        ys = np.concatenate([p.get_ydata() for p in points.values()])
        assert sorted(xs) == pytest.approx(sorted(seeds))  # every seed, none more
        assert ((ys > i) & (ys < i + 0.5)).all()  # beside its interval, below it
    assert list(by_gid(fig, "reference")["reference"].get_xdata()) == [0, 0]
    band = by_gid(fig, "band")["band"]  # a rectangle in x data, spanning the axes in y
    assert (band.get_x(), band.get_x() + band.get_width()) == pytest.approx((-1.5, 1.5))
    cells = {gid: t.get_text() for gid, t in by_gid(fig, "cell:").items()}
    assert [cells[f"cell:{i}:0"] for i in range(3)] == ["inconclusive", "better", "inconclusive"]
    assert [cells[f"cell:{i}:1"] for i in range(3)] == ["3", "3", "3"]
    # params double with a (+100%), GFLOPs 2 -> 3 with b (+50%); none for the interaction
    assert [cells[f"cell:{i}:2"] for i in range(3)] == ["+100%", "+0.0%", "—"]
    assert [cells[f"cell:{i}:3"] for i in range(3)] == ["+0.0%", "+50%", "—"]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["a: 0 → 1", "b: 0 → 1",
                                                           "a × b: (0 → 1) × (0 → 1)"]
    words = " ".join(t.get_text() for t in fig.texts)
    assert "98.33% interval (1 − 0.05/3" in words and "paired t (seeds)" in words
    assert "n" in [t.get_text() for t in fig.texts if t.get_gid() == "header:1"]
    legend = [t.get_text() for t in fig.legends[0].get_texts()]
    assert legend == ["inconclusive", "better", "one seed's paired difference",
                      "equivalence margin ±1.5"]
    assert problems(fig) == []


def test_verdicts_differ_by_shape_fill_and_text_not_colour_alone():
    rows = []
    for k, verdict in enumerate(["better", "worse", "equivalent (±1)", "inconclusive (n=3)"]):
        rows.append({"study": "s", "kind": "main", "axis": f"x{k}", "change": "a -> b", "n": 3,
                     "method": "paired t (seeds)", "estimate": 1.0 - k, "ci_low": -0.5 - k,
                     "ci_high": 1.5 - k, "ci_level": 0.99, "family": 5, "verdict": verdict,
                     "design": "fixed seeds, alpha 0.05", "params_pct": np.nan,
                     "gflops_pct": np.nan, "latency_pct": np.nan, "seed_diffs": []})
    fig = forest_figure(pd.DataFrame(rows), margin=1.0)
    markers = [(m.get_marker(), m.get_markerfacecolor()) for m in
               (by_gid(fig, "estimate:")[f"estimate:{i}"] for i in range(4))]
    assert markers == [(">", OKABE_ITO["blue"]), ("<", OKABE_ITO["vermillion"]),
                       ("D", OKABE_ITO["bluish green"]), ("o", "white")]
    assert len({m for m, _ in markers}) == 4  # four shapes: told apart in grey too
    cells = by_gid(fig, "cell:")
    assert [cells[f"cell:{i}:0"].get_text() for i in range(4)] == [
        "better", "worse", "equivalent (±1)", "inconclusive"]
    assert MARKS["positive"].marker == ">" and MARKS["negative"].marker == "<"
    assert problems(fig) == []


def test_improvement_panel_draws_p_and_its_interval():
    effects = effects_of(two_by_two())
    fig = improvement_figure(effects)
    estimates, intervals = by_gid(fig, "estimate:"), by_gid(fig, "interval:")
    a, b = effects.iloc[0], effects.iloc[1]
    assert list(estimates["estimate:0"].get_xdata()) == pytest.approx([11 / 12])
    assert list(intervals["interval:0"].get_xdata()) == pytest.approx(
        [a["p_improve_low"], a["p_improve_high"]])
    assert list(estimates["estimate:1"].get_xdata()) == [1.0]
    assert b["p_improve_low"] == b["p_improve_high"] == 1.0
    assert "estimate:2" not in estimates  # the interaction has no P(B > A)
    assert list(by_gid(fig, "reference")["reference"].get_xdata()) == [0.5, 0.5]
    assert fig.axes[0].get_xlim() == (-0.02, 1.02)
    cells = by_gid(fig, "cell:")
    assert cells["cell:0:0"].get_text() == "0.92"
    assert cells["cell:1:1"].get_text() == "[1.00, 1.00]"
    assert cells["cell:1:2"].get_text() == "better"
    assert problems(fig) == []


def test_improvement_panel_says_how_it_resampled_unpaired_seeds():
    """Seeds that do not pair (a=1 ran seeds 10-12): the bootstrap resamples each
    configuration's runs in its cell, and the note under the panel says so (it said
    "over the paired seeds" whatever the rows' method)."""
    trials = two_by_two()
    trials.loc[trials["config_name"].str.startswith("a=1"), "seed"] += 10
    effects = effects_of(trials)
    assert set(effects["method"]) == {"Welch t"}
    fig = improvement_figure(effects)
    notes = " ".join(t.get_text() for t in fig.texts)
    assert "paired seeds" not in notes and "the seeds do not pair" in notes
    assert problems(fig) == []
    paired = " ".join(t.get_text() for t in improvement_figure(effects_of(two_by_two())).texts)
    assert "percentile bootstrap over the paired seeds." in paired


def test_a_futility_stop_has_its_own_mark_and_says_what_it_is_read_on():
    """``no effect ≥ d`` (a study grown by --until-decided with a margin) is read on the
    loop's futility interval, not on the repeated interval drawn (which may cross ±d): it
    was drawn and listed as "inconclusive" under a note saying the verdict is read on the
    interval drawn."""
    rows = [{"study": "s", "kind": "main", "axis": f"x{k}", "change": "a -> b", "n": 4,
             "method": "group-sequential (obrien-fleming)", "estimate": -0.56,
             "ci_low": -4.57, "ci_high": 3.56, "ci_level": 1 - 0.05 / 2, "family": 2,
             "verdict": verdict, "design": "sequential", "params_pct": np.nan,
             "gflops_pct": np.nan, "latency_pct": np.nan, "seed_diffs": []}
            for k, verdict in enumerate(["no effect ≥ 2 (80% power)", "inconclusive (n=4)"])]
    fig = forest_figure(pd.DataFrame(rows), margin=2.0)
    futile, open_ = (by_gid(fig, "estimate:")[f"estimate:{i}"] for i in range(2))
    assert futile.get_marker() != open_.get_marker()
    assert futile.get_markerfacecolor() == "white"  # weaker than equivalent's filled ◆
    texts = [t.get_text() for t in fig.findobj(match=lambda a: hasattr(a, "get_text"))]
    assert any(t.startswith("no effect ≥ d") for t in texts)  # in the legend
    assert any("futility interval" in t for t in texts)  # the note says what it reads
    assert problems(fig) == []


def seeded_trials() -> pd.DataFrame:
    """Two configurations x seeds 0, 1, 2 (c1 misses seed 2), mIoU known."""
    values = {"c0": [50.0, 52.0, 54.0], "c1": [60.0, 58.0, None]}
    rows = [{"study": "s", "config_name": name, "variant": name, "seed": s, "status": "done",
             "miou": v, "pixel_acc": 90.0, "params": 1.0, "gflops": 1.0, "latency_ms": 1.0,
             "flops_convention": "fvcore-mac", "resolution": "64x64"}
            for name, seeds in values.items() for s, v in enumerate(seeds) if v is not None]
    return pd.DataFrame(rows)


def test_every_seed_per_configuration_in_table_order():
    trials = seeded_trials()
    configs = config_frame(trials).sort_values("miou_mean", ascending=False)  # c1 first
    fig = seeds_figure(configs, trials)
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["c1", "c0"]
    row0 = {int(gid.rsplit(":", 1)[1]): list(a.get_xdata()) for gid, a in
            by_gid(fig, "points:0:").items()}
    row1 = {int(gid.rsplit(":", 1)[1]): list(a.get_xdata()) for gid, a in
            by_gid(fig, "points:1:").items()}
    assert row0 == {0: [60.0], 1: [58.0]}  # the kind is the seed: one marker per seed
    assert row1 == {0: [50.0], 1: [52.0], 2: [54.0]}
    means = by_gid(fig, "estimate:")
    assert list(means["estimate:0"].get_xdata()) == [59.0]
    assert list(means["estimate:1"].get_xdata()) == [52.0]
    markers = {gid: a.get_marker() for gid, a in by_gid(fig, "points:1:").items()}
    assert len(set(markers.values())) == 3
    cells = by_gid(fig, "cell:")
    assert [cells[f"cell:1:{j}"].get_text() for j in range(3)] == ["52.00", "2.00", "3"]
    assert problems(fig) == []


def test_class_heat_map_draws_the_hand_checked_deltas_and_marks():
    """tests/analysis/test_per_class: sky +2, road -5 (interval excludes 0), car +3."""
    table = per_class_effects(three_classes())
    effects = effects_table(three_classes())
    labels, codes = effect_labels(effects)
    names = {(a, c): (la, co) for a, c, la, co in zip(effects["axis"], effects["change"],
                                                       labels, codes)}
    fig = class_effects_figure(table, names)
    ax = fig.axes[0]
    image = ax.get_images()[0]
    assert image.get_array().shape == (3, 1)
    assert image.get_array()[:, 0].tolist() == pytest.approx([2.0, -5.0, 3.0])
    assert image.get_cmap().name == "RdBu" and image.get_clim() == pytest.approx((-5.0, 5.0))
    assert [t.get_text() for t in ax.get_yticklabels()] == ["sky", "road", "car"]
    assert set(by_gid(fig, "mark:")) == {"mark:1:0"}  # road only
    cells = {gid: t.get_text() for gid, t in by_gid(fig, "cell:").items()}
    assert cells == {"cell:0:0": "+2.0", "cell:1:0": "−5.0*", "cell:2:0": "+3.0"}
    assert "Bonferroni over 3 classes × 1 main effects" in " ".join(t.get_text() for t in fig.texts)
    assert problems(fig, inside_axes_ok=lambda t: str(t.get_gid()).startswith("cell:")) == []


def test_curves_band_is_the_min_and_max_over_seeds():
    rows = [("c0", tid, e, 10 * e, key, value)
            for tid, shift in (("t1", 0.0), ("t2", 1.0), ("t3", 4.0))
            for e in (1, 2)
            for key, value in (("train_loss", 1.0 / e + shift), ("val_miou", 20.0 * e + shift))]
    epochs = pd.DataFrame(rows, columns=["label", "trial_id", "epoch", "step", "key", "value"])
    fig = curves_figure(epochs, by="config")
    miou = fig.axes[1]
    assert list(miou.lines[0].get_ydata()) == pytest.approx([20 + 5 / 3, 40 + 5 / 3])
    (band,) = miou.collections
    ys = band.get_paths()[0].vertices[:, 1]
    assert (ys.min(), ys.max()) == pytest.approx((20.0, 44.0))  # min seed, max seed
    assert "band: min-max over seeds" in fig.texts[0].get_text()
    seeds = curves_figure(epochs, by="trial").axes[1]
    assert len(seeds.lines) == 3 and len({line.get_color() for line in seeds.lines}) == 1
    assert [line.get_label() for line in seeds.lines] == ["c0", "_nolegend_", "_nolegend_"]
    assert problems(fig) == []


def many_effects(n: int = 40) -> pd.DataFrame:
    """n main effects with long names and every verdict, then 3 interactions."""
    rng = np.random.default_rng(5)
    rows = []
    verdicts = ["better", "worse", "equivalent (±1)", "inconclusive (n=4)"]
    for k in range(n + 3):
        kind = "main" if k < n else "interaction"
        level = f"replace_block_{k}_with_a_depthwise_separable_variant" if k % 3 else f"v{k}"
        estimate = float(rng.normal(0, 3))
        rows.append({"study": "synthetic", "kind": kind,
                     "axis": "model.block_policy" if kind == "main" else "model.block_policy x b",
                     "change": f"baseline -> {level}" if kind == "main" else
                     f"(baseline -> {level}) x (0 -> 1)", "n": 4, "method": "paired t (seeds)",
                     "estimate": estimate, "ci_low": estimate - 2, "ci_high": estimate + 2,
                     "ci_level": 1 - 0.05 / (n + 3), "family": n + 3,
                     "verdict": verdicts[k % 4], "design": "fixed seeds, alpha 0.05",
                     "params_pct": float(rng.normal(0, 30)), "gflops_pct": -3.2,
                     "latency_pct": 71.0, "seed_diffs": list(estimate + rng.normal(0, 1, 4)),
                     "p_improve": float(rng.uniform()) if kind == "main" else np.nan,
                     "p_improve_low": 0.1, "p_improve_high": 0.95})
    return pd.DataFrame(rows)


def test_forty_effects_stay_readable_with_codes_and_a_key():
    effects = many_effects()
    forest = forest_figure(effects, margin=1.0)
    assert forest.get_size_inches()[0] == TEXT_WIDTH
    labels = [t.get_text() for t in forest.axes[0].get_yticklabels()]
    assert len(labels) == 43 and "E2" in labels and "E42" in labels
    key = [t.get_text() for t in forest.texts if t.get_gid() == "key"]
    assert any(line.startswith("E2: ") for line in key)
    assert problems(forest) == []
    panel = improvement_figure(effects)
    assert len(by_gid(panel, "estimate:")) == 40
    assert problems(panel) == []


def test_thirty_classes_by_forty_effects_heat_map_is_readable():
    effects = many_effects(40).iloc[:40]
    classes = [f"class_{c:02d}" + ("_with_a_long_name" if c % 5 == 0 else "") for c in range(30)]
    rng = np.random.default_rng(2)
    rows = [{"study": "synthetic", "axis": e["axis"], "change": e["change"], "class": c,
             "estimate": float(rng.normal(0, 4)), "ci_level": 1 - 0.05 / 1200,
             "family": 1200, "excludes_zero": bool(rng.random() < 0.1)}
            for _, e in effects.iterrows() for c in classes]
    table = pd.DataFrame(rows)
    labels, codes = effect_labels(effects)
    names = {(a, c): (la, co) for a, c, la, co in zip(effects["axis"], effects["change"],
                                                       labels, codes)}
    fig = class_effects_figure(table, names)
    assert fig.get_size_inches()[0] <= TEXT_WIDTH
    assert len(by_gid(fig, "mark:")) == int(table["excludes_zero"].sum())
    assert problems(fig) == []
    few = class_effects_figure(table[table["change"].isin(effects["change"][:4])], names)
    assert len(by_gid(few, "cell:")) == 120  # 30 x 4: values written in
    assert problems(few, inside_axes_ok=lambda t: str(t.get_gid()).startswith("cell:")) == []


@pytest.mark.slow
def test_forty_one_configurations_of_seeds_and_curves_are_readable():
    rng = np.random.default_rng(4)
    names = [f"cfg[block={k}, replace_with_a_depthwise_separable_variant]" for k in range(41)]
    rows = [{"study": "s", "config_name": n, "variant": n, "seed": s, "status": "done",
             "miou": float(rng.normal(50, 3)), "pixel_acc": 90.0, "params": 1.0, "gflops": 1.0,
             "latency_ms": 1.0, "flops_convention": "fvcore-mac", "resolution": "64x64"}
            for n in names for s in range(3)]
    trials = pd.DataFrame(rows)
    fig = seeds_figure(config_frame(trials), trials)
    assert problems(fig) == []
    epochs = pd.DataFrame([(n, f"{n}/{s}", e, e, key, float(rng.normal(30, 5)))
                           for n in names for s in range(3) for e in (1, 2, 3)
                           for key in ("train_loss", "val_miou")],
                          columns=["label", "trial_id", "epoch", "step", "key", "value"])
    assert problems(curves_figure(epochs, by="config")) == []


def test_quickstart_like_labels_break_after_the_axis_or_become_codes():
    """The quick-start's axes: a long main-effect label breaks onto two lines at its colon;
    the interaction, too long for two, is E3 in the key."""
    rows = []
    for s in range(3):
        for variant, v in (("all_expansions", 0.0), ("lean_last_stage", 1.9)):
            for keep, k in ((True, 0.0), (False, -1.1)):
                rows.append({"study": "quickstart", "config_name": f"{variant}[{keep}]",
                             "variant": variant, "seed": s, "status": "done",
                             "miou": 30.0 + v + k + 0.7 * s * (1 if keep else -1),
                             "params": 4e6 if keep else 3e6, "gflops": 0.4, "latency_ms": 50.0,
                             "axis:model.keep_last_expansion": keep})
    fig = forest_figure(effects_of(pd.DataFrame(rows)))
    labels = [t.get_text() for t in fig.axes[0].get_yticklabels()]
    assert labels == ["variant:\nall_expansions → lean_last_stage",
                      "keep_last_expansion: true → false", "E3"]
    key = [t.get_text() for t in fig.texts if t.get_gid() == "key"]
    assert key == ["E3: variant × keep_last_expansion: (all_expansions → lean_last_stage) × "
                   "(true → false)"]
    assert problems(fig) == []
