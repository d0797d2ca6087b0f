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
else the first).

One estimand per row: the estimate and its interval come from the same seeds (the
seeds every configuration of the effect ran, paired), or, when fewer than two seeds
pair up, from every trial (Welch). The family is the study's effects as its
configurations define them (every status counts, whatever a report shows), and each
interval is read at ``alpha / family`` (``ablate.analysis.design``). Verdicts read the
interval: ``better``/``worse`` (``positive``/``negative`` for an interaction) when it
excludes 0, ``equivalent (±d)`` when it lies within the margin ``d`` the user stated,
else ``inconclusive (n=...)``.
"""

from __future__ import annotations

import functools
import itertools
import math
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from ablate.analysis.design import Design
from ablate.analysis.knockout import COLUMN as KNOCKOUT_COLUMN
from ablate.analysis.knockout import component_columns, one_away
from ablate.analysis.sequential import repeated_interval
from ablate.analysis.stats import (
    PAIRED,
    UNTESTED,
    WELCH,
    contrast,
    differences,
    intervals,
    p_values,
)

BETTER, WORSE = "better", "worse"
POSITIVE, NEGATIVE = "positive", "negative"  # interactions: more (less) than additive
DECIDED_DIRECTIONS = (BETTER, WORSE, POSITIVE, NEGATIVE)
POWER = 0.8  # the power of the minimum detectable effect and of the seeds-needed figure
ALL_PAIRS_UP_TO = 5  # levels; an axis with more compares each level with its first only
COSTS = {"params": "params_pct", "gflops": "gflops_pct", "latency_ms": "latency_pct"}
METRIC, UNIT = "miou", "mIoU points"
EFFECT_COLUMNS = [
    "study", "kind", "axis", "change", "metric", "unit", "n", "method", "estimate",
    "ci_low", "ci_high", "ci_level", "family", "p", "p_adj", "mde", "seeds_needed",
    *COSTS.values(), "verdict", "design", "configs",
]


def equivalent(margin: float) -> str:
    return f"equivalent (±{margin:g})"


def inconclusive(n: int, why: str = "") -> str:
    return f"inconclusive (n={n}{', ' + why if why else ''})"


def is_decided(verdict: str) -> bool:
    return verdict in DECIDED_DIRECTIONS or verdict.startswith("equivalent")


@dataclass(frozen=True)
class Factor:
    """One axis: its name, the frame columns behind it and its levels in recipe order."""

    name: str
    columns: tuple[str, ...]
    levels: tuple[str, ...]  # canonical text of each level
    labels: tuple[str, ...]  # as shown
    variants: bool = False
    against_first: bool = False  # each level compared with the first only (a knock-out design)


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
    knockout = one_away(texts[KNOCKOUT_COLUMN]) if KNOCKOUT_COLUMN in varying else None
    if knockout is not None:  # leave one out or add one: each level against its baseline
        varying.remove(KNOCKOUT_COLUMN)
        factors.append(Factor(knockout.name, (KNOCKOUT_COLUMN,), knockout.levels,
                              knockout.labels, against_first=True))
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
    """A study's figures as dense arrays over the cells of its axes (and seeds).

    The cells come from every configuration of the study (any status), so the family
    of effects does not depend on which trials have finished; values from done trials.
    """

    def __init__(self, study: pd.DataFrame, reference: str | None) -> None:
        done = study[(study["status"] == "done") & study["miou"].notna()]
        configs = component_columns(study.groupby("config_name", sort=False).first())
        grouped = done.groupby("config_name", sort=False)
        for column in COSTS:  # costs of finished trials; latency: their median
            configs[column] = (grouped[column].median() if column == "latency_ms"
                               else grouped[column].first())
        self.factors = _factors(configs, reference)
        shape = tuple(len(f.levels) for f in self.factors)
        codes = tuple(_level_codes(configs, f) for f in self.factors)
        self.names = np.full(shape, None, dtype=object)
        self.names[codes] = configs.index.to_numpy()
        self.defined = np.zeros(shape, dtype=bool)  # cells some configuration fills
        self.defined[codes] = True
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
        self.values = np.full((*shape, len(seeds)), np.nan)  # seeds ascending: the order added
        self.values[codes] = per_config
        self.ran = ~np.isnan(self.values).all(axis=-1)

    @classmethod
    def from_arrays(cls, values: np.ndarray, axes: list[tuple[str, list[str]]]) -> _Grid:
        """A grid straight from ``values`` (levels of each axis x seeds, NaN: not run),
        for simulations that drive the real tests without building a trials frame."""
        grid = cls.__new__(cls)
        grid.factors = [Factor(name, (f"axis:{name}",), tuple(levels), tuple(levels))
                        for name, levels in axes]
        shape = values.shape[:-1]
        grid.names = np.empty(shape, dtype=object)
        for index in np.ndindex(*shape):
            grid.names[index] = ",".join(f"{n}={grid.factors[i].levels[k]}"
                                         for i, (n, k) in enumerate(zip(
                                             (f.name for f in grid.factors), index)))
        grid.costs = {column: np.full(shape, np.nan) for column in COSTS}
        grid.defined = np.ones(shape, dtype=bool)
        grid.values = values
        grid.ran = ~np.isnan(values).all(axis=-1)
        return grid


def _pick(axes: int, fixed: dict[int, int]) -> tuple:
    """An index fixing some axes to a level and leaving the others whole."""
    return tuple(fixed.get(i, slice(None)) for i in range(axes))


@dataclass(frozen=True)
class _Spec:
    """One effect: ``sum(weight * mean)`` over sub-grids, each a cell selection."""

    kind: str
    axis: str
    change: str
    cells: tuple[tuple[tuple, float], ...]


def _specs(factors: list[Factor], defined: np.ndarray | None = None) -> list[_Spec]:
    """Every effect the study's axes define, in table order: with ``defined`` (the cells
    some configuration fills), those whose every sub-grid has such a cell (in a
    leave-one-out, two components' interaction has none)."""
    specs = _all_specs(factors)
    if defined is None:
        return specs
    return [spec for spec in specs
            if np.logical_and.reduce([_sub(defined, index) for index, _ in spec.cells]).any()]


def _all_specs(factors: list[Factor]) -> list[_Spec]:
    def pick(fixed: dict[int, int]) -> tuple:
        return _pick(len(factors), fixed)

    specs = []
    for f, factor in enumerate(factors):
        n = len(factor.levels)
        pairs = ([(0, j) for j in range(1, n)]
                 if factor.variants or factor.against_first or n > ALL_PAIRS_UP_TO
                 else list(itertools.combinations(range(n), 2)))
        for i, j in pairs:
            specs.append(_Spec("main", factor.name, f"{factor.labels[i]} -> {factor.labels[j]}",
                               ((pick({f: j}), 1.0), (pick({f: i}), -1.0))))
    for (f, a), (g, b) in itertools.combinations(enumerate(factors), 2):
        for i, j in itertools.product(range(1, len(a.levels)), range(1, len(b.levels))):
            change = f"({a.labels[0]} -> {a.labels[i]}) x ({b.labels[0]} -> {b.labels[j]})"
            specs.append(_Spec("interaction", f"{a.name} x {b.name}", change,
                               ((pick({f: i, g: j}), 1.0), (pick({f: 0, g: j}), -1.0),
                                (pick({f: i, g: 0}), -1.0), (pick({f: 0, g: 0}), 1.0))))
    return specs


def _row(study: str, spec: _Spec, grid: _Grid, design: Design, family: int) -> dict | None:
    """Test one effect over the cells all of its sub-grids ran; None when none did."""
    mask = np.logical_and.reduce([_sub(grid.ran, index) for index, _ in spec.cells])
    used = int(mask.sum())
    if used == 0:
        return None
    values = np.concatenate([_sub(grid.values, index)[mask] for index, _ in spec.cells])
    weights = np.concatenate([np.full(used, w / used) for _, w in spec.cells])
    row: dict[str, Any] = {
        "study": study, "kind": spec.kind, "axis": spec.axis, "change": spec.change,
        "metric": METRIC, "unit": UNIT, "family": family, "design": design.describe(),
        "configs": tuple(name for index, _ in spec.cells
                         for name in _sub(grid.names, index)[mask]),
        **contrast_row(values, weights, design, family),
    }
    row["verdict"] = verdict(row, spec.kind, design.min_effect)
    if spec.kind == "main":  # relative cost of the level changed to, over the same cells
        (to_index, _), (from_index, _) = spec.cells
        for column, pct in COSTS.items():
            row[pct] = geometric_change(_sub(grid.costs[column], to_index)[mask],
                                        _sub(grid.costs[column], from_index)[mask])
    return row


def geometric_change(new: np.ndarray, old: np.ndarray) -> float:
    """Percent change as the geometric mean of per-cell ratios (cells 1 -> 2 and 10 -> 11
    give +48%, each cell counted alike), over cells where both are positive."""
    new, old = np.asarray(new, dtype=float), np.asarray(old, dtype=float)
    ok = (new > 0) & (old > 0)
    if not ok.any():
        return math.nan
    return float((math.exp(np.mean(np.log(new[ok] / old[ok]))) - 1.0) * 100.0)


def contrast_row(values: np.ndarray, weights: np.ndarray, design: Design,
                  family: int = 1) -> dict[str, Any]:
    """Estimate, interval at ``alpha / family``, p-values, MDE and seeds needed.

    ``values``: configurations x seeds (NaN where a seed did not run, seeds ascending).
    """
    from scipy.special import stdtrit  # lazy: loads scipy

    level = design.alpha / family
    fixed = contrast(values, weights)
    out: dict[str, Any] = {"n": fixed.n, "method": fixed.method, "estimate": fixed.estimate,
                           "ci_low": math.nan, "ci_high": math.nan, "ci_level": 1.0 - level,
                           "p": math.nan, "p_adj": math.nan, "mde": math.nan,
                           "seeds_needed": math.nan, "zero_spread": False}
    if not fixed.testable:
        return out
    if fixed.se == 0.0:  # identical differences on every seed: no estimate of the noise
        out["zero_spread"] = True
        return out
    if design.sequential:
        if fixed.method != PAIRED:  # the loop pairs its seeds; anything else is untested
            out["method"] = UNTESTED
            return out
        present = ~np.isnan(values)
        per_seed = weights @ values[:, present.all(axis=0)]
        rep = repeated_interval(per_seed, design.start_seeds, design.max_seeds, level,
                                design.spending)
        out.update(n=rep.n, estimate=rep.estimate, ci_low=rep.low, ci_high=rep.high,
                   method=f"group-sequential ({design.spending})")
        se, critical, df = rep.se, rep.critical, rep.n - 1.0
    else:
        p = float(p_values(np.array([fixed.estimate]), np.array([fixed.se]),
                           np.array([fixed.df]))[0])
        critical = float(stdtrit(fixed.df, 1.0 - level / 2.0))
        se, df = fixed.se, fixed.df
        out.update(ci_low=fixed.estimate - critical * se, ci_high=fixed.estimate + critical * se,
                   p=p, p_adj=min(1.0, p * family))
    if math.isfinite(critical) and se > 0:
        # Colas, Sigaud and Oudeyer, "How many random seeds?", 2018: the smallest effect
        # this design detects with 80% power, and the seeds a fixed design needs for the margin
        out["mde"] = (critical + float(stdtrit(df, POWER))) * se
    if design.min_effect and out["method"] != WELCH and se > 0:  # paired: per-seed sd
        out["seeds_needed"] = seeds_needed(se * math.sqrt(out["n"]), design.min_effect, level)
    return out


def seeds_needed(sd: float, effect: float, level: float, limit: int = 10_000) -> float:
    """Seeds per configuration a fixed paired design needs to detect ``effect`` with 80%
    power at two-sided ``level``, given the per-seed contrast's ``sd``; inf past ``limit``."""
    factor = _power_factor(level, limit)  # (t_{1-level/2} + t_{power}) / sqrt(n), n = 2..limit
    ok = np.flatnonzero(factor * sd <= effect)
    return float(ok[0] + 2) if len(ok) else math.inf


@functools.lru_cache(maxsize=64)
def _power_factor(level: float, limit: int) -> np.ndarray:
    from scipy.special import stdtrit  # lazy: loads scipy

    n = np.arange(2, limit + 1, dtype=float)
    return (stdtrit(n - 1, 1.0 - level / 2.0) + stdtrit(n - 1, POWER)) / np.sqrt(n)


def verdict(row: dict[str, Any], kind: str, margin: float | None) -> str:
    low, high, n = row["ci_low"], row["ci_high"], int(row["n"])
    if row.get("zero_spread"):
        return inconclusive(n, "zero spread")
    if math.isnan(low) or math.isnan(high):
        return inconclusive(n)
    if low > 0.0:
        return POSITIVE if kind == "interaction" else BETTER
    if high < 0.0:
        return NEGATIVE if kind == "interaction" else WORSE
    if margin and -margin <= low and high <= margin:
        return equivalent(margin)
    return inconclusive(n)


def effects_table(trials: pd.DataFrame, *, baseline: str | None = None, alpha: float = 0.05,
                  min_effect: float | None = None, designs: dict[str, Design] | None = None,
                  families: dict[str, int] | None = None,
                  interactions: bool = True) -> pd.DataFrame:
    """Every main effect and two-way interaction of every study in ``trials``.

    ``trials``: every trial of each study (any status: the family counts effects the
    configurations define, and only done trials give figures). A study in ``designs``
    is tested as that design says (its own alpha and margin); the others as fixed-seed
    studies at ``alpha`` with margin ``min_effect``. mIoU effects in points with the
    interval at ``alpha / family`` (``ci_low``/``ci_high``, ``ci_level``), unadjusted and
    Bonferroni-adjusted p-values (fixed designs), the minimum detectable effect at 80%
    power (``mde``) and, with a margin, the seeds a fixed design needs to detect it.
    Costs of main effects in percent. ``interactions=False`` hides interaction rows; they
    stay in the family. ``families``: each study's family size when ``trials`` holds only
    part of it (a report's ``--where``; ``family_sizes`` of all its trials).
    """
    rows: list[dict[str, Any]] = []
    for study, group in trials.groupby("study", sort=False):
        design = (designs or {}).get(str(study)) or Design(alpha=alpha, min_effect=min_effect)
        reference = baseline
        if baseline is not None and baseline not in set(group["variant"]):
            named = group.loc[group["config_name"] == baseline, "variant"]
            reference = named.iloc[0] if len(named) else None
        rows += _study_rows(str(study), group, reference, design,
                            (families or {}).get(str(study)))
    if not interactions:
        rows = [r for r in rows if r["kind"] != "interaction"]
    if not rows:
        return pd.DataFrame(columns=EFFECT_COLUMNS)
    out = pd.DataFrame(rows)
    for column in COSTS.values():
        if column not in out:
            out[column] = math.nan
    return out[EFFECT_COLUMNS]


def _study_rows(study: str, trials: pd.DataFrame, reference: str | None,
                design: Design, family: int | None = None) -> list[dict[str, Any]]:
    if trials["config_name"].nunique() < 2:  # one configuration: no axis varies
        return []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # means of all-NaN cost cells
        return grid_effects(study, _Grid(trials, reference), design, family)


def grid_effects(study: str, grid: _Grid, design: Design,
                 family: int | None = None) -> list[dict[str, Any]]:
    """The rows of every effect of one study's grid (the family: all of them, or more)."""
    specs = _specs(grid.factors, grid.defined)
    size = max(family or 0, len(specs))
    rows = [_row(study, spec, grid, design, size) for spec in specs]
    return [row for row in rows if row is not None]


def family_sizes(trials: pd.DataFrame) -> dict[str, int]:
    """The number of effects each study's configurations define (every status counts)."""
    sizes = {}
    for study, group in trials.groupby("study", sort=False):
        if group["config_name"].nunique() < 2:
            sizes[str(study)] = 0
            continue
        configs = component_columns(group.groupby("config_name", sort=False).first())
        factors = _factors(configs, None)
        defined = np.zeros(tuple(len(f.levels) for f in factors), dtype=bool)
        defined[tuple(_level_codes(configs, f) for f in factors)] = True
        sizes[str(study)] = len(_specs(factors, defined))  # the rows effects_table forms
    return sizes


def compare_configs(trials: pd.DataFrame, pairs: list[tuple[str, str, str]],
                    alpha: float = 0.05, designs: dict[str, Design] | None = None
                    ) -> pd.DataFrame:
    """mIoU of configuration ``b`` minus ``a`` per ``(study, a, b)``, each at ``1 - alpha``.

    Columns ``study, a, b, estimate, ci_low, ci_high, n, method, p, verdict`` (one row
    per pair, in order); paired by seed where two or more seeds ran on both sides (the
    estimate is then the mean over those seeds, like its interval), else Welch. A study
    in ``designs`` grown sequentially gets its repeated interval at ``alpha``. Vectorised
    over pairs of fixed designs: tens of thousands take well under a second.
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
    estimate, se, df, n, method = differences(left, right)
    p = p_values(estimate, se, df)
    low, high = intervals(estimate, se, df, np.full(len(p), alpha))
    zero = se == 0.0
    low[zero] = high[zero] = np.nan  # identical differences: no estimate of the noise
    p[zero] = np.nan
    for k, name in enumerate(study):
        design = (designs or {}).get(str(name))
        if design is None or not design.sequential:
            continue
        result = contrast_row(np.vstack([left[k], right[k]]), np.array([-1.0, 1.0]),
                               Design(**{**design.to_json(), "alpha": alpha}))
        estimate[k], low[k], high[k], p[k] = (result["estimate"], result["ci_low"],
                                              result["ci_high"], math.nan)
        n[k], method[k] = result["n"], result["method"]
    verdicts = [verdict({"ci_low": lo, "ci_high": hi, "n": k}, "main", None)
                for lo, hi, k in zip(low, high, n)]
    return pd.DataFrame({"study": study, "a": a, "b": b, "estimate": estimate, "ci_low": low,
                         "ci_high": high, "n": n, "method": method, "p": p,
                         "verdict": verdicts}, columns=columns)


def _sub(array: np.ndarray, index: tuple) -> np.ndarray:
    """``array[index]`` as an array, also when every axis is fixed (a scalar)."""
    return np.asarray(array[index], dtype=array.dtype)
