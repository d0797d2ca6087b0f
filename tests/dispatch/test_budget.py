"""--budget: parsing, the refusal of a recipe's round, the loop's stop, spend across runs.

Trials run on an executor that records each trial as taking ten minutes on 2 CPU threads
(1/3 cpu-h), so every figure is exact and no clock is read."""

from __future__ import annotations

from collections import Counter

import pytest
from click.testing import CliRunner

from ablate.cli import main
from ablate.cli.study_view import loop_lines
from ablate.cost.estimate import Resources
from ablate.cost.throughput import CPU
from ablate.dispatch.adaptive import LoopStopped
from ablate.dispatch.budget import (
    Budget,
    BudgetKeeper,
    OverBudget,
    check_unit,
    parse_budget,
    spent_device_hours,
)
from ablate.dispatch.events import Estimated
from ablate.dispatch.study import LoopSettings, RunOptions, StudyRunner
from ablate.errors import UserInputError
from ablate.recipes.loader import parse_recipe
from ablate.store import Store
from ablate.train.events import Claimed, Ended
from ablate.trials.expand import expand
from ablate.trials.lifecycle import Trained, TrialResult, TrialStatus

RECIPE = """
name = "budget"
seeds = SEEDS
[base.model]
backbone = "mobilenet_v3_small"
head = "lraspp"
[base.data]
name = "shapes"
classes = 3
image_size = 32
train_images = 16
[base.train]
batch_size = 8
epochs = 1
[grid]
"model.keep_last_expansion" = [true, false]
"""
CPU2 = Resources("local", CPU, 1, 2)  # one trial at a time, 2 threads: 1/3 cpu-h a trial


class TimedExecutor:
    """Finishes every job at once, recorded as 600 s on 2 threads; no effect between
    the configurations (the per-seed difference alternates +1, -1)."""

    name = "timed"

    def __init__(self) -> None:
        self.runs: Counter[str] = Counter()

    def run(self, jobs, on_event) -> None:
        for job in jobs:
            self.runs[job.trial_id] += 1
            keep, seed = job.spec["model"]["keep_last_expansion"], job.spec["seed"]
            miou = (50.0 + (1.0 if keep == (seed % 2 == 0) else 0.0)) / 100.0
            on_event(job, Claimed())
            on_event(job, Ended(Trained(TrialResult(
                job.study, job.trial_id, TrialStatus.DONE, started_at="2026-01-01T00:00:00",
                finished_at="2026-01-01T00:10:00", final={"miou": miou, "steps": 2.0},
                environment={"device": "cpu", "threads": 2}))))


def recipe_with(seeds: str):
    return parse_recipe(RECIPE.replace("SEEDS", seeds), "budget.toml")


def runner(tmp_path, executor, budget=None, events=None):
    store = Store(f"sqlite:///{tmp_path / 'b.db'}")
    options = RunOptions(tmp_path / "runs", resources=CPU2, budget=budget)
    emit = events.append if events is not None else (lambda event: None)
    return store, StudyRunner(store, executor, options, emit=emit)


@pytest.mark.parametrize(("values", "budget"), [
    (("20gpu-h",), Budget(20.0, "gpu-h", None)),
    ((" 1.5 CPU-H ",), Budget(1.5, "cpu-h", None)),
    (("2h", "0.5cpu-h"), Budget(0.5, "cpu-h", 7200.0)),
    (("90min",), Budget(None, None, 5400.0)),
    ((".5h",), Budget(None, None, 1800.0)),
])
def test_budgets_parse(values, budget):
    assert parse_budget(values) == budget


