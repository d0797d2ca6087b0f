"""Benchmark: the error rate and cost of `ablate run --until-decided`, by simulation.

Drives the loop's real decision code (``ablate.dispatch.simulate``: the effects' tests
and verdicts, ``adaptive.decide`` and ``adaptive.stop_reason``) with synthetic per-seed
mIoU: true cell means + a seed effect (sd 3 points) shared by the configurations of a
seed + trial noise (sd 5 points). No training, no database.

    .venv/bin/python bench/bench_decisions.py [--replicates 10000] [--jobs 2]

Lines:
  null designs   fwer: share of studies with any wrong verdict (a better/worse where
                 nothing differs, the wrong direction, an "equivalent" beyond the margin),
                 with its Monte-Carlo standard error; goal fwer <= alpha + 2 mc_se.
                 ``naive`` rows re-test at the full alpha/family after every seed (what
                 the loop did before the sequential design), for comparison.
  power designs  one axis, true effect 0.6 noise sd (3 points): power (share of studies
                 that decide "better"), mean trials to the end of the loop, and the
                 trials a fixed paired t-test design needs for the same power (noncentral
                 t, per-seed contrast sd 5*sqrt(2)); goal: mean trials <= 70% of that.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.machine import describe  # noqa: E402


def _run(job: tuple) -> tuple:
    from ablate.analysis.design import Design
    from ablate.dispatch.simulate import simulate, standard_designs

    index, kind, effect_sd, max_seeds, margin, replicates, seed = job
    design = standard_designs(effect_sd=effect_sd)[index]
    loop = Design(kind, alpha=0.05, min_effect=margin, max_seeds=max_seeds, start_seeds=1)
    started = time.perf_counter()
    summary = simulate(design, loop, replicates, seed=seed)
    return job, summary, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--replicates", type=int, default=10_000)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--seed", type=int, default=20261204)
    args = parser.parse_args()
    print(f"machine: {describe()}")
    print(f"command: bench/bench_decisions.py --replicates {args.replicates} --jobs {args.jobs}")
    reps = args.replicates
    jobs = []
    for index in range(5):  # the five designs of simulate.standard_designs
        jobs.append((index, "sequential", 0.0, 10, None, reps, args.seed + index))
        jobs.append((index, "sequential", 0.0, 10, 2.0, reps, args.seed + index))
        jobs.append((index, "fixed", 0.0, 10, None, reps // 4, args.seed + index))
    for max_seeds in (10, 30, 60, 100):
        jobs.append((0, "sequential", 0.6, max_seeds, None, reps // 2, args.seed + 100 + max_seeds))
    with ProcessPoolExecutor(max_workers=args.jobs) as pool:
        results = list(pool.map(_run, jobs))
    from ablate.dispatch.simulate import fixed_seeds_for_power

    for (_i, kind, effect_sd, max_seeds, margin, replicates, _s), summary, took in results:
        label = "naive" if kind == "fixed" else "sequential"
        if effect_sd == 0.0:
            ok = summary.fwer <= 0.05 + 2 * summary.mc_se
            stops = ", ".join(f"{k}: {v}" for k, v in sorted(summary.stops.items()))
            print(f"design={summary.design} {label} null margin={margin or '-'} "
                  f"max_seeds={max_seeds} fwer={summary.fwer:.4f} (mc_se {summary.mc_se:.4f}) "
                  f"{'(the old loop)' if kind == 'fixed' else 'ok' if ok else 'ABOVE ALPHA'} "
                  f"mean_trials={summary.mean_trials:.1f} [{stops}] "
                  f"replicates={replicates} ({took:.0f} s)")
            continue
        key = next(iter(summary.decided_right))
        power = summary.decided_right[key] / replicates
        fixed = fixed_seeds_for_power(effect_sd * 5.0, 5.0 * math.sqrt(2.0), power, 0.05)
        ratio = summary.mean_trials / (2 * fixed)
        print(f"design={summary.design} {label} effect={effect_sd}sd max_seeds={max_seeds} "
              f"power={power:.3f} mean_trials={summary.mean_trials:.1f} "
              f"fixed_trials_same_power={2 * fixed} ratio={ratio:.2f} "
              f"{'ok' if ratio <= 0.7 else 'above 0.7'} fwer={summary.fwer:.4f} "
              f"replicates={replicates} ({took:.0f} s)")


if __name__ == "__main__":
    main()
