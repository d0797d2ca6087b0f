"""Probability of improvement and the per-seed differences behind each effect.

The probability of improvement is rliable's (Agarwal, Schwarzer, Castro, Courville and
Bellemare, *Deep Reinforcement Learning at the Edge of the Statistical Precipice*,
NeurIPS 2021, section 4.3). Over ``M`` strata (rliable's tasks; here the cells of the
other axes where both levels of a main effect ran, which include the datasets when a
recipe varies ``data.name``)::

    P(X > Y) = 1/M  sum_m  1/(N_m K_m)  sum_i sum_j  S(x_mi, y_mj),
    S(x, y) = 1 if x > y, 1/2 if x == y, 0 otherwise,

the Mann-Whitney U statistic of each stratum, averaged: the chance that a run at level B
beats a run at level A in the same cell. Its interval is a percentile bootstrap at the
effect's own level. When the effect's seeds pair up (the paired t), it resamples those
seeds: one draw picks seeds and every configuration of the effect keeps that seed's runs,
so the pairing (same data order, same shapes) survives and every stratum keeps its
number of runs, as rliable's stratified bootstrap does. Otherwise (Welch) it is
rliable's stratified independent bootstrap: each configuration's runs are resampled
within their stratum on their own.

It describes, the verdict decides: the t interval of the effect answers "is the mean
change beyond seed noise"; ``P(B > A)`` says how often one run beats another, and with
a handful of seeds its bootstrap interval is coarse (3 seeds allow 10 resamples).
Pure numpy, no I/O; the draws come from a fixed generator, so a report is repeatable.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

REPLICATES = 4000  # bootstrap draws; 40 effects of 10 seeds take about 0.1 s
SEED = 0  # the generator's seed: the same report twice gives the same intervals
SEED_COLUMNS = ["p_improve", "p_improve_low", "p_improve_high", "seeds", "seed_diffs"]


@dataclass(frozen=True)
class Improvement:
    """``P(B > A)`` with its bootstrap interval (NaN where it cannot be estimated)."""

    p: float
    low: float
    high: float
    paired: bool


def _beats(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """``S(x_i, y_j)`` for every pair (of every stratum, when ``x`` and ``y`` are strata x
    runs): 1 when x wins, 1/2 on a tie, 0 when y wins."""
    x, y = x[..., :, None], y[..., None, :]
    return (x > y) + 0.5 * (x == y)


def probability_of_improvement(new: np.ndarray, old: np.ndarray) -> float:
    """rliable's ``P(new > old)``: strata (rows) x runs (NaN: no run), averaged over the
    strata where both sides ran; NaN when none did."""
    new, old = np.atleast_2d(np.asarray(new, float)), np.atleast_2d(np.asarray(old, float))
    if new.size and old.size and not (np.isnan(new).any() or np.isnan(old).any()):
        return float(_beats(new, old).mean())  # every stratum has all its runs: one array
    per_stratum = []
    for x, y in zip(new, old):
        x, y = x[~np.isnan(x)], y[~np.isnan(y)]
        if len(x) and len(y):
            per_stratum.append(float(_beats(x, y).mean()))
    return float(np.mean(per_stratum)) if per_stratum else math.nan


def _counts(rng: np.random.Generator, n: int, reps: int) -> np.ndarray:
    """How often each of ``n`` items is drawn in each of ``reps`` resamples of size ``n``."""
    draws = rng.integers(0, n, size=(reps, n))
    flat = (draws + n * np.arange(reps)[:, None]).ravel()
    return np.bincount(flat, minlength=reps * n).reshape(reps, n).astype(float)


def _percentile(values: np.ndarray, level: float) -> tuple[float, float]:
    tail = (1.0 - level) / 2.0
    low, high = np.quantile(values, [tail, 1.0 - tail])
    return float(low), float(high)


def improvement(new: np.ndarray, old: np.ndarray, level: float, *,
                reps: int = REPLICATES, seed: int = SEED) -> Improvement:
    """``P(new > old)`` and its ``level`` bootstrap interval.

    ``new``, ``old``: strata x seeds, aligned (column ``s`` is seed ``s`` on both sides;
    NaN: not run). Paired on the seeds every stratum ran on both sides when there are
    two or more (estimate and interval from those seeds); else from every run, each
    stratum's runs resampled on their own when each side of each stratum has two or
    more; else no interval.
    """
    new, old = np.atleast_2d(np.asarray(new, float)), np.atleast_2d(np.asarray(old, float))
    rng = np.random.default_rng(seed)
    complete = ~np.isnan(new).any(axis=0) & ~np.isnan(old).any(axis=0)
    n = int(complete.sum())
    if n >= 2:  # one estimand: the estimate, like its interval, from the paired seeds
        wins = _beats(new[:, complete], old[:, complete]).mean(axis=0)  # n x n, over strata
        counts = _counts(rng, n, reps)
        boot = np.einsum("ri,ij,rj->r", counts, wins, counts) / (n * n)
        return Improvement(float(wins.mean()), *_percentile(boot, level), paired=True)
    p = probability_of_improvement(new, old)
    strata = [(a[~np.isnan(a)], b[~np.isnan(b)]) for a, b in zip(new, old)]
    strata = [(a, b) for a, b in strata if len(a) and len(b)]
    if not strata or any(len(a) < 2 or len(b) < 2 for a, b in strata):
        return Improvement(p, math.nan, math.nan, paired=False)
    boot = np.zeros(reps)
    for a, b in strata:  # rliable's StratifiedIndependentBootstrap: each side on its own
        ca, cb = _counts(rng, len(a), reps), _counts(rng, len(b), reps)
        boot += np.einsum("ri,ij,rj->r", ca, _beats(a, b), cb) / (len(a) * len(b))
    return Improvement(p, *_percentile(boot / len(strata), level), paired=False)


def per_seed_differences(cells: list[tuple[np.ndarray, float]],
                         seeds: np.ndarray) -> tuple[list[int], list[float]]:
    """The effect on each seed every configuration of it ran: ``sum(weight * value)``
    with each sub-grid's weight shared by its cells (a main effect: the mean over cells
    of B minus A). ``cells``: ``(cells x seeds values, weight)`` per sub-grid."""
    values = np.vstack([v for v, _ in cells])
    weights = np.concatenate([np.full(len(v), w / len(v)) for v, w in cells])
    complete = ~np.isnan(values).any(axis=0)
    return ([int(s) for s in np.asarray(seeds)[complete]],
            (weights @ values[:, complete]).tolist())


def seed_columns(effects: pd.DataFrame, cells: dict) -> pd.DataFrame:
    """``effects`` with ``SEED_COLUMNS`` added: ``P(B > A)`` of each main effect with its
    bootstrap interval at the row's ``ci_level`` (NaN for an interaction, whose
    difference of differences has no "run at B"), and the seeds and per-seed differences
    of every effect (empty where the seeds do not pair).

    ``cells``: ``ablate.analysis.effects.effect_cells`` of the same trials.
    """
    out = effects.copy()
    columns: dict[str, list] = {name: [] for name in SEED_COLUMNS}
    for row in effects.itertuples(index=False):
        found = cells.get((row.study, row.kind, row.axis, row.change))
        result, seeds, diffs = Improvement(math.nan, math.nan, math.nan, False), [], []
        if found is not None:
            seed_ids, parts = found
            seeds, diffs = per_seed_differences(parts, seed_ids)
            if len(seeds) < 2:  # one paired seed is no spread: the t interval is Welch's too
                seeds, diffs = [], []
            if row.kind == "main":
                (new, _), (old, _) = parts
                result = improvement(new, old, float(row.ci_level))
        columns["p_improve"].append(result.p)
        columns["p_improve_low"].append(result.low)
        columns["p_improve_high"].append(result.high)
        columns["seeds"].append(seeds)
        columns["seed_diffs"].append(diffs)
    for name, values in columns.items():
        out[name] = values
    return out
