"""Several trials per GPU (``ablate run --trials-per-gpu K``): how many fit, the gate each
device's trials share, and what each trial records about its neighbours. The CPU's
``--jobs`` workers share one such gate as well (``CpuPool``).

Small trials leave most of a GPU idle (the quick-start model at batch 1 is launch-bound),
so a runner may put up to K one-device trials on each device, each in its own worker
process. The device runs them side by side under CUDA MPS when the user started its
control daemon (``mps_running``), else by the driver's time-sharing; ablate starts
neither, it only records which.

- **How many fit.** A trial needs its memory (the recipe's ``[local] gpu_memory_gib``,
  else measured: the first trial on a device runs alone until its peak after a few
  steps is known, ``ablate.train.sharing.report_memory``) plus a CUDA context
  (``CONTEXT_GIB``), within ``HEADROOM`` of the device. A recipe value for which K do not
  fit is refused before anything runs (``check_fit``); a measured one lowers K to what
  fits, with one warning.
- **Latency.** ``DeviceGate`` is a cross-process gate per device: every training step
  and evaluation batch passes through it, and a trial timing its latency holds it alone
  (the others wait at their next step), so no shared trial publishes a latency timed
  while another trial's kernels ran (``ablate.train.sharing``).
- **Neighbours.** Each trial's environment records ``sharing``: the mode, K, and the ids
  of every trial that ran on its device while it did (``shared_with``), how its latency
  was timed.
"""

from __future__ import annotations

import contextlib
import math
import os
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ablate.dispatch.gpus import Gpu
from ablate.errors import UserInputError
from ablate.train import sharing as train_sharing
from ablate.train.sharing import TimingWindow

HEADROOM = 0.9  # share of a device's memory trials may plan to fill (allocator slack)
CONTEXT_GIB = 0.5  # a CUDA context and cuDNN/cuBLAS workspaces, per process
EXCLUSIVE_WAIT_S = 900.0  # longest a trial waits for its device to time latency alone
LIVENESS_S = 2.0  # a waiting trial looks this often whether the place it waits on died
MPS_PIPE_ENV = "CUDA_MPS_PIPE_DIRECTORY"
MPS_DEFAULT_PIPE = "/tmp/nvidia-mps"


def mps_running() -> bool:
    """Whether a CUDA MPS control daemon is running for this user: its control pipe
    exists in ``$CUDA_MPS_PIPE_DIRECTORY`` (default ``/tmp/nvidia-mps``). CUDA processes
    then connect to it by themselves."""
    return (Path(os.environ.get(MPS_PIPE_ENV) or MPS_DEFAULT_PIPE) / "control").exists()


def mode() -> str:
    return "mps" if mps_running() else "time-sharing"


def places_that_fit(device_gib: float, trial_gib: float) -> int:
    """Trials of ``trial_gib`` each (plus a context) within ``HEADROOM`` of a device."""
    return max(0, math.floor(device_gib * HEADROOM / (trial_gib + CONTEXT_GIB)))


def fitting_places(k: int, gpus: Sequence[Gpu], trial_gib: float | None) -> int:
    """Trials per device: ``k``, or fewer where ``trial_gib`` says fewer fit on the
    smallest device (at least 1: one trial per device always runs, as without sharing)."""
    sizes = [g.memory_gib for g in gpus if g.memory_gib is not None]
    if trial_gib is None or not sizes:
        return k
    return max(1, min(k, places_that_fit(min(sizes), trial_gib)))


def check_fit(k: int, gpus: Sequence[Gpu], trial_gib: float | None, name: str,
              source: str) -> None:
    """Refuse ``k`` trials per device (option or key ``name``) when k trials of
    ``trial_gib`` (from ``source``) do not fit on every device: one line naming both and
    how many do fit."""
    if trial_gib is None or k <= 1:
        return
    for gpu in gpus:
        if gpu.memory_gib is None:
            continue
        fits = places_that_fit(gpu.memory_gib, trial_gib)
        if fits < k:
            raise UserInputError(
                f"{name}: {k} trials of {trial_gib:g} GiB ({source}) + {CONTEXT_GIB:g} GiB "
                f"CUDA context each do not fit in {HEADROOM:.0%} of GPU {gpu.id} "
                f"({gpu.name}, {gpu.memory_gib:.1f} GiB); allowed: 1..{max(fits, 1)}")


