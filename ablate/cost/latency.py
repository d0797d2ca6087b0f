"""Inference latency: batch 1, warm-up, median of repeated timed runs."""

from __future__ import annotations

import statistics
import time

import torch
from torch import nn


@torch.no_grad()
def measure_latency(model: nn.Module, resolution: tuple[int, int], device: torch.device,
                    warmup: int = 3, runs: int = 10) -> dict[str, float]:
    """Milliseconds per forward pass; synchronises CUDA around every timed run."""
    was_training = model.training
    model.eval()
    x = torch.randn(1, 3, *resolution, device=device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    for _ in range(warmup):
        model(x)
    times = []
    for _ in range(runs):
        sync()
        start = time.perf_counter()
        model(x)
        sync()
        times.append((time.perf_counter() - start) * 1000.0)
    model.train(was_training)
    return {
        "latency_ms": statistics.median(times),
        "latency_ms_p90": sorted(times)[max(0, int(round(0.9 * len(times))) - 1)],
        "latency_runs": float(runs),
    }