@pytest.mark.parametrize(("value", "why"), [
    ("", "empty"),
    ("   ", "empty"),
    ("20", "no unit"),
    # another spelling of a unit is named with the budget meant, never read as that unit
    ("20gpu-hours", "unknown unit 'gpu-hours' (did you mean 20gpu-h?)"),
    ("20 gpuh", "unknown unit 'gpuh' (did you mean 20gpu-h?)"),
    ("2hr", "unknown unit 'hr' (did you mean 2h?)"),
    ("2 Hours", "unknown unit 'hours' (did you mean 2h?)"),
    ("30m", "unknown unit 'm' (did you mean 30min?)"),
    ("90s", "unknown unit 's' (did you mean 1.5min?)"),
    ("2days", "unknown unit 'days' (did you mean 48h?)"),
    ("5x", "unknown unit 'x'; give an amount"),
    ("gpu-h", "not an amount with a unit"),
    ("-5h", "must be more than 0"),
    ("0gpu-h", "must be more than 0"),
    ("0.0h", "must be more than 0"),
    ("infh", "not an amount with a unit"),
    ("nan cpu-h", "not an amount with a unit"),
    ("1e999gpu-h", "too large"),
    ("2000000gpu-h", "at most 1,000,000 device-hours"),
    ("9000h", "at most 8,784 h of wall time"),
    ("2h30min", "unknown unit 'h30min'"),
])
def test_bad_budgets_are_one_line_naming_the_value(value, why):
    with pytest.raises(UserInputError) as err:
        parse_budget((value,))
    message = str(err.value)
    assert message.startswith(f"--budget {value!r}: {why}")
    assert "\n" not in message


def test_one_budget_of_each_kind():
    with pytest.raises(UserInputError, match=r"--budget '1cpu-h': a device-hours budget was "
                                             r"already given \('2gpu-h'\)"):
        parse_budget(("2gpu-h", "1cpu-h"))
    with pytest.raises(UserInputError, match=r"a wall-time budget was already given \('2h'\)"):
        parse_budget(("2h", "30min"))
    assert parse_budget(()) is None


def test_the_unit_must_be_the_device_the_trials_train_on():
    with pytest.raises(UserInputError, match=r"^--budget 20gpu-h: this run trains on the CPU "
                                             r"\(local, 1 trial at a time, 2 CPU threads each\); "
                                             r"give the budget in cpu-h"):
        check_unit(Budget(20.0, "gpu-h"), CPU2)
    check_unit(Budget(None, None, 60.0), CPU2)  # wall time: any device
    check_unit(None, CPU2)


def test_a_fixed_study_over_budget_is_refused_before_anything_runs(tmp_path):
    executor = TimedExecutor()
    store, first = runner(tmp_path, executor)
    first.execute(recipe_with("[0]"), expand(recipe_with("[0]")))  # measures both architectures
    assert len(executor.runs) == 2
    recipe = recipe_with("[0, 1, 2]")
    _, over = runner(tmp_path, executor, Budget(1.0, "cpu-h"))
    with pytest.raises(OverBudget) as err:
        over.execute(recipe, expand(recipe))
    # 4 trials left x 1/3 cpu-h; the 2 done trials spent 2/3: 2/3 + 4/3 > 1
    assert str(err.value) == ("--budget 1 cpu-h: the study needs about 1.33 cpu-h more "
                              "(4 trial(s)) and 0.667 cpu-h are spent, over 1 cpu-h; "
                              "nothing ran")
    assert len(executor.runs) == 2 and len(store.trials("budget")) == 2  # nothing recorded
    # within the budget it runs, and says what it expects first
    events: list = []
    _, fits = runner(tmp_path, executor, Budget(2.0, "cpu-h"), events)
    fits.execute(recipe, expand(recipe))
    assert len(executor.runs) == 6
    estimated = [e for e in events if isinstance(e, Estimated)][0]
    assert estimated.estimate.left.trials == 4
    assert estimated.estimate.left.device_h == pytest.approx(4 / 3)
    assert estimated.estimate.left.wall_s == 2400.0  # one at a time
    (record,) = store.estimates(["budget"])[-1:]
    assert record.estimate["left"]["trials"] == 4 and record.estimate["unit"] == "cpu-h"


