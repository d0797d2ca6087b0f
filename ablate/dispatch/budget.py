"""``ablate run --budget``: device-hours and wall time a study may take, enforced by the
study runner.

A budget is an amount and a unit: ``gpu-h`` or ``cpu-h`` (device-hours: a trial's time x
its GPUs, or x its CPU threads) and ``h`` or ``min`` (wall time of this run). One of
each kind may be given. Device-hours *spent* are counted from the study's recorded
trials (done and failed: claim to result x devices), so a run that was killed and is
started again keeps counting what the earlier one spent; wall time counts from this
run's start.

* Before anything runs, the recipe's round is refused when the spend so far plus its
  estimate (``dispatch.estimate``) is over the budget, or when there is no estimate.
* ``--until-decided`` adds a seed only when its round's estimate fits what is left, and
  otherwise stops (``budget: ...``). Stopping at any look is allowed by the design: the
  repeated intervals hold whenever the loop stops, so the verdicts stay valid.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from typing import Any

from ablate.cost.estimate import (
    Cost,
    Resources,
    StudyEstimate,
    cost_of,
    device_count,
    device_hours,
    duration,
)
from ablate.cost.throughput import CPU, GPU
from ablate.errors import UserInputError

DEVICE_UNITS = {"gpu-h": GPU, "cpu-h": CPU}
WALL_UNITS = {"h": 3600.0, "min": 60.0}
MAX_DEVICE_HOURS = 1_000_000.0  # a million device-hours: beyond any study, surely a typo
MAX_WALL_HOURS = 366 * 24.0  # a year
ALLOWED = ("an amount and one of gpu-h, cpu-h (device-hours), h, min (wall time), "
           "e.g. --budget 20gpu-h or --budget 2h")
_AMOUNT = re.compile(r"(?P<amount>[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?)\s*(?P<unit>.*)")


# other spellings of a unit -> (the unit meant, the factor its amount takes): named, never
# read as that unit (one spelling per unit keeps a recipe's budgets greppable)
UNIT_SPELLINGS = {
    **dict.fromkeys(("hr", "hrs", "hour", "hours"), ("h", 1.0)),
    **dict.fromkeys(("m", "mins", "minute", "minutes"), ("min", 1.0)),
    **dict.fromkeys(("s", "sec", "secs", "second", "seconds"), ("min", 1 / 60)),
    **dict.fromkeys(("d", "day", "days"), ("h", 24.0)),
    **dict.fromkeys(("gpuh", "gpu_h", "gpu-hour", "gpu-hours", "gpuhours", "gpu-hrs"),
                    ("gpu-h", 1.0)),
    **dict.fromkeys(("cpuh", "cpu_h", "cpu-hour", "cpu-hours", "cpuhours", "cpu-hrs"),
                    ("cpu-h", 1.0)),
}


def _meant(amount: float, unit: str) -> str:
    """`` (did you mean 2h?)`` for another spelling of a unit, else ``""``."""
    if unit not in UNIT_SPELLINGS:
        return ""
    meant, factor = UNIT_SPELLINGS[unit]
    return f" (did you mean {amount * factor:g}{meant}?)"


class OverBudget(UserInputError):
    """The recipe's round does not fit the budget (or has no estimate): nothing ran."""


@dataclass(frozen=True)
class Budget:
    """At most ``device_h`` device-hours in ``unit`` (the study's), at most ``wall_s``
    seconds (this run's)."""

    device_h: float | None = None
    unit: str | None = None  # gpu-h or cpu-h
    wall_s: float | None = None

    def describe(self) -> str:
        parts = []
        if self.device_h is not None:
            parts.append(f"{self.device_h:g} {self.unit}")
        if self.wall_s is not None:
            parts.append(f"{duration(self.wall_s)} wall time")
        return " and ".join(parts)


def parse_budget(values: Sequence[str]) -> Budget | None:
    """``--budget`` values (repeatable) as one ``Budget``; None when none was given.
    Raises ``UserInputError`` naming the value and what is allowed."""
    device: tuple[float, str, str] | None = None
    wall: tuple[float, str] | None = None
    for text in values:
        amount, unit = _amount(text)
        if unit in DEVICE_UNITS:
            if device is not None:
                raise UserInputError(f"--budget {text!r}: a device-hours budget was already "
                                     f"given ({device[2]!r}); give at most one in gpu-h or "
                                     "cpu-h and one in h or min")
            if amount > MAX_DEVICE_HOURS:
                raise UserInputError(f"--budget {text!r}: at most {MAX_DEVICE_HOURS:,.0f} "
                                     "device-hours")
            device = (amount, unit, text)
        else:
            if wall is not None:
                raise UserInputError(f"--budget {text!r}: a wall-time budget was already "
                                     f"given ({wall[1]!r}); give at most one in h or min and "
                                     "one in gpu-h or cpu-h")
            seconds = amount * WALL_UNITS[unit]
            if seconds > MAX_WALL_HOURS * 3600.0:
                raise UserInputError(f"--budget {text!r}: at most {MAX_WALL_HOURS:,.0f} h "
                                     "of wall time")
            wall = (seconds, text)
    if device is None and wall is None:
        return None
    return Budget(device[0] if device else None, device[1] if device else None,
                  wall[0] if wall else None)


