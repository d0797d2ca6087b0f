"""A study's estimate from the database, cached probes and the executor's parallelism."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from ablate.cost import cache
from ablate.cost.estimate import Resources
from ablate.cost.probe import ProbeDevice, cached_probe, probe_key
from ablate.cost.throughput import CPU, GPU, PROBE
from ablate.dispatch.estimate import (
    estimate_study,
    family_size,
    local_resources,
    plan_gpus,
    probe_device,
    resources_for,
    slurm_resources,
    throughputs,
)
from ablate.recipes.loader import parse_recipe
from ablate.store import Store
from ablate.trials.expand import expand
from ablate.trials.lifecycle import TrialResult, TrialStatus

RECIPE = """
name = "NAME"
seeds = [0, 1]
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
START = datetime(2026, 1, 1)


def recipe(name="est", text=RECIPE):
    return parse_recipe(text.replace("NAME", name), f"{name}.toml")


def record(store, study, trial, seconds, status=TrialStatus.DONE, environment=None,
           steps=2.0):
    store.record(TrialResult(
        study, trial.trial_id, status, started_at=START.isoformat(),
        finished_at=(START + timedelta(seconds=seconds)).isoformat(),
        final={"miou": 0.5, "steps": steps} if status is TrialStatus.DONE else {},
        error=None if status is TrialStatus.DONE else "boom",
        environment=environment or {"device": "cpu", "threads": 2}))


