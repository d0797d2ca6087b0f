"""GPU slots for local workers: which devices this runner may use and who holds them.

Pure logic apart from ``visible_gpus`` (the one place that asks CUDA, or the test seam)
and ``process_gpus`` (what a worker process records). ``ablate run --jobs N`` hands each
trial ``k`` whole devices (``gpus_per_trial``, at least 1) out of the runner's set; a
worker process gets them as ``CUDA_VISIBLE_DEVICES`` before torch initialises CUDA in it,
so it trains on ``cuda:0`` (and ``cuda:1``... under DistributedDataParallel). Devices are
per runner: claims decide which trial runs, slots only where on this machine.

With ``--trials-per-gpu K`` a device holds up to K one-device trials at once (each in
its own process; ``ablate.dispatch.sharing`` decides K from memory and keeps latency
timing exclusive): ``GpuSlots(gpus, places=K)`` hands a trial the device with the most
free places, so trials spread over the devices before they double up on one.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

from ablate.errors import UserInputError

# Test seam: comma-separated device names stand for that many CUDA devices (no CUDA is
# touched). Meant for tests and dry runs of the scheduler, never set by users.
FAKE_GPUS_ENV = "ABLATE_FAKE_GPUS"
VISIBLE_ENV = "CUDA_VISIBLE_DEVICES"
# set by the runner beside CUDA_VISIBLE_DEVICES: names are known where devices are counted
WORKER_NAMES_ENV = "ABLATE_WORKER_GPU_NAMES"
# Test seam beside ABLATE_FAKE_GPUS: every fake device's memory in GiB (unset: unknown)
FAKE_GPU_GIB_ENV = "ABLATE_FAKE_GPU_GIB"


@dataclass(frozen=True)
class Gpu:
    """One device as this runner sees it: ``index`` is its ``cuda:N`` ordinal here, ``id``
    what ``CUDA_VISIBLE_DEVICES`` names it by (the physical index, or a UUID / MIG id
    when the user or Slurm restricted the set that way)."""

    index: int
    id: str
    name: str
    memory_gib: float | None = None  # total device memory (None: unknown)


def device_ids(raw: str | None) -> list[str]:
    """The device ids a ``CUDA_VISIBLE_DEVICES`` value names, in the order CUDA numbers
    them (none for an unset or empty value)."""
    return [part.strip() for part in (raw or "").split(",") if part.strip()]


def _visible_ids(count: int) -> list[str]:
    """The ids of the first ``count`` visible devices: ``CUDA_VISIBLE_DEVICES`` entries
    when it is set (the order CUDA numbers them in), else 0..count-1."""
    raw = os.environ.get(VISIBLE_ENV)
    if raw is None:
        return [str(i) for i in range(count)]
    return device_ids(raw)[:count]


def visible_gpus() -> list[Gpu]:
    """The CUDA devices this process may use, in ``cuda:N`` order.

    ``$ABLATE_FAKE_GPUS`` (device names, comma-separated) replaces CUDA here and only
    here, so that tests schedule on machines they do not have. ``CUDA_VISIBLE_DEVICES``
    restricts either set, as it restricts CUDA (``3,5`` with two devices: ids 3 and 5).
    """
    fake = os.environ.get(FAKE_GPUS_ENV)
    if fake is not None:
        names = [n.strip() for n in fake.split(",") if n.strip()]
        gib = os.environ.get(FAKE_GPU_GIB_ENV)
        memory = [float(gib) if gib else None] * len(names)
    else:
        import torch  # lazy: loads torch

        if not torch.cuda.is_available():
            return []
        props = [torch.cuda.get_device_properties(i) for i in range(torch.cuda.device_count())]
        names = [p.name for p in props]
        memory = [p.total_memory / 2**30 for p in props]
    ids = _visible_ids(len(names))
    return [Gpu(i, gid, name, gib)
            for i, (gid, name, gib) in enumerate(zip(ids, names, memory, strict=False))]


def parse_gpus(text: str, visible: Sequence[Gpu]) -> list[Gpu]:
    """``--gpus 0,2,3``: indices into the visible devices (``cuda:N`` numbers, the physical
    ones unless ``CUDA_VISIBLE_DEVICES`` is set), distinct; ``all`` for every one."""
    if not visible:
        raise UserInputError("--gpus: no CUDA device is visible on this machine; leave "
                             "--gpus out to train on the CPU")
    allowed = f"comma-separated distinct indices 0..{len(visible) - 1} or 'all' " \
              f"({len(visible)} GPU(s) visible)"
    text = text.strip()
    if text == "all":
        return list(visible)
    parts = [p.strip() for p in text.split(",")]
    if not text or any(not p for p in parts):
        raise UserInputError(f"--gpus: {text!r} is empty or has an empty entry; allowed: {allowed}")
    picked: list[Gpu] = []
    for part in parts:
        if not part.isdigit():
            raise UserInputError(f"--gpus: {part!r} is not a GPU index; allowed: {allowed}")
        index = int(part)
        if index >= len(visible):
            raise UserInputError(f"--gpus: {index} is out of range; allowed: {allowed}")
        if visible[index] in picked:
            raise UserInputError(f"--gpus: {index} is given twice; allowed: {allowed}")
        picked.append(visible[index])
    return picked


class GpuSlots:
    """Free and held places on one runner's devices: ``places`` trials per device (1: a
    device is free or held). ``take(k)`` hands out ``k`` distinct devices with a free
    place, the ones with the most free places first and the lowest first among equals
    (or None when fewer have one); ``give_back`` frees their places. ``places`` may be
    lowered while trials run (a measured memory that fits fewer): held places stay held,
    no new trial starts beyond it."""

    def __init__(self, gpus: Sequence[Gpu], places: int = 1) -> None:
        self.gpus = list(gpus)
        self.places = max(1, places)
        self._held = {g: 0 for g in self.gpus}

    @property
    def free(self) -> int:
        """Devices with a free place: how many devices a trial could take now."""
        return sum(1 for g in self.gpus if self._held[g] < self.places)

    def held(self, gpu: Gpu) -> int:
        return self._held[gpu]

    def take(self, k: int) -> tuple[Gpu, ...] | None:
        open_ = [g for g in self.gpus if self._held[g] < self.places]
        if k > len(open_):
            return None
        taken = tuple(sorted(open_, key=lambda g: self._held[g])[:k])  # stable: lowest first
        for gpu in taken:
            self._held[gpu] += 1
        return tuple(sorted(taken, key=self.gpus.index))

    def give_back(self, gpus: Sequence[Gpu]) -> None:
        for n, gpu in enumerate(gpus):
            if gpu not in self._held or self._held[gpu] == 0 or gpu in gpus[:n]:
                raise ValueError(f"GPU {gpu.id} was not taken from these slots")
        for gpu in gpus:
            self._held[gpu] -= 1


def next_fitting(needs: Sequence[int], free: int) -> int | None:
    """Which pending trial starts next: the first (in study order) whose device count fits
    the free devices, so no device idles while some trial fits."""
    for n, need in enumerate(needs):
        if need <= free:
            return n
    return None


def simulate(needs: Sequence[int], seconds: Sequence[float], gpus: Sequence[Gpu],
             jobs: int, places: int = 1) -> list[tuple[float, float, int, tuple[str, ...]]]:
    """The packing ``LocalExecutor`` does, as a timeline: (start, end, trial, device ids)
    for trials needing ``needs[i]`` devices for ``seconds[i]``, at most ``jobs`` at once,
    ``places`` per device. For tests; the executor runs the same rules."""
    slots = GpuSlots(gpus, places)
    pending = list(range(len(needs)))
    running: list[tuple[float, int, tuple[Gpu, ...]]] = []
    trace: list[tuple[float, float, int, tuple[str, ...]]] = []
    now = 0.0
    while pending or running:
        while pending and len(running) < jobs:
            pick = next_fitting([needs[i] for i in pending], slots.free)
            if pick is None:
                break
            trial = pending.pop(pick)
            held = slots.take(needs[trial]) or ()
            running.append((now + seconds[trial], trial, held))
            trace.append((now, now + seconds[trial], trial, tuple(g.id for g in held)))
        if not running:
            raise ValueError("a trial needs more devices than there are")
        running.sort(key=lambda r: (r[0], r[1]))
        now, _, held = running.pop(0)
        slots.give_back(held)
    return sorted(trace)


def worker_environment(gpus: Sequence[Gpu]) -> dict[str, str]:
    """What a worker process is started with: only its own devices visible."""
    return {VISIBLE_ENV: ",".join(g.id for g in gpus)}


def process_gpus(device: str | None) -> dict[str, list[str]] | None:
    """Ids and names of the devices a trial in this process trained on, for its
    environment: the worker's ``CUDA_VISIBLE_DEVICES`` when a runner assigned them
    (``$ABLATE_WORKER_GPU_NAMES`` carries their names), else the current CUDA device."""
    assigned = os.environ.get(WORKER_NAMES_ENV)
    if assigned is not None and os.environ.get(VISIBLE_ENV) is not None:
        ids = device_ids(os.environ[VISIBLE_ENV])
        return {"ids": ids, "names": assigned.split(",")[:len(ids)]} if ids else None
    if not device or not device.startswith("cuda"):
        return None
    import torch  # lazy: loads torch

    index = torch.cuda.current_device()
    ids = _visible_ids(torch.cuda.device_count())
    return {"ids": [ids[index] if index < len(ids) else str(index)],
            "names": [torch.cuda.get_device_name(index)]}


def runner_gpus(option: str | None, per_trial_flag: int | None,
                recipe_per_trial: int) -> tuple[list[Gpu], int]:
    """``ablate run``'s devices (``--gpus``, else every visible one) and how many each
    trial takes (``--gpus-per-trial``, else the recipe's ``[slurm] gpus_per_trial``,
    at least 1). Checked before anything is recorded."""
    visible = visible_gpus()
    gpus = parse_gpus(option, visible) if option is not None else visible
    per_trial = max(1, per_trial_flag if per_trial_flag is not None else recipe_per_trial)
    if per_trial > len(gpus) and gpus:
        name = "--gpus-per-trial" if per_trial_flag is not None else "slurm.gpus_per_trial"
        raise UserInputError(f"{name}: {per_trial} but this runner has {len(gpus)} GPU(s); "
                             f"allowed: 1..{len(gpus)}")
    return gpus, per_trial
