"""Pareto plots: mIoU against a cost axis, frontier as a step line, points labelled."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from ablate.report.pareto import frontier_steps, pareto_mask

AXIS_LABELS = {
    "params": "parameters",
    "gflops": "GFLOPs",
    "latency_ms": "latency (ms, batch 1)",
}


def pareto_plot(configs: pd.DataFrame, x: str, out_dir: str | Path, *, y: str = "miou_mean",
                log_x: bool = False, stem: str | None = None) -> list[Path]:
    """Write ``pareto_<x>.png`` and ``.svg``; returns the paths written."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    data = configs.dropna(subset=[x, y])
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(7.5, 5.0), dpi=120)
    if not data.empty:
        on_front = pareto_mask(data[[x, y]].astype(float).values, (False, True))
        front = data[on_front]
        rest = data[[not f for f in on_front]]
        yerr = data["miou_std"] if "miou_std" in data and y == "miou_mean" else None
        ax.errorbar(rest[x], rest[y], yerr=None if yerr is None else yerr[rest.index],
                    fmt="o", color="tab:gray", alpha=0.35, label="dominated")
        ax.errorbar(front[x], front[y], yerr=None if yerr is None else yerr[front.index],
                    fmt="o", color="tab:blue", label="Pareto-optimal")
        fx, fy = frontier_steps(front[x].tolist(), front[y].tolist())
        ax.step(fx, fy, where="post", color="tab:blue", linewidth=1.2)
        for _, row in data.iterrows():
            ax.annotate(str(row["config_name"]), (row[x], row[y]), textcoords="offset points",
                        xytext=(4, 4), fontsize=7, alpha=1.0 if row.name in front.index else 0.5)
    ax.set_xlabel(AXIS_LABELS.get(x, x) + (" (log)" if log_x else ""))
    ax.set_ylabel("mIoU (%)" if y == "miou_mean" else y)
    if log_x:
        ax.set_xscale("log")
    ax.grid(True, alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    ax.set_title(f"mIoU against {AXIS_LABELS.get(x, x)}")
    fig.tight_layout()
    stem = stem or f"pareto_{x}"
    paths = [out_dir / f"{stem}.png", out_dir / f"{stem}.svg"]
    for path in paths:
        fig.savefig(path)
    plt.close(fig)
    return paths
