"""A device shared with other trials (``ablate run --trials-per-gpu``): what the trainer asks.

Several trials on one GPU run side by side (CUDA MPS or time-sharing), which is fine for
training and wrong for latency: a forward pass timed while another process's kernels run
is slowed by them. So the runner gives each worker process a *gate* for its device
(``install``; the cross-process one is ``ablate.dispatch.sharing.DeviceGate``) and the
trainer wraps its device work in it:

- ``gpu_work()`` around every training step and evaluation batch: it waits while another
  trial on the device times its latency;
- ``alone_on_device()`` around latency timing: it waits until no other trial on the
  device is inside a step, holds them off while timing, and says whether it got the
  device to itself (``TimingWindow.alone``). Figures timed without it are not published
  (``publishable``): they go to the trial's environment, marked shared.

Without a gate (one trial per device, the CPU, Slurm) every call here is free and the
device is the trial's own. ``report_memory`` hands the runner the trial's peak device
memory after its first steps, from which it decides how many trials fit on a device.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

# steps before the peak memory is read: the first builds cuDNN's plans and the optimizer
# state, the second and third run at their steady-state size
MEMORY_PROBE_STEP = 3
LATENCY_PREFIX = "latency_ms"  # every timed figure: latency_ms, latency_ms@<runtime>/bs<n>, ...


@dataclass
class TimingWindow:
    """How a latency measurement had its device: ``alone`` when no other trial's device
    work ran while it timed; ``waited_s`` before it had it; ``reason`` when it did not."""

    alone: bool = True
    waited_s: float = 0.0
    reason: str = ""
    withheld: dict[str, float] = field(default_factory=dict)  # figures not published


class Gate(Protocol):
    """One worker's handle on its device's gate (see the module docstring)."""

    def step(self) -> contextlib.AbstractContextManager[None]: ...

    def exclusive(self) -> contextlib.AbstractContextManager[TimingWindow]: ...

    def memory(self, peak_gib: float) -> None: ...


_gate: Gate | None = None
_last_window: TimingWindow | None = None


def install(gate: Gate | None) -> None:
    """This process's trials share their device through ``gate`` (None: they do not)."""
    global _gate, _last_window
    _gate, _last_window = gate, None


def installed() -> Gate | None:
    return _gate


@contextlib.contextmanager
def gpu_work() -> Iterator[None]:
    """Around one step or evaluation batch: waits while another trial times its latency."""
    if _gate is None:
        yield
        return
    with _gate.step():
        yield


@contextlib.contextmanager
def alone_on_device() -> Iterator[TimingWindow]:
    """Around latency timing: the device to this trial alone where a gate can give it."""
    global _last_window
    if _gate is None:
        _last_window = TimingWindow()
        yield _last_window
        return
    with _gate.exclusive() as window:
        _last_window = window
        yield window


def last_window() -> TimingWindow | None:
    """The latency timing window of this process's last trial (None: no gate, or no
    latency timed), for its environment."""
    return _last_window if _gate is not None else None


def publishable(figures: dict[str, Any], window: TimingWindow) -> dict[str, Any]:
    """``figures`` without the latency ones when they were timed on a shared device; the
    withheld ones are kept on ``window`` for the trial's environment."""
    if window.alone:
        return figures
    withheld = {k: v for k, v in figures.items() if k.startswith(LATENCY_PREFIX)}
    window.withheld.update(withheld)
    return {k: v for k, v in figures.items() if k not in withheld}


def report_memory(device: Any) -> None:
    """The peak device memory so far (GiB, what the caching allocator reserved), to the
    runner that packs trials by it; nothing without a gate or off CUDA."""
    if _gate is None or getattr(device, "type", None) != "cuda":
        return
    import torch  # lazy: loads torch (already loaded by the trainer)

    _gate.memory(torch.cuda.max_memory_reserved(device) / 2**30)
