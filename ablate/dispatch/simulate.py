"""Simulated studies grown by the real ``--until-decided`` decision code.

Each replicate draws per-seed mIoU for every configuration of a design (true cell means
+ a seed effect shared by the configurations of a seed + trial noise), then runs the
loop's own steps on it: ``effects.grid_effects`` (the tests and verdicts the report
shows), ``adaptive.decide`` and ``adaptive.stop_reason``, adding the next seed to the
configurations of open effects exactly as ``run_until_decided`` does, only without
training or a database. ``bench/bench_decisions.py`` runs 10,000 replicates per design;
a test runs fewer.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from types import SimpleNamespace

import numpy as np

from ablate.analysis.design import Design
from ablate.analysis.effects import (
    BETTER,
    NEGATIVE,
    POSITIVE,
    WORSE,
    _Grid,
    grid_effects,
    is_decided,
)
from ablate.dispatch.adaptive import decide, stop_reason


@dataclass(frozen=True)
class SimDesign:
    """A study to simulate: axes with their levels and the true mean of every cell."""

    name: str
    axes: tuple[tuple[str, tuple[str, ...]], ...]
    means: np.ndarray  # shape: levels of each axis, mIoU points
    start_seeds: int = 1
    noise_sd: float = 5.0  # per trial
    seed_sd: float = 3.0  # per seed, shared by every configuration trained with it


@dataclass
class SimSummary:
    design: str
    replicates: int
    false: int = 0  # replicates with any wrong verdict (family-wise)
    decided_right: dict[str, int] = field(default_factory=dict)  # per effect, true direction
    futile: dict[str, int] = field(default_factory=dict)  # per effect: "no effect >= d"
    trials: list[int] = field(default_factory=list)
    stops: dict[str, int] = field(default_factory=dict)

    @property
    def fwer(self) -> float:
        return self.false / self.replicates

    @property
    def mc_se(self) -> float:
        return math.sqrt(max(self.fwer * (1 - self.fwer), 1e-12) / self.replicates)

    @property
    def mean_trials(self) -> float:
        return float(np.mean(self.trials))


def true_effects(design: SimDesign, loop: Design) -> dict[str, float]:
    """Each effect's true value: the same contrasts applied to the noise-free means."""
    values = np.repeat(np.asarray(design.means, dtype=float)[..., None], 2, axis=-1)
    grid = _Grid.from_arrays(values, [(n, list(lv)) for n, lv in design.axes])
    return {f"{r['axis']}: {r['change']}": r["estimate"]
            for r in grid_effects("truth", grid, Design(alpha=loop.alpha))}


def wrong(verdict: str, truth: float, margin: float | None) -> bool:
    """A verdict that the true effect contradicts. ``no effect ≥ d`` (the futility stop)
    claims power, not a fact: how often it meets an effect of ``d`` is the power it
    costs (``SimSummary.futile``), not a false verdict."""
    if verdict in (BETTER, POSITIVE):
        return truth <= 0.0
    if verdict in (WORSE, NEGATIVE):
        return truth >= 0.0
    if verdict.startswith("equivalent"):
        return margin is not None and abs(truth) > margin
    return False


def simulate(design: SimDesign, loop: Design, replicates: int, seed: int = 0) -> SimSummary:
    """Grow ``replicates`` studies of ``design`` with the loop's rules (``loop``: its
    sequential design: alpha, margin, max seeds; ``start_seeds`` from ``design``)."""
    loop = Design(**{**loop.to_json(), "start_seeds": design.start_seeds})
    rng = np.random.default_rng(seed)
    truth = true_effects(design, loop)
    means = np.asarray(design.means, dtype=float)
    shape, max_n = means.shape, loop.max_seeds
    summary = SimSummary(design.name, replicates, decided_right=dict.fromkeys(truth, 0))
    grid = _Grid.from_arrays(np.full((*shape, max_n), np.nan),
                             [(n, list(lv)) for n, lv in design.axes])
    cell_of = {grid.names[index]: index for index in np.ndindex(*shape)}
    for _ in range(replicates):
        full = (means[..., None] + rng.normal(0.0, design.seed_sd, size=max_n)
                + rng.normal(0.0, design.noise_sd, size=(*shape, max_n)))
        ran = np.zeros((*shape, max_n), dtype=bool)
        ran[..., :design.start_seeds] = True
        while True:
            grid.values = np.where(ran, full, np.nan)
            grid.ran = ran.any(axis=-1)
            rows = grid_effects(design.name, grid, loop, mde=False)  # verdicts only
            decision = decide(SimpleNamespace(**row) for row in rows)
            done = {name: int(ran[cell].sum()) for name, cell in cell_of.items()}
            reason = stop_reason(decision, done, max_n)
            if reason:
                break
            column = int(np.flatnonzero(ran.any(axis=tuple(range(len(shape)))))[-1]) + 1
            if column >= max_n:  # every seed of the design used
                reason = f"--max-seeds {max_n} reached"
                break
            for name in decision.configs:
                ran[cell_of[name] + (column,)] = True
        summary.stops[reason] = summary.stops.get(reason, 0) + 1
        summary.trials.append(int(ran.sum()))
        verdicts = {f"{r['axis']}: {r['change']}": r["verdict"] for r in rows}
        if any(wrong(v, truth[k], loop.min_effect) for k, v in verdicts.items()):
            summary.false += 1
        for key, verdict in verdicts.items():
            if verdict.startswith("no effect"):
                summary.futile[key] = summary.futile.get(key, 0) + 1
            elif is_decided(verdict) and not wrong(verdict, truth[key], loop.min_effect) \
                    and truth[key] != 0.0 and not verdict.startswith("equivalent"):
                summary.decided_right[key] += 1
    return summary


def fixed_seeds_for_power(effect: float, sd: float, power: float, alpha: float,
                          limit: int = 1000) -> int:
    """Seeds per configuration a fixed paired t-test at ``alpha`` needs for ``power``
    (``sd``: of the per-seed contrast), by the noncentral t."""
    from scipy import stats  # lazy: loads scipy

    for n in range(2, limit + 1):
        df, shift = n - 1, effect / sd * math.sqrt(n)
        c = stats.t.ppf(1 - alpha / 2, df)
        if stats.nct.sf(c, df, shift) + stats.nct.cdf(-c, df, shift) >= power:
            return n
    return limit


def standard_designs(noise_sd: float = 5.0, effect_sd: float = 0.0) -> list[SimDesign]:
    """The designs of the benchmark; ``effect_sd``: the one-axis effect in noise sds."""
    two = (("x", ("a", "b")),)
    grid = (("a", ("0", "1")), ("b", ("0", "1")))
    effect = effect_sd * noise_sd
    return [
        SimDesign("one_axis_1seed", two, np.array([50.0, 50.0 + effect]), 1, noise_sd),
        SimDesign("one_axis_3seed", two, np.array([50.0, 50.0 + effect]), 3, noise_sd),
        SimDesign("2x2_null_interaction", grid, np.array([[50.0, 60.0], [60.0, 70.0]]), 1,
                  noise_sd),
        SimDesign("three_level_null", (("x", ("a", "b", "c")),), np.full(3, 50.0), 1, noise_sd),
        SimDesign("2x2_all_null", grid, np.full((2, 2), 50.0), 1, noise_sd),
    ]
