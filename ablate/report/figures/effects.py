"""The effects as pictures: forest plot, probability of improvement, every seed's mIoU.

Each takes one study's rows of the frames the tables show (``Report.effects`` with the
``ablate.analysis.improvement`` columns, ``Report.configs`` and ``Report.trials``) and
returns a matplotlib figure (``ablate.report.figures.rows``).
"""

from __future__ import annotations

import math

import pandas as pd

from ablate.analysis.stats import PAIRED
from ablate.report.figures.rows import Chart, Row, row_chart
from ablate.report.figures.style import (
    FUTILE,
    GREY,
    MARKERS,
    MARKS,
    PALETTE,
    effect_label,
    level_text,
    mark,
    percent_text,
    short_axis_names,
    verdict_text,
)
from ablate.trials.lifecycle import TrialStatus

SEED_POINT = {"marker": "o", "color": GREY, "fill": False}
METHOD_SHORT = {"paired t (seeds)": "paired t", "Welch t": "Welch t", "-": "untested"}
UNTESTED_NOTE = "no interval: fewer than two seeds a side"


def effect_labels(effects: pd.DataFrame) -> tuple[list[str], list[str]]:
    """Each effect's label and its code (``E<position in the study's table>``), the same
    code in every figure of the study. A study of one axis labels the change alone
    (``one_axis`` names the axis for the figure's notes)."""
    names = short_axis_names(list(effects["axis"]))
    alone = one_axis(effects) is None
    labels = [effect_label(a, c, names, with_axis=alone)
              for a, c in zip(effects["axis"], effects["change"])]
    return labels, [f"E{k + 1}" for k in range(len(effects))]


def one_axis(effects: pd.DataFrame) -> str | None:
    """The axis every effect of the study changes, when there is only one."""
    axes = set(effects["axis"])
    return str(next(iter(axes))) if len(axes) == 1 else None


def _level_text(effects: pd.DataFrame) -> tuple[str, float, int]:
    level = float(effects["ci_level"].iloc[0])
    family = int(effects["family"].iloc[0])
    alpha = round((1.0 - level) * family, 6)
    return level_text(level), alpha, family


def _method(effects: pd.DataFrame) -> str:
    methods = list(dict.fromkeys(effects["method"]))
    return methods[0] if len(methods) == 1 else ""


def forest_figure(effects: pd.DataFrame, margin: float | None = None):
    """One row per effect, in table order: the estimate (marked by its verdict) with its
    interval at the level the verdict is read on, each seed's paired difference as a
    point below it, a line at 0, the margin ±d shaded, and at the right the verdict, n,
    (the method where the rows differ) and the costs' change."""
    effects = effects.reset_index(drop=True)
    study = str(effects["study"].iloc[0])
    labels, codes = effect_labels(effects)
    level, alpha, family = _level_text(effects)
    method = _method(effects)
    headers = ["verdict", "n"] + ([] if method else ["method"]) + ["Δ params", "Δ GFLOPs",
                                                                     "Δ latency"]
    rows = []
    for k, e in enumerate(effects.itertuples(index=False)):
        m = mark(e.verdict)
        cells = [verdict_text(e.verdict, int(e.n)), f"{int(e.n)}"]
        if not method:
            cells.append(METHOD_SHORT.get(e.method, e.method))
        cells += [percent_text(e.params_pct), percent_text(e.gflops_pct),
                  percent_text(e.latency_pct)]
        diffs = tuple(getattr(e, "seed_diffs", None) or ())
        rows.append(Row(labels[k], codes[k], e.estimate, e.ci_low, e.ci_high, m.marker,
                        m.color, m.filled, points=diffs, cells=tuple(cells)))
    shown = list(dict.fromkeys(mark(v).name for v in effects["verdict"]))
    legend = [(name, {"marker": MARKS[name].marker, "color": MARKS[name].color,
                      "markerfacecolor": MARKS[name].color if MARKS[name].filled else "white"})
              for name in shown]
    if any(r.points for r in rows):
        legend.append(("one seed's paired difference", {
            "marker": "o", "color": GREY, "markerfacecolor": "none", "markersize": 3.6}))
    mains = int((effects["kind"] == "main").sum())
    design = str(effects["design"].iloc[0]) if "design" in effects else ""
    axis = one_axis(effects)
    how = UNTESTED_NOTE if method == "-" else method
    notes = [(f"Axis {axis}. " if axis else "")
             + f"Δ mIoU in points, B − A, with its {level} interval (1 − {alpha:g}/{family}, "
             f"Bonferroni over the study's {family} effects; the verdict is read on it)"
             + (f"; {how}" if how else "") + (f"; design: {design}" if design else "") + "."]
    if FUTILE in shown:  # not read on the interval drawn, which may cross the margin
        notes.append("No effect ≥ d: the loop's futility stop, read on its futility interval "
                     "(--json futility_low, futility_high) lying within ±d, not on the "
                     "interval drawn.")
    chart = Chart(
        title=f"{study}: effect of each axis on mIoU", xlabel=f"Δ mIoU (points), {level} interval",
        headers=tuple(headers), notes=tuple(notes), reference=0.0,
        band=(-margin, margin) if margin else None,
        band_label=f"equivalence margin ±{margin:g}" if margin else "",
        separator=mains if 0 < mains < len(rows) else None, legend=tuple(legend),
        point_styles=(SEED_POINT,))
    return row_chart(rows, chart)


