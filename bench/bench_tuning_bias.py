"""Benchmark: the selection bias of a tuned study ([tune]), by simulation.

Why a tuned study reads its effects on fresh seeds. Two configurations A and B each
train the same k draws of a nuisance key; each draw's score is its true quality plus
seed noise (sd 1: every figure is in noise-sd units), averaged over the tuning seeds.
Each configuration's best draw is chosen as ``ablate.analysis.tuning.choose`` does (the
highest mean, the first of equal ones; checked against it on the first replicates).
The effect B - A of the chosen settings is then read two ways:

  tuning  on the tuning trials that chose them (what a tool reporting the best of k
          does): biased, because each maximum of k noisy scores is (the winner's curse)
  fresh   on new seeds (what ``ablate run`` does with the study's seeds): unbiased

Bias = mean(read effect - the chosen settings' true effect), with its Monte-Carlo
standard error. Scenarios (true quality per draw, noise sd 1):

  same         A and B the same: every draw's true quality 0 for both
  flat_vs_peak A: every draw at its optimum 0 (a flat response); B: one draw at 0, the
               rest at -2 (a sharp optimum). Both optima equal: no true difference,
               but A's maximum of k noisy scores is inflated more than B's.
  shifted      B 0.5 better than A at every draw (a real effect the bias distorts less)

    .venv/bin/python bench/bench_tuning_bias.py [--replicates 20000] [--budget 8]
        [--tuning-seeds 1] [--seed 0]
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import at_least, describe  # noqa: E402

from ablate.analysis.tuning import choose, draw_scores  # noqa: E402


def scenarios(k: int) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    peak = np.full(k, -2.0)
    peak[k // 2] = 0.0
    return {"same": (np.zeros(k), np.zeros(k)),
            "flat_vs_peak": (np.zeros(k), peak),
            "shifted": (np.zeros(k), np.full(k, 0.5))}


def simulate(truth_a: np.ndarray, truth_b: np.ndarray, replicates: int, seeds: int,
             rng: np.random.Generator) -> dict[str, float]:
    k = len(truth_a)
    noise = 1 / math.sqrt(seeds)  # sd of a mean over the tuning seeds
    score_a = truth_a + noise * rng.standard_normal((replicates, k))
    score_b = truth_b + noise * rng.standard_normal((replicates, k))
    pick_a, pick_b = score_a.argmax(axis=1), score_b.argmax(axis=1)  # first of equal ones
    _check_against_choose(score_a[:50], score_b[:50], pick_a[:50], pick_b[:50])
    rows = np.arange(replicates)
    true_effect = truth_b[pick_b] - truth_a[pick_a]
    on_tuning = score_b[rows, pick_b] - score_a[rows, pick_a]
    fresh = true_effect + math.sqrt(2) * rng.standard_normal(replicates)  # one fresh seed each
    curse_a = score_a[rows, pick_a] - truth_a[pick_a]
    return {"tuning": _mean_se(on_tuning - true_effect), "fresh": _mean_se(fresh - true_effect),
            "curse_a": _mean_se(curse_a), "true": float(true_effect.mean())}


def _mean_se(x: np.ndarray) -> tuple[float, float]:
    return float(x.mean()), float(x.std(ddof=1) / math.sqrt(len(x)))


def _check_against_choose(a, b, pick_a, pick_b) -> None:
    for r in range(len(a)):
        cells = pd.DataFrame([{"config": c, "draw": j, "seed": 0, "value": v}
                              for c, row in (("A", a[r]), ("B", b[r])) for j, v in enumerate(row)])
        assert choose(draw_scores(cells)) == {"A": int(pick_a[r]), "B": int(pick_b[r])}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--replicates", type=at_least(1), default=20000)
    parser.add_argument("--budget", type=at_least(1), default=8, help="draws tuned per configuration")
    parser.add_argument("--tuning-seeds", type=at_least(1), default=1,
                        help="seeds each draw is averaged over")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    rng = np.random.default_rng(args.seed)
    print(f"selection bias of a tuned study: {args.replicates:,} replicates, budget "
          f"{args.budget}, {args.tuning_seeds} tuning seed(s); figures in noise-sd units "
          f"(± Monte-Carlo se); {describe()}")
    print(f"{'scenario':<14}{'true B-A':>10}{'bias on tuning trials':>26}"
          f"{'bias on fresh seeds':>24}{'winner curse (A)':>22}")
    for name, (a, b) in scenarios(args.budget).items():
        r = simulate(a, b, args.replicates, args.tuning_seeds, rng)
        print(f"{name:<14}{r['true']:>+10.3f}"
              f"{r['tuning'][0]:>+18.3f} ± {r['tuning'][1]:.3f}"
              f"{r['fresh'][0]:>+16.3f} ± {r['fresh'][1]:.3f}"
              f"{r['curse_a'][0]:>+14.3f} ± {r['curse_a'][1]:.3f}")


if __name__ == "__main__":
    main()
