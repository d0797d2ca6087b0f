"""Configuration tables: baseline deltas, ``--where`` filters, sorting, per-class IoU.

Pure functions of data frames (no database, no output): the CLI chains them and a
renderer (``ablate.report.render``) turns the result into text or HTML.
"""

from __future__ import annotations

import math
import tomllib
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from ablate.errors import UserInputError, did_you_mean
from ablate.trials.names import stored_list

# measured column -> change against the baseline: (column, relative in percent?)
DELTAS = {
    "params": ("params_delta_pct", True),
    "gflops": ("gflops_delta_pct", True),
    "latency_ms": ("latency_delta_pct", True),
    "miou_mean": ("miou_delta", False),  # points
}


def add_baseline(configs: pd.DataFrame, name: str, hidden: frozenset[str] = frozenset()
                 ) -> pd.DataFrame:
    """Add the change of every row against configuration (or variant) ``name``.

    ``params``, GFLOPs and latency change in percent, mIoU in points, per study.
    A variant with several configurations (a variant crossed with a grid) is matched
    row by row on the axes that vary among its configurations, so each row is
    compared with the baseline variant at the same axis values. Rows without a
    matching baseline get NaN. Adds ``baseline`` (the reference configuration's name).
    ``hidden``: the names ``--where`` left out, said as such when ``name`` is one.
    """
    chosen = configs["config_name"] == name
    if not chosen.any():
        chosen = configs["variant"] == name
    if not chosen.any():
        known = sorted(set(configs["variant"]) | set(configs["config_name"]))
        if name in hidden:
            raise UserInputError(f"--baseline: {name!r} is left out by --where (the baseline "
                                 f"must pass it); shown: {', '.join(known) or 'none'}")
        raise UserInputError(
            f"--baseline: no configuration or variant {name!r}; known: {', '.join(known) or 'none'}")
    measured = list(DELTAS)
    refs = []
    for _study, group in configs.groupby("study", sort=False):
        base = group[chosen[group.index]]
        if base.empty:
            continue
        keys = [c for c in group.columns
                if c.startswith("axis:") and base[c].astype(str).nunique() > 1]
        wanted = base[["config_name", *measured, *keys]].rename(
            columns={"config_name": "baseline", **{m: f"_ref_{m}" for m in measured}})
        if keys:
            ref = group[keys].rename_axis("_row").reset_index().merge(
                wanted.drop_duplicates(keys), on=keys, how="left").set_index("_row")
        else:
            ref = wanted.iloc[[0] * len(group)].set_axis(group.index, axis=0)
        refs.append(ref.drop(columns=keys))
    ref = pd.concat(refs).reindex(configs.index)
    out = configs.copy()
    out["baseline"] = ref["baseline"]
    for column, (delta, relative) in DELTAS.items():
        value = pd.to_numeric(out[column], errors="coerce")
        reference = pd.to_numeric(ref[f"_ref_{column}"], errors="coerce")
        if relative:
            out[delta] = (value - reference) / reference.where(reference != 0) * 100.0
        else:
            out[delta] = value - reference
    return out


# -- --where -----------------------------------------------------------------------------

@dataclass(frozen=True)
class Condition:
    key: str
    negate: bool
    text: str

    def __str__(self) -> str:
        return f"{self.key}{'!=' if self.negate else '='}{self.text}"


def parse_where(items: list[str] | tuple[str, ...]) -> list[Condition]:
    """``["model.head=deeplabv3", "seed!=0"]`` -> conditions (values read as TOML)."""
    out = []
    for item in items:
        key, sep, text = item.partition("=")
        negate = key.endswith("!")
        key = key.removesuffix("!").strip()
        if not sep or not key:
            raise UserInputError(f"--where: expected KEY=VALUE or KEY!=VALUE, got {item!r}")
        out.append(Condition(key, negate, text.strip()))
    return out


COLUMN_ALIASES = {"miou": "miou_mean"}  # it read as the published mIoU, or no column


def column_for(frame: pd.DataFrame, key: str, source: str = "--where") -> str | None:
    """The column a user's key names: itself, an axis (``axis:KEY``), ``miou`` for the
    measured mean the table shows as mIoU (``miou_mean``; the published one is
    ``published_miou``), a published figure, or the one axis whose key ends in ``.KEY``:
    the short name a table's header shows (``keep_last_expansion`` for
    ``model.keep_last_expansion``). A short name several axes end in is refused with
    their full names."""
    for column in (key, f"axis:{key}", COLUMN_ALIASES.get(key), f"published_{key}"):
        if column in frame.columns:
            return column
    ending = [c for c in frame.columns if isinstance(c, str) and c.startswith("axis:")
              and c.endswith(f".{key}")]
    if len(ending) > 1:
        raise UserInputError(f"{source}: {key!r} is short for several axes: "
                             f"{', '.join(_user_names(ending))}; give the full name")
    return ending[0] if ending else None


