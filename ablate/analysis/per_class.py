"""Per-class effects: what each main effect does to the IoU of every class.

The mean IoU hides a gain on large classes paid for by small ones, so each main effect
of ``ablate.analysis.effects`` is estimated again on every class's IoU (in points,
``iou/<class>`` of the trials frame), with the same estimand: paired t over the seeds
every configuration of the effect ran, else Welch. The family is every class times
every main effect of the study (``C x M`` intervals), each read at ``1 - alpha/(C x M)``
(Bonferroni, as the effects are), so all the marks of a heat map hold together with
probability at least ``1 - alpha``. A study grown by ``--until-decided`` keeps its alpha,
but its classes are read as a fixed design: the loop decided on mIoU, not on classes,
so these intervals describe and the mIoU verdicts decide.

Pure: a trials frame in, a frame out.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ablate.analysis.design import Design
from ablate.analysis.effects import contrast_row, effect_cells
from ablate.trials.lifecycle import TrialStatus

PER_CLASS_COLUMNS = [
    "study", "axis", "change", "class", "unit", "n", "method", "estimate", "ci_low",
    "ci_high", "ci_level", "family", "p", "p_adj", "excludes_zero",
]
UNIT = "IoU points"
CLASS_PREFIX = "iou/"


def class_columns(trials: pd.DataFrame) -> list[str]:
    """The ``iou/<class>`` columns some done trial has a figure in, in the frame's order."""
    done = trials[trials["status"] == TrialStatus.DONE] if "status" in trials else trials
    return [c for c in trials.columns if c.startswith(CLASS_PREFIX) and done[c].notna().any()]


def per_class_effects(trials: pd.DataFrame, *, baseline: str | None = None,
                      alpha: float = 0.05,
                      designs: dict[str, Design] | None = None,
                      order: dict | None = None) -> pd.DataFrame:
    """Every main effect of every study on every class's IoU, with intervals.

    ``trials``: the trials frame with per-class columns (``iou/<class>`` in percent).
    Rows: one per (effect, class), effects in table order, classes in the frame's
    order; ``excludes_zero`` marks an interval that excludes 0. A study in ``designs``
    is read at its recorded alpha. Main effects only: their cells come from
    ``effect_cells``, their test from ``contrast_row``, as the mIoU effects' (``order``:
    their levels' order, ``effects.level_order``).
    """
    rows = []
    for study, group in trials.groupby("study", sort=False):
        classes = class_columns(group)
        if not classes:
            continue
        recorded = (designs or {}).get(str(study))
        design = Design(alpha=recorded.alpha if recorded is not None else alpha)
        # the main effects the shown configurations define and ran (as on mIoU)
        mains = [key for key in effect_cells(group, baseline=baseline, order=order)
                 if key[1] == "main"]
        family = len(classes) * len(mains)
        by_class = {column: effect_cells(group.assign(miou=group[column]), baseline=baseline,
                                         order=order)
                    for column in classes}  # each class as if it were the mIoU
        for key in mains:
            for column in classes:
                found = by_class[column].get(key)
                if found is None:  # no cell ran with this class on both sides
                    continue
                _seeds, parts = found
                values = np.vstack([v for v, _ in parts])
                weights = np.concatenate([np.full(len(v), w / len(v)) for v, w in parts])
                test = contrast_row(values, weights, design, family)
                rows.append({"study": str(study), "axis": key[2], "change": key[3],
                             "class": column.removeprefix(CLASS_PREFIX), "unit": UNIT,
                             "family": family, **test})
    if not rows:
        return pd.DataFrame(columns=PER_CLASS_COLUMNS)
    out = pd.DataFrame(rows)
    out["excludes_zero"] = (out["ci_low"] > 0) | (out["ci_high"] < 0)
    return out[PER_CLASS_COLUMNS]