def runner_sharing(option: int | None, recipe: Any, gpus: Sequence[Gpu],
                   gpus_per_trial: int) -> tuple[int, float | None]:
    """``ablate run``'s trials per device (``--trials-per-gpu``, else the recipe's
    ``[local] trials_per_gpu``) and memory per trial (``[local] gpu_memory_gib``, None:
    measured), checked before anything is recorded. A recipe's K on a machine without
    GPUs is moot (trials train on the CPU); the option there is refused."""
    local = recipe.local
    k = option if option is not None else local.trials_per_gpu
    name = "--trials-per-gpu" if option is not None else "local.trials_per_gpu"
    if k <= 1:
        return 1, local.gpu_memory_gib
    if not gpus:
        if option is not None:
            raise UserInputError("--trials-per-gpu: no CUDA device is visible on this "
                                 "machine; leave --trials-per-gpu out to train on the CPU")
        return 1, local.gpu_memory_gib
    if gpus_per_trial > 1:
        raise UserInputError(f"{name}: {k} with {gpus_per_trial} GPUs per trial; devices "
                             "are shared by one-GPU trials only; allowed: 1, or "
                             "--gpus-per-trial 1")
    check_fit(k, gpus, local.gpu_memory_gib, name,
              f"local.gpu_memory_gib in {recipe.path}")
    return k, local.gpu_memory_gib


# -- the gate ---------------------------------------------------------------------------------


class DeviceGate:
    """One device's gate, shared by the worker processes of its trials.

    Made by the runner with a multiprocessing context (its primitives travel to each
    worker as a ``Process`` argument); ``handle(place)`` is what one worker uses. Place
    ``i`` is one trial slot: ``busy[i]`` while its trial is inside a step, ``waiting[i]``
    while it waits to start one, ``owner`` the place timing latency alone (-1: none),
    ``peak_gib[i]`` its measured memory, ``pid[i]`` the process at it. Every change is
    announced on ``cond``. A waiting place looks every ``LIVENESS_S`` whether the process
    it waits on still lives: one killed inside a step or while timing (``kill -9``, the
    OOM killer, with no runner left to ``release`` it) holds nobody up.
    """

    def __init__(self, ctx: Any, places: int) -> None:
        self.places = places
        self.cond = ctx.Condition(ctx.Lock())
        self.busy = ctx.Array("b", places, lock=False)
        self.waiting = ctx.Array("b", places, lock=False)
        self.present = ctx.Array("b", places, lock=False)  # place i has a running trial
        self.owner = ctx.Value("i", -1, lock=False)
        self.peak_gib = ctx.Array("d", places, lock=False)
        self.pid = ctx.Array("i", places, lock=False)

    def handle(self, place: int, wait_s: float = EXCLUSIVE_WAIT_S) -> GateHandle:
        return GateHandle(self, place, wait_s)

    # runner side
    def occupy(self, place: int) -> None:
        with self.cond:
            self.present[place] = 1
            self.peak_gib[place] = 0.0
            self.pid[place] = 0

    def release(self, place: int) -> None:
        """The trial at ``place`` ended (or died): nothing of it may hold the others."""
        with self.cond:
            self.present[place] = self.busy[place] = self.waiting[place] = 0
            if self.owner.value == place:
                self.owner.value = -1
            self.cond.notify_all()

    def measured(self) -> list[float]:
        """Peak memory (GiB) reported by the trials now on the device (0: not yet)."""
        return [self.peak_gib[i] for i in range(self.places) if self.present[i]]


