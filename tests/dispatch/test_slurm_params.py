"""Pure parts of the Slurm executor: parameters, sbatch text (golden files), arrays."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from ablate.dispatch.slurm import array_chunks, render_sbatch, resolve_spec, slurm_parameters
from ablate.errors import UserInputError
from ablate.recipes.schema import SlurmSpec

GOLDEN = Path(__file__).parent / "golden"
RECIPE_SECTION = SlurmSpec(partition="gpu", gpus_per_trial=1, cpus_per_trial=8, mem="32G",
                           time=240, array_parallelism=16)
CLI_FLAGS = {"partition": None, "gpus_per_trial": 2, "cpus_per_trial": None, "mem": None,
             "time": 90, "array_parallelism": None}


def check_golden(name: str, text: str) -> None:
    """Compare with tests/dispatch/golden/NAME; ABLATE_UPDATE_GOLDEN=1 rewrites it."""
    path = GOLDEN / name
    if os.environ.get("ABLATE_UPDATE_GOLDEN") == "1":
        path.write_text(text)
    assert text == path.read_text(), f"{path} differs; ABLATE_UPDATE_GOLDEN=1 rewrites it"


def test_parameters_from_the_recipe_with_flags_on_top_are_pinned():
    params = slurm_parameters(RECIPE_SECTION, CLI_FLAGS, job_name="ablate:sweep")
    check_golden("slurm_parameters.json", json.dumps(params, indent=1, sort_keys=True) + "\n")
    assert params["slurm_gpus_per_node"] == 2 and params["timeout_min"] == 90  # flags win
    assert params["slurm_partition"] == "gpu" and params["slurm_mem"] == "32G"  # recipe kept
    # two GPUs: two DistributedDataParallel tasks sharing the trial's 8 CPUs
    assert params["tasks_per_node"] == 2 and params["cpus_per_task"] == 4


def test_sbatch_text_is_pinned():
    params = slurm_parameters(RECIPE_SECTION, CLI_FLAGS, job_name="ablate:sweep")
    text = render_sbatch(params, "/shared/slurm", array_size=40, python="/venv/bin/python")
    check_golden("sweep_array.sbatch", text)
    assert "#SBATCH --array=0-39%16\n" in text and "#SBATCH --gpus-per-node=2\n" in text
    assert "#SBATCH --ntasks-per-node=2\n" in text


def test_defaults_leave_unset_options_to_the_cluster():
    assert slurm_parameters(SlurmSpec()) == {
        "name": "ablate", "timeout_min": 60, "cpus_per_task": 2, "slurm_array_parallelism": 64}
    text = render_sbatch(slurm_parameters(SlurmSpec()), "/s", array_size=1)
    assert "--partition" not in text and "--gpus" not in text and "--mem" not in text
    assert "--array" not in text  # a single trial is a plain job


def test_a_bad_flag_names_the_option():
    with pytest.raises(UserInputError, match=r"^--cpus-per-trial: Input should be greater than 0"):
        resolve_spec(SlurmSpec(), {"cpus_per_trial": 0})


@pytest.mark.parametrize("n,limit,sizes", [
    (0, 1001, []), (3, 1001, [3]), (1001, 1001, [1001]), (1002, 1001, [1001, 1]),
    (5, 2, [2, 2, 1]),
])
def test_arrays_are_split_at_max_array_size(n, limit, sizes):
    chunks = array_chunks(list(range(n)), limit)
    assert [len(c) for c in chunks] == sizes
    assert [x for c in chunks for x in c] == list(range(n))


@pytest.mark.parametrize(("visible", "local_rank", "device"), [
    ("2,3", 0, "2"), ("2,3", 1, "3"),  # physical ids: the cluster does not renumber per job
    ("0,1", 1, "1"),  # renumbered (cgroup ConstrainDevices)
    ("5", 1, "5"),  # --gpus-per-task: the task's one device
    (None, 1, "1"), ("", 0, "0"),  # none named: submitit's choice, the local rank
    ("GPU-aa, GPU-bb", 1, "GPU-bb"),  # UUIDs
])
def test_each_task_of_a_ddp_job_trains_on_its_own_gpu_of_the_job(visible, local_rank, device):
    """Task r of a trial with several tasks sees only the r-th GPU Slurm gave the job, not
    GPU r of the node (submitit's export sets CUDA_VISIBLE_DEVICES to the local rank,
    another job's GPU where the cluster keeps physical ids)."""
    from ablate.dispatch.slurm import task_device

    assert task_device(visible, local_rank) == device
