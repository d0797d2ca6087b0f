"""How a study's seeds were chosen, which decides how its effects are tested.

* ``fixed``: the recipe's seeds, decided before any result was seen. Each effect gets a
  t-interval (paired over seeds, else Welch).
* ``sequential``: grown by ``ablate run --until-decided``, which looked at the effects
  after every added seed. Each effect gets a repeated confidence interval of a
  group-sequential design (``ablate.analysis.sequential``) whose looks run from the
  recipe's seeds (``start_seeds``) to ``max_seeds``. With a margin it also has a
  non-binding futility stop (``futility_power``; ``ablate.analysis.rule``).

Either way the family of a study is all its effects (every main effect and two-way
interaction its configurations define) and each effect's interval is read at
``alpha / family`` (Bonferroni): every interval of the study covers its true effect at
once with probability at least ``1 - alpha``, so every verdict read from them (better,
worse, equivalent within the margin) is wrong for at most ``alpha`` of studies together.
The design is recorded with the study, so ``ablate report`` reads a study exactly as the
loop that grew it did.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

SPENDING = ("obrien-fleming", "pocock")  # ablate.analysis.sequential.spent
DEFAULT_SPENDING = "obrien-fleming"
FIXED = "fixed"
SEQUENTIAL = "sequential"
FUTILITY_POWER = 0.8  # the loop's futility stop with a margin: 80% power at the margin
FUTILITY_GAMMA = -2.0  # its beta-spending function, Hwang-Shih-DeCani


@dataclass(frozen=True)
class Design:
    kind: str = FIXED
    alpha: float = 0.05
    min_effect: float | None = None  # the equivalence margin, mIoU points; None: no margin
    max_seeds: int | None = None  # sequential: the last look
    start_seeds: int | None = None  # sequential: seeds before the first look
    spending: str = DEFAULT_SPENDING
    # sequential with a margin: a non-binding futility stop with this power at the margin
    # (None: none; a recorded design without the key has none), beta spent by hsd(gamma)
    futility_power: float | None = None
    futility_gamma: float = FUTILITY_GAMMA

    def __post_init__(self) -> None:
        if self.kind not in (FIXED, SEQUENTIAL):
            raise ValueError(f"design kind {self.kind!r}; allowed: {FIXED}, {SEQUENTIAL}")
        if not 0.0 < self.alpha < 1.0:
            raise ValueError(f"alpha {self.alpha!r} must lie in (0, 1)")
        if self.min_effect is not None and not (0.0 < self.min_effect < math.inf):
            raise ValueError(f"min_effect {self.min_effect!r} must be a positive number")
        if self.kind == SEQUENTIAL:
            if not self.max_seeds or self.max_seeds < 2:
                raise ValueError("a sequential design needs max_seeds >= 2")
            if self.start_seeds is None or self.start_seeds < 1:
                raise ValueError("a sequential design needs start_seeds >= 1")
            if self.spending not in SPENDING:
                raise ValueError(f"spending {self.spending!r}; allowed: {', '.join(SPENDING)}")
        if self.futility_power is not None:
            if self.kind != SEQUENTIAL or not self.min_effect:
                raise ValueError("a futility stop needs a sequential design with a margin")
            if not 0.5 <= self.futility_power < 1.0:
                raise ValueError(f"futility_power {self.futility_power!r} must lie in [0.5, 1)")
            if not -10.0 <= self.futility_gamma <= 10.0:
                raise ValueError(f"futility_gamma {self.futility_gamma!r} must lie in [-10, 10]")

    @property
    def sequential(self) -> bool:
        return self.kind == SEQUENTIAL

    @property
    def futility(self) -> bool:
        """Whether the design stops an effect for futility (``no effect >= d``)."""
        return self.futility_power is not None

    @property
    def futility_spending(self) -> str:
        return f"hsd({self.futility_gamma:g})"

    def describe(self) -> str:
        margin = f", margin ±{self.min_effect:g}" if self.min_effect else ""
        if not self.sequential:
            return f"fixed seeds, alpha {self.alpha:g}{margin}"
        futility = (f", futility stop at {100 * self.futility_power:.0f}% power for ±"
                    f"{self.min_effect:g} ({self.futility_spending} beta spending, non-binding)"
                    if self.futility else "")
        return (f"sequential ({self.spending} spending, looks from {max(2, self.start_seeds)} "
                f"to {self.max_seeds} seeds), alpha {self.alpha:g}{margin}{futility}")

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any] | None) -> Design | None:
        """A recorded design; one recorded before a field existed reads as it was planned
        (no futility stop)."""
        if not data:
            return None
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        return cls(**known)