def filter_rows(frame: pd.DataFrame, conditions: list[Condition],
                source: str = "--where") -> pd.DataFrame:
    """Rows meeting every condition; values compare as in recipes (1 == 1.0, true, [1, 2])."""
    keep = np.ones(len(frame), dtype=bool)
    for cond in conditions:
        column = column_for(frame, cond.key, source)
        if column is None:
            raise no_column(source, cond.key, _user_names(frame.columns))
        target = canonical(_parse_value(cond.text))
        equal = frame[column].map(canonical).to_numpy() == target
        keep &= ~equal if cond.negate else equal
    return frame[keep]


MAX_VALUES_SHOWN = 12
LABEL_COLUMNS = ("study", "variant", "config_name")  # besides the axes


def unmatched(frame: pd.DataFrame, conditions: list[Condition]) -> list[str]:
    """For each ``KEY=VALUE`` condition on an axis or a name that no row of ``frame``
    (every trial, before any filter) holds, a line with the values it holds: a typed
    ``maybe`` for a boolean, or a name off by a letter, is then told apart from a value
    whose trials have not finished."""
    lines = []
    for cond in conditions:
        column = None if cond.negate or frame.empty else column_for(frame, cond.key)
        if column is None or not (column.startswith("axis:") or column in LABEL_COLUMNS):
            continue
        held = list(dict.fromkeys(v for v in map(canonical, frame[column]) if v is not None))
        if canonical(_parse_value(cond.text)) in held:
            continue
        shown = ", ".join(held[:MAX_VALUES_SHOWN]) + (", ..." if len(held) > MAX_VALUES_SHOWN
                                                       else "")
        lines.append(f"no trial has {cond.key}={cond.text}; its values: {shown}")
    return lines


def _parse_value(text: str) -> Any:
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        if text.startswith("[") and text.endswith("]"):  # as a configuration name spells a
            items = text[1:-1].split(",")  # list: remove=[head.aspp.convs.1]
            return [_parse_value(item.strip()) for item in items] if text[1:-1].strip() else []
        return text  # a bare word such as deeplabv3


def canonical(value: Any) -> str | None:
    """One spelling per value, so that a typed ``--where`` value meets the stored one."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    if isinstance(value, bool | np.bool_):
        return "true" if value else "false"
    if isinstance(value, int | float | np.integer | np.floating):
        return repr(float(value))
    listed = stored_list(value)  # a list the frame holds as its text: "['head.aspp.convs.1']"
    if listed is not None:
        value = listed
    if isinstance(value, list | tuple):  # item by item: [1, 2] meets [1.0, 2], 'a' meets a
        return "[" + ",".join(str(canonical(item)) for item in value) + "]"
    return str(value)


def _user_names(columns) -> list[str]:
    return [c.removeprefix("axis:") for c in columns]


def no_column(option: str, key: str, names: list[str], kind: str = "column") -> UserInputError:
    """``--sort: no column 'miou' (did you mean 'miou_mean'?); columns: ...``: the first
    name (in column order) that starts with ``key``, or whose last dotted part does
    (``keep_last`` -> ``model.keep_last_expansion``), else the closest spelling."""
    hint = did_you_mean(key, names, [n for n in names if n.startswith(key)
                                     or n.rpartition(".")[2].startswith(key)])
    return UserInputError(f"{option}: no {kind} {key!r}{hint}; {kind}s: {', '.join(names)}")


# -- --sort ------------------------------------------------------------------------------

def sort_rows(frame: pd.DataFrame, key: str | None, descending: bool) -> pd.DataFrame:
    """Sorted by ``key`` (any column or axis key; NaN last); default: mIoU, best first."""
    if key is None:
        return frame.sort_values("miou_mean", ascending=False, kind="stable", na_position="last")
    column = column_for(frame, key, "--sort")
    if column is None:
        raise no_column("--sort", key, _user_names(frame.columns))
    values = frame[column]
    if values.dtype == object:  # mixed axis values (3, "all", [1, 2]): compare as text
        values = values.map(lambda v: None if canonical(v) is None else str(v))
    order = values.sort_values(ascending=not descending, kind="stable", na_position="last").index
    return frame.loc[order]


# -- per-class IoU -----------------------------------------------------------------------

def per_class_table(configs: pd.DataFrame) -> pd.DataFrame:
    """Classes x configurations: mean IoU (%) over seeds; classes no row has are dropped."""
    class_cols = [c for c in configs.columns if c.startswith("iou/")]
    table = configs.set_index("config_name")[class_cols].T
    table.index = [c.removeprefix("iou/") for c in class_cols]
    table.index.name = "class"
    return table.dropna(how="all").astype(float)
