"""The Slurm executor against the real single-node cluster (sbatch, sacct, scontrol, scancel).

Each job imports torch, which takes seconds here; the trials are as small as they get.
"""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from ablate.cli import main
from ablate.dispatch.slurm import (
    follow_study,
    job_states,
    render_sbatch,
    slurm_parameters,
)
from ablate.recipes.schema import SlurmSpec
from ablate.store import Store
from ablate.train.events import Ended, JobCancelled, JobStateChanged

BASE = """
seeds = [0]

[base.model]
backbone = "mobilenet_v3_small"
head = "deeplabv3plus"
aspp_channels = 32
bn_momentum = 0.1

[base.data]
name = "shapes"
classes = 3
image_size = 32
train_images = 16
val_images = 8
workers = 0

[base.train]
optimizer = "sgd"
lr = 0.01
epochs = 1
batch_size = 8
log_every = 1
device = "cpu"

[base.eval]
batch_size = 8
latency = false
"""


def write_recipe(tmp_path: Path, name: str, extra: str = "",
                 changes: dict[str, str] | None = None) -> Path:
    """BASE named ``name``, with lines replaced (``changes``) and ``extra`` appended."""
    text = textwrap.dedent(BASE)
    for old, new in (changes or {}).items():
        assert old in text
        text = text.replace(old, new)
    path = tmp_path / f"{name}.toml"
    path.write_text(f'name = "{name}"\n' + text + textwrap.dedent(extra))
    return path


