"""GPU slots: each local worker its own devices, packing, --gpus, and claims on top.

CUDA is faked at its one seam (``ABLATE_FAKE_GPUS``, read by ``visible_gpus``): the
workers run on the CPU but get the ``CUDA_VISIBLE_DEVICES`` a GPU machine would give
them, and record it in their trial's environment.
"""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from ablate.cli import main
from ablate.dispatch.gpus import (
    FAKE_GPUS_ENV,
    VISIBLE_ENV,
    WORKER_NAMES_ENV,
    Gpu,
    GpuSlots,
    next_fitting,
    parse_gpus,
    process_gpus,
    simulate,
    visible_gpus,
    worker_environment,
)
from ablate.errors import UserInputError
from ablate.store import Store
from tests.conftest import TINY_RECIPE

H200 = "NVIDIA H200"
FOUR = [Gpu(i, str(i), H200) for i in range(4)]
# tiny trials that only train: n configurations of one epoch, no latency, no FLOPs
def trials_recipe(n: int, name: str) -> str:
    lrs = ", ".join(f"0.00{i + 1}" for i in range(n))
    return TINY_RECIPE.replace('name = "tiny"', f'name = "{name}"').replace(
        '"model.keep_last_expansion" = [true, false]', f'"train.lr" = [{lrs}]').replace(
        "[base.eval]", "[base.eval]\nlatency = false\nflops = false").replace(
        'head = "deeplabv3plus"', 'head = "deeplabv3plus"\naspp_channels = 32').replace(
        "val_images = 8", "val_images = 8\nworkers = 0")


def overlapping(spans: list[tuple[float, float]]) -> int:
    """The most spans running at one instant."""
    points = sorted([(s, 1) for s, _ in spans] + [(e, -1) for _, e in spans])
    most = now = 0
    for _, step in points:
        now += step
        most = max(most, now)
    return most


# -- pure logic -----------------------------------------------------------------------------

def test_slots_hand_out_free_devices_and_take_them_back():
    slots = GpuSlots(FOUR)
    a = slots.take(2)
    b = slots.take(1)
    assert [g.id for g in a] == ["0", "1"] and [g.id for g in b] == ["2"]
    assert slots.take(2) is None and slots.free == 1  # one left: a 2-GPU trial waits
    slots.give_back(a)
    assert [g.id for g in slots.take(3)] == ["0", "1", "3"]
    with pytest.raises(ValueError):
        slots.give_back(b + b)  # given back twice


def test_the_first_pending_trial_that_fits_starts():
    assert next_fitting([2, 2, 1], free=1) == 2  # a 1-GPU trial fills the idle device
    assert next_fitting([2, 1], free=2) == 0
    assert next_fitting([3], free=2) is None


def test_two_gpu_trials_on_four_gpus_run_two_at_a_time():
    trace = simulate([2] * 5, [10, 12, 10, 8, 5], FOUR, jobs=8)
    assert sorted(t for _, _, t, _ in trace) == [0, 1, 2, 3, 4]
    assert overlapping([(s, e) for s, e, _, _ in trace]) == 2
    for (s1, e1, _, d1), (s2, e2, _, d2) in itertools.combinations(trace, 2):
        assert len(d1) == len(d2) == 2
        if s1 < e2 and s2 < e1:  # running together: never on one device
            assert not set(d1) & set(d2)
    # no device idles while a trial waits: each next trial starts when a pair frees up
    assert [(s, d) for s, _, _, d in trace] == [
        (0, ("0", "1")), (0, ("2", "3")), (10, ("0", "1")), (12, ("2", "3")), (20, ("0", "1"))]


def test_jobs_caps_the_trials_running_at_once():
    trace = simulate([1] * 4, [1, 1, 1, 1], FOUR, jobs=2)
    assert overlapping([(s, e) for s, e, _, _ in trace]) == 2


def test_visible_devices_follow_cuda_visible_devices(monkeypatch):
    monkeypatch.setenv(FAKE_GPUS_ENV, f"{H200},{H200}")
    monkeypatch.delenv(VISIBLE_ENV, raising=False)
    assert [g.id for g in visible_gpus()] == ["0", "1"]
    monkeypatch.setenv(VISIBLE_ENV, "3,5")  # a user's or Slurm's restriction
    gpus = visible_gpus()
    assert [(g.index, g.id, g.name) for g in gpus] == [(0, "3", H200), (1, "5", H200)]
    assert [worker_environment([g])[VISIBLE_ENV] for g in gpus] == ["3", "5"]
    assert worker_environment(gpus) == {VISIBLE_ENV: "3,5"}
    assert [g.id for g in parse_gpus("1", gpus)] == ["5"]  # --gpus counts visible devices


