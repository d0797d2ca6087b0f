"""One effect's sequential rule: its repeated intervals, its verdict at each look, and what
the rule does over many simulated studies (power, the bias of its estimate).

An effect of a study grown by ``--until-decided`` is read at each look (``n`` paired
seeds) on up to three running intersections of repeated intervals
(``ablate.analysis.sequential``), at the family level ``a = alpha / m``:

* **efficacy**, two-sided at ``a`` with the design's spending: ``better``/``worse``
  (``positive``/``negative``) when it excludes 0;
* **equivalence** (a margin ``d``), one-sided bounds at ``a`` each, the repeated
  ``1 - 2a`` interval: ``equivalent (±d)`` when it lies within ``±d``. Each bound is
  crossed by the true effect with probability at most ``a`` whatever stopped the loop,
  so this is Schuirmann's two one-sided tests (TOST) at level ``a`` per effect;
* **futility** (a margin and the design's ``futility_power`` ``1 - beta``), one-sided
  bounds at ``beta`` each with ``beta`` spent by ``hsd(gamma)`` (Hwang, Shih and
  DeCani, Statistics in Medicine, 1990; gsDesign's ``sfHSD``, gamma -2 as its
  test.type 4): ``no effect ≥ d`` when it lies within ``±d``. When the effect is ``d``
  or more its upper bound stays at or above ``d`` at every look together with
  probability ``1 - beta``: an effect of ``±d`` is stopped for futility at most
  ``beta`` of the time, so the stop keeps power ``1 - beta`` against ``d``. These are
  beta-spending futility boundaries (Jennison and Turnbull, *Group Sequential Methods
  with Applications to Clinical Trials*, 2000, chapters 5 and 7; Pampallona, Tsiatis
  and Kim, *Interim monitoring of group sequential trials using spending functions for
  the type I and type II error probabilities*, Drug Information Journal, 2001), read on
  the statistic centred at ``±d``: at ``θ = ±d`` it has the null t's law whatever the
  noise, so the calibrated t machinery makes them exact without knowing the noise.
  Non-binding: the efficacy boundaries are those of the design without it, so a
  futility stop never raises the chance of a wrong better/worse.

A verdict reads them in that order: efficacy, then equivalence, then futility.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from ablate.analysis.design import Design
from ablate.analysis.sequential import (
    calibrated_alpha,
    look_statistics,
    looks_for,
    running_intervals,
    t_critical,
)

INCONCLUSIVE, BETTER, WORSE, EQUIVALENT, FUTILE = 0, 1, -1, 2, 3
POWER = 0.8  # the power of the design's detectable effect
_PATHS_SEED = 20261206  # simulated studies of the rule: a fixed seed, deterministic figures


@dataclass(frozen=True)
class Rule:
    """The t critical values of an effect's repeated intervals at each look (``looks``),
    and the calibrated (level, spending, sides) each comes from."""

    looks: tuple[int, ...]
    efficacy: np.ndarray
    tost: np.ndarray | None  # with a margin
    futility: np.ndarray | None  # with a margin and a futility stop
    boundaries: tuple[tuple[float, str, int] | None, ...] = ()

    def at(self, looks: tuple[int, ...]) -> Rule:
        """The rule at ``looks``: the first of them, or others (an effect with fewer
        paired seeds than the design's first look, e.g. after a failed trial, has its
        looks from its own first seeds, read on the same calibrated levels)."""
        if looks == self.looks[:len(looks)]:
            return self
        max_n = self.looks[-1]
        crit = [None if b is None else np.asarray(t_critical(looks, max_n, *b))
                for b in self.boundaries]
        return Rule(looks, *crit, boundaries=self.boundaries)


@lru_cache(maxsize=256)
def _rule(first: int, max_n: int, level: float, spending: str, margin: bool,
          futility_beta: float | None, futility_spending: str) -> Rule:
    looks = looks_for(max_n, first, max_n)
    boundaries = ((calibrated_alpha(first, max_n, level, spending), spending, 2),
                  (calibrated_alpha(first, max_n, level, spending, 1), spending, 1)
                  if margin else None,
                  (calibrated_alpha(first, max_n, futility_beta, futility_spending, 1),
                   futility_spending, 1) if margin and futility_beta is not None else None)
    crit = [None if b is None else np.asarray(t_critical(looks, max_n, *b))
            for b in boundaries]
    return Rule(looks, *crit, boundaries=boundaries)


def rule_for(design: Design, level: float) -> Rule:
    """The rule of an effect of a sequential ``design`` read at family level ``level``."""
    margin = bool(design.min_effect)
    beta = (1.0 - design.futility_power) if design.futility else None
    return _rule(max(1, design.start_seeds or 1), int(design.max_seeds), level,
                 design.spending, margin, beta, design.futility_spending)


@dataclass(frozen=True)
class Reading:
    """Each look's intervals and verdict code: arrays (..., looks so far)."""

    mean: np.ndarray
    se: np.ndarray
    low: np.ndarray  # efficacy, two-sided
    high: np.ndarray
    tost_low: np.ndarray | None
    tost_high: np.ndarray | None
    futility_low: np.ndarray | None
    futility_high: np.ndarray | None
    code: np.ndarray


