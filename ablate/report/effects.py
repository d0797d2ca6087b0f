"""Effects tables for every output: effects frame -> ``DisplayTable`` per study.

The statistics live in ``ablate.analysis.effects``; this module only formats them.
"""

from __future__ import annotations

import math

import pandas as pd

from ablate.analysis.effects import ADJUSTED
from ablate.report.render import NO_SPREAD, Column, DisplayTable, interval_texts, numeric_column


def _signed(value: float, spec: str = "+.2f") -> str:
    return NO_SPREAD if value is None or math.isnan(value) else format(value, spec)


def effects_tables(effects: pd.DataFrame, alpha: float) -> list[DisplayTable]:
    """One table per study: axis, change, Δ mIoU with its interval, costs, verdict."""
    tables = []
    for study, group in effects.groupby("study", sort=False):
        family = int(group["family"].iloc[0])
        level = float(group["ci_level"].iloc[0])
        sequential = group["method"].str.startswith("group-sequential").any()
        cols = [
            Column("axis", group["axis"].tolist(), group["axis"].tolist()),
            Column("change", group["change"].tolist(), group["change"].tolist()),
            Column("Δ mIoU", [_signed(v) for v in group["estimate"]],
                   [None if math.isnan(v) else v for v in group["estimate"]], numeric=True),
            Column(f"{100 * level:.4g}% CI", interval_texts(group["ci_low"], group["ci_high"]),
                   [None if math.isnan(v) else v for v in group["ci_low"]], numeric=True),
            numeric_column("p (adj.)", group["p_adj"], ".3g", NO_SPREAD),
            numeric_column("n", group["n"], ",.0f"),
            numeric_column("MDE", group["mde"], ".2f", NO_SPREAD),
            Column("Δ params", [_pct(v) for v in group["params_pct"]],
                   _raw(group["params_pct"]), numeric=True),
            Column("Δ GFLOPs", [_pct(v) for v in group["gflops_pct"]],
                   _raw(group["gflops_pct"]), numeric=True),
            Column("Δ latency", [_pct(v) for v in group["latency_pct"]],
                   _raw(group["latency_pct"]), numeric=True),
            Column("verdict", group["verdict"].tolist(), group["verdict"].tolist()),
            Column("method", group["method"].tolist(), group["method"].tolist()),
        ]
        if group["seeds_needed"].notna().any():
            cols.insert(7, Column("seeds for margin",
                                  [_seeds(v, hi) for v, hi in zip(group["seeds_needed"],
                                                                  group["seeds_needed_high"])],
                                  _raw(group["seeds_needed"]), numeric=True))
        design = group["design"].iloc[0]
        adjusted = (group["estimator"] == ADJUSTED).any()
        margin = group["tost_level"].notna().any()
        notes = [
            f"Δ mIoU in points, B minus A, with the interval it is read on: {100 * level:.4g}% "
            f"= 1 - alpha/{family}, over the {family} effect(s) of this study (Bonferroni), so "
            f"all its intervals hold at once with probability {1 - (1 - level) * family:.3g}. "
            "Estimate and interval use the same seeds: those every configuration of the effect "
            "ran (paired t), else every trial (Welch t). Main effect: mean over the other axes' "
            "cells; interaction: difference of differences."
            + (" Δ mIoU is the bias-adjusted estimate (Whitehead 1986) of an effect the loop "
               "stopped at its own verdict (a mean taken where a loop stops leans away from 0), "
               "kept within the interval; --json has the plain mean (mean)."
               if adjusted else ""),
            f"Design: {design}. "
            + ("Grown by --until-decided: repeated confidence intervals of a group-sequential "
               "design, valid whenever the loop stopped. " if sequential else "")
            + "Verdict: better/worse (positive/negative for an interaction) when the interval "
            "excludes 0; "
            + (f"equivalent when the {100 * (2 * level - 1):.4g}% = 1 - 2 alpha/{family} "
               f"interval (two one-sided tests at alpha/{family} each, Schuirmann 1987; --json "
               "tost_low/tost_high) lies within the stated margin (--min-effect); "
               if margin else "")
            + ("no effect ≥ d when the loop's futility interval (--json futility_*) lies "
               "within the margin: an effect of the margin is stopped there at most 20% of the "
               "time (80% power); " if group["futility_level"].notna().any() else "")
            + "else inconclusive at n seeds. MDE: the effect detected with 80% power at this "
            "level ("
            + ("the design's, by its --max-seeds, at this spread" if sequential
               else "exact noncentral t")
            + ")"
            + ("; seeds for margin: seeds per configuration for 80% power to show "
               "equivalence when nothing differs, at the observed spread (≤: at its 90% upper "
               "bound; Colas et al. 2018)" if group["seeds_needed"].notna().any() else "")
            + ". p (adj.): the test's two-sided p times the family size, at most 1"
            + (" (—: a group-sequential design's repeated intervals have no fixed-sample p)"
               if sequential else "")
            + ". Δ params/GFLOPs/latency: geometric mean of the per-cell ratios, in percent.",
        ]
        tables.append(DisplayTable(title=f"{study}: effects of each axis on mIoU",
                                   columns=cols, notes=notes))
    return tables


def _seeds(value: float, high: float = math.nan) -> str:
    """``46 (≤ 102)``: the seeds at the observed spread and at its upper bound."""
    if value is None or math.isnan(value):
        return "-"
    if math.isinf(value):
        return "> 10,000"
    if high is None or math.isnan(high) or high == value:
        return f"{value:,.0f}"
    return f"{value:,.0f} (≤ {'> 10,000' if math.isinf(high) else f'{high:,.0f}'})"


def _pct(value: float) -> str:
    if value is None or math.isnan(value):
        return "-"
    return f"{value:+.0f}%" if abs(value) >= 10 else f"{value:+.1f}%"


def _raw(series: pd.Series) -> list:
    return [None if math.isnan(v) else float(v) for v in series.astype(float)]


def effects_json(effects: pd.DataFrame) -> str:
    """JSON records: NaN as null (untested), ``configs`` as a list. Each record names its
    ``metric`` and ``unit`` (``estimate``, ``ci_*``, ``mde`` in mIoU points) and the cost
    changes are percent (geometric mean of per-cell ratios)."""
    return effects.to_json(orient="records", indent=2)
