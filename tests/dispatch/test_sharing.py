"""Several trials per GPU: packing, memory refusal, the latency gate, and what each trial
records, on fake GPUs (``ABLATE_FAKE_GPUS``; the trials train on the CPU)."""

from __future__ import annotations

import contextlib
import itertools
import multiprocessing as mp
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from click.testing import CliRunner

from ablate.cli import main
from ablate.dispatch import sharing
from ablate.dispatch.gpus import (
    FAKE_GPU_GIB_ENV,
    FAKE_GPUS_ENV,
    VISIBLE_ENV,
    Gpu,
    GpuSlots,
    simulate,
    visible_gpus,
)
from ablate.errors import UserInputError
from ablate.store import Store
from ablate.train import sharing as train_sharing
from tests.dispatch.test_gpus import H200, ablate_run, overlapping, packing, trials_recipe

TRIAL_HOOKS = Path(__file__).parent / "trialhooks"

CTX = mp.get_context("spawn")
TWO = [Gpu(0, "0", H200, 139.8), Gpu(1, "1", H200, 139.8)]


# -- packing ----------------------------------------------------------------------------------

def test_places_spread_trials_over_devices_before_doubling_up():
    slots = GpuSlots(TWO, places=2)
    taken = [slots.take(1) for _ in range(5)]
    assert [t[0].id if t else None for t in taken] == ["0", "1", "0", "1", None]
    assert slots.free == 0 and slots.held(TWO[0]) == 2
    slots.give_back(taken[2])
    assert slots.free == 1 and slots.take(1) == (TWO[0],)
    slots.places = 1  # a measured memory that fits fewer: held places stay held
    slots.give_back(taken[0])
    assert slots.free == 0 and slots.take(1) is None  # device 0 still holds one
    with pytest.raises(ValueError):
        GpuSlots(TWO, places=2).give_back([TWO[0]])  # never taken


def test_k_trials_per_device_run_at_once_never_more():
    trace = simulate([1] * 6, [10, 10, 10, 10, 4, 4], TWO, jobs=8, places=2)
    assert overlapping([(s, e) for s, e, _, _ in trace]) == 4
    for gpu in ("0", "1"):
        assert overlapping([(s, e) for s, e, _, d in trace if d == (gpu,)]) == 2
    # trials 0-3 start at once, two per device; 4 and 5 each take the place of the
    # first to end (trial 0 on device 0, then trial 1 on device 1)
    assert [(s, t, d) for s, _, t, d in trace] == [
        (0, 0, ("0",)), (0, 1, ("1",)), (0, 2, ("0",)), (0, 3, ("1",)), (10, 4, ("0",)),
        (10, 5, ("1",))]


# -- memory -----------------------------------------------------------------------------------

def test_how_many_trials_fit_in_a_device():
    # 90 % of 80 GiB = 72 GiB; each trial its memory + 0.5 GiB context
    assert sharing.places_that_fit(80.0, 17.5) == 4  # 72 / 18
    assert sharing.places_that_fit(80.0, 22.0) == 3  # 72 / 22.5
    assert sharing.places_that_fit(16.0, 40.0) == 0
    assert sharing.fitting_places(4, [Gpu(0, "0", "A", 80.0)], 22.0) == 3
    assert sharing.fitting_places(4, [Gpu(0, "0", "A", 80.0)], None) == 4  # measured later
    assert sharing.fitting_places(4, [Gpu(0, "0", "A", None)], 22.0) == 4  # size unknown
    assert sharing.fitting_places(4, [Gpu(0, "0", "A", 16.0)], 40.0) == 1  # one always runs
    with pytest.raises(UserInputError) as err:
        sharing.check_fit(4, [Gpu(0, "0", "H100", 80.0)], 22.0, "--trials-per-gpu", "r.toml")
    assert str(err.value) == (
        "--trials-per-gpu: 4 trials of 22 GiB (r.toml) + 0.5 GiB CUDA context each do not "
        "fit in 90% of GPU 0 (H100, 80.0 GiB); allowed: 1..3")


