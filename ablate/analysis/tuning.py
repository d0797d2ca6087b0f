"""Statistics of a tuned study (``[tune]``): each configuration's best draw, its tuning
curve, and how an effect varies over the draws (pure: numbers in, numbers out).

**Selection.** A draw's score is the mean selection metric over the tuning seeds; a draw
with a failed trial (a diverged loss, out of memory) has no score and is never chosen.
Each configuration's chosen draw is its best-scoring one (ties: the earlier draw). The
score of the chosen draw is biased upward (the winner's curse: the maximum of k noisy
scores), which is why the study's effects are read on fresh seeds instead.

**Tuning curves** (Dodge, Gururangan, Card, Schwartz and Smith, "Show Your Work: Improved
Reporting of Experimental Results", EMNLP 2019): the expected best score after n draws,
n = 1..k. Dodge et al. estimate it by drawing n of the k scores *with* replacement; Tang,
Lee, Ye, Liu, Yang, Wang, Zhang and Lin ("Showing Your Work Doesn't Always Work", ACL
2020) show that this plug-in estimator is biased, and that drawing *without* replacement
is unbiased: the mean of the best score over all n-subsets of the k draws, a U-statistic
of the kernel max(x_1..x_n),

    E[best of n] = sum_{i=n..k} s_(i) C(i-1, n-1) / C(k, n)      (s_(1) <= ... <= s_(k))

which this module computes. The band is one standard deviation of the best score over
those subsets (Dodge et al.'s band, on the same weights): it shrinks to 0 at n = k, where
only one subset exists. A failed draw ranks below every score: where an n-subset can
hold only failed draws (n <= failed) the curve is undefined (NaN).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from ablate.errors import AblateError


class NoDrawLeft(AblateError):
    """Every draw of a configuration failed: there is nothing to choose."""


def draw_scores(cells: pd.DataFrame) -> pd.DataFrame:
    """``config, draw, seed, value`` rows (NaN: a failed or missing trial) -> one row per
    configuration, one column per draw: the mean over tuning seeds (NaN when any failed)."""
    mean = cells.groupby(["config", "draw"], sort=False)["value"].agg(
        lambda v: float(v.mean()) if v.notna().all() else float("nan"))
    table = mean.unstack("draw")
    return table.reindex(columns=sorted(table.columns))


def choose(scores: pd.DataFrame) -> dict[str, int]:
    """Each configuration's best draw (the first of equal ones); raises ``NoDrawLeft``
    when every draw of a configuration failed."""
    chosen = {}
    for config, row in scores.iterrows():
        values = row.to_numpy(dtype=float)
        if np.isnan(values).all():
            # other ranges are another set-up, which a recorded study refuses
            # (dispatch.tuning.check_recorded): the fix is to what fails
            raise NoDrawLeft(f"every draw of configuration {config!r} failed; nothing to "
                             "choose. Fix what fails and run the same command again (the "
                             "failed tuning trials run again); other ranges are another "
                             "set-up: give that study another name")
        chosen[str(config)] = int(row.index[int(np.nanargmax(values))])
    return chosen


def expected_best(scores: np.ndarray, n: int) -> tuple[float, float]:
    """(mean, standard deviation) of the best of ``n`` of ``scores`` drawn without
    replacement (NaN: a failed draw, ranked lowest); NaN where ``n`` <= failed draws."""
    values = np.asarray(scores, dtype=float)
    k = len(values)
    if not 1 <= n <= k:
        raise ValueError(f"n must be in 1..{k}, got {n}")
    failed = int(np.isnan(values).sum())
    if n <= failed:
        return float("nan"), float("nan")
    ordered = np.concatenate([np.full(failed, np.nan), np.sort(values[~np.isnan(values)])])
    ranks = np.arange(n, k + 1)  # 1-based ranks that can be the best of an n-subset
    # C(i-1, n-1) / C(k, n) in logs: exact enough for thousands of draws
    log_w = np.array([_log_comb(i - 1, n - 1) for i in ranks]) - _log_comb(k, n)
    weights = np.exp(log_w)
    best = ordered[ranks - 1]  # ranks at or below `failed` carry no weight here (n > failed)
    mean = float(weights @ best)
    var = float(weights @ (best - mean) ** 2)
    return mean, math.sqrt(max(var, 0.0))


def _log_comb(n: int, r: int) -> float:
    return math.lgamma(n + 1) - math.lgamma(r + 1) - math.lgamma(n - r + 1)


def tuning_curve(scores: np.ndarray) -> pd.DataFrame:
    """``draws, expected, low, high`` for n = 1..k: the expected best and its band (mean
    ± one standard deviation, within the scores' range)."""
    values = np.asarray(scores, dtype=float)
    rows = []
    finite = values[~np.isnan(values)]
    lowest, highest = (finite.min(), finite.max()) if finite.size else (np.nan, np.nan)
    for n in range(1, len(values) + 1):
        mean, sd = expected_best(values, n)
        rows.append({"draws": n, "expected": mean, "low": max(mean - sd, lowest),
                     "high": min(mean + sd, highest)})
    return pd.DataFrame(rows, columns=["draws", "expected", "low", "high"])


def sign_agreement(tuned: float, per_draw: np.ndarray) -> tuple[int, int]:
    """(draws whose effect has the tuned effect's sign, draws with an effect). A zero
    effect agrees with nothing; a tuned effect of exactly 0 has no sign to agree with."""
    values = np.asarray(per_draw, dtype=float)
    values = values[~np.isnan(values)]
    if tuned != tuned or tuned == 0:
        return 0, len(values)
    return int((np.sign(values) == np.sign(tuned)).sum()), len(values)


NEAR_EDGE = 0.1  # a chosen extreme draw this close to the range's end: widen the range


def edge_gap(spec: dict[str, list], value: Any, side: str) -> float:
    """How far ``value``, the ``side`` (``"lowest"``/``"highest"``) value drawn, lies from
    that end of its range, as a share of the range's width on the scale the draws are
    spread on: log for ``log_uniform`` (0.1 in [1e-4, 1] is a quarter of the range from
    its top), linear for ``uniform`` and ``int``, the choices' order for a ``choice``.
    At most ``NEAR_EDGE`` the best may lie beyond the range; more, and more draws may
    find it between the value and the end."""
    kind, bounds = next(iter(spec.items()))
    if kind == "choice":
        ranks = sorted(v for v in bounds if isinstance(v, int | float) and not isinstance(v, bool))
        value, bounds = ranks.index(value) if value in ranks else 0, [0, len(ranks) - 1]
    low, high = (float(b) for b in bounds)
    value = float(value)
    if kind == "log_uniform":
        value, low, high = math.log(value), math.log(low), math.log(high)
    if high <= low:
        return 0.0
    return max(value - low if side == "lowest" else high - value, 0.0) / (high - low)


def edge_of_range(draws: list[dict[str, Any]], chosen: int, key: str) -> str | None:
    """``"lowest"``/``"highest"`` when the chosen draw holds the lowest/highest value of
    ``key`` among the draws (of at least three distinct numbers): the best may lie beyond
    the range. None otherwise, and for choices."""
    values = [d[key] for d in draws]
    if any(isinstance(v, bool) or not isinstance(v, int | float) for v in values):
        return None
    if len(set(values)) < 3:
        return None
    value = draws[chosen][key]
    if value == min(values):
        return "lowest"
    if value == max(values):
        return "highest"
    return None
