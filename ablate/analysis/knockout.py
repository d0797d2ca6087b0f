"""Knock-out axes in a study's effects: ``model.remove`` read per component (pure).

A ``model.remove`` axis (from ``[knockout]`` or written by hand) has lists of module
paths as levels. Its effects are read per component, each against the right baseline:

- **leave one out** (one level is ``[]`` and every other removes one component more):
  each component's row is the full model -> without it;
- **add one** (one level removes every component and every other restores one): each
  row is the minimal model -> with it;
- anything else (a factorial, nested sets): one two-level axis per component,
  ``kept -> removed``, whose main effect averages over the other components' levels
  where both ran, like any grid axis, with interactions where their cells exist.

The first two are one axis whose levels are each compared with the baseline only
(``one_away``); the last adds a column per component (``component_columns``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pandas as pd

from ablate.trials.names import stored_list

COLUMN = "axis:model.remove"
KEPT, REMOVED = "kept", "removed"


@dataclass(frozen=True)
class OneAway:
    """A leave-one-out or add-one axis: its levels (column texts) with the baseline
    first, and each level's label."""

    design: str
    levels: tuple[str, ...]
    labels: tuple[str, ...]

    @property
    def name(self) -> str:
        """The axis as the effects table names it (each row's change names the component)."""
        return self.design.replace("-", " ")


def removed_set(value: Any) -> frozenset[str] | None:
    """The paths a ``model.remove`` value removes (a list, or its text in a frame)."""
    if isinstance(value, str):
        value = stored_list(value)
    if isinstance(value, list | tuple) and all(isinstance(v, str) for v in value):
        return frozenset(value)
    return None


def _sets(texts: pd.Series) -> dict[str, frozenset[str]] | None:
    """Each distinct level text -> its set, in order; None unless every level is a list."""
    sets = {}
    for text in dict.fromkeys(texts):
        found = removed_set(text)
        if found is None:
            return None
        sets[text] = found
    return sets if len(sets) > 1 else None


def one_away(texts: pd.Series) -> OneAway | None:
    """The leave-one-out or add-one reading of a ``model.remove`` column, if it is one."""
    sets = _sets(texts)
    if sets is None:
        return None
    union = frozenset().union(*sets.values())
    for design, baseline, step in (("leave-one-out", frozenset(), "without"),
                                   ("add-one", union, "with")):
        base = [t for t, s in sets.items() if s == baseline]
        others = [t for t in sets if t not in base]
        changed = [sets[t] ^ baseline for t in others]
        if len(base) == 1 and all(len(c) == 1 for c in changed) and len(set(changed)) == len(
                changed):
            labels = ["full" if design == "leave-one-out" else "minimal"]
            labels += [f"{step} {next(iter(c))}" for c in changed]
            return OneAway(design, (base[0], *others), tuple(labels))
    return None


def component_columns(configs: pd.DataFrame) -> pd.DataFrame:
    """``configs`` with a ``model.remove`` column that is neither leave one out nor add
    one replaced by one ``axis:remove <path>`` column per component (kept/removed)."""
    if COLUMN not in configs.columns:
        return configs
    texts = configs[COLUMN].map(lambda v: str(v) if isinstance(v, list) else v)
    sets = _sets(texts)
    if sets is None or one_away(texts) is not None:
        return configs
    components = list(dict.fromkeys(p for s in sets.values() for p in sorted(s)))
    out = configs.drop(columns=[COLUMN])
    for path in components:
        out[f"axis:remove {path}"] = [REMOVED if path in sets[t] else KEPT for t in texts]
    return out