@pytest.mark.parametrize("visible", ["2,3", "2, 3", " 2 ,3 ", "2,,3,"])
def test_every_reader_of_cuda_visible_devices_names_the_same_devices(monkeypatch, visible):
    """The runner's slots, a worker's recorded devices, the devices of its local ranks and
    of a Slurm trial's tasks all read the value as ``device_ids`` does (spaces dropped)."""
    from ablate.dispatch.ranks import rank_devices
    from ablate.dispatch.slurm import task_device

    monkeypatch.setenv(FAKE_GPUS_ENV, f"{H200},{H200}")
    monkeypatch.setenv(VISIBLE_ENV, visible)
    monkeypatch.setenv(WORKER_NAMES_ENV, f"{H200},{H200}")
    assert [g.id for g in visible_gpus()] == ["2", "3"]
    assert process_gpus("cuda:0") == {"ids": ["2", "3"], "names": [H200, H200]}
    assert rank_devices(visible, 2) == ["2", "3"]
    assert [task_device(visible, rank) for rank in (0, 1)] == ["2", "3"]


@pytest.mark.parametrize("text,needle", [
    ("0,x", "'x' is not a GPU index"),
    ("0,0", "0 is given twice"),
    ("4", "4 is out of range"),
    ("", "is empty"),
    ("1,", "empty entry"),
    ("-1", "'-1' is not a GPU index"),
])
def test_bad_gpus_values_are_refused(text, needle):
    with pytest.raises(UserInputError, match=needle) as err:
        parse_gpus(text, FOUR)
    assert "allowed: comma-separated distinct indices 0..3 or 'all'" in str(err.value)


# -- the command line ---------------------------------------------------------------------

@pytest.mark.parametrize("gpus,fake,needle", [
    ("0", None, "--gpus: no CUDA device is visible on this machine"),
    ("0,7", f"{H200},{H200}", "--gpus: 7 is out of range"),
    ("1,1", f"{H200},{H200}", "--gpus: 1 is given twice"),
    ("0;1", f"{H200},{H200}", "--gpus: '0;1' is not a GPU index"),
    ("", f"{H200},{H200}", "--gpus: '' is empty"),
])
def test_bad_gpus_option_is_one_line_exit_2_and_records_nothing(
        tmp_path, monkeypatch, gpus, fake, needle):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # this machine has none
    monkeypatch.delenv(VISIBLE_ENV, raising=False)
    if fake is None:
        monkeypatch.delenv(FAKE_GPUS_ENV, raising=False)
    else:
        monkeypatch.setenv(FAKE_GPUS_ENV, fake)
    recipe = tmp_path / "r.toml"
    recipe.write_text(trials_recipe(2, "g"))
    db = tmp_path / "x.db"
    result = CliRunner().invoke(main, ["run", str(recipe), "--db", str(db), "--gpus", gpus])
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0], result.output
    assert "Traceback" not in result.output and not db.exists()


def test_more_gpus_per_trial_than_gpus_is_refused(tmp_path, monkeypatch):
    monkeypatch.setenv(FAKE_GPUS_ENV, f"{H200},{H200}")
    recipe = tmp_path / "r.toml"
    recipe.write_text(trials_recipe(2, "g"))
    result = CliRunner().invoke(main, ["run", str(recipe), "--db", str(tmp_path / "x.db"),
                                       "--gpus-per-trial", "3"])
    assert result.exit_code == 2
    assert "--gpus-per-trial: 3 but this runner has 2 GPU(s); allowed: 1..2" in result.output


def test_gpus_with_slurm_is_refused(tmp_path):
    recipe = tmp_path / "r.toml"
    recipe.write_text(trials_recipe(2, "g"))
    result = CliRunner().invoke(main, ["run", str(recipe), "--db", str(tmp_path / "x.db"),
                                       "--executor", "slurm", "--gpus", "0"])
    assert result.exit_code == 2 and "--gpus: only with --executor local" in result.output


# -- real runs on fake GPUs ---------------------------------------------------------------

def ablate_run(recipe: Path, db: Path, runs: Path, fake: str, *extra: str,
               visible: str | None = None) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1", FAKE_GPUS_ENV: fake}
    env.pop(VISIBLE_ENV, None)
    if visible is not None:
        env[VISIBLE_ENV] = visible
    return subprocess.Popen(
        [sys.executable, "-m", "ablate", "run", str(recipe), "--db", f"sqlite:///{db}",
         "--runs-dir", str(runs), *extra], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True, env=env)


def packing(records) -> list[str]:
    """Which trial ran on which device, when (seconds from the first start)."""
    t0 = min(r.started_at for r in records)
    rows = sorted(records, key=lambda r: r.started_at)
    return [f"{(r.started_at - t0).total_seconds():6.1f}s-{(r.finished_at - t0).total_seconds():6.1f}s "
            f"GPU {','.join(r.environment['gpus'])} pid {r.environment['pid']} {r.name}"
            for r in rows]


