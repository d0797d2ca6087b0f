"""Inference latency: warm-up, then the median of repeated timed runs.

``time_calls`` is the one timing loop (eager, selective and every runtime of
``ablate.evaluate.runtimes`` use it); ``measure_latency`` times eager PyTorch at batch 1.
"""

from __future__ import annotations

import os
import platform
import shutil
import statistics
import subprocess
import time
from collections.abc import Callable
from typing import Any

import torch
from torch import nn


def _synchronizer(device: torch.device) -> Callable[[], None]:
    if device.type != "cuda":
        return lambda: None  # CPU calls return when their work is done
    return lambda: torch.cuda.synchronize(device)


@torch.no_grad()
def time_calls(call: Callable[[], Any], device: torch.device, warmup: int,
               runs: int) -> list[float]:
    """Milliseconds of each of ``runs`` calls after ``warmup`` untimed ones.

    On CUDA kernels run asynchronously: the device is synchronised before each timed call
    (nothing earlier is still running) and after it (its kernels are done), and after the
    warm-up. The wall clock between the two synchronisations is used rather than CUDA
    events on torch's stream, so work an exported runtime queues on its own streams
    (ONNX Runtime, TensorRT) is timed too.
    """
    sync = _synchronizer(device)
    for _ in range(warmup):
        call()
    sync()
    times = []
    for _ in range(runs):
        sync()
        start = time.perf_counter()
        call()
        sync()
        times.append((time.perf_counter() - start) * 1000.0)
    return times


@torch.no_grad()
def measure_latency(model: nn.Module, resolution: tuple[int, int], device: torch.device,
                    warmup: int = 3, runs: int = 10) -> dict[str, float]:
    """Milliseconds per forward pass at batch 1 (``time_calls``: CUDA synchronised)."""
    was_training = model.training
    model.eval()
    x = torch.randn(1, 3, *resolution, device=device)
    times = time_calls(lambda: model(x), device, warmup, runs)
    model.train(was_training)
    return {
        "latency_ms": statistics.median(times),
        "latency_ms_p90": sorted(times)[max(0, int(round(0.9 * len(times))) - 1)],
        "latency_runs": float(runs),
    }


NVIDIA_SMI_FIELDS = ("driver_version", "clocks.sm", "clocks.mem", "clocks.max.sm",
                     "clocks.max.mem", "power.limit", "pstate", "temperature.gpu")


def _nvidia_smi(uuid: str | None) -> dict[str, str]:
    """Driver version and current/maximum clocks (MHz), power limit (W), performance state,
    temperature (C) of one device from ``nvidia-smi``; empty when it is not installed."""
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return {}
    command = [exe, f"--query-gpu={','.join(NVIDIA_SMI_FIELDS)}",
               "--format=csv,noheader,nounits"]
    if uuid:  # nvidia-smi numbers devices its own way: name ours by UUID
        command += ["-i", uuid]
    try:
        out = subprocess.run(command, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return {}
    lines = out.stdout.strip().splitlines()
    if out.returncode != 0 or not lines:
        return {}
    values = [v.strip() for v in lines[0].split(",")]
    return {k: v for k, v in zip(NVIDIA_SMI_FIELDS, values, strict=False)
            if v and "N/A" not in v and "Not Supported" not in v}


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def timing_environment(device: str | torch.device | None) -> dict[str, Any]:
    """How latency was timed on ``device`` and what the figures depend on: the clock, the
    synchronisation, and on CUDA the device name, compute capability, CUDA/cuDNN/driver
    versions and clocks (``nvidia-smi`` when present; missing fields are left out)."""
    device = torch.device(device or "cpu")
    info: dict[str, Any] = {"clock": "time.perf_counter, median of the timed calls",
                            "threads": torch.get_num_threads()}
    if device.type != "cuda":
        info.update(device="cpu", sync="none: CPU calls return when done", cpu=_cpu_model())
        return info
    index = device.index if device.index is not None else torch.cuda.current_device()
    props = torch.cuda.get_device_properties(index)
    uuid = getattr(props, "uuid", None)
    uuid_text = f"GPU-{uuid}" if uuid is not None and not str(uuid).startswith("GPU-") else uuid
    info.update(
        device=f"cuda:{index}", sync="torch.cuda.synchronize before and after each timed call",
        device_name=props.name, capability=f"{props.major}.{props.minor}",
        memory_gib=round(props.total_memory / 2**30, 1), cuda=torch.version.cuda,
        cudnn=torch.backends.cudnn.version(), cudnn_benchmark=torch.backends.cudnn.benchmark,
        uuid=str(uuid_text) if uuid_text is not None else None,
        cuda_visible_devices=os.environ.get("CUDA_VISIBLE_DEVICES"))
    smi = _nvidia_smi(str(uuid_text) if uuid_text is not None else None)
    if smi:
        info["driver"] = smi.pop("driver_version", None)
        info["nvidia_smi"] = smi
    return info