def read(mean: np.ndarray, se: np.ndarray, rule: Rule, margin: float | None) -> Reading:
    """The rule at each look of ``mean``/``se`` (arrays (..., looks), the first looks of
    ``rule``); ``margin`` in the units of ``mean`` (None: better/worse only)."""
    looks = mean.shape[-1]
    low, high = running_intervals(mean, se, rule.efficacy[:looks])
    code = np.zeros(mean.shape, dtype=np.int8)
    tost = futility = (None, None)
    with np.errstate(invalid="ignore"):  # NaN bounds compare False: no verdict
        if margin and rule.futility is not None:
            futility = running_intervals(mean, se, rule.futility[:looks])
            code[(futility[0] >= -margin) & (futility[1] <= margin)] = FUTILE
        if margin and rule.tost is not None:
            tost = running_intervals(mean, se, rule.tost[:looks])
            code[(tost[0] >= -margin) & (tost[1] <= margin)] = EQUIVALENT
        code[low > 0.0] = BETTER
        code[high < 0.0] = WORSE
    return Reading(mean, se, low, high, *tost, *futility, code)


def read_seeds(per_seed: np.ndarray, first: int, rule: Rule,
               margin: float | None) -> Reading | None:
    """``read`` of per-seed contrasts in the order the seeds were added (seeds past the
    design's last look are not part of it); None before the first look."""
    values = np.asarray(per_seed, dtype=float)
    looks = looks_for(len(values), first, rule.looks[-1])
    if not looks:
        return None
    mean, se = look_statistics(values, looks)
    return read(mean, se, rule.at(looks), margin)


@lru_cache(maxsize=8)
def _unit_paths(first: int, max_n: int, count: int) -> tuple[np.ndarray, np.ndarray]:
    """Mean and se at each look of ``count`` studies with no effect and unit noise."""
    rng = np.random.default_rng(_PATHS_SEED)
    values = rng.standard_normal((count, max_n))
    return look_statistics(values, looks_for(max_n, first, max_n))


@dataclass(frozen=True)
class Outcomes:
    """Where each simulated study stopped: the look's index, verdict code, mean, interval."""

    stop: np.ndarray
    code: np.ndarray
    mean: np.ndarray
    low: np.ndarray
    high: np.ndarray


def outcomes(effect: float, rule: Rule, first: int, margin: float | None = None,
             count: int = 10_000) -> Outcomes:
    """``count`` studies of one effect, in units of the per-seed noise sd (``effect``,
    ``margin``), each stopped at its first decided look or the last; common random
    numbers (the same paths for every ``effect``), so figures are smooth in it."""
    mean0, se = _unit_paths(first, rule.looks[-1], count)
    reading = read(mean0 + effect, se, rule, margin)
    decided = reading.code != INCONCLUSIVE
    stop = np.where(decided.any(axis=1), decided.argmax(axis=1), decided.shape[1] - 1)
    rows = np.arange(len(stop))
    return Outcomes(stop, reading.code[rows, stop], reading.mean[rows, stop],
                    reading.low[rows, stop], reading.high[rows, stop])


@lru_cache(maxsize=256)
def detectable_effect(first: int, max_n: int, level: float, spending: str,
                      power: float = POWER) -> float:
    """The effect, in per-seed noise sds, that the design's efficacy boundaries detect with
    ``power`` by ``max_n`` seeds (10,000 simulated studies; a futility stop, non-binding,
    is left out: it costs a few points of this power)."""
    rule = _rule(first, max_n, level, spending, False, None, "")

    def detected(effect: float) -> float:
        return float((outcomes(effect, rule, first).code == BETTER).mean())

    low, high = 0.0, 1.0
    while detected(high) < power:
        low, high = high, 2.0 * high
        if high > 1e3:
            return math.inf
    for _ in range(30):
        mid = 0.5 * (low + high)
        low, high = (mid, high) if detected(mid) < power else (low, mid)
        if high - low < 1e-4 * high:
            break
    return high


def adjusted_estimate(mean: float, sd: float, design: Design, level: float) -> float:
    """The bias-adjusted estimate of an effect after the rule stopped it (Whitehead,
    *On the bias of maximum likelihood estimation following a sequential test*,
    Biometrika, 1986; Jennison and Turnbull 2000, section 8.3): the ``θ`` whose
    expected mean at the rule's stop equals the observed ``mean``, by simulating the
    rule (common random numbers) with the noise sd at ``sd`` (the observed one).

    The rule is the effect's own: it stops when the effect is decided or at
    ``max_seeds``. Where seeds were added for other effects of a study it is an
    approximation (they did not stop with this one)."""
    if not (sd > 0.0 and math.isfinite(sd) and math.isfinite(mean)):
        return mean
    rule = rule_for(design, level)
    first = max(1, design.start_seeds or 1)
    margin = design.min_effect / sd if design.min_effect else None
    count = max(1_000, min(4_000, 120_000 // len(rule.looks)))
    target = mean / sd

    def expected(effect: float) -> float:
        return float(outcomes(effect, rule, first, margin, count).mean.mean())

    # Whitehead's iteration theta <- mean - bias(theta): the bias changes slowly with the
    # effect, so a few steps settle it; bisection if they do not
    effect = target
    for _ in range(30):
        step = target - expected(effect)
        effect += step
        if abs(step) < 1e-4:
            return effect * sd
    low, high = target - 1.0, target + 1.0
    for _ in range(20):  # bracket the root: the expected mean rises with the effect
        if expected(low) <= target:
            break
        low -= 2.0
    for _ in range(20):
        if expected(high) >= target:
            break
        high += 2.0
    for _ in range(40):
        mid = 0.5 * (low + high)
        low, high = (mid, high) if expected(mid) < target else (low, mid)
        if high - low < 1e-4:
            break
    return 0.5 * (low + high) * sd
