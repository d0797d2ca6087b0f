"""Benchmark: the error rate and cost of `ablate run --until-decided`, by simulation.

Drives the loop's real decision code (``ablate.dispatch.simulate``: the effects' tests
and verdicts, ``adaptive.decide`` and ``adaptive.stop_reason``) with synthetic per-seed
mIoU: true cell means + a seed effect (sd 3 points) shared by the configurations of a
seed + trial noise (sd 5 points). No training, no database.

    .venv/bin/python bench/bench_decisions.py [--replicates 10000] [--jobs 2]
        [--part all|loop|futility|looks] [--paths 200000] [--estimates 1000] [--loop-checks 2000]

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
  futility       one axis with a margin d: the margin the design (O'Brien-Fleming, alpha
                 0.05, its futility stop included) detects with 80% power by --max-seeds
                 K = 10, 20, 30 (per-seed contrast sd sigma = 1). Studies stopped by the rule the loop applies to an
                 effect (``ablate.analysis.rule``: the code behind the effects table;
                 ``--paths`` studies per row; a check row runs the loop itself,
                 ``simulate``, on 2,000). Per truth (0, d, 2d): mean trials (2 configurations
                 x seeds), the fixed paired design of equal power (the loop's power at d;
                 at 2d its power there) and the ratio, power, fwer (a wrong better/worse)
                 with its Monte-Carlo se, the share stopped for futility, the coverage of
                 the final interval and the bias of the estimate shown (bias-adjusted,
                 ``--estimates`` studies) and of the mean, in sigma. Goals: fwer <= alpha +
                 2 se; trials under the null <= 0.70 of the fixed design; power at d >=
                 0.78; coverage >= 0.95; |bias| <= 0.1 sigma at d.
  looks          few seeds, read at every look (an effect whose configurations get seeds
                 for other effects): --max-seeds 4 and 10 from 2 seeds, the margin d the
                 design detects with 80% power. Per truth (0, d) and reading (the rule:
                 each look's running intersection, or its own interval where the
                 intersection leaves out its mean; "intersection": the running
                 intersection alone, as before), ``--paths`` studies: the share with a
                 look whose futility intersection leaves out its mean, and with a verdict
                 read on an interval without its mean; at any look: a wrong better/worse
                 (0), 'no effect >= d' (d: at most beta = 0.2) and 'equivalent' (d: at
                 most alpha), with Monte-Carlo se; power (better at the first decided look)
                 and mean seeds there. Check rows run the loop itself (``simulate``,
                 ``--loop-checks`` studies) on a 2 x 2 study, --max-seeds 4 from 2 seeds,
                 margin 2 points (trial noise sd 1, seed sd 1): nothing differs, and an
                 interaction of exactly 2; fwer and the share stopped for futility.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.machine import at_least, describe  # noqa: E402


def _run(job: tuple) -> tuple:
    from ablate.analysis.design import Design
    from ablate.dispatch.simulate import simulate, standard_designs

    index, kind, effect_sd, max_seeds, margin, replicates, seed = job
    design = standard_designs(effect_sd=effect_sd)[index]
    futility = 0.8 if margin and kind == "sequential" else None  # as the loop designs it
    loop = Design(kind, alpha=0.05, min_effect=margin, max_seeds=max_seeds, start_seeds=1,
                  futility_power=futility)
    started = time.perf_counter()
    summary = simulate(design, loop, replicates, seed=seed)
    return job, summary, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--replicates", type=at_least(4), default=10_000,
                        help="studies per design of the loop part")
    parser.add_argument("--jobs", type=at_least(1), default=2, help="worker processes")
    parser.add_argument("--seed", type=int, default=20261204)
    parser.add_argument("--part", choices=("all", "loop", "futility", "looks"), default="all",
                        help="loop: the standard designs; futility: the margin's stop; "
                             "looks: few seeds read at every look")
    parser.add_argument("--paths", type=at_least(1), default=200_000,
                        help="studies per row of the futility part")
    parser.add_argument("--estimates", type=at_least(1), default=1_000,
                        help="studies whose bias-adjusted estimate is computed")
    parser.add_argument("--loop-checks", type=at_least(0), default=2_000,
                        help="studies of the loop's own code (simulate) per check row; 0: none")
    args = parser.parse_args()
    print(f"machine: {describe()}")
    print(f"command: bench/bench_decisions.py --replicates {args.replicates} --jobs {args.jobs} "
          f"--seed {args.seed} --part {args.part} --paths {args.paths} --estimates "
          f"{args.estimates} --loop-checks {args.loop_checks}")
    if args.part in ("all", "futility"):
        futility_table(args.paths, args.estimates, args.jobs, args.seed, args.loop_checks)
    if args.part in ("all", "loop"):
        loop_table(args.replicates, args.jobs, args.seed)
    if args.part in ("all", "looks"):
        looks_table(args.paths, args.seed, args.loop_checks)


ALPHA = 0.05
TRUTHS = ("null", "d", "2d")


def _futility_rows(job: tuple) -> list[dict]:
    """One --max-seeds: every truth, the loop with the margin (futility) and without."""
    import numpy as np

    from ablate.analysis import rule as R
    from ablate.analysis.design import Design
    from ablate.analysis.sequential import look_statistics, looks_for
    from ablate.dispatch.simulate import fixed_seeds_for_power

    max_seeds, paths, estimates, seed = job
    started = time.perf_counter()
    d = R.design_detectable(_margin_design(max_seeds), ALPHA)  # 80% power at d, stop included
    looks = np.asarray(looks_for(max_seeds, 1, max_seeds))
    rows, power_at = [], {}
    for label, margin in (("margin d (futility)", d), ("no margin", None)):
        design = Design("sequential", alpha=ALPHA, max_seeds=max_seeds, start_seeds=1,
                        min_effect=margin, futility_power=0.8 if margin else None)
        rule = R.rule_for(design, ALPHA)
        for k, truth in enumerate((0.0, d, 2 * d)):
            rng = np.random.default_rng(seed + 7919 * k)
            seeds = right = wrong = futile = covered = done = 0
            mean_sum = 0.0
            shown = []
            while done < paths:
                count = min(50_000, paths - done)
                mean, se = look_statistics(rng.standard_normal((count, max_seeds)) + truth, looks)
                reading = R.read(mean, se, rule, margin)
                decided = reading.code != R.INCONCLUSIVE
                stop = np.where(decided.any(axis=1), decided.argmax(axis=1), len(looks) - 1)
                at = np.arange(count), stop
                code, low, high = reading.code[at], reading.low[at], reading.high[at]
                seeds += int(looks[stop].sum())
                right += int((code == R.BETTER).sum()) if truth > 0 else 0
                wrong += int(np.isin(code, (R.WORSE,) if truth > 0 else (R.BETTER, R.WORSE)).sum())
                futile += int((code == R.FUTILE).sum())
                covered += int(((low <= truth) & (truth <= high)).sum())
                mean_sum += float(reading.mean[at].sum())
                if done == 0 and margin and k == 1:  # the estimate shown, at d
                    sd = reading.se[at] * np.sqrt(looks[stop])
                    for i in range(min(estimates, count)):
                        value = R.adjusted_estimate(float(reading.mean[at][i]), float(sd[i]),
                                                    design, ALPHA)
                        shown.append(min(max(value, low[i]), high[i]))
                done += count
            power = right / paths
            power_at[label, TRUTHS[k]] = power
            rows.append({
                "K": max_seeds, "design": label, "truth": TRUTHS[k], "d": d,
                "trials": 2 * seeds / paths, "power": power, "fwer": wrong / paths,
                "mc_se": math.sqrt(max(wrong / paths * (1 - wrong / paths), 1e-12) / paths),
                "futile": futile / paths, "coverage": covered / paths,
                "bias_mean": mean_sum / paths - truth,
                "bias_shown": (float(np.mean(shown)) - truth) if shown else math.nan,
                "bias_shown_se": float(np.std(shown) / math.sqrt(len(shown))) if shown else 0.0,
            })
    for row in rows:  # the fixed paired design with the loop's power at d (at 2d: there)
        at = "2d" if row["truth"] == "2d" else "d"
        power = power_at[row["design"], at]
        effect = 2 * d if at == "2d" else d
        row["fixed"] = 2 * fixed_seeds_for_power(effect, 1.0, min(power, 0.999), ALPHA)
        row["ratio"] = row["trials"] / row["fixed"]
    for row in rows:  # the same, in fractional seeds: whole seeds round the fixed design up
        at = "2d" if row["truth"] == "2d" else "d"
        effect = 2 * d if at == "2d" else d
        row["fixed_exact"] = 2 * _fractional_seeds(effect, min(power_at[row["design"], at], 0.999))
    rows[0]["took"] = time.perf_counter() - started
    rows[0]["d_efficacy"] = R.detectable_effect(1, max_seeds, ALPHA, "obrien-fleming")
    return rows


def _margin_design(max_seeds: int):
    from ablate.analysis.design import Design

    return Design("sequential", alpha=ALPHA, max_seeds=max_seeds, start_seeds=1,
                  min_effect=1.0, futility_power=0.8)


def _fractional_seeds(effect: float, power: float) -> float:
    """The paired seeds of a fixed t-test with ``power`` at ``effect`` (unit sd), the
    noncentral t's power read at fractional seeds (df n - 1)."""
    from scipy.optimize import brentq  # lazy: loads scipy

    from ablate.analysis.power import detect_power
    from ablate.dispatch.simulate import fixed_seeds_for_power

    whole = fixed_seeds_for_power(effect, 1.0, power, ALPHA)  # power is reached between
    if whole <= 2:
        return float(whole)
    return float(brentq(lambda n: detect_power(effect * math.sqrt(n), n - 1.0, ALPHA) - power,
                        whole - 1.0, float(whole)))


