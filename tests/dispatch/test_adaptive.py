"""--until-decided: the seed loop's decisions, driven by an executor whose mIoU we choose."""

from __future__ import annotations

import math
from collections import Counter

import pandas as pd
import pytest

from ablate.analysis.effects import BEYOND, WITHIN
from ablate.dispatch.adaptive import decide, run_until_decided
from ablate.dispatch.driver import run_study
from ablate.recipes.loader import parse_recipe
from ablate.store import Store
from ablate.trials.expand import expand

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
            on_event(job, {"kind": "start"})
            on_event(job, {"kind": "finish", "result": {
                "study": job.study, "trial_id": job.trial_id, "status": "done", "error": None,
                "final": {"miou": value, "pixel_acc": 0.9, "latency_ms": 1.0}, "epochs": [],
                "environment": {}, "started_at": None, "finished_at": None}})


def loop(tmp_path, miou, seeds=(0, 1), **options):
    recipe = parse_recipe(RECIPE.replace("SEEDS", str(list(seeds))), "adaptive.toml")
    store = Store(f"sqlite:///{tmp_path / 'a.db'}")
    executor = FakeExecutor(miou)

    def run(r, trials):
        return run_study(r, trials, store, executor, runs_root=tmp_path / "runs", preflight=False)

    run(recipe, expand(recipe))
    lines: list[str] = []
    rounds = run_until_decided(recipe, {}, store, run, say=lines.append, **options)
    seeds_by_config: dict[str, list[int]] = {}
    for t in store.trials("adaptive"):  # names are "<configuration>/seed=<n>"
        config, _, seed = t.name.rpartition("/seed=")
        seeds_by_config.setdefault(config, []).append(int(seed))
    return rounds, lines, executor, {k: sorted(v) for k, v in seeds_by_config.items()}


# per-seed difference true - false in points: 10, 4, 8, 7, ...
DIFFS = [10.0, 4.0, 8.0, 7.0, 9.0, 6.0]


def clear_after_four(keep, seed):
    return (50.0 + seed + (DIFFS[seed] if keep else 0.0)) / 100.0


def test_adds_seeds_until_the_effect_is_beyond_noise_and_runs_nothing_twice(tmp_path):
    # diffs [10, 4]: open; [10, 4, 8]: t(2) interval [-0.26, 14.9], open;
    # [10, 4, 8, 7]: mean 7.25, sd 2.5, t(3) = 3.182 -> [3.27, 11.23], beyond seed noise
    rounds, lines, executor, seeds = loop(tmp_path, clear_after_four)
    assert [r.seed for r in rounds] == [2, 3, None]
    assert rounds[-1].reason == "every effect is decided"
    assert seeds == {"keep_last_expansion=true": [0, 1, 2, 3],
                     "keep_last_expansion=false": [0, 1, 2, 3]}
    assert set(executor.runs.values()) == {1}  # no trial ran twice
    assert lines[-2].startswith("decided  model.keep_last_expansion: true -> false: -7.25 mIoU")
    assert lines[-1] == "stopped: every effect is decided"


def test_stops_at_max_seeds_when_nothing_differs(tmp_path):
    def null(keep, seed):  # true - false alternates +1, -1: no effect, never negligible at 1.0
        return (50.0 + (1.0 if keep == (seed % 2 == 0) else 0.0)) / 100.0

    rounds, lines, _executor, seeds = loop(tmp_path, null, max_seeds=4)
    assert [r.seed for r in rounds] == [2, 3, None]
    assert rounds[-1].reason == "--max-seeds 4 reached"
    assert all(v == [0, 1, 2, 3] for v in seeds.values())
    assert any(line.startswith("open     model.keep_last_expansion") for line in lines)


