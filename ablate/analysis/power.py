"""Planning figures of a t-test: the effect it detects, the seeds it needs, with exact power.

Power of a two-sided t-test at ``level`` with ``df`` degrees of freedom against an effect
of ``λ`` standard errors is read on the noncentral t (``scipy.special.nctdtr``): the
normal shortcut ``(t_{1-level/2} + t_{power}) · se`` promises more power than it gives at
a handful of seeds (0.73 instead of 0.8 at two seeds). Power to show equivalence within
``±d`` (two one-sided tests at ``level`` each: the ``1 - 2 level`` interval within
``±d``) when the effect is 0 integrates the normal over the sample sd's chi law. Seeds
are counted for paired seeds; a figure from an observed sd carries that sd's
uncertainty, so ``sd_upper`` gives a one-sided upper confidence bound on it (the
chi-square interval) to state the seeds needed at it too.
"""

from __future__ import annotations

import math
from functools import lru_cache

POWER = 0.8
SD_CONFIDENCE = 0.9  # the upper bound on the noise sd a seeds-needed figure is also given at
SEEDS_LIMIT = 10_000


def detect_power(effect_se: float, df: float, level: float) -> float:
    """Power of the two-sided t-test at ``level`` against an effect of ``effect_se``
    standard errors, ``df`` degrees of freedom (exact: noncentral t)."""
    from scipy.special import nctdtr, stdtrit  # lazy: loads scipy

    critical = float(stdtrit(df, 1.0 - level / 2.0))
    below = float(nctdtr(df, effect_se, -critical))  # NaN where it underflows (df 1)
    return float(1.0 - nctdtr(df, effect_se, critical)) + (0.0 if math.isnan(below) else below)


@lru_cache(maxsize=4096)
def detectable_se(df: float, level: float, power: float = POWER) -> float:
    """The effect, in standard errors, that the two-sided t-test at ``level`` detects with
    ``power``: the minimum detectable effect is this times the standard error."""
    from scipy.optimize import brentq  # lazy: loads scipy

    if not (df > 0 and math.isfinite(df)):
        return math.nan
    high = 1.0
    while detect_power(high, df, level) < power:
        high *= 2.0
        if high > 1e9:
            return math.inf
    return float(brentq(lambda x: detect_power(x, df, level) - power, 0.0, high, xtol=1e-9))


def equivalence_power(n: int, margin_sd: float, level: float) -> float:
    """Power to show equivalence within ``±margin_sd`` (in per-seed sds) from ``n`` paired
    seeds when the effect is 0: ``|mean| + t_{1-level}(n-1) · s/√n <= margin``."""
    from scipy.integrate import quad  # lazy: loads scipy
    from scipy.special import chdtr, chdtri, ndtr, stdtrit  # lazy: loads scipy

    df = n - 1.0
    critical = float(stdtrit(df, 1.0 - level))
    reach = math.sqrt(n) * margin_sd  # the margin in standard errors of the mean
    # the sample sd in sds is sqrt(chi2_df / df); integrated over its probability p up to
    # the share of samples whose interval fits (beyond it the power is 0): smooth there,
    # so the integral is exact to 1e-8 (400 midpoint bins erred by 4e-6 at 80%: 1 seed)
    fits = float(chdtr(df, df * (reach / critical) ** 2))

    def covered(p: float) -> float:
        return 2.0 * float(ndtr(reach - critical * math.sqrt(chdtri(df, 1.0 - p) / df))) - 1.0

    return float(quad(covered, 0.0, fits)[0]) if fits > 0.0 else 0.0


def seeds_to_detect(effect_sd: float, level: float, power: float = POWER,
                    limit: int = SEEDS_LIMIT) -> float:
    """Paired seeds a fixed design needs to detect ``effect_sd`` (in per-seed sds) with
    ``power`` by a two-sided t-test at ``level``; inf past ``limit``."""
    return _smallest(lambda n: detect_power(effect_sd * math.sqrt(n), n - 1.0, level), power,
                     limit)


def seeds_for_equivalence(margin_sd: float, level: float, power: float = POWER,
                          limit: int = SEEDS_LIMIT) -> float:
    """Paired seeds a fixed design needs to show equivalence within ``±margin_sd`` with
    ``power`` when the effect is 0 (TOST at ``level`` a side); inf past ``limit``."""
    return _smallest(lambda n: equivalence_power(n, margin_sd, level), power, limit)


def _smallest(power_at, power: float, limit: int) -> float:
    """The smallest ``n >= 2`` with ``power_at(n) >= power`` (power rises with n)."""
    if not power_at(limit) >= power:
        return math.inf
    low, high = 1, 2
    while not power_at(high) >= power:
        low, high = high, min(2 * high, limit)
    while high - low > 1:
        mid = (low + high) // 2
        low, high = (low, mid) if power_at(mid) >= power else (mid, high)
    return float(high)


def sd_upper(sd: float, df: float, confidence: float = SD_CONFIDENCE) -> float:
    """One-sided ``confidence`` upper bound on a noise sd estimated as ``sd`` on ``df``
    degrees of freedom: ``sd · sqrt(df / chi2_{1 - confidence}(df))``."""
    from scipy.special import chdtri  # lazy: loads scipy

    if not (df > 0 and sd > 0):
        return math.nan
    return float(sd * math.sqrt(df / chdtri(df, confidence)))
