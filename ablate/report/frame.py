"""Database -> pandas: one row per trial, then one row per configuration."""

from __future__ import annotations

import pandas as pd

from ablate.report.pareto import pareto_mask

TRIAL_COLUMNS = [
    "study", "trial_id", "name", "config_name", "variant", "seed", "status", "params",
    "gflops", "flops_convention", "resolution", "latency_ms", "miou", "pixel_acc",
]


def trials_frame(store, studies: list[str] | None = None) -> pd.DataFrame:
    """Every trial with its final figures; mIoU and pixel accuracy in percent."""
    records = []
    for study in studies or [s.name for s in store.studies()]:
        records += store.trials(study)
    costs = store.get_costs([r.arch_id for r in records])
    rows = []
    for r in records:
        cost = costs.get(r.arch_id)
        row = {
            "study": r.study, "trial_id": r.trial_id, "name": r.name,
            "config_name": r.config_name, "variant": r.variant, "seed": r.seed,
            "status": r.status,
            "params": cost.params if cost else None,
            "gflops": cost.gflops if cost else None,
            "flops_convention": cost.flops_convention if cost else None,
            "resolution": "x".join(map(str, cost.resolution)) if cost else None,
            "latency_ms": r.metrics.get("latency_ms"),
            "miou": _pct(r.metrics.get("miou")),
            "pixel_acc": _pct(r.metrics.get("pixel_acc")),
        }
        for key, value in r.metrics.items():
            if key not in ("miou", "pixel_acc", "latency_ms") and "/" not in key:
                row.setdefault(key, value)
        for key, value in r.axes.items():
            row[f"axis:{key}"] = value if not isinstance(value, list) else str(value)
        for key, value in (r.published or {}).items():
            row[f"published_{key}"] = value
        rows.append(row)
    frame = pd.DataFrame(rows)
    if frame.empty:
        return pd.DataFrame(columns=TRIAL_COLUMNS)
    return frame


def _pct(value: float | None) -> float | None:
    return None if value is None else 100.0 * value


def config_frame(trials: pd.DataFrame) -> pd.DataFrame:
    """Mean, standard deviation and count over seeds per configuration; Pareto marked.

    A configuration is optimal when no other has both fewer parameters and a higher
    mean mIoU (or equal on one and better on the other).
    """
    done = trials[trials["status"] == "done"]
    if done.empty:
        return pd.DataFrame(columns=["study", "config_name", "variant", "n", "miou_mean",
                                     "miou_std", "params", "gflops", "latency_ms", "pareto"])
    keys = ["study", "config_name"]
    axis_cols = [c for c in done.columns if c.startswith("axis:") or c.startswith("published_")]
    grouped = done.groupby(keys, sort=False)
    out = grouped.agg(
        variant=("variant", "first"), n=("seed", "count"),
        miou_mean=("miou", "mean"), miou_std=("miou", "std"),
        pixel_acc=("pixel_acc", "mean"), params=("params", "first"), gflops=("gflops", "first"),
        flops_convention=("flops_convention", "first"), resolution=("resolution", "first"),
        latency_ms=("latency_ms", "median"),
    ).reset_index()
    if axis_cols:
        firsts = grouped[axis_cols].first().reset_index(drop=True)
        out = pd.concat([out, firsts], axis=1)
    out["miou_std"] = out["miou_std"].fillna(0.0)
    out["pareto"] = pareto_mask(out[["params", "miou_mean"]].astype(float).values, (False, True))
    return out
