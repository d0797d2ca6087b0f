"""Trial times from measured throughput, and the study's arithmetic: hand-computed figures."""

from __future__ import annotations

import pytest

from ablate.cost.estimate import (
    Cost,
    Resources,
    cost_of,
    device_count,
    device_hours,
    duration,
    loop_scenarios,
    with_rounds,
)
from ablate.cost.throughput import (
    CPU,
    GPU,
    MEASURED,
    PROBE,
    Throughput,
    Timing,
    measured,
    planned_steps,
    trial_seconds,
    wall_seconds,
)
from ablate.recipes.schema import TrialSpec

KEY = ("a" * 16, 4, CPU)
OTHER = ("b" * 16, 4, CPU)


def test_measured_takes_the_medians_per_key_and_skips_empty_spans():
    found = measured([Timing(KEY, 100.0, 50), Timing(KEY, 120.0, 50), Timing(KEY, 300.0, 50),
                      Timing(OTHER, 30.0, None), Timing(OTHER, 0.0, 10)])
    assert found[KEY] == Throughput(KEY, MEASURED, 2.4, 120.0, 50, 3)
    # no steps recorded: no per-step figure; a zero span is not a measurement
    assert found[OTHER] == Throughput(OTHER, MEASURED, None, 30.0, None, 1)
    assert found[KEY].describe() == "measured (3 trials)"
    assert found[OTHER].describe() == "measured (1 trial)"


def test_trial_seconds_reuses_the_measured_schedule_else_scales_per_step():
    throughput = Throughput(KEY, MEASURED, 2.4, 120.0, 50, 3)
    assert trial_seconds(throughput, 50) == 120.0  # as measured, start-up included
    assert trial_seconds(throughput, None) == 120.0  # steps unknown: the same schedule
    assert trial_seconds(throughput, 100) == pytest.approx(240.0)  # 2.4 s x 100 steps
    probe = Throughput(KEY, PROBE, 0.5)
    assert trial_seconds(probe, 144) == 72.0
    assert trial_seconds(probe, None) is None  # a probe needs the steps
    assert trial_seconds(None, 144) is None


def _spec(**train) -> TrialSpec:
    return TrialSpec.model_validate({
        "seed": 0, "model": {"backbone": "mobilenet_v3_small", "head": "lraspp"},
        "data": {"name": "shapes", "classes": 3, "train_images": 192},
        "train": {"batch_size": 4, **train}})


def test_planned_steps_from_epochs_or_iterations():
    assert planned_steps(_spec(epochs=3)) == 144  # 192 // 4 = 48 batches x 3 epochs
    assert planned_steps(_spec(iterations=70, epochs=None)) == 70
    on_disk = TrialSpec.model_validate({
        "seed": 0, "model": {"backbone": "mobilenet_v3_small", "head": "lraspp"},
        "data": {"name": "voc2012", "root": "data/voc"}, "train": {"epochs": 2}})
    assert planned_steps(on_disk) is None  # its size is on disk
    user = TrialSpec.model_validate({
        "seed": 0, "model": {"builder": "userds:net", "num_classes": 2},
        "data": {"builder": "userds:build"}, "train": {"epochs": 1, "batch_size": 4}})
    # its size is the builder's: it was the embedded data's 256 // 4 = 64 steps, so a
    # measured 2-step trial of 1.3 s was estimated at 42 s
    assert planned_steps(user) is None


def test_wall_seconds_is_the_list_schedule_on_the_slots():
    # slots 2: 10 -> slot A (10), 6 -> B (6), 5 -> B (11), 7 -> A (17)
    assert wall_seconds([10.0, 6.0, 5.0, 7.0], 2) == 17.0
    assert wall_seconds([10.0, 6.0, 5.0, 7.0], 1) == 28.0
    assert wall_seconds([10.0, 6.0], 8) == 10.0
    assert wall_seconds([], 3) == 0.0


CPU2 = Resources("local", CPU, 2, 1)


def test_cost_of_counts_device_hours_and_wall_time():
    cost = cost_of([1800.0, 1800.0, 3600.0], Resources("local", GPU, 2, 2))
    assert cost == Cost(3, 0, 5400.0, 4.0)  # (0.5 + 0.5 + 1) h x 2 GPUs; A 1800+3600
    assert cost_of([60.0, None], CPU2) == Cost(2, 1, None, None)
    assert cost_of([], CPU2) == Cost(0, 0, 0.0, 0.0)


def test_the_loop_adds_rounds_one_after_another():
    left = Cost(4, 0, 200.0, 0.1)
    each = Cost(2, 0, 100.0, 0.05)
    worst, (null,) = loop_scenarios(left, each, 3, 10, [("no effect", 8.5)])
    assert worst.cost == Cost(18, 0, 900.0, pytest.approx(0.45))  # 7 rounds more
    assert worst.seeds == 10.0
    assert null.cost == Cost(15, 0, pytest.approx(750.0), pytest.approx(0.375))  # 5.5 rounds
    assert with_rounds(left, 0, Cost(2, 2, None, None)) == left  # no round: its unknowns do not count
    assert with_rounds(left, 1, Cost(2, 2, None, None)) == Cost(6, 2, None, None)


def test_device_count_reads_gpus_ranks_or_threads():
    assert device_count({"gpus": ["0", "1"]}, GPU, 9) == 2
    assert device_count({"gpus": ["0"], "ddp_ranks": 4}, GPU, 9) == 4
    assert device_count({}, GPU, 9) == 1
    assert device_count({"threads": 3}, CPU, 9) == 3
    assert device_count({"device": "cpu"}, CPU, 9) == 9  # recorded before threads were
    assert device_count(None, CPU, 2) == 2


def test_durations_and_device_hours_read_as_text():
    assert [duration(s) for s in (4.25, 42.4, 190.0, 7500.0, 200_000.0, None)] == [
        "4.2 s", "42 s", "3 min 10 s", "2 h 05 min", "2 d 07 h", "unknown"]
    assert device_hours(0.21333, "cpu-h") == "0.213 cpu-h"
    assert device_hours(1234.5, "gpu-h") == "1,234 gpu-h"
    assert device_hours(None, "gpu-h") == "unknown"
    assert CPU2.describe() == "local, 2 trials at a time, 1 CPU thread each"
    assert Resources("slurm", GPU, 64, 2).describe() == (
        "slurm, at most 64 trials at a time (--array-parallelism), 2 GPUs each")
    assert CPU2.unit == "cpu-h" and Resources("slurm", GPU, 1, 1).unit == "gpu-h"