def _recipe(tmp_path, memory: float | None = None, k: int | None = None):
    text = trials_recipe(2, "shared")
    if memory is not None or k is not None:
        text += "\n[local]\n" + (f"gpu_memory_gib = {memory}\n" if memory else "") + (
            f"trials_per_gpu = {k}\n" if k else "")
    path = tmp_path / "r.toml"
    path.write_text(text)
    return path


@pytest.mark.parametrize("memory,args,fake,needle", [
    (6, ["--trials-per-gpu", "3"], H200,
     "--trials-per-gpu: 3 trials of 6 GiB (local.gpu_memory_gib in {recipe}) + 0.5 GiB CUDA "
     "context each do not fit in 90% of GPU 0 (NVIDIA H200, 16.0 GiB); allowed: 1..2"),
    (None, ["--trials-per-gpu", "2", "--gpus-per-trial", "2"], f"{H200},{H200}",
     "--trials-per-gpu: 2 with 2 GPUs per trial; devices are shared by one-GPU trials only; "
     "allowed: 1, or --gpus-per-trial 1"),
    (None, ["--trials-per-gpu", "2"], None,
     "--trials-per-gpu: no CUDA device is visible on this machine; leave --trials-per-gpu "
     "out to train on the CPU"),
    (None, ["--trials-per-gpu", "2", "--executor", "slurm"], H200,
     "--trials-per-gpu: only with --executor local"),
])
def test_trials_that_cannot_share_are_refused_in_one_line_before_anything_is_recorded(
        tmp_path, monkeypatch, memory, args, fake, needle):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.delenv(VISIBLE_ENV, raising=False)
    monkeypatch.setenv(FAKE_GPU_GIB_ENV, "16")
    if fake is None:
        monkeypatch.delenv(FAKE_GPUS_ENV, raising=False)
    else:
        monkeypatch.setenv(FAKE_GPUS_ENV, fake)
    recipe = _recipe(tmp_path, memory)
    db = tmp_path / "x.db"
    result = CliRunner().invoke(main, ["run", str(recipe), "--db", str(db), *args])
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert lines == [f"Error: {needle.format(recipe=recipe)}"], result.output
    assert not db.exists()


def test_the_recipe_key_refuses_as_the_option_does(tmp_path, monkeypatch):
    monkeypatch.setenv(FAKE_GPUS_ENV, H200)
    monkeypatch.setenv(FAKE_GPU_GIB_ENV, "16")
    recipe = _recipe(tmp_path, memory=6, k=3)
    result = CliRunner().invoke(main, ["run", str(recipe), "--db", str(tmp_path / "x.db")])
    assert result.exit_code == 2
    assert "local.trials_per_gpu: 3 trials of 6 GiB" in result.output
    assert "allowed: 1..2" in result.output


def test_fake_gpus_carry_the_memory_the_seam_gives(monkeypatch):
    monkeypatch.setenv(FAKE_GPUS_ENV, f"{H200},{H200}")
    monkeypatch.setenv(FAKE_GPU_GIB_ENV, "139.8")
    monkeypatch.delenv(VISIBLE_ENV, raising=False)
    assert [g.memory_gib for g in visible_gpus()] == [139.8, 139.8]
    monkeypatch.delenv(FAKE_GPU_GIB_ENV)
    assert [g.memory_gib for g in visible_gpus()] == [None, None]


def test_a_first_trial_runs_alone_until_its_memory_is_measured():
    gpus = [Gpu(0, "0", "A100", 40.0)]
    slots = GpuSlots(gpus)
    runner = sharing.RunnerSharing(CTX, gpus, 4, None, slots)
    assert slots.places == 1  # memory unknown on a device of known size
    first = runner.start("a", slots.take(1))
    assert runner.poll() is None and slots.places == 1  # nothing measured yet
    first.handle.memory(7.5)  # the trial's peak after its first steps
    assert runner.poll() is None  # 36 GiB / 8 GiB: all 4 fit, no warning
    assert slots.places == 4
    second = runner.start("b", slots.take(1))
    second.handle.memory(11.5)  # a larger configuration: 36 / 12 = 3 fit
    assert runner.poll() == ("--trials-per-gpu 4: a trial measured 11.5 GiB of GPU memory; "
                             "3 fit per device (set [local] gpu_memory_gib in the recipe to "
                             "be refused before the run instead)")
    assert slots.places == 3 and runner.poll() is None  # warned once
    runner.end("a")
    runner.end("b")


