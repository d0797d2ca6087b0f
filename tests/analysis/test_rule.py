"""The sequential rule's error rates, power and estimate, by simulating many studies.

Every figure here comes from fresh generators (not the paths the rule simulates with),
seeded, and vectorised over studies: a few seconds in all.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from ablate.analysis import rule as R
from ablate.analysis.design import Design
from ablate.analysis.sequential import look_statistics, looks_for, spent, z_boundaries

ALPHA, K = 0.05, 10


def design(margin: float | None = None, *, futility: bool = True, spending="obrien-fleming",
           max_seeds=K) -> Design:
    return Design("sequential", alpha=ALPHA, max_seeds=max_seeds, start_seeds=1,
                  spending=spending, min_effect=margin,
                  futility_power=0.8 if margin and futility else None)


def studies(effect: float, count: int, seed: int, rule_design: Design):
    """``count`` one-effect studies (unit noise) read by the rule at every look, each
    stopped where the loop stops it: codes, means and intervals at every look and at the
    stop."""
    values = np.random.default_rng(seed).standard_normal((count, rule_design.max_seeds))
    looks = looks_for(rule_design.max_seeds, 1, rule_design.max_seeds)
    mean, se = look_statistics(values + effect, looks)
    reading = R.read(mean, se, R.rule_for(rule_design, ALPHA), rule_design.min_effect)
    decided = reading.code != R.INCONCLUSIVE
    stop = np.where(decided.any(axis=1), decided.argmax(axis=1), decided.shape[1] - 1)
    return reading, stop, np.asarray(looks)


def test_spending_functions():
    # one side of the two-sided O'Brien-Fleming boundaries: the same boundaries at half alpha
    fractions = (0.2, 0.4, 0.6, 0.8, 1.0)
    one = z_boundaries(fractions, 0.025, "obrien-fleming", sides=1)
    assert one == pytest.approx(z_boundaries(fractions, 0.05, "obrien-fleming"), abs=2e-3)
    # Hwang-Shih-DeCani: 0.2 (1 - e^{2t}) / (1 - e^2); gamma 0 spends linearly
    assert spent(0.5, 0.2, "hsd(-2)", sides=1) == pytest.approx(
        0.2 * (1 - math.e) / (1 - math.e**2))
    assert spent(0.5, 0.2, "hsd(0)", sides=1) == pytest.approx(0.1)
    assert spent(1.0, 0.2, "hsd(-2)", sides=1) == pytest.approx(0.2)
    # the first boundary spends hsd's share exactly: P(Z > b_1) = spent(t_1)
    from scipy.special import ndtr

    first = z_boundaries((0.3, 1.0), 0.2, "hsd(-2)", sides=1)[0]
    assert float(ndtr(-first)) == pytest.approx(spent(0.3, 0.2, "hsd(-2)", sides=1))


def test_null_studies_keep_the_error_rate_and_stop_early_for_futility():
    """The decision procedure where nothing differs: a wrong better/worse in at most
    alpha of studies; with a margin most of them stop for futility before --max-seeds."""
    margin = R.detectable_effect(1, K, ALPHA, "obrien-fleming")
    count = 20_000
    se = math.sqrt(ALPHA * (1 - ALPHA) / count)
    plain, stop_plain, looks = studies(0.0, count, 1, design())
    wrong = np.isin(plain.code, (R.BETTER, R.WORSE)).any(axis=1).mean()
    assert wrong <= ALPHA + 2 * se
    futile, stop, _ = studies(0.0, count, 1, design(margin))
    rows = np.arange(count)
    codes = futile.code[rows, stop]
    assert np.isin(codes, (R.BETTER, R.WORSE)).mean() <= wrong  # non-binding: never more
    assert (codes == R.FUTILE).mean() > 0.9
    seeds, seeds_plain = looks[stop].mean(), looks[stop_plain].mean()
    assert seeds_plain > 9.9 and seeds < 0.7 * seeds_plain


def test_futility_stops_an_effect_of_the_margin_at_most_beta_of_the_time():
    """80% power at d: whatever the noise, an effect of exactly d has its futility upper
    bound below d at some look in 20% of studies (calibrated), and is stopped there at
    most that often."""
    for sd in (1.0, 7.0):  # the rule reads t statistics: the noise's scale is irrelevant
        margin = 1.2 * sd
        d = design(margin)
        count = 20_000
        values = np.random.default_rng(3).standard_normal((count, K)) * sd + margin
        looks = looks_for(K, 1, K)
        mean, se = look_statistics(values, looks)
        reading = R.read(mean, se, R.rule_for(d, ALPHA), margin)
        crossed = (reading.futility_high < margin).any(axis=1).mean()
        mc = math.sqrt(0.2 * 0.8 / count)
        assert abs(crossed - 0.2) < 3 * mc, crossed
        decided = reading.code != R.INCONCLUSIVE
        stop = np.where(decided.any(axis=1), decided.argmax(axis=1), K - 2)
        assert (reading.code[np.arange(count), stop] == R.FUTILE).mean() <= 0.2


def test_equivalence_is_a_tost_at_the_level_per_effect():
    """At the margin (the least favourable truth) 'equivalent' at most alpha of the time:
    each side is a one-sided repeated bound the truth crosses with probability alpha."""
    count = 20_000
    mc = math.sqrt(ALPHA * (1 - ALPHA) / count)
    for margin in (0.9, 3.0):
        values = np.random.default_rng(4).standard_normal((count, 40)) + margin
        d = design(margin, futility=False, max_seeds=40)
        looks = looks_for(40, 1, 40)
        mean, se = look_statistics(values, looks)
        reading = R.read(mean, se, R.rule_for(d, ALPHA), margin)
        crossed = (reading.tost_high <= margin).any(axis=1).mean()
        assert abs(crossed - ALPHA) < 3 * mc, crossed
        rate = (reading.code == R.EQUIVALENT).any(axis=1).mean()
        assert rate <= ALPHA + 2 * mc, rate


def test_the_power_of_the_detectable_effect_on_fresh_studies():
    for spending in ("obrien-fleming", "pocock"):
        effect = R.detectable_effect(1, K, ALPHA, spending)
        reading, stop, _ = studies(effect, 20_000, 6, design(spending=spending))
        power = (reading.code[np.arange(len(stop)), stop] == R.BETTER).mean()
        assert power == pytest.approx(0.8, abs=0.012), (spending, power)
    # O'Brien-Fleming keeps nearly a fixed design's power; Pocock pays at the end
    assert R.detectable_effect(1, K, ALPHA, "obrien-fleming") < R.detectable_effect(
        1, K, ALPHA, "pocock")


def test_a_futility_designs_detectable_margin_has_its_power_and_saves_seeds_under_null():
    """"80% power at d" with the futility stop: the margin d the design detects with 80%
    power, futility and equivalence stops included (larger than the efficacy boundaries'
    alone: the stop ends some studies that would have crossed later). On fresh studies
    it has that power, and where nothing differs the loop stops in at most 70% of the
    seeds of the fixed paired t-test with 80% power at d, keeping the error rate."""
    from ablate.analysis.power import seeds_to_detect

    d = R.design_detectable(design(1.0), ALPHA)  # margin None: the margin it detects
    plain = R.detectable_effect(1, K, ALPHA, "obrien-fleming")
    assert 1.15 * plain < d < 1.35 * plain  # about 1.28 against 1.06 noise sds
    count = 20_000
    reading, stop, looks = studies(d, count, 8, design(d))
    rows = np.arange(count)
    power = (reading.code[rows, stop] == R.BETTER).mean()
    assert power == pytest.approx(0.8, abs=3 * math.sqrt(0.16 / count) + 0.005), power
    assert R.design_detectable(design(d), ALPHA, margin=d) == pytest.approx(d, rel=1e-3)
    null, stop, looks = studies(0.0, count, 9, design(d))
    codes = null.code[rows, stop]
    assert np.isin(codes, (R.BETTER, R.WORSE)).mean() <= ALPHA + 2 * math.sqrt(
        ALPHA * (1 - ALPHA) / count)
    fixed = seeds_to_detect(d, ALPHA)  # paired seeds of the fixed design, 80% power at d
    assert fixed == 7
    assert looks[stop].mean() <= 0.70 * fixed  # 4.7 seeds (standard error 0.02)


def test_an_effects_mde_counts_the_futility_stop_of_the_margin_in_its_noise():
    """The MDE of a margin's design: the effect it detects with its futility stop at the
    margin (in noise sds). A wider margin stops more studies for futility, so the design
    detects less; any margin costs some power against the efficacy boundaries alone."""
    small = R.design_detectable(design(1.0), ALPHA, margin=0.2)
    large = R.design_detectable(design(1.0), ALPHA, margin=1.0)
    plain = R.design_detectable(design(), ALPHA)
    assert plain == R.detectable_effect(1, K, ALPHA, "obrien-fleming")
    assert plain <= small < large


def test_the_bias_adjusted_estimate_removes_the_bias_of_early_stops():
    """Pocock spending stops early on large means: the mean where the loop stopped
    leans away from 0; the bias-adjusted estimate does not (300 studies, se ~0.02)."""
    d = design(spending="pocock")
    effect = R.detectable_effect(1, K, ALPHA, "pocock")
    reading, stop, looks = studies(effect, 300, 7, d)
    rows = np.arange(300)
    mean = reading.mean[rows, stop]
    sd = reading.se[rows, stop] * np.sqrt(looks[stop])
    adjusted = np.array([R.adjusted_estimate(m, s, d, ALPHA) for m, s in zip(mean, sd)])
    assert mean.mean() - effect > 0.045
    assert abs(adjusted.mean() - effect) < 0.02
    assert R.adjusted_estimate(1.0, 0.0, d, ALPHA) == 1.0  # no noise estimate: the mean


@pytest.mark.slow
def test_the_loops_own_decision_code_reads_studies_as_the_rule_does():
    """simulate() grows studies with the loop's real steps (effects table, decide,
    stop_reason); the rule applied to the same per-seed contrasts stops each at the same
    seed with the same verdict. 20 studies (each grows through the loop's real steps):
    both verdicts and undecided ones occur (13 futile, 4 better with seed 21)."""
    from ablate.dispatch.simulate import simulate, standard_designs

    STUDIES = 20  # noqa: N806

    one_axis = standard_designs(effect_sd=0.3)[0]
    margin = 7.0
    loop = design(margin)
    summary = simulate(one_axis, loop, STUDIES, seed=21)
    rng = np.random.default_rng(21)  # simulate()'s draws, in its order
    contrasts = []
    for _ in range(STUDIES):
        full = (one_axis.means[:, None] + rng.normal(0.0, one_axis.seed_sd, size=K)
                + rng.normal(0.0, one_axis.noise_sd, size=(2, K)))
        contrasts.append(full[1] - full[0])
    looks = looks_for(K, 1, K)
    mean, se = look_statistics(np.array(contrasts), looks)
    reading = R.read(mean, se, R.rule_for(loop, ALPHA), margin)
    decided = reading.code != R.INCONCLUSIVE
    stop = np.where(decided.any(axis=1), decided.argmax(axis=1), K - 2)
    assert summary.trials == [2 * looks[k] for k in stop]
    codes = reading.code[np.arange(STUDIES), stop]
    assert summary.futile.get("x: a -> b", 0) == (codes == R.FUTILE).sum() > 0
    assert summary.decided_right["x: a -> b"] == (codes == R.BETTER).sum() > 0
    assert (codes == R.INCONCLUSIVE).sum() > 0


def test_the_simulated_loop_reads_verdicts_without_simulating_an_mde_at_each_look(monkeypatch):
    """With a margin each effect's MDE is a simulation of the rule (10,000 studies, a
    bisection) at the read's own noise: simulate() skipped nothing else and was hundreds
    of times slower for it (bench_decisions --part loop)."""
    from ablate.analysis import effects
    from ablate.dispatch.simulate import simulate, standard_designs

    def no_mde(*args, **kwargs):
        raise AssertionError("simulate() computed an MDE it never reads")

    monkeypatch.setattr(effects, "design_detectable", no_mde)
    summary = simulate(standard_designs()[0], design(2.0), 3, seed=5)
    assert summary.replicates == 3 and len(summary.trials) == 3


def test_a_futility_verdict_is_never_read_against_its_own_estimate():
    """The reviewer's case (--max-seeds 4 --min-effect 2, two recipe seeds): looks 3
    and 4 move the mean out of look 2's narrow futility interval. The intersection read
    'no effect >= 2' beside a mean of 2.55 (and [1.67, 1.95] beside -0.47); the look's
    own interval holds its mean and decides nothing."""
    from ablate.analysis.effects import contrast_row, inconclusive, verdict

    d = Design("sequential", alpha=ALPHA, max_seeds=4, start_seeds=2, min_effect=2.0,
               futility_power=0.8)
    for per_seed in ([1.0, 1.2, 4.0, 4.0], [2.0, 2.4, -3.14, -3.14]):
        values = np.array([per_seed, [0.0] * 4])  # B's per-seed differences against A
        row = contrast_row(values, np.array([1.0, -1.0]), d)
        assert row["futility_low"] <= row["estimate"] <= row["futility_high"], row
        assert verdict(row, "main", 2.0, 0.8) == inconclusive(4)


def test_few_seed_designs_keep_their_error_rates_at_every_look():
    """--max-seeds 4 from 2 seeds, read at every look (an effect whose configurations
    get seeds for other effects): a wrong better/worse where nothing differs at most
    alpha, 'no effect >= d' at an effect of d at most beta, 'equivalent' there at most
    alpha, and every verdict read on an interval that holds the look's mean. A wrong
    verdict needs a look whose own interval misses the truth (what the repeated
    intervals bound): checked study by study. 400 studies per truth."""
    count, margin = 400, 1.0  # unit noise: the rule reads t statistics
    d = Design("sequential", alpha=ALPHA, max_seeds=4, start_seeds=2, min_effect=margin,
               futility_power=0.8)
    rule = R.rule_for(d, ALPHA)
    looks = looks_for(4, 2, 4)
    for truth in (0.0, margin):
        values = np.random.default_rng(11).standard_normal((count, 4)) + truth
        mean, se = look_statistics(values, looks)
        reading = R.read(mean, se, rule, margin)
        code = reading.code
        for low, high, decided in ((reading.low, reading.high, (R.BETTER, R.WORSE)),
                                   (reading.tost_low, reading.tost_high, (R.EQUIVALENT,)),
                                   (reading.futility_low, reading.futility_high, (R.FUTILE,))):
            on = np.isin(code, decided)
            assert ((low[on] <= mean[on]) & (mean[on] <= high[on])).all()
        # each side's own bounds at every look, as the repeated intervals bound them
        missed = {}
        for name, crit in (("efficacy", rule.efficacy), ("tost", rule.tost),
                           ("futility", rule.futility)):
            below = np.logical_or.accumulate(mean + crit * se < truth, axis=1)
            above = np.logical_or.accumulate(mean - crit * se > truth, axis=1)
            missed[name] = below, above
        if truth == 0.0:
            wrong = np.isin(code, (R.BETTER, R.WORSE))
            assert not (wrong & ~(missed["efficacy"][0] | missed["efficacy"][1])).any()
            mc = math.sqrt(ALPHA * (1 - ALPHA) / count)
            assert wrong.any(axis=1).mean() <= ALPHA + 2 * mc
        else:
            for verdict_code, name, rate in ((R.FUTILE, "futility", 0.2),
                                             (R.EQUIVALENT, "tost", ALPHA)):
                found = code == verdict_code
                assert not (found & ~missed[name][0]).any(), name
                mc = math.sqrt(rate * (1 - rate) / count)
                assert found.any(axis=1).mean() <= rate + 2 * mc, name
