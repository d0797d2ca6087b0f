"""The CPUs a process may use: affinity and the cgroup's CPU quota, on fake cgroup trees."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from ablate import cpus


def _tree(tmp_path: Path, proc: str, files: dict[str, str]) -> tuple[Path, Path]:
    root = tmp_path / "cgroup"
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    root.mkdir(exist_ok=True)
    (tmp_path / "proc").write_text(proc)
    return root, tmp_path / "proc"


@pytest.mark.parametrize(("proc", "files", "quota"), [
    pytest.param("0::/kubepods/pod1/ctr\n", {  # the smallest along the path
        "kubepods/cpu.max": "400000 100000\n",
        "kubepods/pod1/cpu.max": "max 100000\n",
        "kubepods/pod1/ctr/cpu.max": "150000 100000\n"}, 1.5, id="v2-nested"),
    pytest.param("0::/user.slice\n", {"user.slice/cpu.max": "max 100000\n"}, None,
                 id="v2-no-limit"),
    # Docker without a cgroup namespace: /proc/self/cgroup says /docker/ID, but the
    # container sees its own cgroup as the mount itself
    pytest.param("4:memory:/docker/abc\n3:cpu,cpuacct:/docker/abc\n", {
        "cpu,cpuacct/cpu.cfs_quota_us": "250000\n",
        "cpu,cpuacct/cpu.cfs_period_us": "100000\n",
        "memory/memory.limit_in_bytes": "1000\n"}, 2.5, id="v1-container"),
])
def test_the_quota_is_read_from_the_cgroup_tree(tmp_path, proc, files, quota):
    root, proc_file = _tree(tmp_path, proc, files)
    assert cpus.cgroup_cpu_quota(root, proc_file) == quota


def test_v1_unlimited_and_unreadable_trees_have_no_quota(tmp_path):
    root, proc = _tree(tmp_path, "2:cpu:/\nnot a cgroup line\n", {
        "cpu/cpu.cfs_quota_us": "-1\n", "cpu/cpu.cfs_period_us": "100000\n"})
    assert cpus.cgroup_cpu_quota(root, proc) is None
    assert cpus.cgroup_cpu_quota(root, tmp_path / "no-such-proc-file") is None


@pytest.mark.parametrize(("quota", "expected"), [(2.5, 3), (0.2, 1), (None, 8), (64.0, 8)])
def test_usable_cpus_is_the_fewer_of_affinity_and_quota_rounded_up(monkeypatch, quota, expected):
    """``docker --cpus 2.5`` on an 8-CPU affinity mask: 3 threads' worth, not 8."""
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(8)), raising=False)
    monkeypatch.setattr(cpus, "cgroup_cpu_quota", lambda: quota)
    assert cpus.usable_cpus() == expected
    assert cpus.worker_threads(2) == max(1, expected // 2)
