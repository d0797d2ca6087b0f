"""t-intervals for contrasts of configuration means.

A *contrast* is a weighted sum of configuration means whose weights sum to zero
(``+1 B, -1 A`` is "B minus A"; a main effect averages such differences over the
other axes' cells). Its estimate and standard error come from one of two designs:

* paired over seeds (Student's t on per-seed contrasts; "Student", *The probable
  error of a mean*, Biometrika, 1908): when at least two seeds ran in every
  configuration of the contrast. Configurations trained with the same seed share
  the data order and the shapes of the data set, so the per-seed contrast removes
  that between-seed variance and needs fewer seeds for the same precision.
* Welch's unequal-variance t with the Welch-Satterthwaite degrees of freedom
  (Welch, *The generalization of 'Student's' problem when several different
  population variances are involved*, Biometrika, 1947): when the seeds do not
  match but every configuration has at least two trials.

Otherwise the contrast cannot be tested (``n < 2``). Student's t comes from
``scipy.special.stdtr``/``stdtrit``, the functions behind ``scipy.stats.t`` (importing
``scipy.stats`` costs every report about a second; the tests compare both).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

PAIRED = "paired t (seeds)"
WELCH = "Welch t"
UNTESTED = "-"


@dataclass(frozen=True)
class Contrast:
    """A contrast's estimate and standard error; ``se`` is NaN when it cannot be tested."""

    estimate: float
    se: float
    df: float
    n: int  # paired seeds, or trials for Welch
    method: str

    @property
    def testable(self) -> bool:
        return not math.isnan(self.se)

    def p_value(self) -> float:
        """Two-sided p-value of "the contrast is zero"; NaN when untestable."""
        from scipy.special import stdtr  # lazy: loads scipy

        if not self.testable:
            return math.nan
        if self.se == 0.0:  # identical differences on every seed
            return 1.0 if self.estimate == 0.0 else 0.0
        return float(2.0 * stdtr(self.df, -abs(self.estimate) / self.se))

    def interval(self, alpha: float) -> tuple[float, float]:
        """The two-sided ``1 - alpha`` t-interval; NaNs when untestable."""
        from scipy.special import stdtrit  # lazy: loads scipy

        if not self.testable:
            return math.nan, math.nan
        half = float(stdtrit(self.df, 1.0 - alpha / 2.0)) * self.se if self.se else 0.0
        return self.estimate - half, self.estimate + half


def contrast(values: np.ndarray, weights: np.ndarray) -> Contrast:
    """Test ``sum(weights * mean)`` over configurations.

    ``values``: configurations x seeds (NaN where a seed did not run), ``weights``:
    one per configuration. Paired on the seeds every configuration has when there
    are at least two of them, else Welch when every configuration has two trials.
    """
    values = np.asarray(values, dtype=float)
    weights = np.asarray(weights, dtype=float)
    present = ~np.isnan(values)
    complete = present.all(axis=0)
    n_paired = int(complete.sum())
    counts = present.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        means = np.nansum(values, axis=1) / counts
    estimate = float(weights @ means) if (counts > 0).all() else math.nan
    if n_paired >= 2:
        per_seed = weights @ values[:, complete]
        sd = float(np.std(per_seed, ddof=1))
        return Contrast(float(per_seed.mean()), sd / math.sqrt(n_paired), n_paired - 1.0,
                        n_paired, PAIRED)
    if (counts >= 2).all():
        var = np.nanvar(values, axis=1, ddof=1)
        parts = weights**2 * var / counts
        total = float(parts.sum())
        denom = float((parts**2 / (counts - 1)).sum())
        df = total**2 / denom if denom > 0 else float(counts.sum() - len(counts))
        return Contrast(estimate, math.sqrt(total), df, int(counts.sum()), WELCH)
    return Contrast(estimate, math.nan, math.nan, n_paired, UNTESTED)


def p_values(estimate: np.ndarray, se: np.ndarray, df: np.ndarray) -> np.ndarray:
    """``Contrast.p_value`` for many contrasts at once (one scipy call)."""
    from scipy.special import stdtr  # lazy: loads scipy

    with np.errstate(divide="ignore", invalid="ignore"):
        t = np.abs(estimate) / se
    p = 2.0 * stdtr(df, -t)
    zero = se == 0.0  # identical differences on every seed
    p[zero] = np.where(estimate[zero] == 0.0, 1.0, 0.0)
    return np.where(np.isnan(se), np.nan, p)


def intervals(estimate: np.ndarray, se: np.ndarray, df: np.ndarray,
              alpha: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``Contrast.interval`` for many contrasts, each at its own ``alpha``."""
    from scipy.special import stdtrit  # lazy: loads scipy

    with np.errstate(invalid="ignore"):
        half = np.where(se == 0.0, 0.0, stdtrit(df, 1.0 - alpha / 2.0) * se)
    return estimate - half, estimate + half


def differences(left: np.ndarray, right: np.ndarray):
    """``contrast`` with weights (-1, +1) (``right`` minus ``left``), vectorised over rows
    of pairs x seeds arrays: ``(estimate, se, df, n, method)`` arrays, one per pair."""
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
