"""A study's time and device-hours before it runs: pure arithmetic over trial times.

Each trial's time comes from ``cost.throughput`` (or is unknown). A set of trials costs
its device-hours (time x devices per trial, whatever runs at once) and its wall time
(the list schedule on the executor's slots, ``throughput.wall_seconds``). An
``--until-decided`` study adds rounds of one seed per configuration, one round after
another (each needs the previous one's results): its worst case grows every
configuration to ``max_seeds``, its expected case to the seeds ``analysis.expected``
simulates. Nothing here counts queueing (Slurm), start-up of the runner and its
workers, or the costing of architectures before the first trial.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from ablate.cost.throughput import CPU, GPU, wall_seconds

UNITS = {GPU: "gpu-h", CPU: "cpu-h"}


@dataclass(frozen=True)
class Resources:
    """What a study runs on: ``slots`` trials at a time, each on ``devices_per_trial``
    GPUs (``kind`` gpu) or CPU threads (``kind`` cpu)."""

    executor: str
    kind: str
    slots: int
    devices_per_trial: int

    @property
    def unit(self) -> str:
        """The unit its device-hours are counted in: ``gpu-h`` or ``cpu-h``."""
        return UNITS[self.kind]

    def describe(self) -> str:
        device = "GPU" if self.kind == GPU else "CPU thread"
        plural = "s" if self.devices_per_trial != 1 else ""
        at_once = f"{self.slots} trial{'s' if self.slots != 1 else ''} at a time"
        if self.executor == "slurm":
            at_once = f"at most {at_once} (--array-parallelism)"
        return f"{self.executor}, {at_once}, {self.devices_per_trial} {device}{plural} each"


@dataclass(frozen=True)
class Cost:
    """What a set of trials costs; ``None`` figures when any trial's time is unknown."""

    trials: float  # a count; fractional in an expected case
    unknown: int  # trials without an estimate
    wall_s: float | None
    device_h: float | None

    @property
    def known(self) -> bool:
        return self.wall_s is not None


@dataclass(frozen=True)
class ConfigTime:
    """One configuration: its trials, those not done, and one trial's time."""

    config_name: str
    trials: int
    left: int
    seconds: float | None  # one trial (None: unknown)
    source: str  # how it is known (``Throughput.describe``) or ``unknown``


@dataclass(frozen=True)
class Scenario:
    """An ``--until-decided`` case: the loop stops at ``seeds`` per configuration."""

    label: str
    seeds: float
    cost: Cost


@dataclass(frozen=True)
class StudyEstimate:
    """The whole study and what is left of it; the loop's cases with ``--until-decided``."""

    study: str
    resources: Resources
    configs: tuple[ConfigTime, ...]
    total: Cost  # every trial of the recipe
    left: Cost  # those not done
    worst: Scenario | None = None
    expected: tuple[Scenario, ...] = ()
    notes: tuple[str, ...] = field(default_factory=tuple)

    def to_json(self) -> dict[str, Any]:
        """What a run records (``Store.record_estimate``): plain JSON."""
        data = asdict(self)
        data["unit"] = self.resources.unit
        return data


def cost_of(seconds: Sequence[float | None], resources: Resources) -> Cost:
    """Device-hours and wall time of trials taking ``seconds`` each, in this order."""
    unknown = sum(s is None for s in seconds)
    if unknown:
        return Cost(len(seconds), unknown, None, None)
    known = [float(s) for s in seconds if s is not None]
    return Cost(len(known), 0, wall_seconds(known, resources.slots),
                sum(known) * resources.devices_per_trial / 3600.0)


def with_rounds(first: Cost, rounds: float, each: Cost) -> Cost:
    """``first``, then ``rounds`` rounds that cost ``each`` one after another."""
    rounds = max(0.0, rounds)
    if not first.known or (rounds and not each.known):
        return Cost(first.trials + rounds * each.trials, first.unknown + (
            each.unknown if rounds else 0), None, None)
    return Cost(first.trials + rounds * each.trials, 0,
                first.wall_s + rounds * (each.wall_s or 0.0),
                first.device_h + rounds * (each.device_h or 0.0))


def loop_scenarios(left: Cost, round_cost: Cost, seeds_so_far: int, max_seeds: int,
                   expected: Sequence[tuple[str, float]]) -> tuple[Scenario, tuple[Scenario, ...]]:
    """The worst case (every configuration to ``max_seeds``) and each expected case
    (``(label, mean seeds)``) after the trials ``left`` of the recipe's round."""
    worst = Scenario(f"every configuration to {max_seeds} seeds", float(max_seeds),
                     with_rounds(left, max_seeds - seeds_so_far, round_cost))
    cases = tuple(Scenario(label, seeds, with_rounds(left, seeds - seeds_so_far, round_cost))
                  for label, seeds in expected)
    return worst, cases


def device_count(environment: dict[str, Any] | None, kind: str, fallback: int) -> int:
    """A recorded trial's devices: its GPUs, or its CPU threads (``fallback`` when its
    environment does not say)."""
    env = environment or {}
    if kind == GPU:  # DDP: one device per rank; else the devices the process saw
        ranks, gpus = env.get("ddp_ranks"), env.get("gpus")
        if isinstance(ranks, int) and ranks > 1:
            return ranks
        return len(gpus) if isinstance(gpus, list) and gpus else 1
    threads = env.get("threads")
    return threads if isinstance(threads, int) and threads > 0 else fallback


def duration(seconds: float | None) -> str:
    """``2 h 05 min``, ``3 min 10 s``, ``42 s``; ``unknown`` for None."""
    if seconds is None or not math.isfinite(seconds):
        return "unknown"
    seconds = max(0.0, seconds)
    if seconds < 60:
        return f"{seconds:.0f} s" if seconds >= 10 else f"{seconds:.1f} s"
    minutes, secs = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {secs:02d} s"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours} h {minutes:02d} min"
    days, hours = divmod(hours, 24)
    return f"{days} d {hours:02d} h"


def device_hours(value: float | None, unit: str) -> str:
    """``0.21 cpu-h``; ``unknown`` for None."""
    if value is None or not math.isfinite(value):
        return "unknown"
    return f"{value:.3g} {unit}" if value < 100 else f"{value:,.0f} {unit}"