def _amount(text: str) -> tuple[float, str]:
    stripped = text.strip()
    if not stripped:
        raise UserInputError(f"--budget {text!r}: empty; give {ALLOWED}")
    match = _AMOUNT.fullmatch(stripped)
    if match is None:
        raise UserInputError(f"--budget {text!r}: not an amount with a unit; give {ALLOWED}")
    amount, unit = float(match["amount"]), match["unit"].strip().lower()
    if not unit:
        raise UserInputError(f"--budget {text!r}: no unit; give {ALLOWED}")
    if unit not in DEVICE_UNITS and unit not in WALL_UNITS:
        raise UserInputError(f"--budget {text!r}: unknown unit {unit!r}{_meant(amount, unit)}; "
                             f"give {ALLOWED}")
    if not math.isfinite(amount):
        raise UserInputError(f"--budget {text!r}: too large; give {ALLOWED}")
    if amount <= 0.0:
        raise UserInputError(f"--budget {text!r}: must be more than 0; give {ALLOWED}")
    return amount, unit


def check_unit(budget: Budget | None, resources: Resources) -> None:
    """A device-hours budget must be counted on the device the trials train on."""
    if budget is None or budget.unit is None or DEVICE_UNITS[budget.unit] == resources.kind:
        return
    where = "GPUs" if resources.kind == GPU else "the CPU"
    raise UserInputError(f"--budget {budget.device_h:g}{budget.unit}: this run trains on "
                         f"{where} ({resources.describe()}); give the budget in "
                         f"{resources.unit}, or a wall time in h or min")


def spent_device_hours(store: Any, study: str, resources: Resources) -> float:
    """What the study's recorded trials (done and failed) took, in device-hours."""
    known = [s.name for s in store.studies()]
    if study not in known:
        return 0.0
    return sum(r.seconds * device_count(r.environment, resources.kind,
                                        resources.devices_per_trial)
               for r in store.trial_times(study=study) if r.seconds is not None) / 3600.0


class BudgetKeeper:
    """Holds a study to ``budget``: refuses the recipe's round, stops the loop's rounds."""

    def __init__(self, budget: Budget, store: Any, study: str, resources: Resources,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.budget, self.store, self.study, self.resources = budget, store, study, resources
        self.clock = clock
        self.started = clock()

    def check_start(self, estimate: StudyEstimate) -> None:
        """Raise ``OverBudget`` when the trials left of the recipe do not fit."""
        reason = self._over(estimate.left, "the study")
        if reason:
            raise OverBudget(f"--budget {self.budget.describe()}: {reason}; nothing ran")

    def next_round(self, seconds: Sequence[float | None], label: str) -> str | None:
        """Why a round of trials taking ``seconds`` each must not start, or None."""
        reason = self._over(cost_of(seconds, self.resources), label)
        return f"budget: {reason}" if reason else None

    def _over(self, cost: Cost, what: str) -> str | None:
        budget, unit = self.budget, self.resources.unit
        if cost.trials and not cost.known:
            return (f"{what}: no time estimate for {cost.unknown} trial(s) (no done trial "
                    f"of their architecture, no probe); run 'ablate plan RECIPE --probe' "
                    "first, or run without --budget")
        if budget.device_h is not None:
            spent = spent_device_hours(self.store, self.study, self.resources)
            if spent + (cost.device_h or 0.0) > budget.device_h:
                return (f"{what} needs about {device_hours(cost.device_h, unit)} more "
                        f"({cost.trials:g} trial(s)) and {device_hours(spent, unit)} are "
                        f"spent, over {budget.device_h:g} {unit}")
        if budget.wall_s is not None:
            elapsed = self.clock() - self.started
            if elapsed + (cost.wall_s or 0.0) > budget.wall_s:
                return (f"{what} needs about {duration(cost.wall_s)} more on "
                        f"{self.resources.describe()}, {duration(elapsed)} passed, over "
                        f"{duration(budget.wall_s)}")
        return None


def begin(store: Any, recipe: Any, trials: list[Any], resources: Resources,
          budget: Budget | None, design: Any = None, force: bool = False,
          clock: Callable[[], float] = time.monotonic, skip_failed: bool = False,
          settled: Collection[str] = ()) -> tuple[StudyEstimate, BudgetKeeper | None]:
    """The study's estimate before anything runs (done trials and cached probes, never a
    new probe) and, with ``budget``, its keeper; raises ``OverBudget`` for a recipe's round
    that does not fit. ``force``, ``skip_failed`` and ``settled``: which trials run, as
    ``estimate_study`` takes them."""
    from ablate.dispatch.estimate import estimate_study  # lazy: loads numpy with a design

    estimate = estimate_study(store, recipe, trials, resources, design=design, force=force,
                              skip_failed=skip_failed, settled=settled)
    keeper = None
    if budget is not None:
        check_unit(budget, resources)
        keeper = BudgetKeeper(budget, store, recipe.name, resources, clock)
        keeper.check_start(estimate)
    return estimate, keeper


def round_guard(keeper: BudgetKeeper, store: Any,
                resources: Resources) -> Callable[[list[Any], str], str | None]:
    """``run_until_decided``'s guard: the round's estimate from the trials done so far."""
    from ablate.dispatch.estimate import throughputs, trial_estimates  # lazy: loads pandas

    def guard(trials: list[Any], label: str) -> str | None:
        each = trial_estimates(trials, throughputs(store, trials, resources), resources)
        return keeper.next_round([each[t.trial_id][0] for t in trials], label)

    return guard