def test_a_given_memory_needs_no_first_trial():
    gpus = [Gpu(0, "0", "A100", 40.0)]
    slots = GpuSlots(gpus)
    runner = sharing.RunnerSharing(CTX, gpus, 4, 11.5, slots)
    assert slots.places == 3
    runner.start("a", slots.take(1)).handle.memory(30.0)  # the recipe's figure governs
    assert runner.poll() is None and slots.places == 3


# -- neighbours -------------------------------------------------------------------------------

def test_each_trial_records_every_trial_that_shared_its_device():
    gpus = [Gpu(0, "0", H200, None)]
    slots = GpuSlots(gpus)
    runner = sharing.RunnerSharing(CTX, gpus, 2, None, slots)
    a = runner.start("a", slots.take(1))
    b = runner.start("b", slots.take(1))  # joins a
    runner.end("a")
    slots.give_back(gpus)
    c = runner.start("c", slots.take(1))  # joins b after a left
    try:
        records = {}
        for name, share in (("a", a), ("b", b), ("c", c)):
            sharing.install(share)
            records[name] = sharing.environment_record()
    finally:
        sharing.install(None)
    assert records["a"]["shared_with"] == ["b"]
    assert records["b"]["shared_with"] == ["a", "c"]
    assert records["c"]["shared_with"] == ["b"]
    assert records["b"]["mode"] == "time-sharing" and records["b"]["trials_per_gpu"] == 2
    assert sharing.environment_record() is None  # not shared: nothing recorded


def test_mps_is_detected_by_its_control_pipe(tmp_path, monkeypatch):
    monkeypatch.setenv(sharing.MPS_PIPE_ENV, str(tmp_path))
    assert sharing.mode() == "time-sharing"
    (tmp_path / "control").touch()  # nvidia-cuda-mps-control -d makes it
    assert sharing.mode() == "mps"


# -- latency is never timed while the device is shared ----------------------------------------

def _gate(places: int = 2) -> sharing.DeviceGate:
    gate = sharing.DeviceGate(CTX, places)
    for place in range(places):
        gate.occupy(place)
    return gate


def _until(gate: sharing.DeviceGate, ready) -> None:
    """Block until ``ready()`` holds; the gate announces every change on its condition."""
    with gate.cond:
        while not ready():
            gate.cond.wait(timeout=5)


def test_latency_timing_waits_for_a_neighbours_step_to_end():
    gate = _gate()
    log: list[str] = []
    windows = []

    def time_latency():
        with gate.handle(1).exclusive() as window:
            log.append("timing")
            windows.append(window)

    with gate.handle(0).step():
        timer = threading.Thread(target=time_latency)
        timer.start()
        _until(gate, lambda: gate.owner.value == 1)  # it claimed the device, and waits
        log.append("step ends")
    timer.join(timeout=120)
    assert log == ["step ends", "timing"]
    assert windows[0].alone


def test_a_neighbours_step_waits_while_latency_is_timed():
    gate = _gate()
    log: list[str] = []

    def step():
        with gate.handle(0).step():
            log.append("step")

    with gate.handle(1).exclusive() as window:
        assert window.alone
        stepper = threading.Thread(target=step)
        stepper.start()
        _until(gate, lambda: gate.waiting[0] == 1)  # it reached the gate and waits
        log.append("timing done")
    stepper.join(timeout=120)
    assert log == ["timing done", "step"]


