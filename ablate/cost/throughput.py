"""How long a trial takes, from measured throughput: pure functions of recorded times.

An architecture's throughput is keyed by what changes the time of one training step:
the architecture (``arch_id``: model, classes, resolution), the batch size and the
device kind (``cpu`` or ``gpu``). It is measured, in this order:

* **done trials** of the same key in the database, any study: the median of their
  durations (claim to result: building, training, evaluating, timing latency), and of
  their seconds per training step;
* **a probe** (``ablate.cost.probe``): a few timed training steps on random inputs;
  training steps only, so evaluation and start-up are not in it.

A trial's time is its key's median duration when it trains as many steps as the measured
trials did, else seconds per step x its planned steps (an approximation: start-up and
evaluation scale with them). The wall time of many trials on a number of slots is the
finish time of the list schedule the executors follow: each trial, in order, starts on
the first slot that is free.
"""

from __future__ import annotations

import heapq
import math
import statistics
from collections.abc import Iterable
from dataclasses import dataclass

MEASURED, PROBE, UNKNOWN = "measured", "probe", "unknown"
CPU, GPU = "cpu", "gpu"

# (arch_id, batch size, device kind): what changes the time of one training step
WorkKey = tuple[str, int | None, str]


@dataclass(frozen=True)
class Timing:
    """One finished trial's time."""

    key: WorkKey
    seconds: float
    steps: int | None


@dataclass(frozen=True)
class Throughput:
    """How fast one key trains: per trial (measured trials) and per step."""

    key: WorkKey
    source: str  # MEASURED or PROBE
    seconds_per_step: float | None
    seconds_per_trial: float | None = None  # the median measured duration
    steps: int | None = None  # the median steps of the measured trials
    trials: int = 0  # how many measured trials

    def describe(self) -> str:
        if self.source == MEASURED:
            return f"{MEASURED} ({self.trials} trial{'s' if self.trials != 1 else ''})"
        return PROBE


def measured(timings: Iterable[Timing]) -> dict[WorkKey, Throughput]:
    """Each key's throughput from its trials: median duration, steps and seconds per step."""
    by_key: dict[WorkKey, list[Timing]] = {}
    for timing in timings:
        if timing.seconds > 0.0 and math.isfinite(timing.seconds):
            by_key.setdefault(timing.key, []).append(timing)
    out = {}
    for key, items in by_key.items():
        per_step = [t.seconds / t.steps for t in items if t.steps]
        steps = [t.steps for t in items if t.steps]
        out[key] = Throughput(key, MEASURED,
                              statistics.median(per_step) if per_step else None,
                              statistics.median(t.seconds for t in items),
                              round(statistics.median(steps)) if steps else None, len(items))
    return out


def trial_seconds(throughput: Throughput | None, planned_steps: int | None) -> float | None:
    """The time of one trial that trains ``planned_steps`` steps (None: unknown)."""
    if throughput is None:
        return None
    if throughput.seconds_per_trial is not None and (
            planned_steps is None or throughput.steps is None
            or planned_steps == throughput.steps):
        return throughput.seconds_per_trial  # the measured trials' schedule (or as good)
    if throughput.seconds_per_step is not None and planned_steps:
        return throughput.seconds_per_step * planned_steps
    return None


def planned_steps(spec) -> int | None:
    """The training steps a trial's spec asks for, when known without its data:
    ``train.iterations``, else epochs x (images // batch size) on the embedded ``shapes``
    data (whose size the spec gives); None for data on disk or from a ``data.builder``
    (which leaves ``data.name`` at ``shapes``, unread)."""
    train = spec.train
    if train.iterations:
        return int(train.iterations)
    data = spec.data
    if data.name != "shapes" or data.builder is not None or not data.train_images:
        return None
    per_epoch = spec.data.train_images // train.batch_size  # batches drop the last partial one
    return per_epoch * (train.epochs or 1) if per_epoch else None


def wall_seconds(durations: Iterable[float], slots: int) -> float:
    """When the last of ``durations`` finishes, each started in order on the first free
    one of ``slots``."""
    finish = [0.0] * max(1, slots)
    for seconds in durations:
        heapq.heappush(finish, heapq.heappop(finish) + seconds)
    return max(finish)
