"""GPU-correct timing: CUDA is synchronised around every timed call, after the warm-up,
and the trial records how and on what it was timed."""

from __future__ import annotations

import pytest
import torch

from ablate.cost import latency
from ablate.cost.latency import time_calls, timing_environment


def test_cuda_calls_are_synchronised_before_and_after_each_timed_call(monkeypatch):
    log: list[str] = []
    monkeypatch.setattr(torch.cuda, "synchronize", lambda device=None: log.append(f"sync {device}"))
    times = time_calls(lambda: log.append("call"), torch.device("cuda:0"), warmup=2, runs=3)
    assert len(times) == 3 and all(t >= 0 for t in times)
    # warm-up untimed, then its kernels drained; each timed call between two syncs
    assert log == ["call", "call", "sync cuda:0"] + ["sync cuda:0", "call", "sync cuda:0"] * 3


def test_cpu_calls_are_not_synchronised(monkeypatch):
    monkeypatch.setattr(torch.cuda, "synchronize", lambda device=None: pytest.fail("synced"))
    assert len(time_calls(lambda: None, torch.device("cpu"), warmup=1, runs=2)) == 2


def test_runtimes_and_eager_latency_use_the_same_timer(monkeypatch):
    from ablate.evaluate import runtimes

    assert runtimes.time_calls is latency.time_calls  # one timing loop, imported by name
    used = []
    real = latency.time_calls
    counted = lambda *a, **k: used.append(1) or real(*a, **k)  # noqa: E731
    monkeypatch.setattr(latency, "time_calls", counted)
    monkeypatch.setattr(runtimes, "time_calls", counted)
    model = torch.nn.Conv2d(3, 2, 1)
    latency.measure_latency(model, (8, 8), torch.device("cpu"), warmup=1, runs=2)
    runner = runtimes.Runner("eager", "cpu", model)
    runtimes.time_batches(runner, torch.randn(1, 3, 8, 8), torch.device("cpu"), 1, 2)
    assert used == [1, 1]


def test_the_timing_record_names_clock_and_device():
    info = timing_environment("cpu")
    assert info["device"] == "cpu" and info["threads"] == torch.get_num_threads()
    assert "perf_counter" in info["clock"] and info["sync"].startswith("none")


def test_nvidia_smi_fields_are_read_and_missing_ones_left_out(monkeypatch):
    class Done:
        returncode = 0
        stdout = "580.65, 1980, 3201, 1980, 3201, 700.00, P0, [N/A]\n"

    monkeypatch.setattr(latency.shutil, "which", lambda name: "/usr/bin/nvidia-smi")
    seen = []
    monkeypatch.setattr(latency.subprocess, "run", lambda cmd, **kw: seen.append(cmd) or Done())
    out = latency._nvidia_smi("GPU-1234")
    assert out == {"driver_version": "580.65", "clocks.sm": "1980", "clocks.mem": "3201",
                   "clocks.max.sm": "1980", "clocks.max.mem": "3201", "power.limit": "700.00",
                   "pstate": "P0"}
    assert seen[0][-2:] == ["-i", "GPU-1234"]
    monkeypatch.setattr(latency.shutil, "which", lambda name: None)
    assert latency._nvidia_smi(None) == {}  # absent is fine
