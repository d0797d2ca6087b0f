"""One line describing the machine a benchmark ran on (printed with every figure)."""

from __future__ import annotations

import os
import platform
from pathlib import Path


def describe(extra: str = "") -> str:
    """CPU count and model, load average, Python; ``extra`` is appended (torch, threads...)."""
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    load = ", ".join(f"{v:.2f}" for v in os.getloadavg())
    text = (f"{os.cpu_count()} CPUs (usable {usable}), {model}, load average {load}, "
            f"Python {platform.python_version()}")
    return f"{text}, {extra}" if extra else text
