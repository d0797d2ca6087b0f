"""--until-decided: the seed loop's decisions, driven by an executor whose mIoU we choose."""

from __future__ import annotations

import math
from collections import Counter

import numpy as np
import pandas as pd
import pytest

from ablate.cli.study_view import loop_lines
from ablate.dispatch.adaptive import FinishingRound, decide, run_until_decided, start_loop
from ablate.dispatch.study import RunOptions, StudyRunner
from ablate.recipes.loader import parse_recipe
from ablate.store import Store
from ablate.train.events import Claimed, Ended
from ablate.trials.expand import expand
from ablate.trials.lifecycle import Trained, TrialResult, TrialStatus

RECIPE = """
name = "adaptive"
seeds = SEEDS
[base.model]
backbone = "mobilenet_v3_small"
head = "lraspp"
[base.data]
name = "shapes"
classes = 3
image_size = 32
[grid]
"model.keep_last_expansion" = [true, false]
"""


class FakeExecutor:
    """Finishes every job at once with mIoU (fraction) = ``miou(keep_last, seed)``."""

    name = "fake"

    def __init__(self, miou):
        self.miou = miou
        self.runs: Counter[str] = Counter()

    def run(self, jobs, on_event) -> None:
        for job in jobs:
            self.runs[job.trial_id] += 1
            keep = job.spec["model"]["keep_last_expansion"]
            value = self.miou(keep, job.spec["seed"])
            on_event(job, Claimed())
            on_event(job, Ended(Trained(TrialResult(
                job.study, job.trial_id, TrialStatus.DONE,
                final={"miou": value, "pixel_acc": 0.9, "latency_ms": 1.0}, environment={}))))


def study(tmp_path, seeds: str, miou=None):
    """The adaptive recipe with ``seeds``, its store, a fake executor and a round runner."""
    recipe = parse_recipe(RECIPE.replace("SEEDS", seeds), "adaptive.toml")
    store = Store(f"sqlite:///{tmp_path / 'a.db'}")
    executor = FakeExecutor(miou or clear_after_four)

    def run(r, trials):
        return StudyRunner(store, executor, RunOptions(tmp_path / "runs")).run(r, trials)

    return recipe, store, executor, run


def loop(tmp_path, miou, seeds=(0, 1), **options):
    recipe = parse_recipe(RECIPE.replace("SEEDS", str(list(seeds))), "adaptive.toml")
    store = Store(f"sqlite:///{tmp_path / 'a.db'}")
    executor = FakeExecutor(miou)

    def run(r, trials):
        return StudyRunner(store, executor, RunOptions(tmp_path / "runs")).run(r, trials)

    run(recipe, expand(recipe))
    lines: list[str] = []
    rounds = run_until_decided(start_loop(store, recipe, {}, **options), store, run,
                               emit=lambda e: lines.extend(loop_lines(e)))
    seeds_by_config: dict[str, list[int]] = {}
    for t in store.trials("adaptive"):  # names are "<configuration>/seed=<n>"
        config, _, seed = t.name.rpartition("/seed=")
        seeds_by_config.setdefault(config, []).append(int(seed))
    return rounds, lines, executor, {k: sorted(v) for k, v in seeds_by_config.items()}


# per-seed difference true - false in points: 10, 9, 11, 10, ... (true -> false: minus these)
DIFFS = [10.0, 9.0, 11.0, 10.0, 9.5, 10.5]


def clear_after_four(keep, seed):
    return (50.0 + seed + (DIFFS[seed] if keep else 0.0)) / 100.0


def sequential_bounds(diffs, first=2, max_n=10, alpha=0.05):
    """The running intersection of the repeated intervals, by hand from the t criticals."""
    from ablate.analysis.sequential import calibrated_alpha, t_critical

    d = np.asarray(diffs)
    looks = tuple(range(max(2, first), len(d) + 1))
    crit = t_critical(looks, max_n, calibrated_alpha(first, max_n, alpha))
    low, high = -math.inf, math.inf
    for n, c in zip(looks, crit):
        half = c * d[:n].std(ddof=1) / math.sqrt(n)
        low, high = max(low, d[:n].mean() - half), min(high, d[:n].mean() + half)
    return low, high