def test_a_device_never_free_withholds_the_latency():
    gate = _gate()
    with gate.handle(0).step():  # a neighbour that does not leave its step
        with gate.handle(1, wait_s=0.05).exclusive() as window:
            figures = {"latency_ms": 3.7, "latency_ms@eager/bs1": 3.7, "miou": 0.5,
                       "parity_ok@compile": 1.0}
            published = train_sharing.publishable(figures, window)
    assert not window.alone and window.reason == "the device was not free within 0.05 s"
    assert published == {"miou": 0.5, "parity_ok@compile": 1.0}
    assert window.withheld == {"latency_ms": 3.7, "latency_ms@eager/bs1": 3.7}
    assert gate.owner.value == -1  # others are not held off by a timing that gave up


def test_a_trial_that_dies_while_timing_frees_its_neighbours():
    gate = _gate()
    gate.owner.value = 1  # died inside exclusive()
    gate.busy[1] = 1
    gate.release(1)  # the runner, on its death
    with gate.handle(0).step():
        pass
    assert gate.owner.value == -1 and gate.busy[1] == 0


@pytest.mark.slow  # spawns a process that imports this module
def test_a_neighbour_killed_while_timing_holds_no_step_up():
    gate = _gate()  # no runner left to release its place (it was killed too)
    proc = CTX.Process(target=_die_inside, args=(gate.handle(1), "exclusive"))
    proc.start()
    proc.join(timeout=120)
    assert proc.exitcode == 3 and gate.owner.value == 1
    stepped = threading.Event()

    def step():
        with gate.handle(0).step():
            stepped.set()

    threading.Thread(target=step, daemon=True).start()
    assert stepped.wait(timeout=120)  # it found the owner dead, not waiting forever
    assert gate.owner.value == -1


@pytest.mark.slow  # spawns a process that imports this module
def test_a_neighbour_killed_inside_a_step_lets_latency_be_timed_alone():
    gate = _gate()
    proc = CTX.Process(target=_die_inside, args=(gate.handle(0), "step"))
    proc.start()
    proc.join(timeout=120)
    assert proc.exitcode == 3 and gate.busy[0] == 1
    with gate.handle(1, wait_s=60).exclusive() as window:  # else it waited all 60 s
        pass
    assert window.alone and gate.busy[0] == 0


def _die_inside(handle, where: str) -> None:
    with getattr(handle, where)():
        os._exit(3)  # killed: no finally runs


def test_cpu_workers_take_one_place_each_and_record_how_latency_was_timed():
    pool = sharing.CpuPool(CTX, 2)
    places = []
    try:
        for _ in range(3):  # a third process (none with --jobs 2) gets no place
            sharing.join(*pool.initargs())
            with sharing.cpu_share() as share:
                places.append(None if share is None else share.handle.place)
                if share is not None:
                    assert pool.gate.present[share.handle.place] == 1
                    sharing.install(share)
                    with train_sharing.alone_on_device():
                        pass
                    record = sharing.environment_record()
                    assert record["mode"] == "cpu workers" and record["workers"] == 2
                    assert record["latency"] == "timed alone"
        assert places == [0, 1, None]
        assert list(pool.gate.present) == [0, 0]  # each place left free after its trial
    finally:
        sharing.install(None)
        sharing._cpu_seat = None


