"""``ablate report``: tables, Pareto plots, per-class and training views, one HTML page."""

from __future__ import annotations

from contextlib import nullcontext

import click

from ablate.cli import main
from ablate.cli.options import db_option, given, make_console, not_nan, option_name
from ablate.errors import UserInputError
from ablate.heap import fewer_collections
from ablate.trials.lifecycle import TrialStatus

FORMATS = ("table", "markdown", "csv", "json", "html", "latex")

where_option = click.option(
    "--where", "where", multiple=True, metavar="KEY=VALUE",
    help="Only rows where a column or axis key (a key the study varies, or the short name "
         "the table shows) has this value, e.g. --where model.keep_last_expansion=false "
         "(KEY!=VALUE excludes; repeatable, all must hold).",
)


@main.command("report")
@db_option
@click.option("--study", "studies", multiple=True, metavar="NAME",
              help="Only this study (repeatable; default: all).")
@where_option
@click.option("--baseline", metavar="NAME",
              help="Add the change against this configuration or variant: params, GFLOPs and "
                   "latency in percent, mIoU in points (it must pass --where).")
@click.option("--effects", is_flag=True,
              help="Add the effect of each axis on mIoU (main effects and two-way "
                   "interactions) with intervals, costs in percent and a verdict.")
@click.option("--alpha", type=click.FloatRange(0.0, 0.5, min_open=True), default=0.05,
              show_default=True, callback=not_nan,
              help="Error rate: of the effects (for all the verdicts of a study at once), "
                   "--baseline intervals and Pareto marks. A study grown by --until-decided "
                   "keeps the alpha it was grown with.")
@click.option("--min-effect", type=click.FloatRange(0.0, 100.0, min_open=True), default=None,
              metavar="POINTS", callback=not_nan,
              help="With --effects: the equivalence margin in mIoU points; an effect whose "
                   "interval lies within ± this is 'equivalent'. No default.")
@click.option("--sort", "sort_key", metavar="COLUMN",
              help="Sort by this column or axis key, ascending (default: mIoU, best first).")
@click.option("--desc", is_flag=True, help="With --sort: descending.")
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="table", show_default=True,
              help="table: terminal. html: one page OUT/report.html with the tables and every "
                   "figure (Pareto always) instead of PNG and SVG files. latex: booktabs "
                   "tables on stdout and OUT/report.tex, a document pdflatex compiles.")
@click.option("--json", "as_json", is_flag=True, help="Same as --format json.")
@click.option("--pareto", is_flag=True,
              help="Write Pareto plots (PNG and SVG) of mIoU against params, GFLOPs and latency; "
                   "with --effects also the effect figures (see --forest).")
@click.option("--forest", is_flag=True,
              help="Write the effect figures (implies --effects): the forest plot, P(B > A) "
                   "and every seed's mIoU per configuration, PNG and SVG.")
@click.option("--x", "x_axes", multiple=True, metavar="COLUMN",
              help="Plot mIoU against this numeric column instead (repeatable; implies --pareto).")
@click.option("--log-x", is_flag=True, help="Log scale on the cost axis.")
@click.option("--per-class", is_flag=True,
              help="IoU per class: a table and a heatmap, classes x configurations; with "
                   "--effects also each main effect's change in every class's IoU.")
@click.option("--curves", is_flag=True, help="Plot train loss and validation mIoU per epoch.")
@click.option("--curves-by", type=click.Choice(["config", "trial"]), default="config",
              show_default=True,
              help="config: the mean over seeds per configuration with a min-max band; trial: "
                   "one line per seed, coloured by configuration.")
@click.option("--curves-x", type=click.Choice(["epoch", "step"]), default="epoch",
              show_default=True, help="The curves' x axis.")
@click.option("--estimates", is_flag=True,
              help="Instead of the tables: each run's time estimate (recorded when it "
                   "started) beside its actual wall time and device-hours (only --study and "
                   "--json go with it).")
@click.option("--out", "out_dir", default="results", show_default=True,
              type=click.Path(file_okay=False),
              help="Where plots and report.html are written (created, or refused, before any "
                   "work).")
