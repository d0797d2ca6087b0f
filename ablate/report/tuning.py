"""What a report shows of a tuned study (``[tune]``): each configuration's chosen values,
an edge-of-range warning, the tuning curves, and the effect at every draw.

The statistics are ``ablate.analysis.tuning``'s; the set-up, draws and selection are
what the study recorded (``ablate.dispatch.tuning``); the tuning trials' figures come
from the store. The study's own tables (configurations, effects) hold the confirmation
trials only: ``report.frame.trials_frame`` leaves the tuning trials out.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from ablate.analysis.effects import effects_table
from ablate.analysis.tuning import (
    NEAR_EDGE,
    draw_scores,
    edge_gap,
    edge_of_range,
    sign_agreement,
    tuning_curve,
)
from ablate.report.frame import trials_frame
from ablate.report.render import NO_SPREAD, Column, DisplayTable, fmt_value, numeric_column
from ablate.trials.lifecycle import TrialStatus

ESTIMATOR = ("expected best of n draws: the unbiased estimator without replacement (Tang "
             "et al., ACL 2020) over the k draws, the mean of the best score of every "
             "n-subset; band: ± one standard deviation of that best (Dodge et al., EMNLP "
             "2019), within the lowest and highest score, zero at n = k")
METRIC_NAMES = {"miou": "mIoU", "pixel_acc": "pixel accuracy"}


@dataclass(frozen=True)
class TuningView:
    """One tuned study as a report shows it."""

    study: str
    method: str  # how it was tuned, in words
    metric: str
    select_on: str
    ranges: dict[str, dict[str, list]]  # key -> {kind: bounds or choices}
    draws: list[dict[str, Any]]
    chosen: dict[str, int]  # config -> draw (empty until the selection is made)
    scores: pd.DataFrame  # config x draw: mean selection metric (%) over tuning seeds
    curves: pd.DataFrame  # config, draws, expected, low, high
    # config, key, side ("lowest"/"highest" drawn), gap to that end of the range (share)
    edges: list[tuple[str, str, str, float]] = field(default_factory=list)
    draw_effects: pd.DataFrame | None = None  # axis, change, tuned, agree, of, draw_<j>...

    @property
    def budget(self) -> int:
        return len(self.draws)


def tuning_views(store, studies: list[str] | None, effects: pd.DataFrame | None = None,
                 baseline: str | None = None) -> dict[str, TuningView]:
    """Every tuned study of ``studies`` (None: all), with the effect at every draw of the
    ``effects`` rows (the confirmation trials' effects) when they are given."""
    views = {}
    for study, record in store.study_tunings(studies).items():
        mine = None if effects is None else effects[effects["study"] == study]
        views[study] = tuning_view(store, study, record, mine, baseline)
    return views


def tuning_view(store, study: str, record: dict[str, Any], effects: pd.DataFrame | None,
                baseline: str | None = None) -> TuningView:
    setup, selection = record["setup"], record.get("selection") or {}
    section, draws = setup["section"], setup["draws"]
    metric = section["metric"]
    cells = pd.DataFrame(setup["cells"], columns=["config", "draw", "seed", "trial_id"])
    frame = trials_frame(store, [study], keys=[metric], tuning=True)
    done = frame["status"] == TrialStatus.DONE
    value = dict(zip(frame["trial_id"], np.where(done, frame[metric], np.nan)))
    cells["value"] = [value.get(t, np.nan) for t in cells["trial_id"]]
    scores = draw_scores(cells)
    curves = pd.concat([tuning_curve(row.to_numpy(dtype=float)).assign(config=config)
                        for config, row in scores.iterrows()], ignore_index=True)
    chosen = {str(c): int(j) for c, j in selection.get("chosen", {}).items()}
    edges = [(c, key, side, edge_gap(section["ranges"][key], draws[j][key], side))
             for c, j in chosen.items() for key in section["ranges"]
             if (side := edge_of_range(draws, j, key)) is not None]
    per_draw = None
    if effects is not None and not effects.empty and chosen:
        per_draw = draw_effects(frame, cells, effects, len(draws), baseline)
    return TuningView(study, _method(section), metric, section["select_on"],
                      section["ranges"], draws, chosen, scores,
                      curves[["config", "draws", "expected", "low", "high"]], edges, per_draw)


def _method(section: dict[str, Any]) -> str:
    on = (f"a held-out {100 * section['holdout']:g}% of the training set"
          if section["select_on"] == "holdout" else "the validation set (reused: see the note)")
    seeds = ", ".join(map(str, section["seeds"]))
    return (f"best of {section['budget']} shared draws by mean {METRIC_NAMES[section['metric']]} "
            f"over tuning seed(s) {seeds}, on {on}")


def draw_effects(frame: pd.DataFrame, cells: pd.DataFrame, effects: pd.DataFrame, draws: int,
                 baseline: str | None = None) -> pd.DataFrame:
    """Each effect of ``effects`` read again on the tuning trials of every draw (paired
    across configurations: they trained the same draw), with how many draws agree in sign
    with the tuned effect. Descriptive: a draw's effect is not tested."""
    by_id = frame.set_index("trial_id")
    key = list(zip(effects["axis"], effects["change"]))
    estimates = {}
    for j in range(draws):
        ids = [t for t in cells.loc[cells["draw"] == j, "trial_id"] if t in by_id.index]
        rows = by_id.loc[ids].reset_index()
        table = effects_table(rows, baseline=baseline, report=False) if len(rows) else None
        found = ({} if table is None or table.empty else
                 dict(zip(zip(table["axis"], table["change"]), table["estimate"])))
        estimates[f"draw_{j}"] = [float(found.get(k, np.nan)) for k in key]
    out = pd.DataFrame({"axis": effects["axis"].to_numpy(), "change": effects["change"].to_numpy(),
                        "tuned": effects["estimate"].to_numpy(dtype=float), **estimates})
    agree = [sign_agreement(t, row) for t, row in
             zip(out["tuned"], out[[f"draw_{j}" for j in range(draws)]].to_numpy(dtype=float))]
    out.insert(3, "agree", [a for a, _ in agree])
    out.insert(4, "of", [n for _, n in agree])
    return out


def mark_tuned(effects: pd.DataFrame, views: dict[str, TuningView]) -> pd.DataFrame:
    """The effects table's ``method`` says which studies' configurations were tuned."""
    if effects is None or effects.empty or not views:
        return effects
    out = effects.copy()
    for study, view in views.items():
        rows = out["study"] == study
        out.loc[rows, "method"] = out.loc[rows, "method"] + f"; tuned (best of {view.budget} draws)"
    return out


# -- tables ------------------------------------------------------------------------------

def _value(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else fmt_value(value)  # true, not True


def chosen_table(view: TuningView) -> DisplayTable:
    name = METRIC_NAMES[view.metric]
    configs = list(view.scores.index)
    cols = [Column("configuration", configs, configs)]
    for key in view.ranges:
        cells = [_value(view.draws[view.chosen[c]][key]) if c in view.chosen else "-"
                 for c in configs]
        cols.append(Column(f"{key} (chosen)", cells, cells))
    cols.append(Column("draw", [str(view.chosen.get(c, "-")) for c in configs],
                       [view.chosen.get(c) for c in configs], numeric=True))
    score = [view.scores.loc[c, view.chosen[c]] if c in view.chosen else np.nan for c in configs]
    cols.append(numeric_column(f"{name} at the draw (%)", pd.Series(score), ".2f", NO_SPREAD))
    failed = view.scores.isna().sum(axis=1).tolist()
    cols.append(Column("failed draws", [str(n) for n in failed], failed, numeric=True))
    ranges = "; ".join(f"{k}: {_range_text(r)}" for k, r in view.ranges.items())
    notes = [f"Tuned: {view.method}. Ranges: {ranges}. Every configuration trained the same "
             f"{view.budget} draws (one scrambled Sobol sequence). The score at the chosen draw "
             "is biased upward (the best of several noisy scores): the effects are read on the "
             "study's own seeds instead."]
    if view.select_on == "validation":
        notes.append("Selection read the validation set, which the effects are read on too: "
                     "the chosen draws fit those images, so the effects keep a residual bias "
                     "toward what suits them (select_on = \"holdout\" avoids it).")
    for config, key, side, gap in view.edges:
        value = _value(view.draws[view.chosen[config]][key])
        if gap <= NEAR_EDGE:
            where = "below" if side == "lowest" else "above"
            notes.append(f"⚠ {config}: {key} = {value} is the {side} value drawn, at the "
                         f"range's end: the best may lie {where} the range; widen it.")
        else:
            kind, bounds = next(iter(view.ranges[key].items()))
            scale = " (on a log scale)" if kind == "log_uniform" else ""
            ends = sorted(bounds) if kind == "choice" else bounds  # numbers: edge_of_range
            end = _value(ends[0] if side == "lowest" else ends[-1])
            notes.append(f"⚠ {config}: {key} = {value} is the {side} value drawn but "
                         f"{100 * gap:.0f}% of the range{scale} from its "
                         f"{'bottom' if side == 'lowest' else 'top'}, {end}: the best may lie "
                         "in between, where no draw fell; more draws ([tune] budget) look "
                         "there.")
    if not view.chosen:
        notes.append("No selection yet: the tuning phase is unfinished.")
    return DisplayTable(f"{view.study}: tuned configurations", cols, notes)


def _range_text(spec: dict[str, list]) -> str:
    kind, values = next(iter(spec.items()))
    return (f"choice of {', '.join(map(fmt_value, values))}" if kind == "choice"
            else f"{kind} [{values[0]:g}, {values[1]:g}]")


def curves_table(view: TuningView) -> DisplayTable:
    """Expected best score after n draws, at n = 1, 2, 4, ... and k."""
    shown = sorted({n for n in (2 ** i for i in range(12)) if n <= view.budget} | {view.budget})
    configs = list(view.scores.index)
    cols = [Column("configuration", configs, configs)]
    for n in shown:
        rows = view.curves[view.curves["draws"] == n].set_index("config")
        values = [float(rows.loc[c, "expected"]) for c in configs]
        cells = [NO_SPREAD if math.isnan(v) else
                 f"{v:.2f} [{rows.loc[c, 'low']:.2f}, {rows.loc[c, 'high']:.2f}]"
                 for c, v in zip(configs, values)]
        cols.append(Column(f"n={n}", cells, values, numeric=True))
    return DisplayTable(
        f"{view.study}: tuning curves ({METRIC_NAMES[view.metric]} %, expected best of n draws)",
        cols, [f"Tuning curves: {ESTIMATOR}. A failed draw ranks below every score; where n "
               "draws could all be failed ones the curve is undefined (—)."])


def draw_effects_table(view: TuningView) -> DisplayTable | None:
    table = view.draw_effects
    if table is None or table.empty:
        return None
    draws = [c for c in table.columns if c.startswith("draw_")]
    cols = [Column("axis", table["axis"].tolist(), table["axis"].tolist()),
            Column("change", table["change"].tolist(), table["change"].tolist()),
            numeric_column("tuned Δ", table["tuned"], "+.2f", NO_SPREAD),
            Column("draws agreeing", [f"{a} of {n}" for a, n in zip(table["agree"], table["of"])],
                   table["agree"].tolist(), numeric=True)]
    cols += [numeric_column(f"d{c.removeprefix('draw_')}", table[c], "+.2f", NO_SPREAD)
             for c in draws]
    return DisplayTable(
        f"{view.study}: the effect at every draw (Δ mIoU on the tuning trials)", cols,
        ["Each draw's effect is read on its tuning trials (tuning seeds, the selection's "
         "images), paired across configurations because every configuration trained that "
         "draw; descriptive, not tested. Draws agreeing: those whose effect has the sign of "
         "the tuned effect (read on the study's seeds): how far the conclusion holds across "
         "the nuisance range."])


def tuning_tables(views: dict[str, TuningView]) -> list[DisplayTable]:
    tables = []
    for view in views.values():
        tables += [chosen_table(view), curves_table(view)]
        effects = draw_effects_table(view)
        if effects is not None:
            tables.append(effects)
    return tables


def tuning_json(views: dict[str, TuningView]) -> dict[str, Any]:
    """Plain data: per study its method, ranges, draws, chosen draws and values, scores,
    curves, edge warnings and the effect at every draw."""
    def clean(value):
        return None if isinstance(value, float) and math.isnan(value) else value

    out = {}
    for study, view in views.items():
        out[study] = {
            "method": view.method, "metric": view.metric, "select_on": view.select_on,
            "ranges": view.ranges, "draws": view.draws,
            "chosen": {c: {"draw": j, "values": view.draws[j],
                           "score": clean(float(view.scores.loc[c, j]))}
                       for c, j in view.chosen.items()},
            "scores": {str(c): [clean(float(v)) for v in row]
                       for c, row in zip(view.scores.index, view.scores.to_numpy(dtype=float))},
            "curves": [{k: clean(v) for k, v in row.items()}
                       for row in view.curves.to_dict("records")],
            "curve_estimator": ESTIMATOR,
            "edges": [{"config": c, "key": k, "side": s, "range_gap": g,
                       "advice": "widen the range" if g <= NEAR_EDGE else "more draws"}
                      for c, k, s, g in view.edges],
            "draw_effects": (None if view.draw_effects is None else
                             [{k: clean(v) for k, v in row.items()}
                              for row in view.draw_effects.to_dict("records")]),
        }
    return out
