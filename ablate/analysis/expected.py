"""How many seeds ``--until-decided`` is expected to use: the loop's own rule, simulated.

The loop adds a seed to a configuration while any effect that uses it is open, so a
study stops when the last of its effects is decided or at ``max_seeds``. Each effect is
simulated with ``rule.outcomes`` (the repeated intervals at ``alpha / family``, the
futility stop with a margin) and the study's seeds are the largest stop of ``family``
effects drawn from disjoint simulated paths: the effects of a factorial study are
orthogonal contrasts of the same seeds, independent when the configurations' noise is.
Every configuration is counted as growing until the study stops (in a grid each effect
uses every configuration), which is the upper side of what a configuration gets.

Effects and the margin are in units of the per-seed noise sd of a contrast, so a margin
needs that sd (measured on done trials) and without one only the null and the design's
detectable effect are free of it.
"""

from __future__ import annotations

import math

import numpy as np

from ablate.analysis.design import Design
from ablate.analysis.rule import detectable_effect, outcomes, rule_for
from ablate.analysis.stats import PAIRED

STUDIES = 2_000  # simulated studies per figure: se of the mean seeds well under 0.1


def expected_seeds(design: Design, family: int, effect: float,
                   margin: float | None = None) -> float:
    """The mean seeds per configuration at which a sequential ``design`` stops when each
    of ``family`` effects is ``effect``; ``effect`` and ``margin`` in noise sds (None:
    the design's margin is not used). Deterministic (the rule's fixed paths)."""
    family = max(1, int(family))
    level = design.alpha / family
    rule = rule_for(design, level)
    first = max(1, design.start_seeds or 1)
    ended = outcomes(effect, rule, first, margin if design.min_effect else None,
                     count=STUDIES * family)
    seeds = np.asarray(rule.looks)[ended.stop]
    return float(seeds.reshape(family, STUDIES).max(axis=0).mean())


def detectable(design: Design, family: int) -> float:
    """The effect, in noise sds, the design detects with 80% power by ``max_seeds``."""
    level = design.alpha / max(1, int(family))
    return detectable_effect(max(1, design.start_seeds or 1), int(design.max_seeds), level,
                             design.spending)


def contrast_sd(row) -> float | None:
    """The per-seed sd of a paired effect row of a fixed-design effects table, from its
    interval (``ci_low``, ``ci_high`` at ``ci_level`` on ``n - 1`` df); None otherwise."""
    from scipy.special import stdtrit  # lazy: loads scipy

    n, low, high = getattr(row, "n", 0), getattr(row, "ci_low", math.nan), \
        getattr(row, "ci_high", math.nan)
    if getattr(row, "method", "") != PAIRED or not n or n < 2 \
            or not (math.isfinite(low) and math.isfinite(high)):
        return None
    critical = float(stdtrit(n - 1.0, 1.0 - (1.0 - row.ci_level) / 2.0))
    sd = (high - low) / (2.0 * critical) * math.sqrt(n)
    return sd if sd > 0.0 else None