@fewer_collections()  # the whole report, its imports included
def report(db: str | None, studies: tuple[str, ...], where: tuple[str, ...],
           baseline: str | None, effects: bool, alpha: float, min_effect: float | None,
           sort_key: str | None,
           desc: bool, fmt: str, as_json: bool,
           pareto: bool, forest: bool, x_axes: tuple[str, ...], log_x: bool, per_class: bool,
           curves: bool,
           curves_by: str, curves_x: str, out_dir: str, estimates: bool = False) -> None:
    """One row per configuration: mIoU mean and std over seeds, params, GFLOPs, latency.

    The recipe's axes are columns; rows on the params/mIoU Pareto front are marked
    with a star; published figures, where a variant has them, stand beside the
    measured ones with the difference.

    \b
    Example:
        ablate report
        ablate report --study mnv3_expansion --baseline conventional --format markdown
        ablate report --where model.keep_last_expansion=false --sort params --pareto --log-x
        ablate report --format html --per-class --curves --out results/
        ablate report --study quickstart --effects
        ablate report --study quickstart --forest --per-class --out results/
        ablate report --study quickstart --effects --format latex --out paper/
        ablate report --study quickstart --estimates
    """
    from ablate.store import Store  # lazy: loads sqlalchemy

    if as_json:
        if fmt not in ("table", "json"):
            raise click.UsageError(f"--json and --format {fmt} contradict each other")
        fmt = "json"
    if desc and sort_key is None:
        raise click.UsageError("--desc needs --sort COLUMN")
    _check_combinations(estimates, effects, forest, curves, pareto or bool(x_axes) or fmt == "html")
    effects = effects or forest
    store = Store(db, must_exist=True)  # a report never creates a database
    if estimates:
        from ablate.cli.time_estimate import print_estimates  # lazy: only with --estimates

        print_estimates(store, list(dict.fromkeys(studies)) or None, fmt)
        return
    writes = fmt in ("html", "latex") or pareto or bool(x_axes) or forest or per_class or curves
    with _out_folder(out_dir, store) if writes else nullcontext():  # checked before any work
        _report(store, studies, where, baseline=baseline, effects=effects, alpha=alpha,
                min_effect=min_effect, sort_key=sort_key, desc=desc, fmt=fmt, pareto=pareto,
                forest=forest, x_axes=x_axes, log_x=log_x, per_class=per_class, curves=curves,
                curves_by=curves_by, curves_x=curves_x, out_dir=out_dir)


# what each option needs given to mean anything: refused alone rather than ignored
_NEEDS = {"min_effect": "--effects (or --forest)", "curves_by": "--curves",
          "curves_x": "--curves", "log_x": "--pareto or --x COLUMN (or --format html)"}
# with --estimates only --study, --format / --json and --db count
_NOT_WITH_ESTIMATES = ("where", "baseline", "effects", "alpha", "min_effect", "sort_key", "desc",
                       "pareto", "forest", "x_axes", "log_x", "per_class", "curves",
                       "curves_by", "curves_x", "out_dir")


def _check_combinations(estimates: bool, effects: bool, forest: bool, curves: bool,
                        plots_pareto: bool) -> None:
    """Options that would be silently ignored: one line naming both, exit 2."""
    ctx = click.get_current_context()
    if estimates:
        for param in _NOT_WITH_ESTIMATES:
            if given(ctx, param):
                raise click.UsageError(f"--estimates and {option_name(ctx, param)} contradict "
                                       "each other: "
                                       "--estimates shows each run's time estimate instead of "
                                       "the tables and figures")
    uses = {"min_effect": effects or forest, "curves_by": curves, "curves_x": curves,
            "log_x": plots_pareto}
    for param, needs in _NEEDS.items():
        if given(ctx, param) and not uses[param]:
            raise click.UsageError(f"{option_name(ctx, param)} needs {needs}")
    params = ctx.params
    if (effects and params["fmt"] == "csv" and not params["as_json"]
            and not (forest or plots_pareto or params["per_class"])):
        # the CSV is the configurations table; no figure would draw the effects either
        raise click.UsageError("--effects and --format csv contradict each other: the CSV "
                               "holds the configurations only; use --format json (or "
                               "markdown, html, latex) for the effects")


def _out_folder(out_dir: str, store):
    """``--out``: created (or checked) before any work; nothing written there may be the
    database."""
    from ablate.report import outputs  # lazy: loads sqlalchemy

    outputs.refuse_database("--out", out_dir, outputs.database_files(store.url))
    return outputs.out_folder("--out", out_dir)


