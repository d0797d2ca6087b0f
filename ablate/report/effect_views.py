"""Tables beside the effects: the probability of improvement and the per-class effects.

The statistics live in ``ablate.analysis.improvement`` and ``ablate.analysis.per_class``;
this module only formats them as ``DisplayTable`` (every output, the HTML page included).
"""

from __future__ import annotations

import math

import pandas as pd

from ablate.report.render import NO_SPREAD, Column, DisplayTable, interval_texts, numeric_column

MARK = "✱"  # the interval excludes 0


def _signed(value: float) -> str:
    return NO_SPREAD if value is None or math.isnan(value) else f"{value:+.2f}"


def _raw(series: pd.Series) -> list:
    return [None if math.isnan(v) else float(v) for v in series.astype(float)]


def improvement_tables(effects: pd.DataFrame) -> list[DisplayTable]:
    """Per study, each main effect's P(B > A) and its bootstrap interval beside the mean
    change and the verdict."""
    tables = []
    for study, group in effects.groupby("study", sort=False):
        group = group[(group["kind"] == "main") & group["p_improve"].notna()]
        if group.empty:
            continue
        level = float(group["ci_level"].iloc[0])
        p = group["p_improve"].astype(float)
        cols = [
            Column("axis", group["axis"].tolist(), group["axis"].tolist()),
            Column("change", group["change"].tolist(), group["change"].tolist()),
            numeric_column("P(B > A)", p, ".2f", NO_SPREAD),
            Column(f"{100 * level:.4g}% bootstrap",
                   [NO_SPREAD if math.isnan(lo) else f"[{lo:.2f}, {hi:.2f}]" for lo, hi in
                    zip(group["p_improve_low"].astype(float),
                        group["p_improve_high"].astype(float))],
                   _raw(group["p_improve_low"]), numeric=True),
            Column("Δ mIoU", [_signed(v) for v in group["estimate"]], _raw(group["estimate"]),
                   numeric=True),
            Column(f"{100 * level:.4g}% CI", interval_texts(group["ci_low"], group["ci_high"]),
                   _raw(group["ci_low"]), numeric=True),
            numeric_column("n", group["n"], ",.0f"),
            Column("verdict", group["verdict"].tolist(), group["verdict"].tolist()),
        ]
        notes = [
            "P(B > A): the chance that a run at the level changed to beats a run at the level "
            "changed from in the same cell of the other axes (ties count 1/2), averaged over "
            "those cells (rliable's probability of improvement, Agarwal et al., NeurIPS "
            "2021). Interval: percentile bootstrap over the paired seeds (each configuration's "
            "runs on its own where the seeds do not pair), at the effect's level. It describes "
            "how often one run beats another; the verdict, read on the t interval of the mean "
            "change, decides. With few seeds the bootstrap is coarse (3 seeds: 10 resamples).",
        ]
        tables.append(DisplayTable(title=f"{study}: probability of improvement",
                                   columns=cols, notes=notes))
    return tables


def per_class_effect_tables(table: pd.DataFrame) -> list[DisplayTable]:
    """Per study, one row per (main effect, class): Δ IoU with its interval and mark."""
    tables = []
    for study, group in table.groupby("study", sort=False):
        level = float(group["ci_level"].iloc[0])
        family = int(group["family"].iloc[0])
        alpha = round((1.0 - level) * family, 6)
        n_classes = group["class"].nunique()
        n_effects = len(group[["axis", "change"]].drop_duplicates())
        cols = [
            Column("axis", group["axis"].tolist(), group["axis"].tolist()),
            Column("change", group["change"].tolist(), group["change"].tolist()),
            Column("class", group["class"].astype(str).tolist(), group["class"].tolist()),
            Column("Δ IoU", [_signed(v) for v in group["estimate"]], _raw(group["estimate"]),
                   numeric=True),
            Column(f"{100 * level:.4g}% CI", interval_texts(group["ci_low"], group["ci_high"]),
                   _raw(group["ci_low"]), numeric=True),
            Column("", [MARK if x else "" for x in group["excludes_zero"]],
                   [int(bool(x)) for x in group["excludes_zero"]]),
            numeric_column("p (adj.)", group["p_adj"], ".3g", NO_SPREAD),
            numeric_column("n", group["n"], ",.0f"),
            Column("method", group["method"].tolist(), group["method"].tolist()),
        ]
        notes = [
            f"Δ IoU of each class in points, B minus A, with the interval at {100 * level:.4g}% "
            f"= 1 - {alpha:g}/{family}: Bonferroni over the {n_classes} classes x "
            f"{n_effects} main effects, so all the intervals hold at once with probability at "
            f"least {1 - alpha:g}. {MARK}: the interval excludes 0. Same estimand as the "
            "effects (paired t over the seeds every configuration ran, else Welch); a study "
            "grown by --until-decided is read here as a fixed design at its alpha (the loop "
            "decided on mIoU). These describe where a change acts; the mIoU verdict decides.",
        ]
        tables.append(DisplayTable(title=f"{study}: effect of each axis on the IoU of each class",
                                   columns=cols, notes=notes))
    return tables
