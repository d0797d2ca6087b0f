"""Dispatch fixtures: the real single-node Slurm cluster started by tests/services/start-all.sh."""

from __future__ import annotations

import os
import subprocess
import time

import pytest

from tests.services.env import service_setting, unavailable
from tests.store.conftest import pg_server_url, pg_url  # noqa: F401  (claims tests)


@pytest.fixture(scope="session")
def slurm_cluster() -> dict[str, str]:
    """``SLURM_CONF`` of a cluster whose node answers; fails or skips with the reason."""
    conf = service_setting("SLURM_CONF", "ABLATE_SLURM_ERROR", "Slurm test cluster")
    os.environ["SLURM_CONF"] = conf  # for sbatch/sacct here and in the jobs
    problem = wait_for_node(conf)
    if problem is not None:
        unavailable("Slurm test cluster", problem)
    return {"SLURM_CONF": conf}


READY_STATES = ("idle", "mixed", "allocated")
NODE_WAIT_S = 120.0  # a bound on failure: a loaded node frees its cores slowly


def wait_for_node(conf: str, timeout_s: float = NODE_WAIT_S, *, run=subprocess.run,
                  sleep=time.sleep, clock=time.monotonic) -> str | None:
    """None once a node takes jobs, else why not after polling for up to ``timeout_s``.

    A node still completing the previous test's (cancelled) jobs is a cluster that is
    busy for some seconds, not one that is missing: wait for it.
    """
    deadline = clock() + timeout_s
    while True:
        try:
            out = run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True, timeout=15)
        except (OSError, subprocess.SubprocessError) as err:
            return f"sinfo failed: {err}"  # no sinfo, nothing to wait for
        # a trailing *, ~, #, ... flags the state (not responding, powered down, ...)
        states = [state.rstrip("*~#!%$@^-") for state in out.stdout.split()]
        if out.returncode == 0 and any(state in READY_STATES for state in states):
            return None
        reason = (f"sinfo with SLURM_CONF={conf}: "
                  f"{(out.stderr or out.stdout).strip() or 'no node up'}")
        if clock() >= deadline:
            return f"{reason} (no idle node after {timeout_s:.0f} s)"
        sleep(1.0)


@pytest.fixture
def cancel_after(slurm_cluster, tmp_path):
    """``cancel_after(study)``: the study's jobs are scancel'ed after the test, pass or fail,
    so a failed test leaves no job holding the node's cores. Only this test's jobs, those
    whose submission script lies under its ``tmp_path`` (ablate writes them to the runs
    folder's sibling ``slurm/``): two tests running at once may use the same study name."""
    studies: list[str] = []
    yield studies.append
    for study in studies:
        listed = subprocess.run(["squeue", "-h", "-n", f"ablate:{study}", "-o", "%i|%o"],
                                capture_output=True, text=True, timeout=30)
        arrays = {job.split("_")[0] for job, _, script in
                  (line.partition("|") for line in listed.stdout.splitlines())
                  if script.startswith(f"{tmp_path}{os.sep}")}
        if arrays:
            subprocess.run(["scancel", *sorted(arrays)], capture_output=True, timeout=30)
            wait_for_jobs_to_leave(sorted(arrays))


def wait_for_jobs_to_leave(jobs: list[str], timeout_s: float = 120.0) -> None:
    """Poll squeue until ``jobs`` are gone (a cancelled job stays COMPLETING, holding its
    cores, for some seconds), so the next test starts on a free node; give up quietly
    after ``timeout_s`` (the next test's own waits then say what is wrong)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        listed = subprocess.run(["squeue", "-h", "-o", "%i", "-j", ",".join(jobs)],
                                capture_output=True, text=True, timeout=30)
        if not listed.stdout.strip() and (listed.returncode == 0
                                          or "Invalid job id" in listed.stderr):
            return  # squeue refuses ids it no longer knows: all gone
        time.sleep(0.5)  # listed, or squeue did not answer (slurmctld busy): ask again