def improvement_figure(effects: pd.DataFrame):
    """``P(B > A)`` of each main effect with its bootstrap interval, a line at 1/2, and
    the verdict beside it (the verdict decides); None when no effect has one."""
    effects = effects.reset_index(drop=True)
    labels, codes = effect_labels(effects)
    keep = [k for k in range(len(effects)) if effects["kind"].iloc[k] == "main"
            and math.isfinite(float(effects["p_improve"].iloc[k]))]
    if not keep:
        return None
    study = str(effects["study"].iloc[0])
    level, _alpha, _family = _level_text(effects)
    rows = []
    for k in keep:
        e = effects.iloc[k]
        low, high = float(e["p_improve_low"]), float(e["p_improve_high"])
        interval = "—" if math.isnan(low) else f"[{low:.2f}, {high:.2f}]"
        rows.append(Row(labels[k], codes[k], float(e["p_improve"]), low, high, "o",
                        PALETTE[0], True,
                        cells=(f"{e['p_improve']:.2f}", interval,
                               verdict_text(e["verdict"], int(e["n"])), f"{int(e['n'])}")))
    chart = Chart(
        title=f"{study}: probability of improvement P(B > A)",
        xlabel="P(a run at B beats a run at A in the same cell)", xlim=(-0.02, 1.02),
        headers=("P(B > A)", f"{level} bootstrap", "verdict (decides)", "n"), reference=0.5,
        notes=((f"Axis {one_axis(effects)}. " if one_axis(effects) else "")
               + "rliable's definition (Agarwal et al. 2021): each cell's share of (B, A) run "
               "pairs that B wins (ties count 1/2), averaged over the cells of the other "
               f"axes; {_bootstrap_text(effects['method'].iloc[keep])} It describes; the "
               "verdict, from the t interval of the mean change, decides.",),
        point_styles=(SEED_POINT,))
    return row_chart(rows, chart)


def _bootstrap_text(methods: pd.Series) -> str:
    """How the rows' bootstrap resampled: the paired seeds, or (Welch rows, whose seeds
    do not pair) each configuration's runs within its cell, rliable's stratified one."""
    paired = methods.eq(PAIRED)
    if paired.all():
        return "percentile bootstrap over the paired seeds."
    if not paired.any():
        return ("percentile bootstrap of each configuration's runs within its cell (the "
                "seeds do not pair).")
    return ("percentile bootstrap over the paired seeds (each configuration's runs on its "
            "own where the seeds do not pair).")


def seeds_figure(configs: pd.DataFrame, trials: pd.DataFrame):
    """Each configuration's mIoU on every seed (a marker per seed) and their mean,
    rows in the table's order."""
    configs = configs.reset_index(drop=True)
    study = str(configs["study"].iloc[0])
    done = trials[(trials["status"] == TrialStatus.DONE) & trials["miou"].notna()
                  & (trials["study"] == study)]
    seeds = sorted(done["seed"].astype(int).unique())
    kind = {s: k for k, s in enumerate(seeds)}
    styles = tuple({"marker": MARKERS[k % len(MARKERS)],
                    "color": PALETTE[k % len(PALETTE)], "fill": True}
                   for k in range(len(seeds)))
    by_config = {name: g.sort_values("seed", kind="stable") for name, g in
                 done.groupby("config_name", sort=False)}
    rows = []
    for k, c in enumerate(configs.itertuples(index=False)):
        runs = by_config.get(c.config_name)
        points = tuple(runs["miou"].astype(float)) if runs is not None else ()
        kinds = tuple(kind[int(s)] for s in runs["seed"]) if runs is not None else ()
        std = float(c.miou_std) if c.miou_std == c.miou_std else math.nan
        rows.append(Row(str(c.config_name), f"C{k + 1}", float(c.miou_mean), marker="|",
                        color="#000000", points=points, point_kinds=kinds,
                        cells=(f"{c.miou_mean:.2f}", "—" if math.isnan(std) else f"{std:.2f}",
                               f"{int(c.n)}")))
    legend = [("mean", {"marker": "|", "color": "#000000", "markersize": 7})]
    if len(seeds) <= len(MARKERS):  # beyond, markers repeat: no legend to misread
        legend += [(f"seed {s}", {"marker": styles[kind[s]]["marker"],
                                  "color": styles[kind[s]]["color"], "markersize": 4})
                   for s in seeds]
    chart = Chart(
        title=f"{study}: mIoU of every seed", xlabel="validation mIoU (%)",
        headers=("mean", "± std", "n"),
        notes=("One marker per seed and configuration (the same seed has the same marker "
               "in every row: same data order and shapes); the bar is the mean over seeds. "
               "Rows in the order of the configurations table.",),
        legend=tuple(legend), point_styles=styles or (SEED_POINT,), point_offset=0.0,
        row_height=0.24, key_title="Configurations")
    return row_chart(rows, chart)

