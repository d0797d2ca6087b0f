"""A timed probe: a few training steps of one architecture on random inputs, for a time
estimate before any trial of it has run (``ablate plan --probe``).

The probe builds the model as training does, draws one batch of random images and labels
at the training size (``data.crop_size``, else ``data.image_size``), and times forward,
loss, backward and optimizer step with ``cost.latency.time_calls`` (synchronised on
CUDA) after a warm-up. It leaves out what a trial also spends: loading data, evaluating,
timing latency, starting up; an estimate from done trials includes those.

Results are cached per user (``cost.cache``, ``probes/``) under a key of what they depend
on: architecture, batch size, training size, optimizer, mixed precision, device and
threads, and the code version of the cache.
"""

from __future__ import annotations

import hashlib
import json
import statistics
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ablate.cost import cache
from ablate.cost.throughput import CPU, GPU, PROBE, Throughput, WorkKey

if TYPE_CHECKING:  # annotations only: ``ablate plan`` imports this before any trial
    from ablate.trials.expand import Trial

PROBE_STEPS = 5  # timed steps: their median is the figure
PROBE_WARMUP = 2  # untimed first steps (allocation, kernel selection)
KIND = "probes"


@dataclass(frozen=True)
class ProbeDevice:
    """Where a probe runs: ``cpu`` with ``threads``, or one ``cuda`` device (its name)."""

    kind: str  # CPU or GPU
    name: str
    threads: int


def work_key(trial: Trial, kind: str) -> WorkKey:
    """What changes the time of one training step of ``trial`` on a ``kind`` device."""
    return (trial.arch_id, int(trial.spec.train.batch_size), kind)


def probe_key(trial: Trial, device: ProbeDevice) -> str:
    """The cache key of a probe of ``trial`` on ``device``."""
    spec = trial.spec
    parts = {"arch_id": trial.arch_id, "batch_size": spec.train.batch_size,
             "size": _train_side(spec), "optimizer": spec.train.optimizer,
             "amp": spec.train.amp, "device": device.kind, "name": device.name,
             "threads": device.threads, "steps": PROBE_STEPS, "warmup": PROBE_WARMUP}
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:32]


def cached_probe(trial: Trial, device: ProbeDevice) -> Throughput | None:
    """The cached probe of ``trial``'s work on ``device``, if one was run."""
    entry = cache.load_entry(KIND, probe_key(trial, device))
    seconds = entry.get("seconds_per_step") if entry else None
    if not isinstance(seconds, int | float) or not seconds > 0.0:
        return None
    return Throughput(work_key(trial, device.kind), PROBE, float(seconds))


def run_probe(trial: Trial, device: ProbeDevice) -> Throughput:
    """Time a few training steps of ``trial``'s model on ``device`` and cache the figure."""
    seconds = seconds_per_step(trial.spec, device)
    cache.save_entry(KIND, probe_key(trial, device), {"seconds_per_step": seconds,
                                                      "device": device.name})
    return Throughput(work_key(trial, device.kind), PROBE, seconds)


def seconds_per_step(spec: Any, device: ProbeDevice, steps: int = PROBE_STEPS,
                     warmup: int = PROBE_WARMUP) -> float:
    """The median seconds of one training step of ``spec``'s model on random inputs."""
    import torch  # lazy: loads torch
    import torch.nn.functional as F  # lazy: loads torch

    from ablate.cost.latency import time_calls  # lazy: loads torch
    from ablate.models.build import build_model  # lazy: loads torch, torchvision
    from ablate.trials.resolve import num_classes  # lazy: loads pydantic

    target = torch.device("cuda" if device.kind == GPU else "cpu")
    previous = torch.get_num_threads()
    if device.kind == CPU:
        torch.set_num_threads(device.threads)
    try:
        classes = num_classes(spec)
        model = build_model(spec.model, classes).to(target).train()
        side = _train_side(spec)
        batch = int(spec.train.batch_size)
        generator = torch.Generator().manual_seed(0)
        images = torch.randn(batch, 3, side, side, generator=generator).to(target)
        labels = torch.randint(0, classes, (batch, side, side), generator=generator).to(target)
        optimizer = (torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
                     if spec.train.optimizer == "sgd"
                     else torch.optim.AdamW(model.parameters(), lr=1e-3))

        autocast = _autocast(spec.train.amp, target)

        def step() -> None:
            with torch.enable_grad():  # time_calls times inference, under no_grad
                with autocast:
                    outputs = model(images)
                    logits = outputs["out"] if isinstance(outputs, dict) else outputs
                    loss = F.cross_entropy(logits, labels)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()

        milliseconds = time_calls(step, target, warmup, steps)
    finally:
        torch.set_num_threads(previous)
    return statistics.median(milliseconds) / 1000.0


def _autocast(amp: str, device: Any):
    """Mixed precision as training uses it on a GPU (``train.amp``); none on the CPU."""
    import contextlib

    import torch  # lazy: loads torch

    if device.type != "cuda" or amp == "off":
        return contextlib.nullcontext()
    bf16 = amp == "bf16" or (amp != "fp16" and torch.cuda.is_bf16_supported())
    return torch.autocast("cuda", dtype=torch.bfloat16 if bf16 else torch.float16)


def _train_side(spec: Any) -> int:
    return int(spec.data.crop_size or spec.data.image_size)
