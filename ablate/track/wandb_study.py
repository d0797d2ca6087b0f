"""W&B: the study's own run, what W&B's grouping cannot show.

One run per ``ablate run`` (``job_type="summary"``, name ``<study>/summary``, tags
``study:<name>`` and ``summary``), in ``<runs dir>/<study>/wandb``, logged by the runner
after the trials: the effects table (a ``wandb.Table``: axis, change, estimate with its
interval, n, p, verdict, cost changes), the configurations table (mIoU mean ± sd over n
seeds, costs, Pareto mark) and the Pareto plots as images (``pareto/params``, ...).
W&B groups seeds by ``group`` and draws a band, but its API cannot return a group's
spread (wandb#5634) and its legend cannot show n or a standard error (wandb#8500); these
tables carry both, computed as ``ablate report --effects`` computes them.
"""

from __future__ import annotations

import math
import tempfile
from pathlib import Path
from typing import Any

from ablate.track.wandb import open_run, project_for

EFFECT_COLUMNS = ("study", "kind", "axis", "change", "metric", "unit", "n", "method", "estimate",
                  "ci_low", "ci_high", "ci_level", "p", "p_adj", "verdict", "params_pct",
                  "gflops_pct", "latency_pct", "design")
CONFIG_COLUMNS = ("study", "config_name", "variant", "n", "miou_mean", "miou_std", "pixel_acc",
                  "params", "gflops", "flops_convention", "resolution", "latency_ms", "pareto")


def cell(value: Any) -> Any:
    """A table cell: numpy scalars as Python numbers, NaN as an empty cell."""
    if hasattr(value, "item") and not isinstance(value, str | bytes):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return str(value)


def effects_rows(effects) -> tuple[list[str], list[list[Any]]]:
    """The effects frame (``analysis.effects``) as columns and rows, intervals and n kept."""
    columns = [c for c in EFFECT_COLUMNS if c in effects.columns]
    return columns, [[cell(v) for v in row] for row in effects[columns].itertuples(index=False)]


def mean_sd(mean: Any, sd: Any) -> str:
    """``31.05 ± 0.82`` (percent); the mean alone when there is no spread to show (n = 1)."""
    if not isinstance(mean, int | float) or not math.isfinite(mean):
        return ""
    if not isinstance(sd, int | float) or not math.isfinite(sd):
        return f"{mean:.2f}"
    return f"{mean:.2f} ± {sd:.2f}"


def configs_rows(configs) -> tuple[list[str], list[list[Any]]]:
    """The configurations (the report's frame, percent) with ``miou`` as mean ± sd, n and
    each axis's value (``axis:model.x`` as ``model.x``)."""
    base = [c for c in CONFIG_COLUMNS if c in configs.columns]
    axes = [c for c in configs.columns if c.startswith("axis:")]
    columns = ["configuration" if c == "config_name" else c for c in base[:3]]
    columns += ["miou", *base[3:], *(c.removeprefix("axis:") for c in axes)]
    rows = []
    for record in configs.to_dict("records"):
        row = [cell(record[c]) for c in base[:3]]
        row.append(mean_sd(cell(record.get("miou_mean")), cell(record.get("miou_std"))))
        row += [cell(record[c]) for c in (*base[3:], *axes)]
        rows.append(row)
    return columns, rows


def finish_study(options: dict[str, Any], study: str, report, figures: list[tuple[str, str, bytes]],
                 folder: str | Path, failed: bool = False) -> dict[str, Any]:
    """The summary run: ``report`` (``report.build.Report``, with effects) as tables,
    ``figures`` (stem, caption, PNG bytes) as images; failed (exit code 1) when the study
    had failed trials."""

    import wandb  # lazy: optional wandb

    run, mode = open_run(options.get("mode") or "offline",
                         project=options.get("project") or project_for(study), dir=str(folder),
                         name=f"{study}/summary", job_type="summary", reinit="create_new",
                         tags=[f"study:{study}", "summary"], config={"study": study})
    where = {"run_id": run.id, "mode": mode}
    try:
        where["dir"] = str(run.settings.sync_dir)
        data: dict[str, Any] = {}
        if report.effects is not None and not report.effects.empty:
            columns, rows = effects_rows(report.effects)
            data["effects"] = wandb.Table(columns=columns, data=rows)
        if not report.configs.empty:
            columns, rows = configs_rows(report.configs)
            data["configurations"] = wandb.Table(columns=columns, data=rows)
        with tempfile.TemporaryDirectory() as tmp:
            for stem, caption, png in figures:
                path = Path(tmp) / f"{stem}.png"
                path.write_bytes(png)
                data[f"pareto/{stem.removeprefix('pareto_')}"] = wandb.Image(str(path),
                                                                             caption=caption)
            if data:
                run.log(data)  # copies the images into the run's folder
    finally:
        run.finish(exit_code=1 if failed else 0)
    return where
