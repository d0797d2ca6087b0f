"""Per-axis effects of a study: main effects, two-way interactions, config comparisons.

Input: the tidy trials frame of ``ablate.report.frame.trials_frame`` (one row per
trial: ``study, config_name, variant, seed, status, miou`` in percent, ``params``,
``gflops``, ``latency_ms`` and ``axis:<key>`` columns). Output: one row per effect.
Pure: no database, no printing.

The axes of a study are its variants (when it has more than one) and every axis
column with more than one value; axis columns whose values determine each other
(a ``[zip]`` group) form one axis. Each configuration is one cell of the grid the
axes span. The main effect of an axis from level A to level B is the mean over
the other axes' cells (those where both levels ran) of ``mIoU(B) - mIoU(A)``; a
two-way interaction is the difference of such differences. Grid and zip axes
compare every pair of levels (each level with the first when there are more than
``ALL_PAIRS_UP_TO``); variants compare each with the reference variant (``baseline``,
else the first). Every estimate is tested with the contrast tests
of ``ablate.analysis.stats``, then Holm-corrected across all effects of the table.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from ablate.analysis.stats import contrast, holm, intervals, p_values

BEYOND = "beyond seed noise"
WITHIN = "within seed noise"
UNDECIDED = "undecided (n<2)"
ALL_PAIRS_UP_TO = 5  # levels; an axis with more compares each level with its first only
COSTS = {"params": "params_pct", "gflops": "gflops_pct", "latency_ms": "latency_pct"}
EFFECT_COLUMNS = [
    "study", "kind", "axis", "change", "n", "method", "estimate", "ci_low", "ci_high",
    "p", "p_holm", "ci_holm_low", "ci_holm_high", *COSTS.values(), "verdict", "configs",
]


@dataclass(frozen=True)
class Factor:
    """One axis: its name, the frame columns behind it and its levels in recipe order."""

    name: str
    columns: tuple[str, ...]
    levels: tuple[str, ...]  # canonical text of each level
    labels: tuple[str, ...]  # as shown
    variants: bool = False


def _text(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if isinstance(value, bool | np.bool_):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _factors(configs: pd.DataFrame, reference: str | None) -> list[Factor]:
    factors = []
    variants = list(dict.fromkeys(configs["variant"]))
    if len(variants) > 1:
        if reference in variants:
            variants.remove(reference)
            variants.insert(0, reference)
        factors.append(Factor("variant", ("variant",), tuple(variants), tuple(variants), True))
    texts = {c: configs[c].map(_text) for c in configs.columns if c.startswith("axis:")}
    varying = [c for c, t in texts.items() if t.nunique() > 1]
    groups: list[list[str]] = []
    for column in varying:  # zip groups: columns whose values determine each other
        for group in groups:
            other = texts[group[0]]
            pairs = len(set(zip(other, texts[column])))
            if pairs == other.nunique() == texts[column].nunique():
                group.append(column)
                break
        else:
            groups.append([column])
    for group in groups:
        joined = pd.Series(list(zip(*(texts[c] for c in group))), index=configs.index)
        levels = list(dict.fromkeys(joined))
        factors.append(Factor(" + ".join(c.removeprefix("axis:") for c in group), tuple(group),
                              tuple("\x1f".join(lv) for lv in levels),
                              tuple(", ".join(lv) for lv in levels)))
    return factors


def _level_codes(configs: pd.DataFrame, factor: Factor) -> np.ndarray:
    if factor.variants:
        keys = configs["variant"].astype(str)
    else:
        keys = pd.Series(["\x1f".join(parts) for parts in zip(
            *(configs[c].map(_text) for c in factor.columns))], index=configs.index)
    return keys.map({lv: i for i, lv in enumerate(factor.levels)}).to_numpy(dtype=int)


class _Grid:
    """A study's figures as dense arrays over the cells of its axes (and seeds)."""

    def __init__(self, done: pd.DataFrame, reference: str | None) -> None:
        grouped = done.groupby("config_name", sort=False)
        configs = grouped.first()
        configs["latency_ms"] = grouped["latency_ms"].median()
        self.factors = _factors(configs, reference)
        shape = tuple(len(f.levels) for f in self.factors)
        codes = tuple(_level_codes(configs, f) for f in self.factors)
        self.names = np.full(shape, None, dtype=object)
        self.names[codes] = configs.index.to_numpy()
        self.costs = {}
        for column in COSTS:
            array = np.full(shape, np.nan)
            array[codes] = pd.to_numeric(configs[column], errors="coerce").to_numpy(dtype=float)
            self.costs[column] = array
        seeds, seed_codes = np.unique(done["seed"].to_numpy(dtype=int), return_inverse=True)
        row = pd.Index(configs.index).get_indexer(done["config_name"])
        sums = np.zeros((len(configs), len(seeds)))
        counts = np.zeros((len(configs), len(seeds)))
        np.add.at(sums, (row, seed_codes), done["miou"].to_numpy(dtype=float))
        np.add.at(counts, (row, seed_codes), 1.0)
        with np.errstate(invalid="ignore"):
            per_config = sums / counts  # a (configuration, seed) run twice: their mean
        self.values = np.full((*shape, len(seeds)), np.nan)
        self.values[codes] = per_config
        self.ran = ~np.isnan(self.values).all(axis=-1)

    def pick(self, fixed: dict[int, int]) -> tuple:
        """An index fixing some axes to a level and leaving the others whole."""
        return tuple(fixed.get(i, slice(None)) for i in range(len(self.factors)))


