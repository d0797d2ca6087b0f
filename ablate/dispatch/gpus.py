"""GPU slots for local workers: which devices this runner may use and who holds them.

Pure logic apart from ``visible_gpus`` (the one place that asks CUDA, or the test seam)
and ``process_gpus`` (what a worker process records). ``ablate run --jobs N`` hands each
trial ``k`` whole devices (``gpus_per_trial``, at least 1) out of the runner's set; a
worker process gets them as ``CUDA_VISIBLE_DEVICES`` before torch initialises CUDA in it,
so it trains on ``cuda:0`` (and ``cuda:1``... under DistributedDataParallel). Devices are
per runner: claims decide which trial runs, slots only where on this machine.
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


@dataclass(frozen=True)
class Gpu:
    """One device as this runner sees it: ``index`` is its ``cuda:N`` ordinal here, ``id``
    what ``CUDA_VISIBLE_DEVICES`` names it by (the physical index, or a UUID / MIG id
    when the user or Slurm restricted the set that way)."""

    index: int
    id: str
    name: str


def _visible_ids(count: int) -> list[str]:
    """The ids of the first ``count`` visible devices: ``CUDA_VISIBLE_DEVICES`` entries
    when it is set (the order CUDA numbers them in), else 0..count-1."""
    raw = os.environ.get(VISIBLE_ENV)
    if raw is None:
        return [str(i) for i in range(count)]
    ids = [part.strip() for part in raw.split(",") if part.strip()]
    return ids[:count]


def visible_gpus() -> list[Gpu]:
    """The CUDA devices this process may use, in ``cuda:N`` order.

    ``$ABLATE_FAKE_GPUS`` (device names, comma-separated) replaces CUDA here and only
    here, so that tests schedule on machines they do not have. ``CUDA_VISIBLE_DEVICES``
    restricts either set, as it restricts CUDA (``3,5`` with two devices: ids 3 and 5).
    """
    fake = os.environ.get(FAKE_GPUS_ENV)
    if fake is not None:
        names = [n.strip() for n in fake.split(",") if n.strip()]
    else:
        import torch  # lazy: loads torch

        if not torch.cuda.is_available():
            return []
        names = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    ids = _visible_ids(len(names))
    return [Gpu(i, gid, name) for i, (gid, name) in enumerate(zip(ids, names, strict=False))]


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
    """Free and held devices of one runner. ``take(k)`` hands out the ``k`` lowest free
    devices (or None when fewer are free); ``give_back`` frees them."""

    def __init__(self, gpus: Sequence[Gpu]) -> None:
        self.gpus = list(gpus)
        self._free = list(gpus)

    @property
    def free(self) -> int:
        return len(self._free)

    def take(self, k: int) -> tuple[Gpu, ...] | None:
        if k > len(self._free):
            return None
        taken, self._free = tuple(self._free[:k]), self._free[k:]
        return taken

    def give_back(self, gpus: Sequence[Gpu]) -> None:
        order = {g: n for n, g in enumerate(self.gpus)}
        for n, gpu in enumerate(gpus):
            if gpu not in order or gpu in self._free or gpu in gpus[:n]:
                raise ValueError(f"GPU {gpu.id} was not taken from these slots")
        self._free = sorted([*self._free, *gpus], key=order.__getitem__)


def next_fitting(needs: Sequence[int], free: int) -> int | None:
    """Which pending trial starts next: the first (in study order) whose device count fits
    the free devices, so no device idles while some trial fits."""
    for n, need in enumerate(needs):
        if need <= free:
            return n
    return None


def simulate(needs: Sequence[int], seconds: Sequence[float], gpus: Sequence[Gpu],
             jobs: int) -> list[tuple[float, float, int, tuple[str, ...]]]:
    """The packing ``LocalExecutor`` does, as a timeline: (start, end, trial, device ids)
    for trials needing ``needs[i]`` devices for ``seconds[i]``, at most ``jobs`` at once.
    For tests and ``bench/gpu_check.py``'s trace; the executor runs the same rules."""
    slots = GpuSlots(gpus)
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
        ids = [p for p in os.environ[VISIBLE_ENV].split(",") if p]
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
