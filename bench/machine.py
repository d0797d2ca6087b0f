"""One line describing the machine a benchmark ran on (printed with every figure), and
the code of another revision to time beside this one."""

from __future__ import annotations

import os
import platform
import subprocess
import tarfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


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


def extract(rev: str, into: Path) -> Path:
    """The ``ablate`` package as of git revision ``rev``, importable from ``into`` (for
    the benches' ``--before REV``: old and new code timed side by side)."""
    into.mkdir(parents=True, exist_ok=True)
    archive = into / "src.tar"
    with open(archive, "wb") as handle:
        subprocess.run(["git", "-C", str(ROOT), "archive", rev, "ablate"], check=True,
                       stdout=handle)
    with tarfile.open(archive) as tar:
        tar.extractall(into, filter="data")
    return into