def wait_until(condition, timeout: float, what: str, every: float = 0.2):
    """``condition()``'s first truthy value; ``timeout`` only bounds a failure: jobs wait for
    a core and import torch, which takes minutes on a loaded machine, not the usual seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def run_cli(*args: str):
    return CliRunner().invoke(main, list(args))


TRIAL_HOOKS = Path(__file__).parent / "trialhooks"


def hold_trials(monkeypatch, folder: Path, step: int) -> Path:
    """The jobs submitted from now on hold each trial at its step ``step`` until
    ``folder/release`` exists (trialhooks/sitecustomize.py); ``folder/<trial id>`` says it
    got there. Returns ``folder/release``."""
    folder.mkdir()
    monkeypatch.setenv("ABLATE_TEST_HOLD", f"{folder}:{step}")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(
        [str(TRIAL_HOOKS), os.environ.get("PYTHONPATH", "")]))
    return folder / "release"


@pytest.mark.slow
def test_four_trials_are_one_job_array_and_all_land_in_the_database(cancel_after, tmp_path):
    cancel_after("four")
    # the fourth trial raises at train time (batch larger than the training set)
    recipe = write_recipe(tmp_path, "four", """
        [grid]
        "train.batch_size" = [2, 4, 8, 100]
        """)
    db, runs = str(tmp_path / "four.db"), str(tmp_path / "runs")
    out = run_cli("run", str(recipe), "--db", db, "--runs-dir", runs, "--executor", "slurm",
                  "--cpus-per-trial", "1", "--time", "10")
    assert out.exit_code == 1, out.output  # one trial failed

    records = Store(db).trials("four")
    assert [(r.axes["train.batch_size"], r.status) for r in records] == [
        (2, "done"), (4, "done"), (8, "done"), (100, "failed")]
    for r in records[:3]:
        assert 0 <= r.metrics["miou"] <= 1
        assert r.metrics["steps"] == 16 // r.axes["train.batch_size"]
        # the job as squeue and `ablate status` name it: whose result file it is
        assert r.error is None and r.environment["slurm_job_id"] == r.job_id
        assert re.fullmatch(r"\d+_\d", r.job_id)
    failed = records[3]
    assert failed.error.startswith(
        "UserInputError: train.batch_size: 100 is larger than the training set (16)\n"
        "Traceback (most recent call last):")
    assert "in train_and_evaluate" in failed.error and failed.metrics == {}

    arrays = {r.job_id.split("_")[0] for r in records}
    assert len(arrays) == 1  # one submission
    (array,) = arrays
    assert sorted(r.job_id for r in records) == [f"{array}_{i}" for i in range(4)]
    # results are ingested as soon as their files exist, a moment before the jobs end
    ids = [r.job_id for r in records]
    wait_until(lambda: set(job_states(ids).values()) == {"COMPLETED"}, 120, "COMPLETED")
    # what was submitted is exactly what the pure renderer says
    folder = tmp_path / "slurm"
    expected = render_sbatch(slurm_parameters(SlurmSpec(cpus_per_trial=1, time=10),
                                              job_name="ablate:four"),
                             folder, 4, python=shlex.quote(sys.executable))
    assert (folder / f"{array}_submission.sh").read_text() == expected


@pytest.mark.slow
def test_a_two_gpu_trial_is_one_job_of_two_tasks_claimed_once_by_task_0(cancel_after, tmp_path):
    """--gpus-per-trial 2 (the test cluster's two fake GPUs; the tasks train with gloo on
    the CPU): task 0 claims the trial as its job, both tasks train it, one result."""
    cancel_after("two")
    recipe = write_recipe(tmp_path, "two")
    db, runs = str(tmp_path / "two.db"), str(tmp_path / "runs")
    out = run_cli("run", str(recipe), "--db", db, "--runs-dir", runs, "--executor", "slurm",
                  "--cpus-per-trial", "2", "--gpus-per-trial", "2", "--time", "10")
    assert out.exit_code == 0, out.output
    (record,) = Store(db).trials("two")
    assert (record.status, record.attempts, record.environment["ddp_ranks"]) == ("done", 1, 2)
    assert record.environment["slurm_job_id"] == record.holder["job_id"] == record.job_id
    (line,) = (Path(record.run_dir) / "claims.log").read_text().splitlines()
    assert re.fullmatch(rf"\S+ epoch 1 claimed by \S+:\d+ slurm job {record.job_id}", line)


@pytest.mark.slow
@pytest.mark.parametrize("how", ["scontrol requeue", "signal USR2"])
def test_a_requeued_trial_resumes_from_its_checkpoint_as_preempted_not_failed(
        cancel_after, tmp_path, monkeypatch, how):
    """Slurm stops a running trial's job and runs it again: by ``scontrol requeue`` (the
    process is killed; its requeued job takes its own claim back) or by the signal Slurm
    sends before a preemption or the time limit (submitit calls ``checkpoint()``, which
    records the trial preempted, and requeues it). Either way the trial resumes from its
    checkpoint, is one attempt and one preemption, never a failure."""
    cancel_after("long")
    # 24 steps, a checkpoint every 3; held at step 4 until requeued: stopped in the middle
    # however fast the machine trains, resumed from step 3
    held = tmp_path / "held"
    release = hold_trials(monkeypatch, held, 4)
    recipe = write_recipe(tmp_path, "long", changes={
        "epochs = 1": "iterations = 24\ncheckpoint_every = 3",
        "train_images = 16": "train_images = 32",
        "[base.eval]": "[base.eval]\nevery = 100"})
    db, runs = str(tmp_path / "long.db"), tmp_path / "runs"
    # 20 minutes: a signal within the first 10 reads as a preemption, not the time limit
    out = run_cli("run", str(recipe), "--db", db, "--runs-dir", str(runs), "--executor", "slurm",
                  "--cpus-per-trial", "1", "--time", "20", "--detach")
    assert out.exit_code == 0, out.output
    assert "Submitted 1 trial(s) to Slurm (job array " in out.output
    assert f"'ablate status long --db {db} --runs-dir {runs}'" in out.output
    store = Store(db)
    (record,) = store.trials("long")
    assert record.status == "running" and record.job_id
    job_id, run_dir = record.job_id, runs / "long" / record.trial_id

    wait_until((held / record.trial_id).exists, 300, "the trial to reach step 4")
    wait_until((run_dir / "checkpoint.pt").exists, 60, "step 3's checkpoint on disk")
    if how == "scontrol requeue":
        pid = _task_pid(job_id)
        subprocess.run(["scontrol", "requeue", job_id], check=True, timeout=30)
        # submitit ignores the SIGTERM of a requeue and Slurm sends SIGKILL some seconds
        # later (7 s here): end the grace now
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    else:  # what Slurm sends ahead of a preemption or the time limit (--signal=USR2@90)
        subprocess.run(["scancel", "--signal=USR2", job_id], check=True, timeout=30)
        wait_until(lambda: store.statuses("long")[record.trial_id] == "preempted", 180,
                   "the trial to be recorded preempted")
    release.touch()  # the requeued job trains on from the checkpoint

    def settled():  # what `ablate status` does
        follow_study(store, "long", runs)
        return store.statuses("long")[record.trial_id] == "done"

    wait_until(settled, 600, "the requeued trial to finish", every=1.0)
    (record,) = store.trials("long")
    assert record.status == "done", record.error
    assert record.metrics["steps"] == 24
    assert (record.attempts, record.preemptions) == (1, 1)  # resumed: not a second attempt
    log = (tmp_path / "slurm" / f"{job_id}_0_log.out").read_text()
    resumed = re.findall(r"resumed from checkpoint at step (\d+)", log)
    assert resumed == ["3"], log
    claims = (run_dir / "claims.log").read_text().splitlines()
    why = "requeued" if how == "scontrol requeue" else "preempted"
    assert claims[-2].endswith(f"(resumes after its job was {why})"), claims
    if how == "signal USR2":
        assert "epoch 1 preempted: resumes from its checkpoint" in claims[-3], claims
    status = run_cli("status", "long", "--db", db, "--runs-dir", str(runs))
    assert status.exit_code == 0 and "long: 1 done" in status.output
    row = next(line for line in status.output.splitlines() if record.name in line)
    assert re.search(r"│\s+done\s+│\s+1x\s+│", row), row

    def history():
        return subprocess.run(["sacct", "-j", job_id, "-D", "-X", "-n", "-P", "-o", "State"],
                              capture_output=True, text=True, timeout=30).stdout.split()

    wait_until(lambda: history() == ["REQUEUED", "COMPLETED"], 120, "sacct to show the requeue")


@pytest.mark.slow
def test_interrupt_refusal_killed_job_cancel_and_status(cancel_after, tmp_path, monkeypatch):
    cancel_after("two")
    # each trial held at its first step, never released: running whenever the test looks
    held = tmp_path / "held"
    hold_trials(monkeypatch, held, 1)
    recipe = write_recipe(tmp_path, "two", """
        [grid]
        "train.lr" = [0.01, 0.02]
        """, changes={"epochs = 1": "iterations = 2000"})
    db, runs = str(tmp_path / "two.db"), str(tmp_path / "runs")
    args = [str(recipe), "--db", db, "--runs-dir", runs, "--executor", "slurm",
            "--cpus-per-trial", "1"]

    def interrupted(*_args, **_kwargs):
        raise KeyboardInterrupt

    # Ctrl-C while waiting: the jobs keep running and the user is told how to follow them
    monkeypatch.setattr("ablate.dispatch.slurm.wait_for_results", interrupted)
    out = run_cli("run", *args)
    assert out.exit_code == 130, out.output
    assert f"Follow them with 'ablate status two --db {db} --runs-dir {runs}'" in out.output
    store = Store(db)
    killed, cancelled = store.trials("two")
    assert {killed.status, cancelled.status} == {"running"}

    # running again would run the trials twice
    again = run_cli("run", *args)
    assert again.exit_code == 2
    assert again.output.startswith(
        f"Error: 2 trial(s) of two still have Slurm jobs ({killed.job_id}, {cancelled.job_id})")

    # a job that dies without a result: failed, with the tail of its log
    wait_until((held / killed.trial_id).exists, 300, "the trial to train")
    os.kill(_task_pid(killed.job_id), signal.SIGKILL)
    wait_until(lambda: job_states([killed.job_id])[killed.job_id] == "FAILED", 120, "FAILED")
    # the other task may have waited for a core (a node still freeing the previous test's);
    # once it holds its trial, ``cancel`` below takes a claimed trial from a live job (a job
    # cancelled before it claims is refused its claim: tests/store/test_claims.py)
    wait_until((held / cancelled.trial_id).exists, 300, "the other trial to train")
    status = run_cli("status", "two", "--db", db, "--runs-dir", runs)
    assert status.exit_code == 0, status.output
    assert f"failed {killed.name}: Slurm job {killed.job_id} ended FAILED without a result" \
        in status.output
    assert re.search(rf"{re.escape(cancelled.job_id)}\s+│\s+RUNNING", status.output), status.output
    record = {r.trial_id: r for r in store.trials("two")}[killed.trial_id]
    assert record.status == "failed"
    assert "task 0: Killed" in record.error and f"{killed.job_id}_0_log.err" in record.error

    # cancel: the other job stops and its trial is pending again
    out = run_cli("cancel", "two", "--db", db, "--runs-dir", runs)
    assert out.exit_code == 0, out.output
    assert out.output == "two: cancelled 1 trial(s); they are pending again (resume with " \
        "'ablate run')\n"
    assert store.statuses("two") == {killed.trial_id: "failed", cancelled.trial_id: "pending"}
    wait_until(lambda: job_states([cancelled.job_id])[cancelled.job_id] == "CANCELLED", 120,
               "CANCELLED")
    assert run_cli("cancel", "two", "--db", db).output == "two: no running Slurm jobs\n"


def test_slurm_options_need_the_slurm_executor(tmp_path):
    recipe = write_recipe(tmp_path, "local")
    out = run_cli("run", str(recipe), "--db", str(tmp_path / "x.db"), "--partition", "gpu")
    assert out.exit_code == 2
    assert out.output == "Error: --partition: only with --executor slurm\n"
    assert not (tmp_path / "x.db").exists()


def test_status_and_cancel_refuse_an_unknown_study(tmp_path):
    db = str(tmp_path / "none.db")
    from ablate.store import Store

    Store(db).close()  # status and cancel never create a database (tests/validation)
    for command in ("status", "cancel"):
        out = run_cli(command, "nope", "--db", db)
        assert out.exit_code == 2
        assert out.output == f"Error: STUDY: no study 'nope' in sqlite:///{db}; known: none yet\n"


def _task_pid(job_id: str) -> int:
    """The pid of the job's task 0 (the Python process submitit started)."""
    # listpids wants the plain job id, not an array task's "123_4"
    plain = subprocess.run(["squeue", "-h", "-o", "%A", "-j", job_id], capture_output=True,
                           text=True, timeout=30, check=True).stdout.strip()
    out = subprocess.run(["scontrol", "listpids", plain], capture_output=True, text=True,
                         timeout=30, check=True).stdout
    for line in out.splitlines()[1:]:
        pid, _job, step, local, *_ = line.split()
        if step == "0" and local == "0":
            return int(pid)
    raise AssertionError(f"no task 0 in:\n{out}")