def test_adds_seeds_until_the_effect_is_decided_and_runs_nothing_twice(tmp_path):
    # true -> false is -DIFFS: at 2 and 3 seeds the repeated intervals are far too wide
    # (t criticals ~1e5 and ~100); at 4 seeds the interval excludes 0
    assert sequential_bounds(DIFFS[:3])[0] < 0 < sequential_bounds(DIFFS[:3])[1]
    low, high = sequential_bounds([-d for d in DIFFS[:4]])
    assert high < 0
    rounds, lines, executor, seeds = loop(tmp_path, clear_after_four)
    assert [r.seed for r in rounds] == [2, 3, None]
    assert rounds[-1].reason == "every effect is decided"
    assert seeds == {"keep_last_expansion=true": [0, 1, 2, 3],
                     "keep_last_expansion=false": [0, 1, 2, 3]}
    assert set(executor.runs.values()) == {1}  # no trial ran twice
    assert lines[0] == ("design: sequential (obrien-fleming spending, looks from 2 to 10 "
                        "seeds), alpha 0.05")
    assert lines[-2] == (f"decided  model.keep_last_expansion: true -> false: worse, mean "
                         f"-10.00 mIoU, interval [{low:+.2f}, {high:+.2f}]")
    assert lines[-1] == "stopped: every effect is decided"


def test_stops_at_max_seeds_when_nothing_differs(tmp_path):
    def null(keep, seed):  # true - false alternates +1, -1: no effect
        return (50.0 + (1.0 if keep == (seed % 2 == 0) else 0.0)) / 100.0

    rounds, lines, _executor, seeds = loop(tmp_path, null, max_seeds=4)
    assert [r.seed for r in rounds] == [2, 3, None]
    assert rounds[-1].reason == "--max-seeds 4 reached"
    assert all(v == [0, 1, 2, 3] for v in seeds.values())
    assert any(line.startswith("open     model.keep_last_expansion") for line in lines)


def test_a_margin_stops_a_small_effect_for_futility_and_seeds_continue_after_the_last(
        tmp_path):
    def small(keep, seed):  # differences +-0.2 points
        return (50.0 + (0.2 * (-1) ** seed if keep else 0.0)) / 100.0

    rounds, lines, _executor, seeds = loop(tmp_path, small, seeds=(0, 5), min_effect=1.0)
    # two seeds: the futility interval (t critical 6.2 at 1 df, se 0.2) is wider than
    # +-1; the first added seed is 6, after which it lies within +-1: -0.067 +- 3.02 x
    # 0.133 (sd 0.231 of -0.2, +0.2, -0.2 over sqrt 3)
    assert [r.seed for r in rounds] == [6, None]
    assert "futility stop at 80% power for ±1" in lines[0]
    assert lines[-2] == ("decided  model.keep_last_expansion: true -> false: no effect ≥ 1 "
                         "(80% power), mean -0.07 mIoU, interval [-0.47, +0.34]")
    assert lines[-1] == "stopped: every effect is decided"
    assert all(v == [0, 5, 6] for v in seeds.values())


def test_decide_takes_the_configurations_of_open_effects_only():
    effects = pd.DataFrame([
        {"axis": "a", "change": "0 -> 1", "estimate": 3.0, "ci_low": 1.0, "ci_high": 5.0,
         "verdict": "better", "configs": ("a0", "a1")},
        {"axis": "b", "change": "0 -> 1", "estimate": 0.5, "ci_low": -2.0, "ci_high": 3.0,
         "verdict": "inconclusive (n=4)", "configs": ("b0", "b1")},
        {"axis": "c", "change": "0 -> 1", "estimate": 0.1, "ci_low": -0.4, "ci_high": 0.6,
         "verdict": "equivalent (±1)", "configs": ("c0", "c1")},
        {"axis": "d", "change": "0 -> 1", "estimate": 2.0, "ci_low": math.nan,
         "ci_high": math.nan, "verdict": "inconclusive (n=1)", "configs": ("d0", "b1")},
    ])
    decision = decide(effects.itertuples(index=False))
    assert decision.configs == ("b0", "b1", "d0")
    assert [line.split()[0] for line in decision.lines] == ["decided", "open", "decided", "open"]
    assert decision.lines[3] == "open     d: 0 -> 1: inconclusive (n=1), interval no interval yet"
    assert not decision.settled
    assert decide(effects.iloc[[0, 2]].itertuples(index=False)).settled


@pytest.mark.slow
def test_a_round_cut_short_is_finished_before_a_new_seed_is_added(tmp_path):
    recipe, store, executor, run = study(tmp_path, "[0, 1]")
    run(recipe, expand(recipe))
    # a loop killed after registering seed 2's trials, before any of them ran
    store.register_trials("adaptive", expand(parse_recipe(RECIPE.replace("SEEDS", "[2]"),
                                                          "adaptive.toml")))
    events: list = []
    rounds = run_until_decided(start_loop(store, recipe, {}), store, run, emit=events.append)
    assert FinishingRound(2) in events
    assert "finishing 2 trial(s) of an earlier round" in loop_lines(FinishingRound(2))
    assert [r.seed for r in rounds] == [3, None]  # seed 2 was not added a second time
    assert set(executor.runs.values()) == {1} and len(executor.runs) == 8