@pytest.mark.slow
def test_two_trials_share_one_gpu_and_time_latency_alone(tmp_path, monkeypatch):
    # each trial waits at its first step for the other (trialhooks/sitecustomize.py): they
    # overlap because the runner started both, not because both processes loaded torch
    # equally fast (a loaded machine starts one seconds after the other, past its end)
    meet = tmp_path / "meet"
    meet.mkdir()
    monkeypatch.setenv("ABLATE_TEST_RENDEZVOUS", f"{meet}:2")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(
        [str(TRIAL_HOOKS), os.environ.get("PYTHONPATH", "")]))
    recipe = tmp_path / "shared.toml"
    recipe.write_text(trials_recipe(2, "shared").replace(
        "[base.eval]\nlatency = false", "[base.eval]\nlatency = true"))
    db = tmp_path / "shared.db"
    proc = ablate_run(recipe, db, tmp_path / "runs", H200, "--trials-per-gpu", "2")
    out = proc.communicate(timeout=400)[0]
    assert proc.returncode == 0, out
    records = Store(f"sqlite:///{db}").trials("shared")
    assert {r.status for r in records} == {"done"}, [r.error for r in records]
    a, b = records
    assert a.started_at < b.finished_at and b.started_at < a.finished_at  # side by side
    assert sorted(p.name for p in meet.iterdir()) == sorted(r.trial_id for r in records)
    assert {r.environment["cuda_visible_devices"] for r in records} == {"0"}
    assert a.environment["pid"] != b.environment["pid"]  # each in its own process
    for this, other in itertools.permutations(records):
        record = this.environment["sharing"]
        assert record["shared_with"] == [other.trial_id]
        assert record["mode"] == "time-sharing" and record["trials_per_gpu"] == 2
        assert record["latency"] == "timed alone"
        assert this.metrics["latency_ms"] > 0  # published: the device was its own
    print("\n".join(["packing, 2 trials, --trials-per-gpu 2, 1 fake GPU:", *packing(records)]))


@pytest.mark.slow  # spawns a process that imports this module
def test_the_gate_travels_to_a_spawned_worker(tmp_path):
    gate = _gate(places=1)
    proc = CTX.Process(target=_measure_in_child, args=(gate.handle(0),))
    proc.start()
    proc.join(timeout=120)
    assert proc.exitcode == 0 and gate.measured() == [6.25]


def _measure_in_child(handle) -> None:
    with handle.step():
        handle.memory(6.25)


def test_a_trial_without_a_gate_times_alone_and_publishes():
    train_sharing.install(None)
    with train_sharing.alone_on_device() as window:
        pass
    assert window.alone and train_sharing.publishable({"latency_ms": 1.0}, window) == {
        "latency_ms": 1.0}
    assert train_sharing.last_window() is None  # nothing to record without sharing


def test_sharing_needs_no_torch_in_the_runner():
    code = ("import sys; import ablate.dispatch.sharing, ablate.dispatch.local; "
            "sys.exit('torch' in sys.modules)")
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


class CountingGate:
    """A gate that counts the device work passing through it and never gets the device
    alone (a neighbour that always computes)."""

    def __init__(self) -> None:
        self.steps, self.peaks = 0, []

    @contextlib.contextmanager
    def step(self):
        self.steps += 1
        yield

    @contextlib.contextmanager
    def exclusive(self):
        yield train_sharing.TimingWindow(alone=False, reason="a neighbour never paused")

    def memory(self, peak_gib: float) -> None:
        self.peaks.append(peak_gib)


@pytest.mark.slow
def test_the_trainer_passes_every_step_through_the_gate_and_withholds_shared_latency(
        tmp_path):
    from ablate.recipes.schema import TrialSpec
    from ablate.train.loop import train_and_evaluate

    spec = TrialSpec.model_validate({
        "model": {"backbone": "mobilenet_v3_small", "head": "deeplabv3plus",
                  "aspp_channels": 32, "bn_momentum": 0.1},
        "data": {"name": "shapes", "classes": 3, "image_size": 32, "train_images": 16,
                 "val_images": 8},
        "train": {"epochs": 1, "batch_size": 8, "device": "cpu"},
        "eval": {"batch_size": 8, "latency_runs": 2, "latency_warmup": 1, "flops": False}})
    gate = CountingGate()
    train_sharing.install(gate)
    try:
        outcome = train_and_evaluate(spec, tmp_path)
        window = train_sharing.last_window()
    finally:
        train_sharing.install(None)
    assert gate.steps == 2 + 1  # two training steps, one evaluation batch
    assert gate.peaks == []  # the CPU reports no device memory
    assert not any(k.startswith("latency_ms") for k in outcome["final"])
    assert window.withheld["latency_ms"] > 0 and not window.alone
    assert "miou" in outcome["final"]