def test_negligible_effect_is_decided_without_new_seeds_and_seeds_continue_after_the_last(
        tmp_path):
    def tiny(keep, seed):  # differences 0.1 and 0.0 points
        return (50.0 + (0.1 if keep and seed == 0 else 0.0)) / 100.0

    rounds, lines, _executor, seeds = loop(tmp_path, tiny, seeds=(0, 5))
    assert [r.seed for r in rounds] == [None] and "negligible" in lines[0]
    assert all(v == [0, 5] for v in seeds.values())

    rounds, _lines, _executor, seeds = loop(tmp_path / "b", lambda k, s: 0.5 + 0.01 * (s % 2) * k,
                                            seeds=(0, 5), max_seeds=3)
    assert rounds[0].seed == 6  # the next integer after the study's largest seed


def test_decide_takes_the_configurations_of_open_effects_only():
    effects = pd.DataFrame([
        {"axis": "a", "change": "0 -> 1", "estimate": 3.0, "ci_holm_low": 1.0,
         "ci_holm_high": 5.0, "p_holm": 0.01, "verdict": BEYOND, "configs": ("a0", "a1")},
        {"axis": "b", "change": "0 -> 1", "estimate": 0.5, "ci_holm_low": -2.0,
         "ci_holm_high": 3.0, "p_holm": 0.4, "verdict": WITHIN, "configs": ("b0", "b1")},
        {"axis": "c", "change": "0 -> 1", "estimate": 0.1, "ci_holm_low": -0.4,
         "ci_holm_high": 0.6, "p_holm": 0.7, "verdict": WITHIN, "configs": ("c0", "c1")},
        {"axis": "d", "change": "0 -> 1", "estimate": 2.0, "ci_holm_low": math.nan,
         "ci_holm_high": math.nan, "p_holm": math.nan, "verdict": "undecided (n<2)",
         "configs": ("d0", "b1")},
    ])
    decision = decide(effects, min_effect=1.0)
    assert decision.configs == ("b0", "b1", "d0")
    assert [line.split()[0] for line in decision.lines] == ["decided", "open", "decided", "open"]
    assert not decision.settled
    assert decide(effects.iloc[[0, 2]]).settled


@pytest.fixture(autouse=True)
def _quiet_cost(monkeypatch):
    """Costs are not what these tests are about: skip building models for FLOPs."""
    from ablate.dispatch import driver
    from ablate.store import CostRecord

    def fake_costs(trials, cached, flops=True, source=None):
        return {t.arch_id: CostRecord(arch_id=t.arch_id, params=1000, params_by_module={},
                                      flops=1e6, flops_by_module={}, flops_convention="x",
                                      resolution=(32, 32), extra=None) for t in trials}

    monkeypatch.setattr(driver, "compute_costs", fake_costs)


def test_cli_prints_each_decision_and_refuses_detach(tmp_path, monkeypatch):
    from click.testing import CliRunner

    from ablate.cli import main
    from ablate.dispatch import executor as executor_module

    recipe = tmp_path / "adaptive.toml"
    recipe.write_text(RECIPE.replace("SEEDS", "[0, 1]"))
    fake = FakeExecutor(clear_after_four)
    monkeypatch.setattr(executor_module, "make_executor", lambda name, **options: fake)
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
        "results); drop --detach and it waits for Slurm"]


def test_set_seeds_is_the_starting_point_and_each_round_adds_a_new_seed(tmp_path):
    # `ablate run R --set seeds=[0,1] --until-decided`: the override must not pin every
    # round to seeds 0 and 1 (that looped forever, re-running nothing)
    recipe = parse_recipe(RECIPE.replace("SEEDS", "[7]"), "adaptive.toml")
    store = Store(f"sqlite:///{tmp_path / 'a.db'}")
    executor = FakeExecutor(clear_after_four)

    def run(r, trials):
        return run_study(r, trials, store, executor, runs_root=tmp_path / "runs", preflight=False)

    overrides = {"seeds": [0, 1]}
    run(recipe, expand(recipe, dict(overrides)))
    rounds = run_until_decided(recipe, overrides, store, run, say=lambda line: None)
    assert [r.seed for r in rounds] == [2, 3, None]
    assert rounds[-1].reason == "every effect is decided"
    assert set(executor.runs.values()) == {1} and len(executor.runs) == 8