@pytest.mark.slow
def test_a_refused_budget_creates_no_database(tmp_path, tiny_recipe):
    """``ablate run --db z.db --budget ...`` refused (here: no estimate): exit 2, one line,
    and z.db (nor its folder, nor a runs folder) does not exist afterwards."""
    db = tmp_path / "new" / "z.db"
    result = CliRunner().invoke(main, ["run", str(tiny_recipe), "--db", str(db),
                                       "--budget", "1cpu-h"])
    assert result.exit_code == 2, result.output
    assert result.output.startswith("Error: --budget 1 cpu-h: the study: no time estimate")
    assert result.output.rstrip().endswith("nothing ran") and "Traceback" not in result.output
    assert not (tmp_path / "new").exists()
    # an empty database file is left empty too (an existing one is checked as before)
    db.parent.mkdir()
    db.touch()
    again = CliRunner().invoke(main, ["run", str(tiny_recipe), "--db", str(db),
                                      "--budget", "1cpu-h"])
    assert again.exit_code == 2 and "nothing ran" in again.output
    assert db.stat().st_size == 0 and sorted(p.name for p in db.parent.iterdir()) == ["z.db"]


def test_a_study_without_an_estimate_is_refused_under_a_budget(tmp_path):
    store, over = runner(tmp_path, TimedExecutor(), Budget(5.0, "cpu-h"))
    recipe = recipe_with("[0]")
    with pytest.raises(OverBudget, match=r"the study: no time estimate for 2 trial\(s\) .*"
                                         r"'ablate plan RECIPE --probe'"):
        over.execute(recipe, expand(recipe))
    assert store.studies() == []


def test_the_loop_stops_adding_seeds_it_cannot_pay_for(tmp_path):
    executor = TimedExecutor()
    events: list = []
    store, loop_runner = runner(tmp_path, executor, Budget(2.0, "cpu-h"), events)
    recipe = recipe_with("[0, 1]")
    # the recipe's 4 trials are unknown until measured: measure one seed first
    runner(tmp_path, executor)[1].execute(recipe_with("[0]"), expand(recipe_with("[0]")))
    outcome = loop_runner.execute(recipe, expand(recipe), loop=LoopSettings(max_seeds=10))
    # seeds 0, 1: 4 trials, 4/3 cpu-h; seed 2: 2 more, 2 cpu-h exactly; seed 3 would pass it
    assert [r.seed for r in outcome.rounds] == [2, None]
    stop = outcome.rounds[-1].reason
    assert stop == ("budget: seed 3 needs about 0.667 cpu-h more (2 trial(s)) and 2 cpu-h "
                    "are spent, over 2 cpu-h")
    assert loop_lines(LoopStopped(stop))[0].startswith("stopped: budget: seed 3")
    assert spent_device_hours(store, "budget", CPU2) == pytest.approx(2.0)
    assert len(executor.runs) == 6


@pytest.mark.slow
def test_spend_counts_every_run_of_the_study(tmp_path):
    """A run killed after some trials and started again: the earlier trials count."""
    executor = TimedExecutor()
    store, first = runner(tmp_path, executor)
    first.execute(recipe_with("[0]"), expand(recipe_with("[0]")))
    assert spent_device_hours(store, "budget", CPU2) == pytest.approx(2 / 3)
    recipe = recipe_with("[0, 1]")
    _, second = runner(tmp_path, executor, Budget(1.0, "cpu-h"))
    with pytest.raises(OverBudget, match="0.667 cpu-h are spent"):
        second.execute(recipe, expand(recipe))
    _, third = runner(tmp_path, executor, Budget(1.34, "cpu-h"))
    third.execute(recipe, expand(recipe))
    assert spent_device_hours(store, "budget", CPU2) == pytest.approx(4 / 3)
    assert spent_device_hours(store, "no such study", CPU2) == 0.0


def test_a_wall_time_budget_counts_this_runs_time():
    now = [100.0]
    keeper = BudgetKeeper(Budget(None, None, 3600.0), store=None, study="s", resources=CPU2,
                          clock=lambda: now[0])
    assert keeper.next_round([1200.0, 1200.0], "seed 4") is None  # 40 min of 60
    now[0] += 1800.0
    assert keeper.next_round([1200.0, 1200.0], "seed 5") == (
        "budget: seed 5 needs about 40 min 00 s more on local, 1 trial at a time, 2 CPU "
        "threads each, 30 min 00 s passed, over 1 h 00 min")
    assert keeper.next_round([None], "seed 5").startswith(
        "budget: seed 5: no time estimate for 1 trial(s)")