def futility_table(paths: int, estimates: int, jobs: int, seed: int, checks: int) -> None:
    """The futility design against the loop without a margin, for --max-seeds 10, 20, 30."""
    with ProcessPoolExecutor(max_workers=jobs) as pool:
        results = list(pool.map(_futility_rows, [(k, paths, estimates, seed + k)
                                                 for k in (10, 20, 30)]))
    print(f"futility: {paths:,} studies per row (unit per-seed contrast sd), estimates shown "
          f"from {estimates:,}")
    print("| K | d | design | truth | mean trials | fixed, equal power | ratio | power | "
          "fwer (mc se) | futility | coverage | bias shown | bias of mean |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for rows in results:
        for r in rows:
            shown = (f"{r['bias_shown']:+.3f} ({r['bias_shown_se']:.3f})"
                     if r["bias_shown"] == r["bias_shown"] else "")
            print(f"| {r['K']} | {r['d']:.3f} | {r['design']} | {r['truth']} | "
                  f"{r['trials']:.2f} | {r['fixed']} | {r['ratio']:.2f} | "
                  f"{r['power']:.3f} | {r['fwer']:.4f} ({r['mc_se']:.4f}) | {r['futile']:.3f} | "
                  f"{r['coverage']:.4f} | {shown} | {r['bias_mean']:+.3f} |")
        print(f"(K={rows[0]['K']}: {rows[0]['took']:.0f} s; d is the margin the design with "
              f"its futility stop detects with 80% power; its efficacy boundaries alone "
              f"detect {rows[0]['d_efficacy']:.3f} with 80% power)")
    goals(results)
    if checks:
        check_with_the_loop(seed, checks)


def goals(results: list[list[dict]]) -> None:
    for rows in results:
        fut = {r["truth"]: r for r in rows if r["design"].startswith("margin")}
        k = rows[0]["K"]
        print(f"goals K={k}: fwer <= alpha + 2 se: "
              f"{all(r['fwer'] <= ALPHA + 2 * r['mc_se'] for r in rows)}; null trials / fixed "
              f"{fut['null']['ratio']:.2f} <= 0.70: {fut['null']['ratio'] <= 0.70} (in fractional "
              f"seeds {fut['null']['trials'] / fut['null']['fixed_exact']:.2f}); power at d "
              f"{fut['d']['power']:.3f} >= 0.78: {fut['d']['power'] >= 0.78}; coverage >= 0.95: "
              f"{all(r['coverage'] >= 0.95 for r in rows)}; |bias shown| at d "
              f"{abs(fut['d']['bias_shown']):.3f} <= 0.1: {abs(fut['d']['bias_shown']) <= 0.1}")


def check_with_the_loop(seed: int, replicates: int = 2_000) -> None:
    """The loop's own decision code (``simulate``) on the K = 10 rows with the margin."""
    from ablate.analysis.design import Design
    from ablate.analysis.rule import design_detectable
    from ablate.dispatch.simulate import simulate, standard_designs

    sigma = 5.0 * math.sqrt(2.0)  # the per-seed contrast sd of the standard designs
    d = design_detectable(_margin_design(10), ALPHA)
    loop = Design("sequential", alpha=ALPHA, max_seeds=10, start_seeds=1, min_effect=d * sigma,
                  futility_power=0.8)
    for truth, effect in (("null", 0.0), ("d", d)):
        design = standard_designs(effect_sd=effect * math.sqrt(2.0))[0]
        summary = simulate(design, loop, replicates, seed=seed + 3)
        right = next(iter(summary.decided_right.values())) / replicates
        print(f"check, the loop itself (simulate, {replicates:,} studies) K=10 {truth}: "
              f"mean trials {summary.mean_trials:.2f}, power {right:.3f}, fwer "
              f"{summary.fwer:.4f} ({summary.mc_se:.4f}), futility "
              f"{sum(summary.futile.values()) / replicates:.3f}")


def loop_table(reps: int, jobs_: int, seed: int) -> None:
    """The loop's own decision code on the standard designs (``simulate``)."""
    args = argparse.Namespace(jobs=jobs_, seed=seed)
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


def _intersection_only(mean, se, critical):
    """The running intersection alone (the rule before it read a look's own interval
    where the intersection leaves out the look's mean; an empty one was read so)."""
    import numpy as np

    with np.errstate(invalid="ignore"):
        half = np.asarray(critical, dtype=float) * se
        skip = (se == 0.0) | np.isinf(critical)
        low = np.maximum.accumulate(np.where(skip, -np.inf, mean - half), axis=-1)
        high = np.minimum.accumulate(np.where(skip, np.inf, mean + half), axis=-1)
        empty = low > high
        low, high = np.where(empty, mean - half, low), np.where(empty, mean + half, high)
    unbounded = np.isinf(low) & np.isinf(high)
    return np.where(unbounded, np.nan, low), np.where(unbounded, np.nan, high)


def looks_table(paths: int, seed: int, checks: int) -> None:
    """Few-seed designs read at every look: the rule against the intersection alone."""
    from unittest import mock

    import numpy as np

    from ablate.analysis import rule as R
    from ablate.analysis.design import Design
    from ablate.analysis.sequential import look_statistics, looks_for

    print(f"looks: {paths:,} studies per row (unit per-seed contrast sd), read at every look")
    print("| K | d | truth | reading | futility intersection leaves out the mean | verdict "
          "without its mean | wrong better/worse (se) | no effect >= d (se) | equivalent (se) "
          "| power | mean seeds |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for max_seeds in (4, 10):
        started = time.perf_counter()
        plain = Design("sequential", alpha=ALPHA, max_seeds=max_seeds, start_seeds=2,
                       min_effect=1.0, futility_power=0.8)
        d = R.design_detectable(plain, ALPHA)
        design = Design(**{**plain.to_json(), "min_effect": d})
        rule = R.rule_for(design, ALPHA)
        looks = np.asarray(looks_for(max_seeds, 2, max_seeds))
        for k, truth in enumerate((0.0, d)):
            values = np.random.default_rng(seed + 104729 * k).standard_normal(
                (paths, max_seeds)) + truth
            mean, se = look_statistics(values, tuple(looks))
            for label in ("rule", "intersection"):
                if label == "rule":
                    reading = R.read(mean, se, rule, d)
                else:
                    with mock.patch.object(R, "running_intervals", _intersection_only):
                        reading = R.read(mean, se, rule, d)
                code = reading.code
                fut_out = ((reading.futility_low > mean) | (reading.futility_high < mean))
                against = np.zeros(code.shape, dtype=bool)
                for low, high, codes in (
                        (reading.low, reading.high, (R.BETTER, R.WORSE)),
                        (reading.tost_low, reading.tost_high, (R.EQUIVALENT,)),
                        (reading.futility_low, reading.futility_high, (R.FUTILE,))):
                    against |= np.isin(code, codes) & ((low > mean) | (high < mean))
                rates = {}
                for name, codes in (("wrong", (R.BETTER, R.WORSE) if truth == 0 else (R.WORSE,)),
                                    ("futile", (R.FUTILE,)), ("equivalent", (R.EQUIVALENT,))):
                    p = float(np.isin(code, codes).any(axis=1).mean())
                    rates[name] = f"{p:.4f} ({math.sqrt(max(p * (1 - p), 1e-12) / paths):.4f})"
                decided = code != R.INCONCLUSIVE
                stop = np.where(decided.any(axis=1), decided.argmax(axis=1), len(looks) - 1)
                power = float((code[np.arange(paths), stop] == R.BETTER).mean())
                print(f"| {max_seeds} | {d:.3f} | {'0' if truth == 0 else 'd'} | {label} | "
                      f"{fut_out.any(axis=1).mean():.4f} | {against.any(axis=1).mean():.4f} | "
                      f"{rates['wrong']} | {rates['futile']} | {rates['equivalent']} | "
                      f"{power:.3f} | {looks[stop].mean():.2f} |")
        print(f"(K={max_seeds}: {time.perf_counter() - started:.0f} s)")
    if checks:
        check_few_seeds_with_the_loop(seed, checks)


def check_few_seeds_with_the_loop(seed: int, replicates: int) -> None:
    """The loop's own code on a 2 x 2 study at --max-seeds 4 from 2 seeds, margin 2."""
    import numpy as np

    from ablate.analysis.design import Design
    from ablate.dispatch.simulate import SimDesign, simulate

    grid = (("a", ("0", "1")), ("b", ("0", "1")))
    loop = Design("sequential", alpha=ALPHA, max_seeds=4, start_seeds=2, min_effect=2.0,
                  futility_power=0.8)
    for truth, means in (("null", np.full((2, 2), 50.0)),
                         ("interaction 2", np.array([[50.0, 50.0], [50.0, 52.0]]))):
        started = time.perf_counter()
        design = SimDesign(truth, grid, means, start_seeds=2, noise_sd=1.0, seed_sd=1.0)
        summary = simulate(design, loop, replicates, seed=seed + 5)
        futile = summary.futile.get("a x b: (0 -> 1) x (0 -> 1)", 0) / replicates
        print(f"check, the loop itself (simulate, {replicates:,} studies) 2x2 K=4 {truth}: "
              f"fwer {summary.fwer:.4f} ({summary.mc_se:.4f}), interaction 'no effect >= 2' "
              f"{futile:.3f}, mean trials {summary.mean_trials:.2f} "
              f"({time.perf_counter() - started:.0f} s)")


if __name__ == "__main__":
    main()
