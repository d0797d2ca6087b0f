"""Group-sequential boundaries and repeated confidence intervals for seeds added in rounds.

``ablate run --until-decided`` looks at every effect after each seed it adds and stops
adding seeds once the effect is decided. Testing each look at the full ``alpha`` (what
a fixed-seed t-test assumes) makes a false "better/worse" far likelier than ``alpha``:
the optional-stopping problem. A group-sequential design fixes it by spending ``alpha``
over the looks (Lan and DeMets, *Discrete sequential boundaries for clinical trials*,
Biometrika, 1983): the boundary at a look with information fraction ``t = n / n_max``
(``n`` paired seeds, ``n_max`` = ``--max-seeds``) is set so that the chance of crossing
any boundary up to ``t``, when nothing differs, is the spending function's ``alpha(t)``.

* ``obrien-fleming``: each side spends ``2 - 2 Phi(z_{1-alpha/4} / sqrt(t))`` (gsDesign's
  ``sfLDOF`` at one-sided ``alpha/2``, the convention of the published tables); it spends almost
  nothing early and keeps the last look's boundary near the fixed design's, so the
  power at ``n_max`` is nearly that of a fixed ``n_max``-seed study (the default);
* ``pocock``: ``alpha(t) = alpha ln(1 + (e - 1) t)`` spends evenly and stops earlier
  when an effect is large, at the price of a higher last boundary.

The boundaries come from the recursive numerical integration of Armitage, McPherson and
Rowe (1969) as implemented in gsDesign (the ``gsdesign`` package's ``h1``/``hupdate``),
and are checked in the tests against the published Lan-DeMets values. The seeds' noise
is estimated, not known: each look's z boundary is turned into its nominal level and
read on Student's t with ``n - 1`` degrees of freedom (the "significance level"
approach of Jennison and Turnbull, *Group Sequential Methods with Applications to
Clinical Trials*, 2000, section 3.8). At a handful of seeds that approximation alone
errs by 10-25% of ``alpha`` (measured: 0.056 for a nominal 0.05 at looks 2..10), so the
level fed to the spending function is calibrated: the largest ``alpha'`` whose exact
error rate, computed by simulating the t statistics of the whole look schedule (their
law does not depend on the noise's scale), is ``alpha`` (``calibrated_alpha``). A *repeated confidence interval* (Jennison and
Turnbull, JRSS B, 1989) is ``mean_k +- c_k se_k`` at look ``k``; all of them cover the
true effect at once with probability ``1 - alpha``, whatever the rule that stopped the
study, so their running intersection is the interval reported, and decisions read
from it stay decided, unless a later look's mean falls outside it: the looks then
disagree (an early look on a handful of seeds was narrow by chance), and that look's own
interval is read (``running_intervals``). ``bench/bench_decisions.py`` measures the
error rate this gives.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from gsdesign import h1, hupdate

from ablate.analysis.design import DEFAULT_SPENDING, SPENDING

_GRID = 18  # gsDesign's default number of grid points per side of the integration


def spent(t: float, level: float, spending: str, sides: int = 2) -> float:
    """The error spent by information fraction ``t`` (0 < t <= 1): two-sided (``sides=2``,
    ``level`` split evenly between the sides) or on one side (``sides=1``).

    ``hsd(g)`` is the Hwang, Shih and DeCani (1990) family, ``level (1 - e^(-g t)) /
    (1 - e^(-g))``: ``g = -2`` spends little early and most near the end (the futility
    stop's, as gsDesign's ``sfHSD``)."""
    from scipy.special import ndtr, ndtri  # lazy: loads scipy

    t = min(max(t, 0.0), 1.0)
    if t == 0.0:
        return 0.0
    if sides == 2 and spending == "obrien-fleming":  # per side at alpha/2, both sides
        return float(2.0 * (2.0 - 2.0 * ndtr(ndtri(1.0 - level / 4.0) / math.sqrt(t))))
    if sides == 2 and spending == "pocock":
        return float(level * math.log(1.0 + (math.e - 1.0) * t))
    if sides == 2:
        return 2.0 * spent(t, level / 2.0, spending, sides=1)
    if spending == "obrien-fleming":
        return float(2.0 - 2.0 * ndtr(ndtri(1.0 - level / 2.0) / math.sqrt(t)))
    if spending == "pocock":
        return float(level * math.log(1.0 + (math.e - 1.0) * t))
    gamma = hsd_gamma(spending)
    if gamma is None:
        raise ValueError(f"spending: {spending!r}; allowed: {', '.join(SPENDING)}, hsd(g)")
    if gamma == 0.0:
        return level * t
    return float(level * (1.0 - math.exp(-gamma * t)) / (1.0 - math.exp(-gamma)))


def hsd_gamma(spending: str) -> float | None:
    """``g`` of a ``hsd(g)`` spending function, else None."""
    if spending.startswith("hsd(") and spending.endswith(")"):
        try:
            return float(spending[4:-1])
        except ValueError:
            return None
    return None


@lru_cache(maxsize=4096)
def z_boundaries(fractions: tuple[float, ...], alpha: float,
                 spending: str = DEFAULT_SPENDING, sides: int = 2) -> tuple[float, ...]:
    """Two-sided symmetric (``sides=2``) or upper (``sides=1``) z boundaries at increasing
    information ``fractions``.

    The probability, with no effect, of ``|Z_j| >= b_j`` (one side: ``Z_j >= b_j``) at
    look ``k`` and at no earlier look equals ``spent(t_k) - spent(t_{k-1})``. ``inf``
    where nothing is spent.
    """
    from scipy.optimize import brentq  # lazy: loads scipy
    from scipy.special import ndtr  # lazy: loads scipy

    bounds: list[float] = []
    grid = None  # (z, w, h): density of Z at the previous look, inside its boundaries
    previous_info = 0.0
    previous_spent = 0.0
    for t in fractions:
        target = spent(t, alpha, spending, sides) - previous_spent
        previous_spent += max(target, 0.0)
        if grid is None:
            def exit_probability(b: float) -> float:
                return sides * float(ndtr(-b))
        else:
            z_prev, _, h_prev = grid
            scale = math.sqrt(t - previous_info)
            shift = z_prev * math.sqrt(previous_info)

            def exit_probability(b: float, z=shift, h=h_prev, s=scale, info=t) -> float:
                upper = float(h @ ndtr((z - b * math.sqrt(info)) / s))
                if sides == 1:
                    return upper
                lower = float(h @ ndtr((-b * math.sqrt(info) - z) / s))
                return upper + lower
        if target <= 1e-15:
            b = math.inf
        elif exit_probability(0.0) <= target:
            b = 0.0
        else:
            b = float(brentq(lambda x, goal=target: exit_probability(x) - goal, 0.0, 40.0,
                             xtol=1e-10))
        bounds.append(b)
        a_, b_ = (-np.inf, np.inf) if math.isinf(b) else (-b if sides == 2 else -np.inf, b)
        if grid is None:
            grid = h1(r=_GRID, theta=0.0, info=t, a=a_, b=b_)
        else:
            grid = hupdate(_GRID, 0.0, t, a_, b_, 0.0, previous_info, grid)
        previous_info = t
    return tuple(bounds)


@lru_cache(maxsize=65536)
def t_critical(looks: tuple[int, ...], max_n: int, alpha: float,
               spending: str = DEFAULT_SPENDING, sides: int = 2) -> tuple[float, ...]:
    """Critical values of Student's t at each look (``n`` paired seeds, ``n >= 2``).

    Each look's z boundary is read at its nominal level on t with ``n - 1`` degrees of
    freedom. Looks beyond ``max_n`` are not part of the design: no value.
    """
    from scipy.special import ndtr, stdtrit  # lazy: loads scipy

    looks = tuple(n for n in looks if n <= max_n)
    bounds = z_boundaries(tuple(n / max_n for n in looks), alpha, spending, sides)
    out = []
    for n, b in zip(looks, bounds):
        nominal = 2.0 * float(ndtr(-b))  # two-sided level of this look's boundary
        out.append(math.inf if nominal <= 0.0 else float(stdtrit(n - 1, 1.0 - nominal / 2.0)))
    return tuple(out)


_CALIBRATION_PATHS = 100_000
_CALIBRATION_SEED = 20261204


@lru_cache(maxsize=2)
def null_t(first: int, max_n: int) -> np.ndarray:
    """The t statistics of ``_CALIBRATION_PATHS`` Gaussian paths with no effect at every
    look of ``looks_for(max_n, first, max_n)`` (paths x looks, float32; a fixed seed)."""
    n = np.asarray(looks_for(max_n, first, max_n))
    rng = np.random.default_rng(_CALIBRATION_SEED)
    chunks = []
    for _ in range(_CALIBRATION_PATHS // 20_000):  # bounded memory at 100 looks
        x = rng.standard_normal((20_000, max_n))
        sums = np.cumsum(x, axis=1)[:, n - 1]
        squares = np.cumsum(x * x, axis=1)[:, n - 1]
        mean = sums / n
        spread = np.sqrt(np.maximum(squares - n * mean * mean, 0.0) / (n - 1) / n)
        chunks.append((mean / spread).astype(np.float32))
    return np.concatenate(chunks)


@lru_cache(maxsize=256)
def calibrated_alpha(first: int, max_n: int, alpha: float,
                     spending: str = DEFAULT_SPENDING, sides: int = 2) -> float:
    """The level ``alpha'`` at which the t-read boundaries of looks ``first..max_n`` reject
    a true null with probability ``alpha`` (Monte Carlo over ``_CALIBRATION_PATHS``
    Gaussian paths from a fixed seed: deterministic, standard error about
    ``sqrt(alpha / 1e5)``). The repeated intervals at ``alpha'`` then cover at once with
    probability ``1 - alpha`` (the t statistic of ``values - effect`` has the null's law).
    ``sides=1``: one-sided boundaries, crossed upwards with probability ``alpha`` (each
    end of their intervals is a repeated one-sided bound at ``alpha``).
    """
    looks = looks_for(max_n, first, max_n)
    if not looks:
        return alpha
    t = null_t(first, max_n)
    t_abs = np.abs(t) if sides == 2 else t

    def error(level: float) -> float:
        crit = np.asarray(t_critical(looks, max_n, level, spending, sides))
        return float((t_abs > crit).any(axis=1).mean())

    low, high = alpha / 8.0, alpha
    if error(high) <= alpha:
        return alpha
    for _ in range(30):  # bisection on the log scale: ample for 4 significant digits
        mid = math.sqrt(low * high)
        if error(mid) > alpha:
            high = mid
        else:
            low = mid
        if high / low < 1.0005:
            break
    return low


def looks_for(n: int, first: int, max_n: int) -> tuple[int, ...]:
    """The looks an effect with ``n`` paired seeds has had: every ``n`` from the first
    analysis (the recipe's seeds, at least 2) to now, within the design's ``max_n``."""
    start = max(2, min(first, n))
    return tuple(range(start, min(n, max_n) + 1))


@dataclass(frozen=True)
class Repeated:
    """A repeated interval: the running intersection over the looks, and the last look."""

    low: float
    high: float
    estimate: float  # mean of the per-seed contrasts at the last look
    se: float  # its standard error
    critical: float  # the last look's critical value of t
    n: int  # paired seeds at the last look (seeds past ``max_n`` are not part of the design)


def look_statistics(values: np.ndarray, looks: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    """Mean and standard error of ``values`` (..., seeds in the order added) at each look
    (``n`` seeds): arrays (..., looks). Vectorised over leading axes (simulated paths)."""
    n = np.asarray(looks)
    sums = np.cumsum(values, axis=-1)[..., n - 1]
    squares = np.cumsum(values**2, axis=-1)[..., n - 1]
    mean = sums / n
    se = np.sqrt(np.maximum((squares - n * mean * mean) / (n - 1), 0.0) / n)
    return mean, se


def running_intervals(mean: np.ndarray, se: np.ndarray,
                      critical: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The running intersection of ``mean +- critical * se`` at each look (the last axis).

    A look with zero spread or an infinite critical value is no evidence and is skipped;
    NaN while every look so far is unbounded. Where the intersection leaves out the
    look's own mean (the looks disagree: an earlier look's interval, narrow by chance on
    a handful of seeds, misses where the data now are; empty or inverted is the extreme
    case) the look's own interval is kept. Both hold the truth whenever every look's
    interval does, so either keeps the repeated intervals' error rate, and the look's
    own is never narrower: a verdict is never read against its own estimate (``no
    effect >= d`` beside a mean beyond ``d``). Vectorised over leading axes.
    """
    critical = np.asarray(critical, dtype=float)
    with np.errstate(invalid="ignore"):
        half = critical * se
        skip = (se == 0.0) | np.isinf(critical)
        own_low, own_high = np.where(skip, -np.inf, mean - half), np.where(skip, np.inf, mean + half)
        low = np.maximum.accumulate(own_low, axis=-1)
        high = np.minimum.accumulate(own_high, axis=-1)
        own = (low > mean) | (high < mean)  # empty or inverted included
        low = np.where(own, own_low, low)
        high = np.where(own, own_high, high)
    unbounded = np.isinf(low) & np.isinf(high)
    return np.where(unbounded, np.nan, low), np.where(unbounded, np.nan, high)


def repeated_interval(per_seed: np.ndarray, first: int, max_n: int, alpha: float,
                      spending: str = DEFAULT_SPENDING, sides: int = 2) -> Repeated:
    """The running intersection of the repeated ``1 - alpha`` intervals, for per-seed
    contrasts in the order the seeds were added. ``alpha`` is calibrated here.
    ``sides=1``: each end is a repeated one-sided bound at ``alpha``.

    NaN bounds before the first look or while every look's interval is unbounded; a
    look with zero spread (identical differences on a handful of seeds) is no evidence
    and is skipped.
    """
    values = np.asarray(per_seed, dtype=float)
    looks = looks_for(len(values), first, max_n)
    if not looks:
        n = len(values)
        return Repeated(math.nan, math.nan, float(values.mean()) if n else math.nan,
                        math.nan, math.nan, n)
    crit = t_critical(looks, max_n, calibrated_alpha(first, max_n, alpha, spending, sides),
                      spending, sides)
    mean, se = look_statistics(values, looks)
    low, high = running_intervals(mean, se, np.asarray(crit))
    return Repeated(float(low[-1]), float(high[-1]), float(mean[-1]), float(se[-1]),
                    float(crit[-1]), looks[-1])