def _sub(array: np.ndarray, index: tuple) -> np.ndarray:
    """``array[index]`` as an array, also when every axis is fixed (a scalar)."""
    return np.asarray(array[index], dtype=array.dtype)


def _row(study: str, kind: str, axis: str, change: str, grid: _Grid,
         cells: list[tuple[tuple, float]]) -> dict[str, Any] | None:
    """Test ``sum(weight * mean)`` over the sub-grids ``cells`` in the cells all of them ran."""
    mask = np.logical_and.reduce([_sub(grid.ran, index) for index, _ in cells])
    used = int(mask.sum())
    if used == 0:
        return None
    values = np.concatenate([_sub(grid.values, index)[mask] for index, _ in cells])
    weights = np.concatenate([np.full(used, w / used) for _, w in cells])
    result = contrast(values, weights)
    row = {"study": study, "kind": kind, "axis": axis, "change": change, "n": result.n,
           "method": result.method, "estimate": result.estimate, "_contrast": result,
           "configs": tuple(name for index, _ in cells for name in _sub(grid.names, index)[mask])}
    if kind == "main":  # relative cost of the level changed to, over the same cells
        (to_index, _), (from_index, _) = cells
        for column, pct in COSTS.items():
            new = np.nanmean(_sub(grid.costs[column], to_index)[mask])
            old = np.nanmean(_sub(grid.costs[column], from_index)[mask])
            row[pct] = (new / old - 1.0) * 100.0 if old and not math.isnan(old) else math.nan
    return row


def _study_rows(study: str, done: pd.DataFrame, reference: str | None,
                interactions: bool) -> list[dict[str, Any]]:
    import warnings

    if done["config_name"].nunique() < 2:  # one configuration: no axis varies
        return []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # means of all-NaN cost cells
        grid = _Grid(done, reference)
        rows = []
        for f, factor in enumerate(grid.factors):
            n = len(factor.levels)
            pairs = ([(0, j) for j in range(1, n)] if factor.variants or n > ALL_PAIRS_UP_TO
                     else list(itertools.combinations(range(n), 2)))
            for i, j in pairs:
                row = _row(study, "main", factor.name,
                           f"{factor.labels[i]} -> {factor.labels[j]}", grid,
                           [(grid.pick({f: j}), 1.0), (grid.pick({f: i}), -1.0)])
                if row:
                    rows.append(row)
        if interactions:
            for (f, a), (g, b) in itertools.combinations(enumerate(grid.factors), 2):
                for i, j in itertools.product(range(1, len(a.levels)), range(1, len(b.levels))):
                    change = (f"({a.labels[0]} -> {a.labels[i]}) x "
                              f"({b.labels[0]} -> {b.labels[j]})")
                    row = _row(study, "interaction", f"{a.name} x {b.name}", change, grid,
                               [(grid.pick({f: i, g: j}), 1.0), (grid.pick({f: 0, g: j}), -1.0),
                                (grid.pick({f: i, g: 0}), -1.0), (grid.pick({f: 0, g: 0}), 1.0)])
                    if row:
                        rows.append(row)
    return rows


def effects_table(trials: pd.DataFrame, *, baseline: str | None = None, alpha: float = 0.05,
                  interactions: bool = True) -> pd.DataFrame:
    """Every main effect and two-way interaction of every study in ``trials``.

    mIoU effects in points with a ``1 - alpha`` t-interval (``ci_low``/``ci_high``),
    p-value, Holm-adjusted p-value over all rows (``p_holm``) and the interval at
    the row's Holm step level (``ci_holm_*``). Costs of main effects in percent.
    ``verdict``: ``beyond seed noise`` when the Holm-adjusted p is below ``alpha``
    and the Holm interval excludes 0, ``within seed noise`` otherwise,
    ``undecided (n<2)`` when the effect could not be tested. ``configs``: the
    configurations the estimate uses.
    """
    done = trials[(trials["status"] == "done") & trials["miou"].notna()]
    rows: list[dict[str, Any]] = []
    for study, group in done.groupby("study", sort=False):
        reference = baseline
        if baseline is not None and baseline not in set(group["variant"]):
            named = group.loc[group["config_name"] == baseline, "variant"]
            reference = named.iloc[0] if len(named) else None
        rows += _study_rows(str(study), group, reference, interactions)
    if not rows:
        return pd.DataFrame(columns=EFFECT_COLUMNS)
    out = pd.DataFrame(rows)
    tests = out.pop("_contrast").tolist()
    estimate = np.array([t.estimate for t in tests])
    se = np.array([t.se for t in tests])
    df = np.array([t.df for t in tests])
    p = p_values(estimate, se, df)
    adjusted, divisor = holm(p)
    out["ci_low"], out["ci_high"] = intervals(estimate, se, df, np.full(len(p), alpha))
    out["p"], out["p_holm"] = p, adjusted
    low, high = intervals(estimate, se, df, alpha / divisor)
    out["ci_holm_low"], out["ci_holm_high"] = low, high
    out["verdict"] = [verdict(a, lo, hi, alpha) for a, lo, hi in zip(adjusted, low, high)]
    for column in COSTS.values():
        if column not in out:
            out[column] = math.nan
    return out[EFFECT_COLUMNS]


