"""Is a claim's holder on this machine still alive? Its process, not its lease, says so.

A runner killed with SIGKILL (or by the OOM killer) cannot release its claims, and its
leases run on for up to ``--lease-seconds``. When the holder ran on this host, the
process table answers at once: no process with that pid, or a process with that pid
that started at another time (the pid was reused) or under another boot, means the
holder is dead and its trials can be taken over now. Holders on other hosts, or a
holder whose process cannot be inspected, are left to their leases. So is a holder in
another pid namespace of this host (a container with the host's name and network):
its pids mean other processes here.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Any

BOOT_ID = Path("/proc/sys/kernel/random/boot_id")


def process_start(pid: int) -> str | None:
    """``<boot id>:<start time in clock ticks>`` of a process (Linux), else None.

    Field 22 of ``/proc/<pid>/stat`` counts from boot, so with the boot id it names one
    process for good, whatever pid reuse happens later.
    """
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        boot = BOOT_ID.read_text().strip()
    except OSError:
        return None
    fields = stat.rpartition(")")[2].split()  # the command name may hold spaces
    return f"{boot}:{fields[19]}" if len(fields) > 19 else None  # field 22 overall


def pid_namespace() -> str | None:
    """This process's pid namespace (``pid:[4026531836]``), None where there is none."""
    try:
        return os.readlink("/proc/self/ns/pid")
    except OSError:
        return None


def this_process() -> dict[str, Any]:
    """The identity a claim records: host, pid, start and pid namespace of this process."""
    pid = os.getpid()
    return {"host": socket.gethostname(), "pid": pid, "started": process_start(pid),
            "pidns": pid_namespace()}


def slurm_job_id() -> str | None:
    """This process's Slurm job as ``squeue``, ``scancel`` and submitit name it: an array
    task is ``<array>_<task>`` (its own ``SLURM_JOB_ID`` is another number); None outside
    Slurm."""
    array, task = os.environ.get("SLURM_ARRAY_JOB_ID"), os.environ.get("SLURM_ARRAY_TASK_ID")
    if array and task:
        return f"{array}_{task}"
    return os.environ.get("SLURM_JOB_ID") or None


def holder_is_dead(holder: dict[str, Any] | None) -> bool:
    """True only when ``holder`` ran on this host and its process is gone (or reused)."""
    if not holder or holder.get("host") != socket.gethostname():
        return False
    if "pidns" in holder and holder["pidns"] != pid_namespace():
        return False  # its pids are not ours to look up (older holders: no pidns)
    pid = holder.get("pid")
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # alive, another user's: compare its start below
        pass
    except OSError:
        return False
    started = holder.get("started")
    if not started:  # recorded before start times were: a live pid counts as alive
        return False
    now = process_start(pid)
    return now is not None and now != started
