"""``ablate report``: tables and Pareto plots from the database."""

from __future__ import annotations

import click

from ablate.cli import main
from ablate.cli.options import db_option, fmt_float, fmt_int, json_option, make_console


@main.command("report")
@db_option
@click.option("--study", "studies", multiple=True, metavar="NAME",
              help="Only this study (repeatable; default: all).")
@click.option("--pareto", is_flag=True, help="Also write Pareto plots (PNG and SVG).")
@click.option("--x", "x_axes", multiple=True, metavar="COLUMN",
              help="Cost axes to plot against mIoU (default: params and gflops).")
@click.option("--log-x", is_flag=True, help="Log scale on the cost axis.")
@click.option("--out", "out_dir", default="results", show_default=True,
              type=click.Path(file_okay=False), help="Where plots are written.")
@json_option
def report(db: str | None, studies: tuple[str, ...], pareto: bool, x_axes: tuple[str, ...],
           log_x: bool, out_dir: str, as_json: bool) -> None:
    """One row per configuration: mIoU mean and std over seeds, params, GFLOPs, latency.

    Rows on the params/mIoU Pareto front are marked with a star.

    \b
    Example:
        ablate report
        ablate report --study quickstart --pareto --out results/
    """
    from ablate.errors import UserInputError
    from ablate.report.frame import config_frame, trials_frame
    from ablate.store import Store

    store = Store(db)
    known = [s.name for s in store.studies()]
    for name in studies:
        if name not in known:
            raise UserInputError(
                f"--study: no study {name!r} in the database; known: {', '.join(known) or 'none'}")
    trials = trials_frame(store, list(studies) or None)
    configs = config_frame(trials)
    if as_json:
        click.echo(configs.to_json(orient="records", indent=2))
    else:
        _print_table(configs, trials)
    if pareto:
        from ablate.report.plots import pareto_plot

        axes = x_axes or ("params", "gflops")
        for x in axes:
            if x not in configs.columns:
                raise UserInputError(
                    f"--x: no column {x!r}; numeric columns: "
                    f"{', '.join(c for c in configs.columns if configs[c].dtype.kind in 'fi')}")
        written = []
        for x in axes:
            written += pareto_plot(configs, x, out_dir, log_x=log_x)
        if not as_json:
            for path in written:
                click.echo(f"wrote {path}")


def _print_table(configs, trials) -> None:
    from rich.table import Table

    console = make_console()
    if configs.empty:
        console.print("No finished trials in the database yet. Run: ablate run RECIPE")
        return
    for study, group in configs.groupby("study", sort=False):
        n_trials = int((trials["study"] == study).sum())
        table = Table(title=f"{study}: {len(group)} configurations, {n_trials} trials")
        for col in ("", "configuration", "mIoU %", "± std", "n", "params", "GFLOPs", "latency ms"):
            table.add_column(col, justify="left" if col in ("", "configuration") else "right")
        for _, row in group.sort_values("miou_mean", ascending=False).iterrows():
            table.add_row("★" if row["pareto"] else "", str(row["config_name"]),
                          fmt_float(row["miou_mean"], 2), fmt_float(row["miou_std"], 2),
                          str(int(row["n"])), fmt_int(row["params"]), fmt_float(row["gflops"]),
                          fmt_float(row["latency_ms"], 2))
        console.print(table)
        conv, res = group["flops_convention"].iloc[0], group["resolution"].iloc[0]
        console.print(f"★ Pareto-optimal in params vs mIoU. mIoU: one confusion matrix over the "
                      f"validation set, mean ± std over seeds. GFLOPs: {conv} at {res}. "
                      "Latency: median ms, batch 1, on the device that trained the trial.")
