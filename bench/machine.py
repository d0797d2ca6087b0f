"""One line describing the machine a benchmark ran on (printed with every figure), and
the code of another revision to time beside this one."""

from __future__ import annotations

import argparse
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


def at_least(low: int):
    """An argparse type: a whole number of at least ``low``. A count of 0 or less ran
    for minutes and ended in a traceback (a median of no runs); now it is refused in
    one line, exit 2."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"must be at least {low}, got {value}")
        return value
    return parse


def counts(text: str) -> list[int]:
    """An argparse type: whole numbers of at least 1, separated by commas (``1,8,32``)."""
    return [at_least(1)(v) for v in text.split(",")]


def hxw(text: str) -> tuple[int, int]:
    """An argparse type: a size as HxW (``512x1024``), both sides at least 1."""
    parts = text.lower().split("x")
    try:
        height, width = (int(v) for v in parts)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not HxW (e.g. 512x1024)") from None
    if min(height, width) < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: both sides must be at least 1")
    return height, width


def user_error(exc: Exception) -> str:
    """One line for a model option ablate refuses (a pydantic ValidationError names its
    field and reason over four lines and a link; a UserInputError is one line)."""
    errors = getattr(exc, "errors", None)
    if callable(errors):
        return "; ".join(f"{'.'.join(map(str, e['loc']))}: "
                         f"{e['msg'].removeprefix('Value error, ')}" for e in errors())
    return str(exc).splitlines()[0]