def verdict(p_holm: float, low: float, high: float, alpha: float) -> str:
    if math.isnan(p_holm):
        return UNDECIDED
    if p_holm < alpha and (low > 0.0 or high < 0.0):
        return BEYOND
    return WITHIN


def compare_configs(trials: pd.DataFrame, pairs: list[tuple[str, str, str]],
                    alpha: float = 0.05) -> pd.DataFrame:
    """mIoU of configuration ``b`` minus ``a`` per ``(study, a, b)``, unadjusted.

    Columns ``study, a, b, estimate, ci_low, ci_high, n, method, p, verdict`` (one row
    per pair, in order); paired by seed where two or more seeds ran on both sides,
    else Welch. Vectorised over pairs: tens of thousands take well under a second.
    """
    columns = ["study", "a", "b", "estimate", "ci_low", "ci_high", "n", "method", "p", "verdict"]
    if not pairs:
        return pd.DataFrame(columns=columns)
    done = trials[(trials["status"] == "done") & trials["miou"].notna()]
    keys = pd.MultiIndex.from_arrays([done["study"], done["config_name"]])
    rows, index = pd.factorize(keys)
    seeds, seed_codes = np.unique(done["seed"].to_numpy(dtype=int), return_inverse=True)
    sums = np.zeros((len(index) + 1, max(len(seeds), 1)))  # last row: a missing config
    counts = np.zeros_like(sums)
    np.add.at(sums, (rows, seed_codes), done["miou"].to_numpy(dtype=float))
    np.add.at(counts, (rows, seed_codes), 1.0)
    with np.errstate(invalid="ignore"):
        table = sums / counts
    lookup = pd.Index(index)
    study, a, b = (list(x) for x in zip(*pairs))
    ia = lookup.get_indexer(pd.MultiIndex.from_arrays([study, a]))
    ib = lookup.get_indexer(pd.MultiIndex.from_arrays([study, b]))
    left, right = table[ia], table[ib]  # index -1 picks the all-NaN last row
    estimate, se, df, n, method = _two_sided(left, right)
    p = p_values(estimate, se, df)
    low, high = intervals(estimate, se, df, np.full(len(p), alpha))
    return pd.DataFrame({"study": study, "a": a, "b": b, "estimate": estimate, "ci_low": low,
                         "ci_high": high, "n": n, "method": method, "p": p,
                         "verdict": [verdict(x, lo, hi, alpha) for x, lo, hi in zip(p, low, high)]},
                        columns=columns)


def _two_sided(left: np.ndarray, right: np.ndarray):
    """``stats.contrast`` with weights (-1, +1), row by row over pairs x seeds arrays."""
    from ablate.analysis.stats import PAIRED, UNTESTED, WELCH

    with np.errstate(invalid="ignore", divide="ignore"):
        both = ~np.isnan(left) & ~np.isnan(right)
        n_paired = both.sum(axis=1)
        diff = np.where(both, right - left, np.nan)
        paired_mean = np.nansum(diff, axis=1) / n_paired
        paired_sd = np.sqrt(np.nansum((diff - paired_mean[:, None]) ** 2, axis=1)
                            / (n_paired - 1))
        count_l, count_r = (~np.isnan(left)).sum(axis=1), (~np.isnan(right)).sum(axis=1)
        mean_l = np.nansum(left, axis=1) / count_l
        mean_r = np.nansum(right, axis=1) / count_r
        var_l = np.nansum((left - mean_l[:, None]) ** 2, axis=1) / (count_l - 1) / count_l
        var_r = np.nansum((right - mean_r[:, None]) ** 2, axis=1) / (count_r - 1) / count_r
        welch_df = (var_l + var_r) ** 2 / (var_l**2 / (count_l - 1) + var_r**2 / (count_r - 1))
        welch_df = np.where(np.isfinite(welch_df), welch_df, count_l + count_r - 2.0)
    paired = n_paired >= 2
    welch = ~paired & (count_l >= 2) & (count_r >= 2)
    estimate = np.where(paired, paired_mean, mean_r - mean_l)
    se = np.where(paired, paired_sd / np.sqrt(np.maximum(n_paired, 1)),
                  np.where(welch, np.sqrt(var_l + var_r), np.nan))
    df = np.where(paired, n_paired - 1.0, np.where(welch, welch_df, np.nan))
    n = np.where(paired, n_paired, np.where(welch, count_l + count_r, n_paired))
    method = np.where(paired, PAIRED, np.where(welch, WELCH, UNTESTED))
    return estimate, se, df, n.astype(int), method.tolist()
