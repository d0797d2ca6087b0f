"""Dispatch fixtures: the real single-node Slurm cluster started by tests/services/start-all.sh."""

from __future__ import annotations

import os
import subprocess

import pytest

from tests.services.env import service_setting, unavailable
from tests.store.conftest import pg_server_url, pg_url  # noqa: F401  (claims tests)


@pytest.fixture(scope="session")
def slurm_cluster() -> dict[str, str]:
    """``SLURM_CONF`` of a cluster whose node answers; fails or skips with the reason."""
    conf = service_setting("SLURM_CONF", "ABLATE_SLURM_ERROR", "Slurm test cluster")
    os.environ["SLURM_CONF"] = conf  # for sbatch/sacct here and in the jobs
    try:
        out = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True,
                             timeout=15)
    except (OSError, subprocess.SubprocessError) as err:
        unavailable("Slurm test cluster", f"sinfo failed: {err}")
    states = out.stdout.split()
    if out.returncode != 0 or not any(s in ("idle", "mixed", "allocated") for s in states):
        unavailable("Slurm test cluster", f"sinfo with SLURM_CONF={conf}: "
                    f"{(out.stderr or out.stdout).strip() or 'no node up'}")
    return {"SLURM_CONF": conf}


@pytest.fixture
def cancel_after(slurm_cluster):
    """``cancel_after(study)``: the study's jobs are scancel'ed after the test, pass or fail,
    so a failed test leaves no job holding the node's cores."""
    studies: list[str] = []
    yield studies.append
    for study in studies:
        subprocess.run(["scancel", "--name", f"ablate:{study}"], capture_output=True, timeout=30)