@pytest.mark.slow
def test_four_workers_on_four_gpus_each_see_one_distinct_device(tmp_path):
    recipe = tmp_path / "four.toml"
    recipe.write_text(trials_recipe(4, "four"))
    db = tmp_path / "four.db"
    proc = ablate_run(recipe, db, tmp_path / "runs", ",".join([H200] * 4), "--jobs", "4")
    out = proc.communicate(timeout=300)[0]
    assert proc.returncode == 0, out
    records = Store(f"sqlite:///{db}").trials("four")
    assert len(records) == 4 and {r.status for r in records} == {"done"}
    seen = [r.environment["cuda_visible_devices"] for r in records]
    assert sorted(seen) == ["0", "1", "2", "3"], seen  # one device each, all different
    assert all(r.environment["gpus"] == [r.environment["cuda_visible_devices"]]
               and r.environment["gpu_names"] == [H200] for r in records)
    assert len({r.environment["pid"] for r in records}) == 4  # a fresh process per trial
    print("\n".join(["packing, 4 one-GPU trials, --jobs 4, 4 fake GPUs:", *packing(records)]))


@pytest.mark.slow
def test_workers_get_the_devices_cuda_visible_devices_names(tmp_path):
    recipe = tmp_path / "two.toml"
    recipe.write_text(trials_recipe(2, "two"))
    db = tmp_path / "two.db"
    proc = ablate_run(recipe, db, tmp_path / "runs", f"{H200},{H200}", "--jobs", "2",
                      visible="3,5")
    out = proc.communicate(timeout=300)[0]
    assert proc.returncode == 0, out
    records = Store(f"sqlite:///{db}").trials("two")
    assert sorted(r.environment["cuda_visible_devices"] for r in records) == ["3", "5"]
    assert sorted(r.environment["gpus"][0] for r in records) == ["3", "5"]


@pytest.mark.slow
def test_two_gpu_trials_run_two_at_a_time_with_ddp(tmp_path):
    recipe = tmp_path / "pairs.toml"
    recipe.write_text(trials_recipe(3, "pairs"))
    db = tmp_path / "pairs.db"
    proc = ablate_run(recipe, db, tmp_path / "runs", ",".join([H200] * 4), "--jobs", "4",
                      "--gpus-per-trial", "2")
    out = proc.communicate(timeout=400)[0]
    assert proc.returncode == 0, out
    records = Store(f"sqlite:///{db}").trials("pairs")
    assert {r.status for r in records} == {"done"}, [r.error for r in records]
    assert all(r.environment["ddp_ranks"] == 2 for r in records)  # one process per device
    pairs = [tuple(r.environment["gpus"]) for r in records]
    assert set(pairs) <= {("0", "1"), ("2", "3")}, pairs
    spans = [(r.started_at, r.finished_at) for r in records]
    assert overlapping(spans) <= 2  # four devices: two 2-GPU trials at a time
    for a, b in itertools.combinations(records, 2):
        if a.started_at < b.finished_at and b.started_at < a.finished_at:
            assert a.environment["gpus"] != b.environment["gpus"]
    print("\n".join(["packing, 3 two-GPU trials, --jobs 4, 4 fake GPUs:", *packing(records)]))


@pytest.mark.slow
def test_two_runners_with_gpu_slots_train_each_trial_once(tmp_path):
    from tests.dispatch.test_claims import claims, took

    recipe = tmp_path / "claimed.toml"
    recipe.write_text(trials_recipe(4, "claimed"))
    db = tmp_path / "claimed.db"
    runs = tmp_path / "runs"
    procs = [ablate_run(recipe, db, runs, f"{H200},{H200}", "--jobs", "2") for _ in range(2)]
    outputs = [p.communicate(timeout=400)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outputs
    records = Store(f"sqlite:///{db}").trials("claimed")
    assert {r.status for r in records} == {"done"}
    log = claims([runs], "claimed")
    assert sorted(log) == sorted(r.trial_id for r in records)
    assert all(len(lines) == 1 for lines in log.values()), log  # trained once each
    assert sum(took(o) for o in outputs) == 4
    assert all(r.environment["cuda_visible_devices"] in ("0", "1") for r in records)


def test_more_jobs_than_gpu_slots_says_how_many_run_at_once(tmp_path, monkeypatch):
    monkeypatch.setenv(FAKE_GPUS_ENV, f"{H200},{H200}")
    monkeypatch.delenv(VISIBLE_ENV, raising=False)
    recipe = tmp_path / "r.toml"  # a missing data root stops it right after the warning
    recipe.write_text(trials_recipe(2, "g").replace('name = "shapes"',
                                                    'name = "voc2012"\nroot = "nowhere"'))
    result = CliRunner().invoke(main, ["run", str(recipe), "--db", str(tmp_path / "x.db"),
                                       "--jobs", "4"])
    assert "Warning: --jobs 4: 2 GPU(s), 1 per trial: at most 2 trial(s) at a time" in result.output
    assert result.exit_code == 2 and not (tmp_path / "x.db").exists()
