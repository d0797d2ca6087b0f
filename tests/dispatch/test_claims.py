"""Many runners, one study: every trial trained exactly once, across processes, a killed
holder and a Slurm array at the same time.

Trainings are counted from each run folder's ``claims.log`` (one line per claim, written
by the process that then trains), not from database rows.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ablate.store import Store
from tests.conftest import TINY_RECIPE

SIX = TINY_RECIPE.replace('name = "tiny"', 'name = "six"').replace(
    '"model.keep_last_expansion" = [true, false]',
    '"train.lr" = [0.001, 0.002, 0.003, 0.004, 0.005, 0.006]').replace(
    "[base.eval]", "[base.eval]\nlatency = false\nflops = false").replace(
    'head = "deeplabv3plus"', 'head = "deeplabv3plus"\naspp_channels = 32').replace(
    "val_images = 8", "val_images = 8\nworkers = 0")


def ablate_run(recipe: Path, db: str, runs: Path, *extra: str) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(
        [sys.executable, "-m", "ablate", "run", str(recipe), "--db", db, "--runs-dir", str(runs),
         *extra], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)


def claims(runs: list[Path], study: str) -> dict[str, list[str]]:
    """Trial id -> its claims.log lines, over every runner's runs folder."""
    out: dict[str, list[str]] = {}
    for root in dict.fromkeys(runs):  # shared folders are counted once
        for log in sorted((root / study).glob("*/claims.log")):
            out.setdefault(log.parent.name, []).extend(log.read_text().splitlines())
    return out


def took(output: str) -> int:
    found = re.search(r"this runner took (\d+) trial\(s\)", output)
    if found:
        return int(found.group(1))
    assert "nothing left to take" in output, output
    return 0


def left(output: str) -> int:
    """Trials a runner found held by others (or done by them since it planned)."""
    found = re.search(r"left (\d+) to other runners", output)
    return int(found.group(1)) if found else 0


def skipped(output: str) -> int:
    """Trials already done when a runner planned its round (it started after others)."""
    found = re.search(r"(\d+) trial\(s\) already done", output)
    return int(found.group(1)) if found else 0


@pytest.mark.slow
@pytest.mark.parametrize("kind,folders", [("sqlite", "shared"), ("postgresql", "per-machine")])
def test_three_runners_train_every_trial_exactly_once(kind, folders, tmp_path, request):
    db_url = (f"sqlite:///{tmp_path / 'six.db'}" if kind == "sqlite"
              else request.getfixturevalue("pg_url"))
    recipe = tmp_path / "six.toml"
    recipe.write_text(SIX)
    # per-machine: each runner its own run folders, results meet in the database
    runs = [tmp_path / ("runs" if folders == "shared" else f"runs{n}") for n in range(3)]
    procs = [ablate_run(recipe, db_url, runs[n]) for n in range(3)]
    outputs = [p.communicate(timeout=300)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0], outputs

    store = Store(db_url)
    records = store.trials("six")
    assert len(records) == 6 and {r.status for r in records} == {"done"}
    log = claims(runs, "six")
    assert sorted(log) == sorted(r.trial_id for r in records)
    assert all(len(lines) == 1 for lines in log.values()), log  # trained once each
    assert sum(took(o) for o in outputs) == 6
    # each ends with the study's state as it saw it; the last one to finish saw it done
    assert all(re.search(r"study six: .* of 6 trial\(s\)", out) for out in outputs), outputs
    assert any("study six: 6 done of 6 trial(s)" in out for out in outputs), outputs
    for out in outputs:  # each runner accounts for every trial, however late it started
        assert took(out) + left(out) + skipped(out) == 6, out
    for r in records:  # one epoch, ingested once
        losses = [e.epoch for e in store.epoch_metrics("six", r.trial_id) if e.key == "train_loss"]
        assert losses == [1]
        assert r.metrics["steps"] == 2.0 and r.holder["executor"] == "local"
    # a runner that finds nothing to take says so and exits 0
    last = ablate_run(recipe, db_url, runs[0])
    out = last.communicate(timeout=120)[0]
    assert last.returncode == 0 and "nothing left to take" in out, out