def _report(store, studies, where, *, baseline, effects, alpha, min_effect, sort_key, desc,
            fmt, pareto, forest, x_axes, log_x, per_class, curves, curves_by, curves_x,
            out_dir) -> None:
    """The tables on stdout and the figures (or the page) in ``out_dir``, which exists."""
    from ablate.report import build  # lazy: loads numpy, pandas, sqlalchemy

    result = build.build_report(store, list(dict.fromkeys(studies)), where=where,
                                baseline=baseline, sort=sort_key, descending=desc,
                                per_class=per_class, effects=effects, alpha=alpha,
                                min_effect=min_effect)
    plot_pareto = (pareto or bool(x_axes) or fmt == "html") and not result.configs.empty
    axes = build.cost_axes(result.configs, x_axes) if plot_pareto else []  # checked first

    figures = []
    if not result.configs.empty:
        if forest or (effects and pareto) or fmt == "html":
            figures += build.seed_figures(result)  # every seed's mIoU per configuration
        if effects and (forest or pareto or fmt in ("html", "latex")):
            figures += build.effect_figures(result)  # forest plot, P(B > A)
        if plot_pareto:
            figures += build.pareto_figures(result, axes, log_x)
            figures += build.latency_figures(result)  # latency by batch size, per runtime
        if per_class:
            figures += build.per_class_figures(result)
            figures += build.class_effect_figures(result)  # with --effects
        if curves:
            figures += build.curve_figures(store, result, curves_by, curves_x)
        if forest or plot_pareto or fmt in ("html", "latex"):
            figures += build.tuning_figures(result)  # tuned studies: tuning curves
    from ablate.report import outputs  # lazy: loads sqlalchemy

    _refuse_database_targets(store, result, figures, out_dir, fmt)
    _print_tables(result, fmt, per_class, where)
    try:
        written = _write_figures(result, figures, out_dir, fmt)
        if fmt == "latex" and not result.configs.empty:  # beside the figures it may \includegraphics
            from ablate.report.latex import write_tex  # lazy: loads numpy, pandas

            included = [(f.stem, f.caption) for f in figures
                        if f.stem.startswith(("forest", "class_effects", "tuning",
                                              "per_class_iou", "curves"))]
            written.append(write_tex(result.configs, result.effects, out_dir, included,
                                     tuning=result.tuning, alpha=result.alpha))
    except OSError as err:  # the disk filled up, say: that file is as it was
        raise UserInputError(f"--out {out_dir}: cannot write {err.filename or out_dir}: "
                             f"{outputs.reason(err)}") from None
    for path in written:  # machine-readable stdout stays parseable
        click.echo(f"wrote {path}", err=fmt in ("csv", "json", "latex"))
    for fig in figures:
        if fig.note:
            click.echo(f"note: {fig.note}", err=True)


def _refuse_database_targets(store, result, figures, out_dir: str, fmt: str) -> None:
    """No file the report writes may be the database (one named report.html, say)."""
    from pathlib import Path

    from ablate.report import outputs  # lazy: loads sqlalchemy

    database = outputs.database_files(store.url)
    if not database:
        return
    out = Path(out_dir)
    if fmt == "html":
        names = ["report.html"]
    else:
        names = [f"{fig.stem}.{suffix}" for fig in figures for suffix in _suffixes(fmt)]
        names += ["report.tex"] if fmt == "latex" and not result.configs.empty else []
    for name in names:
        if outputs.is_database(out / name, database):
            raise UserInputError(f"--out {out_dir}: the report would write {out / name}, "
                                 "which is the results database; give another folder "
                                 "(nothing was written)")


def _suffixes(fmt: str) -> tuple[str, ...]:
    return ("png", "svg", "pdf") if fmt == "latex" else ("png", "svg")  # pdflatex: PDF


