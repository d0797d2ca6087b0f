"""The CPUs this process may use: its affinity mask (``taskset``, a Slurm allocation, a
container's cpuset) and its cgroup's CPU quota (``docker --cpus``, a Kubernetes CPU
limit), not every core of the machine. A runner that divided ``os.cpu_count()`` among
its workers on a 64-core node where it may use 4 gave each worker 32 threads on 4 cores,
and their OpenMP barriers waited on each other."""

from __future__ import annotations

import math
import os
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")
PROC_CGROUP = Path("/proc/self/cgroup")


def usable_cpus() -> int:
    """How many CPUs this process may run on (at least 1): the fewer of its affinity mask
    and its CPU quota, rounded up."""
    if hasattr(os, "sched_getaffinity"):  # Linux; macOS and Windows have no affinity mask
        cpus = len(os.sched_getaffinity(0))
    else:
        cpus = os.cpu_count() or 1
    quota = cgroup_cpu_quota()
    if quota is not None:
        cpus = min(cpus, math.ceil(quota))
    return max(1, cpus)


def worker_threads(workers: int) -> int:
    """Each of ``workers`` trials at once gets its share of the usable CPUs (at least 1)."""
    return max(1, usable_cpus() // max(1, workers))


def cgroup_cpu_quota(root: Path = CGROUP_ROOT, proc: Path = PROC_CGROUP) -> float | None:
    """The CPUs' worth of time this process's cgroup may use per period (``2.5`` for
    ``docker --cpus 2.5``), the smallest along its cgroup's path; None without a quota or
    without cgroups. Reads cgroup v2 (``cpu.max``) and v1 (``cpu.cfs_quota_us``)."""
    try:
        lines = proc.read_text().splitlines()
    except OSError:
        return None
    quotas = []
    for line in lines:
        fields = line.split(":", 2)
        if len(fields) != 3:
            continue
        _, controllers, path = fields
        if controllers == "":  # v2: one unified hierarchy
            mounts = [root]
            read = _v2_quota
        elif "cpu" in controllers.split(","):
            mounts = [root / "cpu", root / "cpu,cpuacct", root / "cpuacct,cpu"]
            read = _v1_quota
        else:
            continue
        for mount in mounts:
            quotas += [q for d in _ancestors(mount, path) if (q := read(d)) is not None]
    return min(quotas, default=None)


def _ancestors(mount: Path, path: str) -> list[Path]:
    """The cgroup's folder and each above it up to the mount. In a container the path
    names the host's hierarchy, which the container sees as the mount itself: its limit
    is then on the mount's own files, which this list always ends with."""
    folders = []
    parts = [p for p in path.strip("/").split("/") if p]
    while parts:
        folders.append(mount.joinpath(*parts))
        parts.pop()
    return [*folders, mount]


def _v2_quota(folder: Path) -> float | None:
    try:
        quota, period = (folder / "cpu.max").read_text().split()[:2]
    except (OSError, ValueError):
        return None
    return None if quota == "max" else _ratio(quota, period)


def _v1_quota(folder: Path) -> float | None:
    try:
        quota = (folder / "cpu.cfs_quota_us").read_text().strip()
        period = (folder / "cpu.cfs_period_us").read_text().strip()
    except OSError:
        return None
    return None if quota.startswith("-") else _ratio(quota, period)


def _ratio(quota: str, period: str) -> float | None:
    try:
        q, p = int(quota), int(period)
    except ValueError:
        return None
    return q / p if q > 0 and p > 0 else None