@dataclass
class GateHandle:
    """One worker's side of a ``DeviceGate`` (``ablate.train.sharing.Gate``)."""

    gate: DeviceGate
    place: int
    wait_s: float = EXCLUSIVE_WAIT_S

    @contextlib.contextmanager
    def step(self) -> Iterator[None]:
        gate = self.gate
        with gate.cond:
            gate.pid[self.place] = os.getpid()
            while gate.owner.value not in (-1, self.place):
                if not gate.waiting[self.place]:  # announced once, not at every wake-up
                    gate.waiting[self.place] = 1
                    gate.cond.notify_all()
                gate.cond.wait(timeout=LIVENESS_S)
                self._free_the_dead()
            gate.waiting[self.place] = 0
            gate.busy[self.place] = 1
        try:
            yield
        finally:
            if self._others_present():
                # its kernels must be done before a neighbour may time on the device;
                # while the device is shared the neighbours keep it busy meanwhile
                _synchronize()
            with gate.cond:
                gate.busy[self.place] = 0
                gate.cond.notify_all()

    @contextlib.contextmanager
    def exclusive(self) -> Iterator[TimingWindow]:
        gate, start = self.gate, time.monotonic()
        deadline = start + self.wait_s
        window = TimingWindow()
        with gate.cond:
            gate.pid[self.place] = os.getpid()
            while gate.owner.value not in (-1, self.place) and self._wait(deadline):
                pass
            if gate.owner.value in (-1, self.place):
                gate.owner.value = self.place
                gate.cond.notify_all()
                while self._others_busy() and self._wait(deadline):
                    pass
            if gate.owner.value != self.place or self._others_busy():
                if gate.owner.value == self.place:
                    gate.owner.value = -1
                    gate.cond.notify_all()
                window = TimingWindow(alone=False, reason=f"the device was not free within "
                                                          f"{self.wait_s:g} s")
        window.waited_s = round(time.monotonic() - start, 3)
        try:
            yield window
        finally:
            if window.alone:
                with gate.cond:
                    gate.owner.value = -1
                    gate.cond.notify_all()

    def memory(self, peak_gib: float) -> None:
        self.gate.peak_gib[self.place] = peak_gib

    def _others_busy(self) -> bool:
        return any(self.gate.busy[i] for i in range(self.gate.places) if i != self.place)

    def _others_present(self) -> bool:
        return any(self.gate.present[i] for i in range(self.gate.places) if i != self.place)

    def _wait(self, deadline: float) -> bool:
        """Wait for a change; False once ``deadline`` has passed."""
        left = deadline - time.monotonic()
        if left <= 0:
            return False
        self.gate.cond.wait(timeout=min(left, LIVENESS_S))
        self._free_the_dead()
        return True

    def _free_the_dead(self) -> None:
        """Clear the places whose process died (under ``cond``)."""
        gate = self.gate
        for i in range(gate.places):
            if i != self.place and gate.pid[i] and not _alive(gate.pid[i]):
                gate.busy[i] = gate.waiting[i] = gate.pid[i] = 0
                if gate.owner.value == i:
                    gate.owner.value = -1
                gate.cond.notify_all()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's: it exists
        return True
    return True


def _synchronize() -> None:
    import torch  # lazy: loads torch (a worker that trains has it loaded)

    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.synchronize()


# -- what a worker carries ----------------------------------------------------------------------


@dataclass
class WorkerShare:
    """What a trial's worker process gets from the runner about its shared device: the
    gate and its place, the trials already on the device, and an inbox where the runner
    posts the ids of trials that join later."""

    handle: GateHandle
    inbox: Any  # multiprocessing SimpleQueue of trial ids (None: CPU workers, not kept)
    neighbours: list[str] = field(default_factory=list)
    trials_per_gpu: int = 1
    mode: str = "time-sharing"


_worker: WorkerShare | None = None


def install(share: WorkerShare | None) -> None:
    """In a worker process, before training: its trials share the device (None: not)."""
    global _worker
    _worker = share
    train_sharing.install(share.handle if share is not None else None)


def environment_record() -> dict[str, Any] | None:
    """``environment.sharing`` of the trial this process trained (None: not shared)."""
    if _worker is None:
        return None
    if _worker.mode == CPU_MODE:
        record: dict[str, Any] = {"mode": CPU_MODE, "workers": _worker.trials_per_gpu}
    else:
        while not _worker.inbox.empty():
            _worker.neighbours.append(_worker.inbox.get())
        record = {"mode": _worker.mode, "trials_per_gpu": _worker.trials_per_gpu,
                  "shared_with": sorted(set(_worker.neighbours))}
    window = train_sharing.last_window()
    if window is not None:
        record["latency"] = "timed alone" if window.alone else f"withheld: {window.reason}"
        record["latency_wait_s"] = window.waited_s
        if window.withheld:
            record["latency_withheld"] = window.withheld
    return record


# -- CPU workers ------------------------------------------------------------------------------

CPU_MODE = "cpu workers"


class CpuPool:
    """``ablate run --jobs N`` on the CPU: N pool processes share the machine's cores, caches
    and memory bandwidth, and the runner's progress work runs beside them. A trial timing
    its latency holds the others at their next step or evaluation batch (the same
    ``DeviceGate`` as a shared GPU), so its figure is not slowed by a neighbour's training:
    without it, 2 workers on 2 cores read the quick-start's latencies 5-31% above the same
    models timed alone (docs/cluster.md). Each pool process takes a place as it starts
    (``join``); its trials get a ``WorkerShare`` from ``cpu_share``."""

    def __init__(self, ctx: Any, jobs: int) -> None:
        self.gate = DeviceGate(ctx, jobs)
        self.seats = ctx.Value("i", 0)

    def initargs(self) -> tuple[Any, ...]:
        return self.gate, self.seats