@pytest.mark.slow
def test_the_design_is_recorded_and_other_settings_are_refused(tmp_path):
    from ablate.analysis.design import Design
    from ablate.errors import UserInputError

    loop(tmp_path, clear_after_four)
    store = Store(f"sqlite:///{tmp_path / 'a.db'}")
    recorded = Design.from_json(store.study_designs()["adaptive"])
    assert recorded == Design("sequential", alpha=0.05, max_seeds=10, start_seeds=2)
    recipe = parse_recipe(RECIPE.replace("SEEDS", "[0, 1]"), "adaptive.toml")
    with pytest.raises(UserInputError, match="grown with sequential .*--max-seeds 10 --alpha 0.05"):
        start_loop(store, recipe, {}, max_seeds=6)
    # the report reads the study with the recorded design: same interval as the loop's
    from ablate.report.build import build_report

    effects = build_report(store, ["adaptive"], effects=True, alpha=0.2).effects
    row = effects.iloc[0]
    assert row["method"] == "group-sequential (obrien-fleming)" and row["verdict"] == "worse"
    assert (row["ci_low"], row["ci_high"]) == pytest.approx(
        sequential_bounds([-d for d in DIFFS[:4]]))


def test_a_design_recorded_before_the_futility_stop_goes_on_without_it(tmp_path):
    """An old study's design JSON has no futility keys: it reads as planned (no futility
    stop) and the same command goes on with it, not refused; a new study gets the stop."""
    from ablate.analysis.design import Design
    from ablate.dispatch.adaptive import record_design, start_loop

    store = Store(f"sqlite:///{tmp_path / 'a.db'}")
    old = {"kind": "sequential", "alpha": 0.05, "min_effect": 1.0, "max_seeds": 10,
           "start_seeds": 2, "spending": "obrien-fleming"}
    store.upsert_study("adaptive")
    store.upsert_study("fresh")
    store.set_study_design("adaptive", old)
    assert Design.from_json(old).futility_power is None
    recipe = parse_recipe(RECIPE.replace("SEEDS", "[0, 1]"), "adaptive.toml")
    design = start_loop(store, recipe, {}, max_seeds=10, alpha=0.05, min_effect=1.0).design
    assert design == Design.from_json(old) and not design.futility
    assert store.study_designs()["adaptive"] == old  # left as recorded
    fresh = recipe.__class__(**{**recipe.__dict__, "name": "fresh"})
    design = start_loop(store, fresh, {}, max_seeds=10, alpha=0.05, min_effect=1.0).design
    assert design.futility_power == 0.8 and design.futility_spending == "hsd(1)"
    assert "fresh" not in store.study_designs()  # recorded when the loop starts, not before
    record_design(store, "fresh", design)  # run_until_decided's first step
    assert Design.from_json(store.study_designs()["fresh"]) == design


def test_a_study_planned_with_another_futility_spending_keeps_it(tmp_path):
    """A study recorded with hsd(-2) (the spending before hsd(1)) goes on with hsd(-2):
    the spending is no user setting, so it is neither refused nor changed under it."""
    from ablate.analysis.design import Design
    from ablate.dispatch.adaptive import record_design, start_loop
    from ablate.errors import UserInputError

    store = Store(f"sqlite:///{tmp_path / 'a.db'}")
    planned = {"kind": "sequential", "alpha": 0.05, "min_effect": 1.0, "max_seeds": 10,
               "start_seeds": 2, "spending": "obrien-fleming", "futility_power": 0.8,
               "futility_gamma": -2.0}
    store.upsert_study("adaptive")
    store.set_study_design("adaptive", planned)
    recipe = parse_recipe(RECIPE.replace("SEEDS", "[0, 1]"), "adaptive.toml")
    design = start_loop(store, recipe, {}, max_seeds=10, alpha=0.05, min_effect=1.0).design
    assert design.futility_spending == "hsd(-2)" and design == Design.from_json(planned)
    assert record_design(store, "adaptive", design) == design
    assert store.study_designs()["adaptive"] == planned
    with pytest.raises(UserInputError, match="--max-seeds 10"):  # other settings still refused
        start_loop(store, recipe, {}, max_seeds=12, alpha=0.05, min_effect=1.0)


@pytest.fixture(autouse=True)
def _quiet_cost(monkeypatch):
    """Costs are not what these tests are about: skip building models for FLOPs."""
    from ablate.dispatch import prepare
    from ablate.store import CostRecord

    def fake_costs(trials, cached, flops=True, source=None, tune=None):
        return {t.arch_id: CostRecord(arch_id=t.arch_id, params=1000, params_by_module={},
                                      flops=1e6, flops_by_module={}, flops_convention="x",
                                      resolution=(32, 32), extra=None) for t in trials}

    monkeypatch.setattr(prepare, "compute_costs", fake_costs)