def test_a_signal_is_a_time_out_past_submitit_s_guaranteed_walltime():
    from ablate.dispatch.slurm import interruption_kind

    # 60 minutes: guaranteed 48 (80 %); 20 minutes: 10 (the limit less 10 minutes)
    assert interruption_kind(47 * 60, 60) == "preempted"
    assert interruption_kind(48 * 60, 60) == "timed_out"
    assert interruption_kind(9 * 60, 20) == "preempted"
    assert interruption_kind(10 * 60, 20) == "timed_out"
    assert interruption_kind(1, 10) == "timed_out"  # submitit's rule: nothing is guaranteed
    assert interruption_kind(10**6, None) == "preempted"  # no limit known


def test_waiting_settles_results_dead_jobs_and_cancellations(tmp_path, monkeypatch):
    """wait_for_results' bookkeeping, with sacct's answers given (the tests above ask sacct)."""
    from submitit.core.utils import cloudpickle_dump

    from ablate.dispatch.entry import TrialJob
    from ablate.dispatch.slurm import JobInfo, wait_for_results
    from ablate.trials.lifecycle import Interrupted, JobDied, Trained, TrialResult

    folder = tmp_path / "slurm"
    folder.mkdir()
    jobs = [TrialJob("w", f"t{i}", f"trial {i}", {}, str(tmp_path / "runs" / f"t{i}"))
            for i in range(7)]
    infos = [JobInfo(f"9_{i}", str(folder)) for i in range(7)]
    TrialResult("w", "t0", "done", final={"miou": 0.5}).write(jobs[0].run_dir)
    (folder / "9_1_0_log.err").write_text("loading\nsrun: error: vm: task 0: Killed\n")
    cloudpickle_dump(("error", "Traceback (most recent call last):\nOSError: disk full"),
                     folder / "9_3_0_result.pkl")
    cloudpickle_dump(("error", "submitit.core.utils.UncompletedJobError: Job not requeued "
                               "because: timed-out too many times."), folder / "9_6_0_result.pkl")
    states = {"9_0": "COMPLETED", "9_1": "OUT_OF_MEMORY", "9_2": "CANCELLED", "9_3": "FAILED",
              "9_4": "TIMEOUT", "9_5": "NODE_FAIL", "9_6": "FAILED"}
    monkeypatch.setattr("ablate.dispatch.slurm.job_states", lambda ids: {i: states[i] for i in ids})
    monkeypatch.setattr("ablate.dispatch.slurm.RESULT_GRACE_S", 0.0)
    events = []
    wait_for_results(list(zip(jobs, infos)), lambda job, e: events.append((job.trial_id, e)),
                     sleep=lambda seconds: None)

    ended = {tid: e.outcome for tid, e in events if isinstance(e, Ended)}
    assert isinstance(ended["t0"], Trained) and ended["t0"].result.final == {"miou": 0.5}
    assert isinstance(ended["t1"], JobDied) and ended["t1"].job_id == "9_1"
    assert not ended["t1"].result.done
    assert ended["t1"].result.error == (
        "Slurm job 9_1 ended OUT_OF_MEMORY without a result\n"
        f"---- last 2 lines of {folder / '9_1_0_log.err'} ----\n"
        "loading\nsrun: error: vm: task 0: Killed")
    assert ended["t3"].result.error == ("Slurm job 9_3 ended FAILED without a result\n"
                                        "Traceback (most recent call last):\nOSError: disk full")
    # the cluster stopped these: not failures, they resume from their checkpoints
    assert ended["t4"] == Interrupted("9_4", "timed_out", "Slurm job 9_4 ended TIMEOUT")
    assert ended["t5"] == Interrupted("9_5", "preempted", "Slurm job 9_5 ended NODE_FAIL")
    assert isinstance(ended["t6"], Interrupted) and ended["t6"].status == "timed_out"
    assert [(tid, e) for tid, e in events if isinstance(e, JobCancelled)] == [
        ("t2", JobCancelled("9_2"))]
    assert sorted(tid for tid, e in events if isinstance(e, JobStateChanged)) == [
        "t1", "t2", "t3", "t4", "t5", "t6"]


def test_submitit_s_private_renderer_is_pinned_and_its_absence_is_one_clear_error(monkeypatch):
    """render_sbatch uses submitit's private renderer (no public API renders a submission
    file): pyproject pins the minor version it is tested with, and a submitit without it
    is one line saying which version ablate needs, not an AttributeError."""
    import tomllib

    import submitit
    from submitit.slurm import slurm as submitit_slurm

    from ablate.errors import AblateError

    deps = tomllib.loads((Path(__file__).resolve().parents[2] / "pyproject.toml").read_text())
    assert "submitit>=1.5,<1.6" in deps["project"]["dependencies"]
    assert submitit.__version__.startswith("1.5.")
    monkeypatch.delattr(submitit_slurm, "_make_sbatch_string")
    with pytest.raises(AblateError, match=r"^submitit 1\.5\.\d+ lacks _make_sbatch_string: "
                                          r"ablate renders sbatch files with submitit 1\.5\.x; "
                                          r"pip install 'submitit>=1\.5,<1\.6'$"):
        render_sbatch(slurm_parameters(SlurmSpec(), job_name="x"), "/tmp/f", 1)
