"""Effects tables for every output: effects frame -> ``DisplayTable`` per study.

The statistics live in ``ablate.analysis.effects``; this module only formats them.
"""

from __future__ import annotations

import math

import pandas as pd

from ablate.report.render import NO_SPREAD, Column, DisplayTable, _intervals, _numeric


def _signed(value: float, spec: str = "+.2f") -> str:
    return NO_SPREAD if value is None or math.isnan(value) else format(value, spec)


def effects_tables(effects: pd.DataFrame, alpha: float) -> list[DisplayTable]:
    """One table per study: axis, change, Δ mIoU with its interval, costs, verdict."""
    tables = []
    tested = int(effects["p"].notna().sum())
    level = round(100 * (1 - alpha), 2)
    level_text = f"{level:g}%"
    for study, group in effects.groupby("study", sort=False):
        cols = [
            Column("axis", group["axis"].tolist(), group["axis"].tolist()),
            Column("change", group["change"].tolist(), group["change"].tolist()),
            Column("Δ mIoU", [_signed(v) for v in group["estimate"]],
                   [None if math.isnan(v) else v for v in group["estimate"]], numeric=True),
            Column(f"{level_text} CI", _intervals(group["ci_low"], group["ci_high"]),
                   [None if math.isnan(v) else v for v in group["ci_low"]], numeric=True),
            _numeric("p (Holm)", group["p_holm"], ".3g", NO_SPREAD),
            _numeric("n", group["n"], ",.0f"),
            Column("Δ params", [_pct(v) for v in group["params_pct"]],
                   _raw(group["params_pct"]), numeric=True),
            Column("Δ GFLOPs", [_pct(v) for v in group["gflops_pct"]],
                   _raw(group["gflops_pct"]), numeric=True),
            Column("Δ latency", [_pct(v) for v in group["latency_pct"]],
                   _raw(group["latency_pct"]), numeric=True),
            Column("verdict", group["verdict"].tolist(), group["verdict"].tolist()),
            Column("method", group["method"].tolist(), group["method"].tolist()),
        ]
        notes = [
            f"Δ mIoU in points with its {level_text} t-interval; n: seeds paired across every "
            "configuration of the effect (paired t), else trials (Welch t). Main effect: mean "
            "over the other axes' cells; interaction: difference of differences.",
            f"Verdict: 'beyond seed noise' when the Holm-adjusted p (over the {tested} tested "
            f"effects of this report) is below {alpha:g} and the interval at the Holm step's "
            "level excludes 0; 'undecided (n<2)' when fewer than two seeds pair up and a side "
            "has one trial. Δ params/GFLOPs/latency: change in percent over the same cells.",
        ]
        tables.append(DisplayTable(title=f"{study}: effects of each axis on mIoU",
                                   columns=cols, notes=notes))
    return tables


def _pct(value: float) -> str:
    if value is None or math.isnan(value):
        return "-"
    return f"{value:+.0f}%" if abs(value) >= 10 else f"{value:+.1f}%"


def _raw(series: pd.Series) -> list:
    return [None if math.isnan(v) else float(v) for v in series.astype(float)]


def effects_json(effects: pd.DataFrame) -> str:
    """JSON records: NaN as null (n < 2), ``configs`` as a list."""
    return effects.to_json(orient="records", indent=2)