def test_resources_follow_the_executor():
    assert local_resources(2, [], 1) == Resources("local", CPU, 2, max(1, _cores() // 2))
    assert local_resources(3, ["g0", "g1", "g2", "g3"], 2) == Resources("local", GPU, 2, 2)
    r = recipe()
    assert slurm_resources(r, {}) == Resources("slurm", CPU, 64, 2)  # the [slurm] defaults
    assert slurm_resources(r, {"gpus_per_trial": 4, "array_parallelism": 8}) == Resources(
        "slurm", GPU, 8, 4)
    assert resources_for("slurm", r, gpus_per_trial=None, slurm={"cpus_per_trial": 6}) == \
        Resources("slurm", CPU, 64, 6)


def _cores():
    from ablate.cpus import usable_cpus

    return usable_cpus()


def test_workers_share_the_cpus_this_process_may_use_not_the_machine_s(monkeypatch):
    """On a 64-core node where taskset, Slurm or a cpuset lets the runner use 4 CPUs, two
    workers get 2 threads each (os.cpu_count() would have given them 32 each)."""
    import os

    from ablate import cpus
    from ablate.data import build

    monkeypatch.setattr(os, "cpu_count", lambda: 64)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {8, 9, 10, 11}, raising=False)
    monkeypatch.setattr(cpus, "cgroup_cpu_quota", lambda: None)  # whatever this machine has
    monkeypatch.delenv(build.TRIAL_CPUS_ENV, raising=False)
    assert cpus.usable_cpus() == 4 and cpus.worker_threads(2) == 2
    assert cpus.worker_threads(8) == 1  # never none
    assert local_resources(2, [], 1) == Resources("local", CPU, 2, 2)  # what estimates count
    assert build._cpu_count() == 4  # what data.workers = "auto" counts in one process
    monkeypatch.delattr(os, "sched_getaffinity")  # macOS: no affinity mask
    assert cpus.usable_cpus() == 64


def test_plan_sees_the_gpus_run_would_use(monkeypatch):
    monkeypatch.setenv("ABLATE_FAKE_GPUS", "A100,A100,A100")
    gpus, per = plan_gpus(None, recipe())
    assert [g.name for g in gpus] == ["A100"] * 3 and per == 1
    assert resources_for("local", recipe(), jobs=4, gpus=gpus, gpus_per_trial=per) == \
        Resources("local", GPU, 3, 1)


def test_done_trials_of_any_study_measure_an_architecture(tmp_path):
    store = Store(f"sqlite:///{tmp_path / 'e.db'}")
    other = recipe("other")
    store.upsert_study("other")
    store.register_trials("other", expand(other))
    by = {(t.axes["model.keep_last_expansion"], t.seed): t for t in expand(other)}
    kept, kept1, dropped, dropped1 = by[True, 0], by[True, 1], by[False, 0], by[False, 1]
    record(store, "other", kept, 120.0)
    record(store, "other", kept1, 100.0)
    record(store, "other", dropped, 60.0, status=TrialStatus.FAILED)  # not a measure
    record(store, "other", dropped1, 60.0, environment={"device": "cuda:0"})  # not the CPU
    mine = recipe("mine")
    estimate = estimate_study(store, mine, expand(mine), Resources("local", CPU, 2, 2))
    configs = {c.config_name: c for c in estimate.configs}
    kept_config = configs["keep_last_expansion=true"]
    assert (kept_config.trials, kept_config.left, kept_config.seconds, kept_config.source) == (
        2, 2, 110.0, "measured (2 trials)")
    assert configs["keep_last_expansion=false"].source == "unknown"
    assert estimate.left.unknown == 2 and estimate.left.wall_s is None


def test_what_is_left_is_what_runs(tmp_path):
    """Failed trials run again, unless --skip-failed keeps them; settled ones (a tuned
    study's tuning trials once the selection is recorded) never do, --force or not. Both
    had been counted as left: a rerun said `estimate: 2 trials`, then ran none."""
    store = Store(f"sqlite:///{tmp_path / 'e.db'}")
    mine = recipe("mine")
    trials = expand(mine)  # true/seed=0, true/seed=1, false/seed=0, false/seed=1
    store.upsert_study("mine")
    store.register_trials("mine", trials)
    record(store, "mine", trials[0], 100.0)
    record(store, "mine", trials[1], 100.0, status=TrialStatus.FAILED)
    record(store, "mine", trials[2], 100.0)
    resources = Resources("local", CPU, 1, 2)

    def left(**options):
        estimate = estimate_study(store, mine, trials, resources, **options)
        assert estimate.total.trials == 4
        return estimate.left.trials, [c.left for c in estimate.configs]

    assert left() == (2, [1, 1])
    assert left(skip_failed=True) == (1, [0, 1])
    assert left(settled={trials[1].trial_id, trials[3].trial_id}) == (0, [0, 0])
    assert left(force=True, settled={trials[1].trial_id}) == (3, [1, 2])


def test_a_cached_probe_fills_in_and_steps_scale_it(tmp_path):
    mine = recipe("mine")
    trials = expand(mine)
    resources = Resources("local", CPU, 1, 2)
    device = probe_device(resources)
    assert device.kind == CPU and device.threads == 2
    for trial in trials:  # what run_probe would have cached: 0.5 s a step
        cache.save_entry("probes", probe_key(trial, device), {"seconds_per_step": 0.5})
    assert cached_probe(trials[0], device).source == PROBE
    assert cached_probe(trials[0], ProbeDevice(CPU, device.name, 1)) is None  # other threads
    found = throughputs(None, trials, resources)
    estimate = estimate_study(None, mine, trials, resources, found=found)
    # 16 images // 8 per batch x 1 epoch = 2 steps: 1 s a trial, 4 trials one at a time
    assert [c.seconds for c in estimate.configs] == [1.0, 1.0]
    assert estimate.total.wall_s == 4.0
    assert estimate.total.device_h == pytest.approx(4.0 * 2 / 3600)


def test_the_loop_cases_need_the_noise_only_with_a_margin(tmp_path):
    from ablate.dispatch.adaptive import loop_design

    store = Store(f"sqlite:///{tmp_path / 'e.db'}")
    mine = recipe("mine")
    trials = expand(mine)
    store.upsert_study("mine")
    store.register_trials("mine", trials)
    for trial in trials:
        record(store, "mine", trial, 60.0)
    resources = Resources("local", CPU, 2, 1)
    design = loop_design(mine, max_seeds=5, alpha=0.05, min_effect=None)
    estimate = estimate_study(store, mine, trials, resources, design=design)
    # 2 configurations, seeds 0 and 1 done: at worst 3 rounds of 2 trials, 60 s each
    assert estimate.worst.cost.trials == 6 and estimate.worst.cost.wall_s == 180.0
    assert [c.label for c in estimate.expected][0] == "no effect"
    assert family_size("mine", trials) == 1
    # every seed gives the same mIoU: no noise to put the margin in units of
    margin = loop_design(mine, max_seeds=5, alpha=0.05, min_effect=1.0)
    estimate = estimate_study(store, mine, trials, resources, design=margin)
    assert estimate.expected == () and "needs the noise" in estimate.notes[0]