def _wait(condition, timeout: float, what: str):
    """Poll ``condition``; ``timeout`` bounds a failure (a loaded machine starts slowly)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


@pytest.mark.slow
def test_a_killed_holder_s_trial_is_taken_over_and_resumed_from_its_checkpoint(tmp_path):
    recipe = tmp_path / "long.toml"
    recipe.write_text(SIX.replace('name = "six"', 'name = "long"').replace(
        '"train.lr" = [0.001, 0.002, 0.003, 0.004, 0.005, 0.006]', '"train.lr" = [0.001]')
        .replace("epochs = 1", "iterations = 40\ncheckpoint_every = 2")
        .replace("[base.eval]", "[base.eval]\nevery = 100"))
    db, runs = f"sqlite:///{tmp_path / 'k.db'}", tmp_path / "runs"
    first = ablate_run(recipe, db, runs, "--lease-seconds", "60")
    try:
        _wait(lambda: bool(list(runs.glob("long/*/checkpoint.pt"))), 300, "a checkpoint")
        first.send_signal(signal.SIGKILL)  # mid-trial: no release, the lease just stops
        first.wait(timeout=30)
    finally:
        if first.poll() is None:
            first.kill()
    store = Store(db)
    (record,) = store.trials("long")
    assert record.status == "running" and record.holder["pid"] == first.pid
    assert record.lease_expires_at > store.database_time()  # a minute of lease left

    # the same command at once: the holder's process is gone from this machine, so its
    # trial is taken over now, lease or not, and resumed from the checkpoint
    second = ablate_run(recipe, db, runs, "--lease-seconds", "60")
    out = second.communicate(timeout=300)[0]
    assert second.returncode == 0, out
    assert "this runner took 1 trial(s)" in out and "study long: 1 done of 1" in out, out

    (record,) = store.trials("long")
    assert record.status == "done" and record.metrics["steps"] == 40
    losses = [e.epoch for e in store.epoch_metrics("long", record.trial_id)
              if e.key == "train_loss"]
    assert losses == list(range(1, 21))  # 2 steps an epoch; each epoch recorded once
    lines = (runs / "long" / record.trial_id / "claims.log").read_text().splitlines()
    assert len(lines) == 3, lines  # claimed, taken over, resumed
    assert lines[0].endswith(f"epoch 1 claimed by {record.holder['host']}:{first.pid} local")
    assert "epoch 2 claimed by" in lines[1]
    assert f"(took over from {record.holder['host']}:{first.pid} local, its process is gone)" \
        in lines[1]
    step = int(re.search(r"epoch 2 resumed from checkpoint at step (\d+)$", lines[2]).group(1))
    assert 2 <= step < 40 and step % 2 == 0


@pytest.mark.slow
def test_a_local_runner_beside_a_slurm_array_trains_no_trial_twice(cancel_after, tmp_path):
    from click.testing import CliRunner

    from ablate.cli import main
    from ablate.dispatch.slurm import follow_study

    cancel_after("mix")
    recipe = tmp_path / "mix.toml"
    recipe.write_text(SIX.replace('name = "six"', 'name = "mix"').replace(
        '"train.lr" = [0.001, 0.002, 0.003, 0.004, 0.005, 0.006]',
        '"train.lr" = [0.001, 0.002, 0.003, 0.004]').replace("epochs = 1", "iterations = 8"))
    db, runs = f"sqlite:///{tmp_path / 'mix.db'}", tmp_path / "runs"
    out = CliRunner().invoke(main, ["run", str(recipe), "--db", db, "--runs-dir", str(runs),
                                    "--executor", "slurm", "--cpus-per-trial", "1",
                                    "--time", "10", "--detach"])
    assert out.exit_code == 0, out.output
    local = ablate_run(recipe, db, runs)  # while the array's tasks start
    local_out = local.communicate(timeout=600)[0]
    assert local.returncode == 0, local_out

    store = Store(db)

    def settled() -> bool:  # what `ablate status` does
        follow_study(store, "mix", runs)
        return set(store.statuses("mix").values()) == {"done"}

    _wait(settled, 600, "every trial to be done")
    log = claims([runs], "mix")
    records = store.trials("mix")
    assert sorted(log) == sorted(r.trial_id for r in records)
    assert all(len(lines) == 1 for lines in log.values()), log  # trained once each
    by = {r.trial_id: r.holder["executor"] for r in records}
    assert took(local_out) == sum(e == "local" for e in by.values())
    for r in records:
        assert (r.holder["executor"] == "slurm") == (" slurm job " in log[r.trial_id][0])
        assert r.metrics["steps"] == 8.0
    # every array task ended cleanly, those that found their trial held included
    from ablate.dispatch.slurm import job_states, read_job_info

    jobs = [read_job_info(runs / "mix" / r.trial_id).job_id for r in records]
    _wait(lambda: set(job_states(jobs).values()) == {"COMPLETED"}, 180, "the tasks to complete")
    assert set(by.values()) <= {"local", "slurm"}


@pytest.mark.parametrize("value,message", [
    ("nan", "nan is not a number"),
    ("inf", "inf is not in the range 2<=x<=86400"),
    ("1", "1.0 is not in the range 2<=x<=86400"),
])
def test_a_bad_lease_is_one_line_and_exit_2(tmp_path, value, message):
    from click.testing import CliRunner

    from ablate.cli import main

    recipe = tmp_path / "six.toml"
    recipe.write_text(SIX)
    out = CliRunner().invoke(main, ["run", str(recipe), "--db", str(tmp_path / "x.db"),
                                    "--lease-seconds", value])
    assert out.exit_code == 2
    assert out.output.strip().splitlines()[-1].startswith(
        f"Error: Invalid value for '--lease-seconds': {message}")
    assert not (tmp_path / "x.db").exists()


def test_status_shows_who_holds_a_running_trial_and_when_it_renewed(tmp_path):
    from click.testing import CliRunner

    from ablate.cli import main
    from ablate.recipes.loader import parse_recipe
    from ablate.trials.expand import expand

    db = f"sqlite:///{tmp_path / 's.db'}"
    store = Store(db)
    trials = expand(parse_recipe(SIX, "six.toml"))
    store.upsert_study("six")
    store.register_trials("six", trials)
    who = {"host": "gpu7", "pid": 4242, "executor": "slurm", "job_id": "31_2"}
    store.claim("six", trials[0].trial_id, who, lease_seconds=600)
    out = CliRunner().invoke(main, ["status", "six", "--db", db, "--runs-dir",
                                    str(tmp_path / "runs")])
    assert out.exit_code == 0, out.output
    row = next(line for line in out.output.splitlines() if trials[0].name in line)
    # (no 'preempted' column: no trial was preempted)
    assert re.search(r"running\s+│\s+31_2\s+│.*gpu7:4242 slurm job 31_2\s+│\s+\d+ s ago",
                     row), row


def test_an_array_task_that_found_its_trial_held_is_not_a_failure(tmp_path, monkeypatch):
    """wait_for_results reads what the task returned (sacct's answer given)."""
    from submitit.core.utils import cloudpickle_dump

    from ablate.dispatch.entry import TrialJob
    from ablate.dispatch.slurm import JobInfo, wait_for_results
    from ablate.trials.lifecycle import Held

    folder = tmp_path / "slurm"
    folder.mkdir()
    job = TrialJob("w", "t0", "trial 0", {}, str(tmp_path / "runs" / "t0"))
    held = Held("running", {"host": "h", "pid": 1, "executor": "local", "job_id": None})
    cloudpickle_dump(("success", held), folder / "9_0_0_result.pkl")
    monkeypatch.setattr("ablate.dispatch.slurm.job_states", lambda ids: {"9_0": "COMPLETED"})
    monkeypatch.setattr("ablate.dispatch.slurm.RESULT_GRACE_S", 0.0)
    events = []
    wait_for_results([(job, JobInfo("9_0", str(folder)))], lambda j, e: events.append(e),
                     sleep=lambda seconds: None)
    assert [type(e).__name__ for e in events] == ["JobStateChanged", "Ended"]
    assert events[-1].outcome == held


@pytest.mark.parametrize("stopped", [True, False])
def test_an_error_raised_while_the_cluster_stops_the_job_hands_the_trial_back(
        tmp_path, monkeypatch, stopped):
    """Slurm's USR2 runs submitit's handler inside a training step: it calls the trial's
    ``checkpoint()`` (the job is preempted), then ``scontrol requeue``, whose child the
    requeue's own SIGTERM can kill first, so ``CalledProcessError`` comes out of the step.
    That error is the stop's: the trial is handed back preempted (its requeued job resumes
    it), with no result file. (CI saw it recorded failed, and the requeued job refused it.)
    The same error without a stop under way is the trial's failure."""
    from ablate.dispatch.claiming import claim_and_run
    from ablate.trials.lifecycle import Trained, TrialStatus

    db, run_dir, job = one_claimable_trial(tmp_path)
    requeue = subprocess.CalledProcessError(-signal.SIGTERM, ["scontrol", "requeue", "9"])

    def killed_requeue(spec, job, progress):
        raise requeue

    monkeypatch.setattr("ablate.dispatch.entry._train", killed_requeue)
    interruption = TrialStatus.PREEMPTED if stopped else None
    if stopped:
        with pytest.raises(subprocess.CalledProcessError):
            claim_and_run(job, executor="slurm", interrupted=lambda: interruption)
        (record,) = Store(db).trials("w")
        assert (record.status, record.preemptions, record.attempts) == ("preempted", 1, 1)
        assert not (run_dir / "result.json").exists()
    else:
        outcome = claim_and_run(job, executor="slurm", interrupted=lambda: interruption)
        assert isinstance(outcome, Trained) and not outcome.result.done
        (record,) = Store(db).trials("w")
        assert record.status == "failed" and "CalledProcessError" in record.error
        assert (run_dir / "result.json").is_file()


def test_a_claim_whose_ranks_cannot_be_told_is_handed_back_untrained(tmp_path, monkeypatch):
    """Rank 0 of a Slurm trial with several tasks tells the other ranks that it holds the
    claim (``claim_and_run``'s ``decided``); when that fails (a rank's task died), the
    trial goes back to pending at once, nothing trained, for the next run to claim."""
    from ablate.dispatch.claiming import claim_and_run

    db, run_dir, job = one_claimable_trial(tmp_path)
    monkeypatch.setattr("ablate.dispatch.entry._train", lambda *args: pytest.fail("trained"))
    told = []

    def rank_gone(outcome):
        told.append(outcome)
        raise RuntimeError("Connection closed by peer")

    with pytest.raises(RuntimeError, match="Connection closed by peer"):
        claim_and_run(job, executor="slurm", decided=rank_gone)
    assert told == [None]  # "train": the claim was this worker's
    (record,) = Store(db).trials("w")
    assert (record.status, record.lease_expires_at, record.attempts) == ("pending", None, 1)
    (line,) = (run_dir / "claims.log").read_text().splitlines()
    assert re.fullmatch(rf"\S+ epoch 1 claimed by \S+:{os.getpid()} slurm", line), line
    assert not (run_dir / "result.json").exists()


def one_claimable_trial(tmp_path):
    """A SQLite database with one registered trial of the tiny recipe: its URL, the trial's
    run folder and the job a worker would claim it with."""
    from ablate.dispatch.entry import TrialJob
    from ablate.recipes.loader import parse_recipe
    from ablate.trials.expand import expand

    db = f"sqlite:///{tmp_path / 'w.db'}"
    store = Store(db)
    (trial, _) = expand(parse_recipe(TINY_RECIPE, "r.toml"))
    store.upsert_study("w")
    store.register_trials("w", [trial])
    run_dir = tmp_path / "runs" / trial.trial_id
    return db, run_dir, TrialJob("w", trial.trial_id, trial.name, trial.spec.model_dump(),
                                 str(run_dir), db=db)
