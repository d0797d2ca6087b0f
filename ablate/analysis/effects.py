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
effect is tested at ``a = alpha / family`` (``ablate.analysis.design``). Verdicts:
``better``/``worse`` (``positive``/``negative`` for an interaction) when the two-sided
``1 - a`` interval excludes 0; ``equivalent (±d)`` when the ``1 - 2a`` interval lies
within the margin ``d`` the user stated (two one-sided tests at ``a``); in a sequential
study with a futility stop, ``no effect ≥ d (80% power)`` when its futility interval
lies within ``±d`` (``ablate.analysis.rule``); else ``inconclusive (n=...)``.
"""

from __future__ import annotations

import itertools
import math
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from ablate.analysis import power
from ablate.analysis.design import Design
from ablate.analysis.knockout import COLUMN as KNOCKOUT_COLUMN
from ablate.analysis.knockout import component_columns, one_away
from ablate.analysis.rule import adjusted_estimate, design_detectable, read_seeds, rule_for
from ablate.analysis.stats import (
    PAIRED,
    UNTESTED,
    WELCH,
    contrast,
    differences,
    intervals,
    p_values,
)
from ablate.trials.lifecycle import TrialStatus
from ablate.trials.names import axis_text

BETTER, WORSE = "better", "worse"
POSITIVE, NEGATIVE = "positive", "negative"  # interactions: more (less) than additive
DECIDED_DIRECTIONS = (BETTER, WORSE, POSITIVE, NEGATIVE)
POWER = power.POWER  # the power of the minimum detectable effect and the seeds figures
ALL_PAIRS_UP_TO = 5  # levels; an axis with more compares each level with its first only
COSTS = {"params": "params_pct", "gflops": "gflops_pct", "latency_ms": "latency_pct"}
METRIC, UNIT = "miou", "mIoU points"
MEAN, ADJUSTED = "mean", "bias-adjusted"  # what ``estimate`` is
EFFECT_COLUMNS = [
    "study", "kind", "axis", "change", "metric", "unit", "n", "method", "estimate",
    "estimator", "mean", "ci_low", "ci_high", "ci_level", "tost_low", "tost_high",
    "tost_level", "futility_low", "futility_high", "futility_level", "family", "p", "p_adj",
    "mde", "seeds_needed", "seeds_needed_high", "seeds_to_detect",
    *COSTS.values(), "verdict", "design", "configs",
]


def equivalent(margin: float) -> str:
    return f"equivalent (±{margin:g})"


def no_effect(margin: float, power_: float) -> str:
    """The futility stop's verdict: an effect of ±margin would have been detected with
    at least this power."""
    return f"no effect ≥ {margin:g} ({100 * power_:.0f}% power)"


def inconclusive(n: int, why: str = "") -> str:
    return f"inconclusive (n={n}{', ' + why if why else ''})"


def is_decided(verdict: str) -> bool:
    return verdict in DECIDED_DIRECTIONS or verdict.startswith(("equivalent", "no effect"))


@dataclass(frozen=True)
class Factor:
    """One axis: its name, the frame columns behind it and its levels in recipe order."""

    name: str
    columns: tuple[str, ...]
    levels: tuple[str, ...]  # canonical text of each level (a list: the frame's text)
    labels: tuple[str, ...]  # as shown (a list as the configuration names spell it)
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


Order = dict[str, dict[str, int]]  # column (or "variant") -> level text -> rank


def level_order(trials: pd.DataFrame) -> dict[str, Order]:
    """Each study's levels in recipe order (their first trial), per axis column and
    ``variant``: given to the effects of a subset of the study (a report's shown
    configurations), so that an axis reads ``true -> false`` whichever configurations
    finished or ``--where`` keeps, not the other way round when its first one is left out."""
    out = {}
    for study, group in trials.groupby("study", sort=False):
        configs = component_columns(group.groupby("config_name", sort=False).first())
        columns = ["variant", *(c for c in configs.columns if c.startswith("axis:"))]
        out[str(study)] = {c: {t: i for i, t in enumerate(dict.fromkeys(configs[c].map(_text)))}
                           for c in columns}
    return out


def _ranked(levels: list, columns: tuple[str, ...] | list[str], order: Order | None) -> list:
    """``levels`` (tuples of texts, one per column) in ``order``; unknown ones keep theirs."""
    if not order:
        return levels
    return sorted(levels, key=lambda level: tuple(
        order.get(c, {}).get(t, math.inf) for c, t in zip(columns, level)))


def _factors(configs: pd.DataFrame, reference: str | None,
             order: Order | None = None) -> list[Factor]:
    factors = []
    variants = [v for (v,) in _ranked([(v,) for v in dict.fromkeys(configs["variant"])],
                                      ["variant"], order)]
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
        levels = _ranked(list(dict.fromkeys(joined)), group, order)
        factors.append(Factor(" + ".join(c.removeprefix("axis:") for c in group), tuple(group),
                              tuple("\x1f".join(lv) for lv in levels),
                              tuple(", ".join(map(axis_text, lv)) for lv in levels)))
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

    def __init__(self, study: pd.DataFrame, reference: str | None,
                 order: Order | None = None) -> None:
        done = study[(study["status"] == TrialStatus.DONE) & study["miou"].notna()]
        configs = component_columns(study.groupby("config_name", sort=False).first())
        grouped = done.groupby("config_name", sort=False)
        for column in COSTS:  # costs of finished trials; latency: their median
            configs[column] = (grouped[column].median() if column == "latency_ms"
                               else grouped[column].first())
        self.factors = _factors(configs, reference, order)
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


def _row(study: str, spec: _Spec, grid: _Grid, design: Design, family: int,
         report: bool = False, mde: bool = True) -> dict | None:
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
        **contrast_row(values, weights, design, family, report=report, mde=mde),
    }
    row["verdict"] = verdict(row, spec.kind, design.min_effect, design.futility_power)
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
                 family: int = 1, report: bool = False, mde: bool = True) -> dict[str, Any]:
    """Estimate, intervals at ``a = alpha / family``, p-values, MDE and seeds needed.

    ``values``: configurations x seeds (NaN where a seed did not run, seeds ascending).
    ``report``: the figures a report adds to the verdict: in a sequential study the
    bias-adjusted estimate (``rule.adjusted_estimate``; ``mean`` keeps the mean), kept
    inside the interval, and with a margin the seeds needed (the loop's reads skip them).
    ``mde=False`` leaves ``mde`` NaN: in a sequential design with a futility stop it is a
    simulation of its own at each read's noise, which a simulated loop
    (``ablate.dispatch.simulate``, reading verdicts only) would pay at every look.
    """
    from scipy.special import stdtr, stdtrit  # lazy: loads scipy

    level = design.alpha / family
    margin = design.min_effect
    fixed = contrast(values, weights)
    out: dict[str, Any] = {
        "n": fixed.n, "method": fixed.method, "estimate": fixed.estimate, "estimator": MEAN,
        "mean": fixed.estimate, "ci_low": math.nan, "ci_high": math.nan,
        "ci_level": 1.0 - level, "tost_low": math.nan, "tost_high": math.nan,
        "tost_level": 1.0 - 2.0 * level if margin else math.nan, "futility_low": math.nan,
        "futility_high": math.nan, "futility_level": math.nan, "p": math.nan,
        "p_adj": math.nan, "mde": math.nan, "seeds_needed": math.nan,
        "seeds_needed_high": math.nan, "seeds_to_detect": math.nan, "zero_spread": False}
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
        rule = rule_for(design, level)
        first = max(1, design.start_seeds or 1)
        reading = read_seeds(per_seed, first, rule, margin)
        out["method"] = f"group-sequential ({design.spending})"
        if reading is None:
            return out
        n = min(len(per_seed), rule.looks[-1])  # seeds past the design are not part of it
        mean, se = float(reading.mean[-1]), float(reading.se[-1])
        out.update(n=n, estimate=mean, mean=mean, ci_low=float(reading.low[-1]),
                   ci_high=float(reading.high[-1]))
        if reading.tost_low is not None:
            out.update(tost_low=float(reading.tost_low[-1]), tost_high=float(reading.tost_high[-1]))
        if reading.futility_low is not None:
            out.update(futility_low=float(reading.futility_low[-1]),
                       futility_high=float(reading.futility_high[-1]),
                       futility_level=1.0 - 2.0 * (1.0 - design.futility_power))
        sd = se * math.sqrt(n)
        # the effect the design detects with 80% power by its last look, in this noise,
        # its futility stop included (the margin in this noise; 3 digits: the cache's key)
        margin_sd = round(design.min_effect / sd, 3) if design.futility and sd > 0 else None
        if mde:
            out["mde"] = design_detectable(design, level, margin_sd) * sd
        if report and sd > 0:
            estimate = adjusted_estimate(mean, sd, design, level)
            if math.isfinite(out["ci_low"]) and math.isfinite(out["ci_high"]):
                estimate = min(max(estimate, out["ci_low"]), out["ci_high"])
            out.update(estimate=estimate, estimator=ADJUSTED)
        # planning at the design's last look: its boundaries as levels at max_seeds - 1 df
        last_df = rule.looks[-1] - 1.0
        detect_level = 2.0 * float(stdtr(last_df, -rule.efficacy[-1]))
        tost_level = float(stdtr(last_df, -rule.tost[-1])) if rule.tost is not None else level
    else:
        p = float(p_values(np.array([fixed.estimate]), np.array([fixed.se]),
                           np.array([fixed.df]))[0])
        critical = float(stdtrit(fixed.df, 1.0 - level / 2.0))
        se = fixed.se
        out.update(ci_low=fixed.estimate - critical * se, ci_high=fixed.estimate + critical * se,
                   p=p, p_adj=min(1.0, p * family))
        if margin:  # two one-sided tests at the level: the 1 - 2 level interval
            one_sided = float(stdtrit(fixed.df, 1.0 - level))
            out.update(tost_low=fixed.estimate - one_sided * se,
                       tost_high=fixed.estimate + one_sided * se)
        # exact power (noncentral t): the effect detected with 80% power at this n
        if mde:
            out["mde"] = power.detectable_se(fixed.df, level) * se
        sd = se * math.sqrt(fixed.n)  # paired: the per-seed sd (unused for Welch)
        detect_level, tost_level = level, level
    if report and margin and out["method"] != WELCH and sd > 0:
        # seeds per configuration for 80% power: to show "equivalent" when nothing
        # differs (the margin's question), at the observed sd and at its upper bound;
        # and to detect an effect of the margin
        df = out["n"] - 1.0
        out["seeds_needed"] = power.seeds_for_equivalence(margin / sd, tost_level)
        out["seeds_needed_high"] = power.seeds_for_equivalence(
            margin / power.sd_upper(sd, df), tost_level)
        out["seeds_to_detect"] = power.seeds_to_detect(margin / sd, detect_level)
    return out


def verdict(row: dict[str, Any], kind: str, margin: float | None,
            futility_power: float | None = None) -> str:
    """The row's verdict from its intervals: efficacy, then equivalence (the TOST
    interval), then futility (its interval, in a design with a futility stop)."""
    low, high, n = row["ci_low"], row["ci_high"], int(row["n"])
    if row.get("zero_spread"):
        return inconclusive(n, "zero spread")
    if math.isnan(low) or math.isnan(high):
        return inconclusive(n)
    if low > 0.0:
        return POSITIVE if kind == "interaction" else BETTER
    if high < 0.0:
        return NEGATIVE if kind == "interaction" else WORSE
    if margin and _within(row.get("tost_low"), row.get("tost_high"), margin):
        return equivalent(margin)
    if margin and futility_power and _within(row.get("futility_low"),
                                             row.get("futility_high"), margin):
        return no_effect(margin, futility_power)
    return inconclusive(n)


def _within(low: float | None, high: float | None, margin: float) -> bool:
    return low is not None and high is not None and -margin <= low and high <= margin


def effects_table(trials: pd.DataFrame, *, baseline: str | None = None, alpha: float = 0.05,
                  min_effect: float | None = None, designs: dict[str, Design] | None = None,
                  families: dict[str, int] | None = None,
                  interactions: bool = True, report: bool = True,
                  order: dict[str, Order] | None = None) -> pd.DataFrame:
    """Every main effect and two-way interaction of every study in ``trials``.

    ``trials``: every trial of each study (any status: the family counts effects the
    configurations define, and only done trials give figures). A study in ``designs``
    is tested as that design says (its own alpha and margin); the others as fixed-seed
    studies at ``alpha`` with margin ``min_effect``. mIoU effects in points with the
    interval at ``alpha / family`` (``ci_low``/``ci_high``, ``ci_level``), with a margin
    the ``1 - 2 alpha / family`` interval equivalence is read on (``tost_*``), in a
    sequential design with a futility stop its futility interval (``futility_*``),
    unadjusted and Bonferroni-adjusted p-values (fixed designs), the effect detected
    with 80% power (``mde``) and, with a margin, the seeds per configuration for 80%
    power to show equivalence (``seeds_needed``, ``seeds_needed_high`` at the noise's
    90% upper bound) and to detect the margin (``seeds_to_detect``); the estimate of a
    sequential study is bias-adjusted (``estimator``; ``mean`` keeps the mean).
    ``report=False`` (the loop's own reads) leaves out the seeds and the adjustment.
    Costs of main effects in percent. ``interactions=False`` hides interaction rows;
    they stay in the family.
    ``families``: each study's family size when ``trials`` holds only part of it (a
    report's ``--where``; ``family_sizes`` of all its trials), and ``order`` its levels
    in recipe order then (``level_order`` of all its trials).
    """
    rows: list[dict[str, Any]] = []
    for study, group in trials.groupby("study", sort=False):
        design = (designs or {}).get(str(study)) or Design(alpha=alpha, min_effect=min_effect)
        reference = baseline
        if baseline is not None and baseline not in set(group["variant"]):
            named = group.loc[group["config_name"] == baseline, "variant"]
            reference = named.iloc[0] if len(named) else None
        rows += _study_rows(str(study), group, reference, design,
                            (families or {}).get(str(study)), report,
                            (order or {}).get(str(study)))
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
                design: Design, family: int | None = None,
                report: bool = False, order: Order | None = None) -> list[dict[str, Any]]:
    if trials["config_name"].nunique() < 2:  # one configuration: no axis varies
        return []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # means of all-NaN cost cells
        return grid_effects(study, _Grid(trials, reference, order), design, family, report)


def grid_effects(study: str, grid: _Grid, design: Design, family: int | None = None,
                 report: bool = False, mde: bool = True) -> list[dict[str, Any]]:
    """The rows of every effect of one study's grid (the family: all of them, or more);
    ``mde``: as ``contrast_row``'s."""
    specs = _specs(grid.factors, grid.defined)
    size = max(family or 0, len(specs))
    rows = [_row(study, spec, grid, design, size, report, mde) for spec in specs]
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
    done = trials[(trials["status"] == TrialStatus.DONE) & trials["miou"].notna()]
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


def effect_cells(trials: pd.DataFrame, *, baseline: str | None = None,
                 order: dict[str, Order] | None = None) -> dict:
    """The mIoU values behind each effect ``effects_table`` forms from the same trials, for
    figures and descriptive statistics (``ablate.analysis.improvement``).

    Keyed by ``(study, kind, axis, change)``: ``(seeds, [(values, weight), ...])``, one
    ``values`` array (cells x seeds, NaN: not run) per sub-grid of the effect, over the
    cells where all its sub-grids ran; a main effect's are ``B`` (+1) then ``A`` (-1).
    """
    out: dict = {}
    for study, group in trials.groupby("study", sort=False):
        if group["config_name"].nunique() < 2:
            continue
        reference = baseline
        if baseline is not None and baseline not in set(group["variant"]):
            named = group.loc[group["config_name"] == baseline, "variant"]
            reference = named.iloc[0] if len(named) else None
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # means of all-NaN cost cells
            grid = _Grid(group, reference, (order or {}).get(str(study)))
        done = group[(group["status"] == TrialStatus.DONE) & group["miou"].notna()]
        seeds = np.unique(done["seed"].to_numpy(dtype=int))  # the grid's seed axis
        for spec in _specs(grid.factors):
            mask = np.logical_and.reduce([_sub(grid.ran, index) for index, _ in spec.cells])
            if mask.any():
                out[(str(study), spec.kind, spec.axis, spec.change)] = (
                    seeds, [(_sub(grid.values, index)[mask], w) for index, w in spec.cells])
    return out