_cpu_seat: tuple[DeviceGate, int] | None = None


def join(gate: DeviceGate, seats: Any) -> None:
    """In a pool process's initializer: take the next free place at ``gate``."""
    global _cpu_seat
    with seats.get_lock():
        place = seats.value
        seats.value += 1
    _cpu_seat = (gate, place) if place < gate.places else None


@contextlib.contextmanager
def cpu_share() -> Iterator[WorkerShare | None]:
    """Around one trial in a pool process: its share of the CPU workers' gate (None: this
    process has no place, e.g. ``--jobs 1``); the place is left free when it ends."""
    if _cpu_seat is None:
        yield None
        return
    gate, place = _cpu_seat
    gate.occupy(place)
    try:
        yield WorkerShare(gate.handle(place), None, trials_per_gpu=gate.places, mode=CPU_MODE)
    finally:
        gate.release(place)


# -- the runner's side ------------------------------------------------------------------------


class RunnerSharing:
    """What ``LocalExecutor`` keeps while trials share devices: a gate per device, which
    trial is at which place, their inboxes, and how many fit (``slots.places``).

    With the memory per trial unknown (no ``[local] gpu_memory_gib``) on devices whose
    memory is known, a device takes one trial until a trial has measured its peak; then
    as many as fit, at most ``k`` (one warning when fewer than ``k``). Later, larger
    peaks (its evaluation, another configuration) lower it again.
    """

    def __init__(self, ctx: Any, gpus: Sequence[Gpu], k: int, trial_gib: float | None,
                 slots: Any) -> None:
        self.ctx, self.gpus, self.k, self.slots = ctx, list(gpus), k, slots
        self.gates = {g: DeviceGate(ctx, k) for g in self.gpus}
        self.where: dict[str, tuple[Gpu, int]] = {}
        self.inboxes: dict[str, Any] = {}
        self.given = trial_gib is not None
        self.peak_gib = trial_gib or 0.0
        self.mode = mode()
        self._warned = False
        unknown = not self.given and any(g.memory_gib is not None for g in self.gpus)
        slots.places = 1 if unknown else fitting_places(k, self.gpus, trial_gib)

    def start(self, trial_id: str, gpus: Sequence[Gpu]) -> WorkerShare:
        """Seat ``trial_id`` on its device (the first of ``gpus``); tell its neighbours."""
        gpu = gpus[0]
        gate = self.gates[gpu]
        taken = {p for g, p in self.where.values() if g == gpu}
        place = min(p for p in range(gate.places) if p not in taken)
        neighbours = sorted(t for t, (g, _) in self.where.items() if g == gpu)
        for other in neighbours:
            self.inboxes[other].put(trial_id)
        gate.occupy(place)
        self.where[trial_id] = (gpu, place)
        self.inboxes[trial_id] = self.ctx.SimpleQueue()
        return WorkerShare(gate.handle(place), self.inboxes[trial_id], neighbours, self.k,
                           self.mode)

    def end(self, trial_id: str, outcome: Any = None) -> None:
        """The trial left its device; its final peak memory (environment) counts too."""
        gpu, place = self.where.pop(trial_id)
        self.inboxes.pop(trial_id, None)
        self._note(self.gates[gpu].peak_gib[place])
        result = getattr(outcome, "result", None)
        environment = getattr(result, "environment", None) or {}
        self._note(environment.get("gpu_peak_memory_gib") or 0.0)
        self.gates[gpu].release(place)

    def poll(self) -> str | None:
        """Read the peaks the running trials reported; a warning (once) when fewer than
        ``k`` trials fit."""
        for gate in self.gates.values():
            for peak in gate.measured():
                self._note(peak)
        if self.given or self._warned or not self.peak_gib or self.slots.places >= self.k:
            return None
        self._warned = True
        return (f"--trials-per-gpu {self.k}: a trial measured {self.peak_gib:.1f} GiB of "
                f"GPU memory; {self.slots.places} fit per device (set [local] "
                f"gpu_memory_gib in the recipe to be refused before the run instead)")

    def _note(self, peak: float) -> None:
        if self.given or peak <= self.peak_gib:
            return
        self.peak_gib = peak
        self.slots.places = fitting_places(self.k, self.gpus, peak)
