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

import pandas as pd

from ablate.analysis.design import Design
from ablate.analysis.effects import effects_table

PER_CLASS_COLUMNS = [
    "study", "axis", "change", "class", "unit", "n", "method", "estimate", "ci_low",
    "ci_high", "ci_level", "family", "p", "p_adj", "excludes_zero",
]
UNIT = "IoU points"
CLASS_PREFIX = "iou/"


def class_columns(trials: pd.DataFrame) -> list[str]:
    """The ``iou/<class>`` columns some done trial has a figure in, in the frame's order."""
    done = trials[trials["status"] == "done"] if "status" in trials else trials
    return [c for c in trials.columns if c.startswith(CLASS_PREFIX) and done[c].notna().any()]


def per_class_effects(trials: pd.DataFrame, *, baseline: str | None = None,
                      alpha: float = 0.05,
                      designs: dict[str, Design] | None = None) -> pd.DataFrame:
    """Every main effect of every study on every class's IoU, with intervals.

    ``trials``: the trials frame with per-class columns (``iou/<class>`` in percent).
    Rows: one per (effect, class), effects in table order, classes in the frame's
    order; ``excludes_zero`` marks an interval that excludes 0. A study in ``designs``
    is read at its recorded alpha.
    """
    rows = []
    for study, group in trials.groupby("study", sort=False):
        classes = class_columns(group)
        if not classes:
            continue
        recorded = (designs or {}).get(str(study))
        level = recorded.alpha if recorded is not None else alpha
        fixed = {str(study): Design(alpha=level)}
        # the main effects the shown configurations define (as many rows as on mIoU)
        mains = len(effects_table(group, baseline=baseline, designs=fixed, interactions=False))
        family = {str(study): len(classes) * mains}
        for column in classes:  # each class as if it were the mIoU
            one = group.assign(miou=group[column])
            table = effects_table(one, baseline=baseline, designs=fixed, families=family,
                                  interactions=False)
            table = table.assign(**{"class": column.removeprefix(CLASS_PREFIX), "unit": UNIT})
            rows.append(table)
    if not rows:
        return pd.DataFrame(columns=PER_CLASS_COLUMNS)
    out = pd.concat(rows, ignore_index=True)
    out["excludes_zero"] = (out["ci_low"] > 0) | (out["ci_high"] < 0)
    order = {key: i for i, key in enumerate(dict.fromkeys(zip(out["study"], out["axis"],
                                                              out["change"])))}
    out["_effect"] = [order[k] for k in zip(out["study"], out["axis"], out["change"])]
    out = out.sort_values(["_effect"], kind="stable").reset_index(drop=True)
    return out[PER_CLASS_COLUMNS]
