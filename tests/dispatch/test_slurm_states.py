"""A job's state from sacct, else from squeue: slurmdbd records a job a moment after
sbatch returns, so right after a submission sacct knows nothing of it while squeue lists
it. sacct and squeue are scripts on PATH (no cluster needed)."""

from __future__ import annotations

import os
import stat

import pytest

from ablate.dispatch.slurm import job_states

SACCT = "JobID|State\n12_0|RUNNING\n12_0.batch|RUNNING\n12_1|CANCELLED by 0\n"
SQUEUE = "12_2|PENDING\n12_3|PENDING\n"


@pytest.fixture
def slurm_bin(tmp_path, monkeypatch):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()

    def tool(name: str, out: str, code: int = 0) -> None:
        (tmp_path / f"{name}.out").write_text(out)
        path = bin_dir / name
        path.write_text(f'#!/bin/sh\necho "$@" >> {tmp_path}/{name}.calls\n'
                        f"cat {tmp_path}/{name}.out\nexit {code}\n")
        path.chmod(path.stat().st_mode | stat.S_IXUSR)

    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    return tool


def test_a_job_sacct_does_not_know_yet_takes_squeue_s_state(slurm_bin, tmp_path):
    slurm_bin("sacct", SACCT)
    slurm_bin("squeue", SQUEUE)
    ids = ["12_0", "12_1", "12_2", "12_3", "13_0"]
    assert job_states(ids) == {"12_0": "RUNNING", "12_1": "CANCELLED", "12_2": "PENDING",
                               "12_3": "PENDING", "13_0": "UNKNOWN"}
    # squeue is asked once, for the unknown jobs' arrays, one line per array task
    assert (tmp_path / "squeue.calls").read_text().split() == [
        "--array", "--noheader", "--format=%i|%T", "--jobs", "12,13"]


def test_squeue_is_not_asked_when_sacct_knows_every_job(slurm_bin, tmp_path):
    slurm_bin("sacct", SACCT)
    slurm_bin("squeue", SQUEUE)
    assert job_states(["12_0", "12_1"]) == {"12_0": "RUNNING", "12_1": "CANCELLED"}
    assert not (tmp_path / "squeue.calls").exists()


def test_a_failing_squeue_leaves_the_jobs_unknown(slurm_bin):
    slurm_bin("sacct", "JobID|State\n")
    slurm_bin("squeue", "slurm_load_jobs error: Invalid job id specified\n", code=1)
    assert job_states(["14_0"]) == {"14_0": "UNKNOWN"}


# sacct keeps REQUEUED for a requeued job until it starts again: one scancel'ed while it
# waited to start (by 'ablate cancel' or by hand) stays REQUEUED there for good
REQUEUED = "JobID|State\n15_0|REQUEUED\n15_1|RUNNING\n"


def test_a_requeued_job_takes_slurmctld_s_state(slurm_bin, tmp_path):
    slurm_bin("sacct", REQUEUED)
    slurm_bin("squeue", "15_0|CANCELLED\n15_1|RUNNING\n")
    assert job_states(["15_0", "15_1"]) == {"15_0": "CANCELLED", "15_1": "RUNNING"}
    assert (tmp_path / "squeue.calls").read_text().split() == [
        "--array", "--noheader", "--format=%i|%T", "--jobs", "15", "--states=all"]


def test_a_requeued_job_waiting_to_start_stays_requeued(slurm_bin):
    slurm_bin("sacct", REQUEUED)
    slurm_bin("squeue", "15_0|PENDING\n15_1|RUNNING\n")
    assert job_states(["15_0"]) == {"15_0": "REQUEUED"}


def test_a_requeued_job_slurmctld_no_longer_holds_never_starts_again(slurm_bin):
    slurm_bin("sacct", REQUEUED)
    slurm_bin("squeue", "slurm_load_jobs error: Invalid job id specified\n", code=1)
    assert job_states(["15_0", "15_1"]) == {"15_0": "CANCELLED", "15_1": "RUNNING"}


def test_a_requeued_job_stays_requeued_when_squeue_cannot_say(slurm_bin):
    slurm_bin("sacct", REQUEUED)
    slurm_bin("squeue", "slurm_load_jobs error: Unable to contact slurm controller\n",
              code=1)
    assert job_states(["15_0"]) == {"15_0": "REQUEUED"}


def test_a_task_whose_trial_is_held_elsewhere_names_the_holder_in_its_log(capsys):
    from ablate.dispatch.entry import TrialJob
    from ablate.dispatch.slurm import _log_left
    from ablate.trials.lifecycle import Held

    holder = {"host": "vm", "pid": 23026, "started": "boot:1", "executor": "local",
              "job_id": None}
    _log_left(TrialJob("s", "t1", "n", {}, "run"), Held("running", holder))
    assert capsys.readouterr().out == ("trial t1 is running elsewhere (vm:23026 local); "
                                       "this task exits\n")
