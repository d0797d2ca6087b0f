"""A report from the store: frames, figures and the HTML page, ready for any output.

The CLI only picks the output; everything it shows is computed here, in this order:
trials -> ``--where`` on trial columns -> configurations -> ``--baseline`` ->
``--where`` on configuration columns -> ``--sort``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from ablate import __version__
from ablate.analysis.design import Design
from ablate.analysis.effects import (
    BETTER,
    WORSE,
    compare_configs,
    effect_cells,
    effects_table,
    family_sizes,
    level_order,
)
from ablate.analysis.improvement import seed_columns
from ablate.analysis.per_class import per_class_effects
from ablate.analysis.stats import UNTESTED
from ablate.errors import UserInputError
from ablate.report.effect_views import improvement_tables, per_class_effect_tables
from ablate.report.effects import effects_tables
from ablate.report.export import require_studies
from ablate.report.figures.classes import class_effects_figure
from ablate.report.figures.effects import (
    effect_labels,
    forest_figure,
    improvement_figure,
    seeds_figure,
)
from ablate.report.frame import config_frame, epoch_frame, trials_frame
from ablate.report.outputs import write_text
from ablate.report.page import Image, Section, render_page
from ablate.report.plots import AXIS_LABELS, curves_figure, pareto_figure, per_class_figure
from ablate.report.render import config_tables, per_class_tables, trial_counts
from ablate.report.runtimes import has_runtime_latency, latency_by_batch_figure, runtime_tables
from ablate.report.settings import holds_integers
from ablate.report.tables import (
    DELTAS,
    add_baseline,
    column_for,
    filter_rows,
    no_column,
    parse_where,
    per_class_table,
    sort_rows,
    unmatched,
)
from ablate.report.tuning import METRIC_NAMES, mark_tuned, tuning_tables, tuning_views
from ablate.trials.lifecycle import TrialStatus

DEFAULT_COST_AXES = ("params", "gflops", "latency_ms")
HEATMAP_MAX = 40  # configurations in a per-class heatmap
SEEDS_MAX = 60  # configurations in the every-seed figure


@dataclass(frozen=True)
class Report:
    trials: pd.DataFrame
    configs: pd.DataFrame
    descriptions: dict[str, str]
    baseline: str | None = None
    effects: pd.DataFrame | None = None  # ablate.analysis.effects.effects_table, when asked
    alpha: float = 0.05
    designs: dict | None = None  # study -> ablate.analysis.design.Design (recorded ones)
    min_effect: float | None = None  # the equivalence margin of studies without a design
    per_class_effects: pd.DataFrame | None = None  # analysis.per_class, with --per-class
    tuning: dict | None = None  # study -> report.tuning.TuningView, for tuned studies
    unmatched: list[str] = field(default_factory=list)  # --where values no trial holds


@dataclass(frozen=True)
class Figure:
    stem: str  # file name without suffix
    caption: str
    figure: object  # matplotlib Figure
    note: str = ""  # a line the CLI prints beside "wrote ..." (and the caption carries)


def build_report(store, studies: list[str] | tuple[str, ...] = (), *,
                 where: list[str] | tuple[str, ...] = (), baseline: str | None = None,
                 sort: str | None = None, descending: bool = False,
                 per_class: bool = False, effects: bool = False, alpha: float = 0.05,
                 min_effect: float | None = None, study_option: str = "--study: ") -> Report:
    """Configurations of ``studies`` (default: all), filtered, compared and sorted; a
    study the database lacks is one line starting with ``study_option``.

    Seed noise is tested at ``alpha``: the ``--baseline`` mIoU change gets its interval
    (``miou_delta_low``/``_high``), Pareto-optimal rows a mark (``pareto_mark``) and,
    with ``effects``, every axis its effect (``Report.effects``). A study grown by
    ``--until-decided`` is read with its recorded design; ``min_effect`` is the
    equivalence margin of the others. The family of a study's effects is all of them,
    whatever ``--where`` shows.
    """
    descriptions = require_studies(store, studies, study_option)
    conditions = parse_where(where)
    # only the figures a table shows (and any --where names): no scan of every metric row
    trials = trials_frame(store, list(studies) or None, per_class=per_class,
                          keys=[c.key for c in conditions], settings=True)
    every_trial = trials  # the family of each study's effects, before --where
    designs = {name: Design.from_json(data)
               for name, data in store.study_designs(list(studies) or None).items()}
    on_trials = [c for c in conditions if trials.empty or column_for(trials, c.key)]
    trials = filter_rows(trials, on_trials)
    configs = config_frame(trials)
    if not configs.empty:
        from ablate.report.runtimes import add_runtime_columns  # latency_ms@<runtime>/bs<n>

        configs = add_runtime_columns(store, trials, configs)
    configs = pareto_marks(configs, trials, alpha, designs)  # its columns even with no row
    if baseline is not None and not configs.empty:
        hidden = frozenset(every_trial["config_name"]) | frozenset(every_trial["variant"])
        configs = baseline_intervals(add_baseline(configs, baseline, hidden), trials, alpha,
                                     designs)
    elif baseline is not None:  # no row to compare: its columns still (a CSV's header)
        configs = configs.assign(baseline=None, **{delta: np.nan for delta, _ in DELTAS.values()},
                                 miou_delta_low=np.nan, miou_delta_high=np.nan)
    if not configs.empty:
        configs = filter_rows(configs, [c for c in conditions if c not in on_trials])
        configs = sort_rows(configs, sort, descending)
    table = classes = None
    if effects:
        shown = set(zip(configs["study"], configs["config_name"])) if not configs.empty else set()
        # a boolean array, not a list: an empty list would select columns, not rows
        kept = trials[np.array([key in shown for key in zip(trials["study"],
                                                            trials["config_name"])], dtype=bool)]
        studies_shown = set(kept["study"])
        # the family is each study's own effects, whatever --where shows
        families = family_sizes(every_trial[every_trial["study"].isin(studies_shown)])
        # and its levels in recipe order, whichever configurations are shown
        order = level_order(every_trial[every_trial["study"].isin(studies_shown)])
        table = effects_table(kept, baseline=baseline, alpha=alpha, min_effect=min_effect,
                              designs=designs, families=families, order=order)
        # P(B > A) and the per-seed differences: descriptive columns beside the verdict
        table = seed_columns(table, effect_cells(kept, baseline=baseline, order=order))
        if per_class:
            classes = per_class_effects(kept, baseline=baseline, alpha=alpha, designs=designs,
                                        order=order)
    # tuned studies: chosen values, tuning curves, the effect at every draw (report.tuning)
    views = tuning_views(store, list(studies) or None, table, baseline) or None
    if views and table is not None:
        table = mark_tuned(table, views)
    return Report(trials, configs.reset_index(drop=True), descriptions, baseline, table, alpha,
                  designs, min_effect, classes, views,
                  unmatched(every_trial, conditions) if configs.empty else [])


def baseline_intervals(configs: pd.DataFrame, trials: pd.DataFrame, alpha: float,
                       designs: dict | None = None) -> pd.DataFrame:
    """``miou_delta``, ``miou_delta_low``/``_high``: each row's Δ mIoU and its ``1 - alpha``
    interval, from the same seeds (paired when two or more seeds ran on both sides; the
    means of all trials otherwise, with Welch's interval)."""
    rows = configs[configs["baseline"].notna()]
    pairs = [(s, b, c) for s, b, c in zip(rows["study"], rows["baseline"], rows["config_name"])]
    out = configs.copy()
    out["miou_delta_low"] = out["miou_delta_high"] = float("nan")
    if pairs:
        tests = compare_configs(trials, pairs, alpha, designs)
        testable = tests["method"].ne("-").to_numpy()
        out.loc[rows.index[testable], "miou_delta"] = tests["estimate"].to_numpy()[testable]
        out.loc[rows.index, "miou_delta_low"] = tests["ci_low"].to_numpy()
        out.loc[rows.index, "miou_delta_high"] = tests["ci_high"].to_numpy()
    return out


def pareto_marks(configs: pd.DataFrame, trials: pd.DataFrame, alpha: float,
                 designs: dict | None = None) -> pd.DataFrame:
    """Mark Pareto-optimal rows whose lead is not established (``pareto_mark``, ``pareto_tie``).

    Each Pareto-optimal configuration is tested against the best (highest mean mIoU)
    configuration it dominates, on the paired seeds with the sign of that test
    (unadjusted ``1 - alpha``): no mark when it is better, ``≈`` when the difference is
    inconclusive, ``✗`` when the paired seeds say it is worse (its lead in the means
    comes from unpaired seeds), ``?`` when it cannot be tested: ``pareto_reason`` is
    ``seeds`` (n < 2 on a side) or ``spread`` (every seed gave the same difference, so
    there is no noise to form an interval from). ``pareto_tie`` names that configuration.
    """
    out = configs.copy()
    out["pareto_mark"], out["pareto_tie"], out["pareto_reason"] = "", None, None
    pairs, rows = [], []
    for study, group in out.groupby("study", sort=False):
        params = group["params"].astype(float).to_numpy()
        miou = group["miou_mean"].astype(float).to_numpy()
        names = group["config_name"].to_numpy()
        for k in np.flatnonzero(group["pareto"].to_numpy(dtype=bool)):  # the front is short
            dominated = ((params >= params[k]) & (miou <= miou[k])
                         & ((params > params[k]) | (miou < miou[k])))
            if dominated.any():
                best = np.flatnonzero(dominated)[miou[dominated].argmax()]
                pairs.append((study, names[best], names[k]))
                rows.append(group.index[k])
    if pairs:
        tests = compare_configs(trials, pairs, alpha, designs)
        for index, (_s, tie, _c), verdict, low, method in zip(
                rows, pairs, tests["verdict"], tests["ci_low"], tests["method"]):
            if verdict != BETTER:
                out.at[index, "pareto_mark"] = ("✗" if verdict == WORSE else
                                                "?" if low != low else "≈")
                out.at[index, "pareto_tie"] = tie
                if low != low:  # why: too few seeds, or seeds that all agree exactly
                    out.at[index, "pareto_reason"] = "seeds" if method == UNTESTED else "spread"
    return out


def cost_axes(configs: pd.DataFrame, requested: tuple[str, ...] = ()) -> list[str]:
    """Columns to plot mIoU against: the requested ones (checked) or every measured cost."""
    # a cost no configuration has (gflops with eval.flops = false) holds None, not NaN: it
    # is a numeric column still, refused below for what it is
    numeric = [c for c in configs.columns if c not in ("n", "pareto") and (
        configs[c].dtype.kind in "fiu" or (c in DEFAULT_COST_AXES and configs[c].isna().all())
        or holds_integers(configs[c]))]
    if not requested:
        return [c for c in DEFAULT_COST_AXES if c in configs and configs[c].notna().any()]
    axes = []
    for key in requested:
        column = column_for(configs, key, "--x")
        if column is None or column not in numeric:
            raise no_column("--x", key, [c.removeprefix("axis:") for c in numeric],
                            "numeric column")
        if configs[column].isna().all():  # an empty plot, said nowhere
            measured = [c.removeprefix("axis:") for c in numeric if configs[c].notna().any()]
            why = (" (not measured: eval.latency = false?)" if column.startswith("latency")
                   else " (not counted: eval.flops = false?)" if column == "gflops" else "")
            raise UserInputError(f"--x {key}: no configuration has a value{why}; columns "
                                 f"with values: {', '.join(measured)}")
        axes.append(column)
    return axes


def pareto_figures(report: Report, axes: list[str], log_x: bool = False) -> list[Figure]:
    return [Figure(f"pareto_{_safe(x)}",
                   f"mIoU against {AXIS_LABELS.get(x, x.removeprefix('axis:'))}: Pareto front "
                   "as a step line, "
                   "dominated configurations faded, error bars ± std over seeds",
                   pareto_figure(report.configs, x, log_x=log_x)) for x in axes]


def per_class_figures(report: Report) -> list[Figure]:
    out = []
    studies = list(dict.fromkeys(report.configs["study"]))
    for study, group in report.configs.groupby("study", sort=False):
        table = per_class_table(group)
        if table.empty:
            continue
        title = f"{study}: IoU per class (%)"
        if len(group) > HEATMAP_MAX:  # more columns would be unreadable (the table has all)
            best = set(group.nlargest(HEATMAP_MAX, "miou_mean")["config_name"])
            table = table[[c for c in table.columns if c in best]]
            title += f", the {HEATMAP_MAX} best of {len(group)} configurations by mIoU"
        stem = "per_class_iou" if len(studies) == 1 else f"per_class_iou_{_safe(study)}"
        out.append(Figure(stem, f"{title}; classes x configurations",
                          per_class_figure(table, title)))
    return out


def curve_figures(store, report: Report, by: str = "config", x: str = "epoch") -> list[Figure]:
    done = report.trials[report.trials["status"] == TrialStatus.DONE]
    shown = set(zip(report.configs["study"], report.configs["config_name"]))
    done = done[[key in shown for key in zip(done["study"], done["config_name"])]]
    epochs = epoch_frame(store, done)
    if epochs.empty:
        return []
    several = epochs["study"].nunique() > 1
    epochs = epochs.assign(label=epochs["study"] + ": " + epochs["config_name"] if several
                           else epochs["config_name"])
    per = ("per configuration, mean over seeds with a min-max band" if by == "config"
           else "one line per seed, coloured by configuration")
    note = ""
    if epochs.groupby(["study", "trial_id"])["epoch"].nunique().max() <= 1:
        note = ("--curves: every trial ran one epoch, so each curve is a single point "
                "(the database keeps one record per epoch, so --curves-x step has the "
                "same one point); for a curve train more epochs (train.epochs), or see "
                "the per-step loss in a tracker (TensorBoard, MLflow).")
    caption = (f"training curves ({per}): train loss and validation mIoU against {x}"
               + (f". {note.removeprefix('--curves: ')}" if note else ""))
    return [Figure("curves", caption, curves_figure(epochs, by=by, x=x), note)]


def _stem(base: str, study: str, studies: list[str]) -> str:
    return base if len(studies) == 1 else f"{base}_{_safe(study)}"


def margin_of(report: Report, study: str) -> float | None:
    """The equivalence margin a study's verdicts were read with: its recorded design's,
    else the report's ``--min-effect``."""
    design = (report.designs or {}).get(study)
    return design.min_effect if design is not None else report.min_effect


def effect_figures(report: Report) -> list[Figure]:
    """Per study with effects: the forest plot and, for main effects, P(B > A)."""
    if report.effects is None or report.effects.empty:
        return []
    studies = list(dict.fromkeys(report.effects["study"]))
    out = []
    for study, group in report.effects.groupby("study", sort=False):
        margin = margin_of(report, str(study))
        level = f"{100 * float(group['ci_level'].iloc[0]):.4g}%"
        out.append(Figure(
            _stem("forest", study, studies),
            f"{study}: effect of each axis on mIoU (forest plot): estimate and {level} interval "
            "(the one the verdict is read on), each seed's paired difference as a point, a line "
            "at 0" + (f", the margin ±{margin:g} shaded" if margin else "")
            + "; verdict, n and cost changes at the right",
            forest_figure(group, margin)))
        improvement = improvement_figure(group)
        if improvement is not None:
            out.append(Figure(_stem("improvement", study, studies),
                              f"{study}: probability of improvement P(B > A) of each main effect "
                              f"with its {level} bootstrap interval; the verdict decides",
                              improvement))
    return out


def seed_figures(report: Report) -> list[Figure]:
    """Per study: every seed's mIoU for each configuration, in the table's order (its
    first ``SEEDS_MAX`` rows)."""
    if report.configs.empty:
        return []
    studies = list(dict.fromkeys(report.configs["study"]))
    out = []
    for study, group in report.configs.groupby("study", sort=False):
        rows = "rows as in the configurations table"
        if len(group) > SEEDS_MAX:  # more rows would not fit a page (the table has all)
            rows = f"the first {SEEDS_MAX} of the table's {len(group)} rows"
            group = group.iloc[:SEEDS_MAX]
        out.append(Figure(_stem("seeds", study, studies),
                          f"{study}: validation mIoU of every seed per configuration (a marker "
                          f"per seed), the mean as a bar; {rows}",
                          seeds_figure(group, report.trials)))
    return out


def class_effect_figures(report: Report) -> list[Figure]:
    """Per study with per-class effects: the heat map, classes x main effects."""
    table = report.per_class_effects
    if table is None or table.empty or report.effects is None:
        return []
    studies = list(dict.fromkeys(table["study"]))
    out = []
    for study, group in table.groupby("study", sort=False):
        mine = report.effects[report.effects["study"] == study]
        labels, codes = effect_labels(mine)
        names = {(a, c): (label, code) for a, c, label, code in
                 zip(mine["axis"], mine["change"], labels, codes)}
        out.append(Figure(_stem("class_effects", study, studies),
                          f"{study}: change in IoU of each class (points) per main effect, "
                          "diverging around 0; outlined cells: the interval excludes 0",
                          class_effects_figure(group, names)))
    return out


def tuning_figures(report: Report) -> list[Figure]:
    """Per tuned study: its tuning curves and the effect at every draw."""
    from ablate.report.figures.tuning import tuning_figure  # lazy: loads matplotlib

    if not report.tuning:
        return []
    studies = list(report.tuning)
    return [Figure(_stem("tuning", study, studies),
                   f"{study}: tuning curves, the expected best "
                   f"{METRIC_NAMES[view.metric]} after n draws per configuration (unbiased "
                   "estimator without replacement over the k draws, band ± one standard "
                   "deviation, a ring at the chosen draw); the effect at every draw, the tuned "
                   "effect as a line", tuning_figure(view, METRIC_NAMES[view.metric]))
            for study, view in report.tuning.items()]


def latency_figures(report: Report) -> list[Figure]:
    """The latency-by-batch-size figure, when the report's configurations have one."""
    if report.configs.empty or not has_runtime_latency(report.configs):
        return []
    return [Figure("latency_by_batch",
                   "Latency per batch against batch size, per configuration and runtime "
                   "(median over seeds, log-log)", latency_by_batch_figure(report.configs))]


def write_html(report: Report, figures: list[Figure], out_dir: str | Path,
               svgs: dict[str, bytes]) -> Path:
    """``out_dir/report.html`` with every table and ``figures`` (SVG bytes by stem)."""
    def images(*prefixes: str) -> list[Image]:
        # shown at the size a PNG of the figure's dpi has (an SVG's own is 96 per inch)
        return [Image(f.caption, svgs[f.stem],
                      size=tuple(round(x * f.figure.dpi) for x in f.figure.get_size_inches()))
                for f in figures if f.stem.startswith(prefixes)]

    sections = [Section("Configurations", config_tables(report.configs, report.trials,
                                                        report.descriptions))]
    if images("seeds"):
        sections.append(Section("Every seed", [], images("seeds")))
    if report.effects is not None and not report.effects.empty:
        sections.append(Section("Effects of each axis",
                                effects_tables(report.effects, report.alpha)
                                + improvement_tables(report.effects),
                                images("forest", "improvement")))
    if report.tuning:
        sections.append(Section("Tuning (each configuration tuned with the same draws)",
                                tuning_tables(report.tuning), images("tuning")))
    if report.per_class_effects is not None and not report.per_class_effects.empty:
        sections.append(Section("Effects on each class",
                                per_class_effect_tables(report.per_class_effects),
                                images("class_effects")))

    groups = {"pareto": "Pareto fronts", "latency_by_batch": "Runtimes and batch sizes",
              "per_class": "IoU per class", "curves": "Training curves"}
    for prefix, heading in groups.items():
        shown = images(prefix)
        tables = per_class_tables(report.configs) if prefix == "per_class" and shown else []
        tables = runtime_tables(report.configs) if prefix == "latency_by_batch" else tables
        if shown:
            sections.append(Section(heading, tables, shown))
    # the studies shown, else those whose trials all failed (their count is in ``meta``)
    shown = report.configs if not report.configs.empty else report.trials
    studies = list(dict.fromkeys(shown["study"])) if not shown.empty else []
    meta = (f"{trial_counts(report.configs, report.trials, every_study=True)}; "
            f"generated by ablate {__version__}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "report.html"
    write_text(path, render_page("ablate report: " + (", ".join(studies) or "no trials"),
                                 sections, meta))  # whole or not at all
    return path


def _safe(name: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in name)
