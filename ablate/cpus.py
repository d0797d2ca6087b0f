"""The CPUs this process may use: its affinity mask (``taskset``, a Slurm allocation, a
container's cpuset), not every core of the machine. A runner that divided
``os.cpu_count()`` among its workers on a 64-core node where it may use 4 gave each
worker 32 threads on 4 cores, and their OpenMP barriers waited on each other."""

from __future__ import annotations

import os


def usable_cpus() -> int:
    """How many CPUs this process may run on (at least 1)."""
    if hasattr(os, "sched_getaffinity"):  # Linux; macOS and Windows have no affinity mask
        return max(1, len(os.sched_getaffinity(0)))
    return os.cpu_count() or 1


def worker_threads(workers: int) -> int:
    """Each of ``workers`` trials at once gets its share of the usable CPUs (at least 1)."""
    return max(1, usable_cpus() // max(1, workers))