def test_cli_prints_each_decision_and_refuses_detach(tmp_path, monkeypatch):
    from click.testing import CliRunner

    from ablate.cli import main
    from ablate.dispatch import executor as executor_module

    recipe = tmp_path / "adaptive.toml"
    recipe.write_text(RECIPE.replace("SEEDS", "[0, 1]"))
    fake = FakeExecutor(clear_after_four)
    monkeypatch.setattr(executor_module, "make_executor", lambda name, request: fake)
    db = str(tmp_path / "cli.db")
    result = CliRunner().invoke(main, ["run", str(recipe), "--db", db, "--until-decided",
                                       "--runs-dir", str(tmp_path / "runs")])
    assert result.exit_code == 0, result.output
    assert "seed 2 for 2 configuration(s)" in result.output
    assert "seed 3 for 2 configuration(s)" in result.output
    assert "stopped: every effect is decided" in result.output
    assert len(Store(db).trials("adaptive")) == 8 and set(fake.runs.values()) == {1}

    refused = CliRunner().invoke(main, ["run", str(recipe), "--db", db, "--until-decided",
                                        "--executor", "slurm", "--detach"])
    assert refused.exit_code == 2
    assert refused.output.strip().splitlines() == [
        "Error: --until-decided: not with --detach (each round needs the previous round's "
        "results): keep the loop alive in tmux or screen, or as a job of its own (sbatch "
        "--wrap 'ablate run ... --until-decided --executor slurm'); if it stops, the same "
        "command continues where it stopped"]


def test_set_seeds_is_the_starting_point_and_each_round_adds_a_new_seed(tmp_path):
    # `ablate run R --set seeds=[0,1] --until-decided`: the override must not pin every
    # round to seeds 0 and 1 (that looped forever, re-running nothing)
    recipe, store, executor, run = study(tmp_path, "[7]")
    overrides = {"seeds": [0, 1]}
    run(recipe, expand(recipe, dict(overrides)))
    rounds = run_until_decided(start_loop(store, recipe, overrides), store, run)
    assert [r.seed for r in rounds] == [2, 3, None]
    assert rounds[-1].reason == "every effect is decided"
    assert set(executor.runs.values()) == {1} and len(executor.runs) == 8


@pytest.mark.parametrize(("option", "value"), [
    ("--min-effect", "nan"), ("--min-effect", "inf"), ("--min-effect", "0"),
    ("--alpha", "nan"), ("--spending", "pocok"), ("--max-seeds", "101")])
def test_bad_loop_options_are_one_line_and_record_nothing(tmp_path, option, value):
    from click.testing import CliRunner

    from ablate.cli import main

    recipe = tmp_path / "adaptive.toml"
    recipe.write_text(RECIPE.replace("SEEDS", "[0, 1]"))
    db = tmp_path / "bad.db"
    out = CliRunner().invoke(main, ["run", str(recipe), "--db", str(db), "--until-decided",
                                    option, value])
    assert out.exit_code == 2
    (line,) = out.output.strip().splitlines()
    assert line.startswith(f"Error: Invalid value for '{option}'")
    assert not db.exists()


@pytest.mark.parametrize("command", ["run", "plan"])
def test_max_seeds_below_the_starting_seeds_is_refused_before_anything_runs(tmp_path,
                                                                            command):
    # three starting seeds and a last look at two: a design with no look, which trained
    # the recipe's round, recorded itself and then read every effect as "no interval yet"
    from click.testing import CliRunner

    from ablate.cli import main

    recipe = tmp_path / "adaptive.toml"
    recipe.write_text(RECIPE.replace("SEEDS", "[0, 1, 2]"))
    db = tmp_path / "bad.db"
    out = CliRunner().invoke(main, [command, str(recipe), "--db", str(db), "--until-decided",
                                    "--max-seeds", "2"])
    assert out.exit_code == 2, out.output
    assert out.output.strip().splitlines() == [
        "Error: --max-seeds 2: below the 3 seeds the study starts from (the recipe's seeds, "
        "or --set seeds), so the design would have no look; give --max-seeds 3 or more, or "
        "fewer starting seeds"]
    assert not db.exists()
    if command == "plan":  # --set seeds is the starting point: two seeds, a look at two
        folded = CliRunner().invoke(main, ["plan", str(recipe), "--until-decided", "--no-cost",
                                           "--max-seeds", "2", "--set", "seeds=[0,1]"])
        assert folded.exit_code == 0, folded.output