def _print_tables(result, fmt: str, per_class: bool, where: tuple[str, ...]) -> None:
    from ablate.report import render  # lazy: loads numpy, pandas

    if fmt in ("csv", "json") and result.configs.empty and where and result.unmatched:
        # a typo: said on stderr, so the CSV or JSON on stdout stays parseable
        click.echo(f"No finished trial matches --where {' '.join(where)}"
                   + "".join(f"; {line}" for line in result.unmatched) + ".", err=True)
    if fmt == "csv":
        click.echo(render.to_csv(result.configs), nl=False)
        return
    if fmt == "json":
        if result.effects is None and not result.tuning:
            click.echo(render.to_json(result.configs))
            return
        import json

        from ablate.report.effects import effects_json  # lazy: loads numpy, pandas
        from ablate.report.tuning import tuning_json  # lazy: loads numpy, pandas

        effects = ("" if result.effects is None else ',\n"effects": '
                   + effects_json(result.effects))
        classes = ("" if result.per_class_effects is None else ',\n"per_class_effects": '
                   + render.to_json(result.per_class_effects))
        tuning = ("" if not result.tuning else ',\n"tuning": '
                  + json.dumps(tuning_json(result.tuning), indent=1))
        click.echo('{\n"configurations": ' + render.to_json(result.configs) + effects
                   + classes + tuning + "\n}")
        return
    if fmt == "html":
        return
    if fmt == "latex" and not result.configs.empty:
        from ablate.report.latex import to_latex  # lazy: loads numpy, pandas

        click.echo(to_latex(result.configs, result.effects, result.tuning, result.alpha),
                   nl=False)
        return
    shown = set(result.configs["study"]) if not result.configs.empty else set()
    unshown = [line for study in dict.fromkeys(result.trials["study"]) if study not in shown
               for line in render.failed_notes(result.trials, str(study))]
    if result.configs.empty:
        tuning = [study for study, view in (result.tuning or {}).items() if not view.chosen]
        if tuning and not where:  # its tuning trials are not its tables' trials
            for study in tuning:
                click.echo(f"Study {study!r} has no selection yet ([tune]): its tables "
                           "read the confirmation trials, which run once every tuning trial "
                           "is finished and a draw is chosen for each configuration "
                           f"('ablate status {study}' shows the tuning trials; the same "
                           "'ablate run' goes on).")
        elif where:
            click.echo(f"No finished trial matches --where {' '.join(where)}"
                       + "".join(f"; {line}" for line in result.unmatched) + ".")
        elif _all_failed(result.trials):  # trials exist: "run it" would mislead
            for study, group in result.trials.groupby("study", sort=False):
                trials = f"{len(group)} trial" + ("" if len(group) == 1 else "s")
                click.echo(f"Every trial of study {study!r} failed ({trials}); "
                           f"see why with: ablate status {study}")
            return
        else:
            click.echo("No finished trials in the database yet. Run: ablate run RECIPE")
        for line in unshown:  # every trial failed: say so rather than nothing
            click.echo(line)
        return
    tables = render.config_tables(result.configs, result.trials, result.descriptions if
                                  fmt == "markdown" else None)
    from ablate.report.runtimes import runtime_tables  # lazy: loads numpy, pandas

    tables += runtime_tables(result.configs)  # only when a trial measured other runtimes
    if per_class:
        tables += render.per_class_tables(result.configs)
    if result.effects is not None:
        from ablate.report.effects import effects_tables  # lazy: loads numpy, pandas

        tables += effects_tables(result.effects, result.alpha)
    if result.per_class_effects is not None:
        from ablate.report.effect_views import per_class_effect_tables  # lazy: loads pandas

        tables += per_class_effect_tables(result.per_class_effects)
    if result.tuning:
        from ablate.report.tuning import tuning_tables  # lazy: loads numpy, pandas

        tables += tuning_tables(result.tuning)
    if fmt == "markdown":
        click.echo(render.to_markdown(tables), nl=False)
    else:
        render.print_rich(tables, make_console())
    for line in unshown:  # studies without a table: every configuration failed
        click.echo(("\n" if fmt == "markdown" else "") + line)


def _all_failed(trials) -> bool:
    """Trials exist and every one of them failed."""
    return not trials.empty and bool((trials["status"].astype(str) == TrialStatus.FAILED).all())


def _write_figures(result, figures, out_dir: str, fmt: str) -> list:
    """Figures as PNG and SVG files, or all of them inside OUT/report.html."""
    from ablate.report.build import write_html  # lazy: loads numpy, pandas, sqlalchemy
    from ablate.report.plots import figure_svg, save_figure  # lazy: loads numpy, pandas

    if fmt == "html":
        svgs = {fig.stem: figure_svg(fig.figure) for fig in figures}
        return [write_html(result, figures, out_dir, svgs)]
    written = []
    for fig in figures:
        written += save_figure(fig.figure, out_dir, fig.stem, _suffixes(fmt))
    return written
