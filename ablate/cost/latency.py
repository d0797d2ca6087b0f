"""Inference latency: warm-up, then the median of repeated timed runs.

``measure_latency`` times eager PyTorch at batch 1; ``measure_trial_latency`` times every
runtime and batch size a trial asks for (``eval.runtimes``, ``eval.latency_batch_sizes``).
"""

from __future__ import annotations

import statistics
import time
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

if TYPE_CHECKING:
    from ablate.recipes.schema import TrialSpec


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


def measure_trial_latency(model: nn.Module, spec: TrialSpec, device: torch.device,
                          images: Any = None, n_classes: int | None = None,
                          ) -> tuple[dict[str, float], dict[str, Any]]:
    """A trial's latency figures: every ``eval.runtimes`` x ``eval.latency_batch_sizes``.

    Returns the float figures for the metrics table (``latency_ms@<runtime>/bs<n>`` and
    parity, see ``ablate.evaluate.runtimes``) and the per-runtime details (status, reason,
    device, threads, version) that go with the trial's environment. ``latency_ms`` and
    ``latency_ms_p90`` stay the eager batch-1 figures that every report reads.
    """
    from ablate.evaluate.runtime_keys import metric_key
    from ablate.evaluate.runtimes import measure_runtimes
    from ablate.trials.ids import eval_resolution

    ev = spec.eval
    report = measure_runtimes(
        model, eval_resolution(spec), device, runtimes=ev.runtimes,
        batch_sizes=ev.latency_batch_sizes, warmup=ev.latency_warmup, runs=ev.latency_runs,
        threads=ev.latency_threads, images=images, n_classes=n_classes)
    figures = dict(report.metrics)
    if metric_key("latency_ms", "eager", 1) in figures:
        figures["latency_ms"] = figures[metric_key("latency_ms", "eager", 1)]
        figures["latency_ms_p90"] = figures[metric_key("latency_ms_p90", "eager", 1)]
    return figures, report.details
