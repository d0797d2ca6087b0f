"""Faults: the driver killed with SIGKILL mid-study, and broken result files on disk."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from ablate.cli import main
from ablate.dispatch.results import ingest_results, run_dir_for
from ablate.recipes.loader import parse_recipe
from ablate.store import Store
from ablate.trials.expand import expand
from ablate.trials.lifecycle import TrialResult, TrialStatus
from tests.conftest import TINY_RECIPE

THREE = TINY_RECIPE.replace('name = "tiny"', 'name = "three"').replace(
    '"model.keep_last_expansion" = [true, false]', '"train.lr" = [0.001, 0.002, 0.003]').replace(
    "[base.eval]", "[base.eval]\nlatency = false\nflops = false").replace(
    'head = "deeplabv3plus"', 'head = "deeplabv3plus"\naspp_channels = 32')


def done_count(db: Path) -> int:
    try:
        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
        try:
            return con.execute("SELECT count(*) FROM trials WHERE status = 'done'").fetchone()[0]
        finally:
            con.close()
    except sqlite3.Error:  # not created yet
        return 0


@pytest.mark.slow
def test_sigkill_of_the_whole_run_then_the_same_command_finishes_it_at_once(tmp_path):
    """kill -9 of the process group mid-study (the default 120 s lease stays live), then
    the same command at once: every trial done, each recorded once, the same figures as a
    run that was never interrupted (training is deterministic on the CPU)."""
    recipe = tmp_path / "three.toml"
    recipe.write_text(THREE)
    db, runs = tmp_path / "k.db", tmp_path / "runs"
    command = [sys.executable, "-m", "ablate", "run", str(recipe), "--db", str(db),
               "--runs-dir", str(runs)]
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    try:
        deadline = time.monotonic() + 300  # a bound on failure: torch loads slowly under load
        while done_count(db) < 1:
            assert proc.poll() is None, "the run ended before it could be killed"
            assert time.monotonic() < deadline, "no trial finished within 300 s"
            time.sleep(0.1)
        os.killpg(proc.pid, signal.SIGKILL)  # in the middle of the second trial
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    store = Store(str(db))
    after_kill = store.statuses("three")
    assert sorted(after_kill.values()).count("done") in (1, 2)
    held = [r for r in store.trials("three") if r.status == "running"]
    assert all(r.lease_expires_at > store.database_time() for r in held)  # leases still live

    # without --wait a runner leaves trials under live leases to their holders: every trial
    # done here means the dead holder's trial was taken over at once, no lease waited out
    again = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "left" not in again.stdout
    records = store.trials("three")
    assert len(records) == 3 and {r.status for r in records} == {"done"}
    for r in records:
        keys = [e.key for e in store.epoch_metrics("three", r.trial_id)]
        assert keys.count("train_loss") == 1  # one epoch, recorded once
        assert r.metrics["steps"] == 2.0
        log = (runs / "three" / r.trial_id / "claims.log").read_text()
        claims = log.count("claimed by")
        if after_kill[r.trial_id] == "running":  # killed mid-trial, taken over at once
            assert claims == 2 and "its process is gone" in log, log
        else:  # done before the kill (never trained again), or never reached
            assert claims == 1, log
    con = sqlite3.connect(db)
    assert con.execute("SELECT count(*) FROM trials").fetchone()[0] == 3

    # the same command never interrupted, into another database: the same figures (a
    # process of its own, so it trains with the threads the killed run's process chose)
    clean = tmp_path / "clean.db"
    out = subprocess.run([*command[:-4], "--db", str(clean), "--runs-dir",
                          str(tmp_path / "clean-runs")], capture_output=True, text=True,
                         timeout=600)
    assert out.returncode == 0, out.stdout + out.stderr
    expected = {r.trial_id: r.metrics for r in Store(str(clean)).trials("three")}
    for r in records:
        for key in ("miou", "pixel_acc", "train_loss"):
            if key in expected[r.trial_id]:
                assert r.metrics[key] == expected[r.trial_id][key], (r.name, key)


@pytest.mark.slow
def test_wait_takes_over_a_trial_once_its_holder_s_lease_expires(tmp_path, monkeypatch):
    """A holder on another machine (its process cannot be inspected) keeps its trial until
    its lease expires; --wait waits for that here and then trains it. The lease runs out
    while the runner sleeps (its sleep is the test's): no clock decides what the runner
    sees, however slowly it starts."""
    recipe = tmp_path / "three.toml"
    recipe.write_text(THREE)
    db = tmp_path / "w.db"
    trials = expand(parse_recipe(THREE, str(recipe)))
    store = Store(str(db))
    store.upsert_study("three")
    store.register_trials("three", trials)
    far = {"host": "another-machine", "pid": 1, "executor": "local", "job_id": None}
    store.claim("three", trials[0].trial_id, far, 600.0)
    base = ["run", str(recipe), "--db", str(db), "--runs-dir", str(tmp_path / "runs")]
    out = CliRunner().invoke(main, base)
    assert out.exit_code == 0, out.output
    assert "left 1 to other runners (1 running now)" in out.output
    assert "or add --wait to wait for them here" in out.output
    from datetime import timedelta
    from types import SimpleNamespace

    from ablate.dispatch import study as runner
    from ablate.store.models import TrialRow

    waits = []

    def far_holder_stops_renewing(seconds: float) -> None:  # while the runner waits
        waits.append(seconds)
        with store.session() as s:
            row = s.query(TrialRow).filter(TrialRow.trial_id == trials[0].trial_id).one()
            row.lease_expires_at = store.database_time() - timedelta(seconds=1)

    monkeypatch.setattr(runner, "time", SimpleNamespace(sleep=far_holder_stops_renewing))
    out = CliRunner().invoke(main, [*base, "--wait"])
    assert out.exit_code == 0, out.output
    assert "waiting for 1 trial(s) other runners hold; the first lease expires at" in out.output
    assert waits == [runner.WAIT_POLL_S]  # 10 minutes of lease left: it looks again in 5 s
    records = store.trials("three")
    assert {r.status for r in records} == {"done"}
    log = (tmp_path / "runs" / "three" / trials[0].trial_id / "claims.log").read_text()
    assert log.count("claimed by") == 1 and "(took over from another-machine:1 local, lease " \
        "expired)" in log, log


def children(pid: int) -> dict[int, str | None]:
    """The live child processes of ``pid``, each with its start (to tell a reused pid)."""
    from ablate.dispatch.liveness import process_start

    found = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rpartition(")")[2].split()
        except OSError:
            continue
        if int(fields[1]) == pid:  # field 4 overall: the parent pid
            found[int(stat.parent.name)] = process_start(int(stat.parent.name))
    return found


def alive(pids: dict[int, str | None]) -> list[int]:
    from ablate.dispatch.liveness import process_start

    return [pid for pid, started in pids.items() if started and process_start(pid) == started]


@pytest.mark.slow
def test_workers_of_a_killed_runner_finish_their_trials_take_no_more_and_exit(tmp_path):
    """kill -9 of `ablate run --jobs 2` alone: its workers live on, so their claims hold
    (alive, not dead) and they record their trials; they take no queued trial (the same
    command takes it) and then exit, with the manager process, instead of idling forever."""
    recipe = tmp_path / "three.toml"
    recipe.write_text(THREE.replace("epochs = 1", "iterations = 40\ncheckpoint_every = 2")
                      .replace("[base.eval]", "[base.eval]\nevery = 100"))
    db, runs = tmp_path / "o.db", tmp_path / "runs"
    command = [sys.executable, "-m", "ablate", "run", str(recipe), "--db", str(db),
               "--runs-dir", str(runs), "--jobs", "2"]
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    kids: dict[int, str | None] = {}
    try:
        deadline = time.monotonic() + 300  # a bound on failure, as above
        while not list(runs.glob("three/*/checkpoint.pt")):
            assert proc.poll() is None, "the run ended before it could be killed"
            assert time.monotonic() < deadline, "no checkpoint within 300 s"
            time.sleep(0.1)
        kids = children(proc.pid)  # the pool's workers and the manager
        proc.send_signal(signal.SIGKILL)  # the runner alone, mid-trial
        proc.wait(timeout=30)
        store = Store(str(db))

        def settled():  # every child still alive holds a trial (the manager and idle
            # workers have exited): no worker can claim anything any more
            holders = {r.trial_id: r.holder["pid"] for r in store.trials("three")
                       if r.status != "pending"}
            return holders if holders and set(alive(kids)) <= set(holders.values()) else None

        deadline = time.monotonic() + 300  # the orphans may train their trials to the end first
        while (held := settled()) is None:
            assert time.monotonic() < deadline, f"orphans not settled: {alive(kids)}"
            time.sleep(0.1)
        assert set(held.values()) <= set(kids)  # the orphans' trials

        again = subprocess.run([*command, "--wait"], capture_output=True, text=True,
                               timeout=600)
        assert again.returncode == 0, again.stdout + again.stderr
        records = store.trials("three")
        assert {r.status for r in records} == {"done"}
        for r in records:
            log = (runs / "three" / r.trial_id / "claims.log").read_text()
            assert log.count("claimed by") == 1 and "resumed" not in log, log  # trained once
            if r.trial_id in held:  # recorded by the orphan that held it
                assert r.holder["pid"] == held[r.trial_id], log
            else:  # left by the orphans to the next runner
                assert r.holder["pid"] not in kids, log
        assert len(held) < len(records)  # no orphan took a queued trial
        deadline = time.monotonic() + 120
        while alive(kids):
            assert time.monotonic() < deadline, f"orphans still running: {alive(kids)}"
            time.sleep(0.2)
    finally:
        for pid in alive(kids):
            os.kill(pid, signal.SIGKILL)
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)


def test_corrupt_result_files_are_reported_and_never_ingested(tmp_path):
    recipe = parse_recipe(THREE, "three.toml")
    trials = expand(recipe)
    store = Store(f"sqlite:///{tmp_path / 'c.db'}")
    store.upsert_study("three")
    store.register_trials("three", trials)
    good, half, alien = (t.trial_id for t in trials)
    runs = tmp_path / "runs"
    TrialResult("three", good, TrialStatus.DONE, final={"miou": 0.5}).write(
        run_dir_for(runs, "three", good))
    whole = json.dumps({"format": 1, "study": "three", "trial_id": half, "status": "done",
                        "final": {"miou": 0.9}, "epochs": []})
    half_path = run_dir_for(runs, "three", half) / "result.json"
    half_path.parent.mkdir(parents=True)
    half_path.write_text(whole[: len(whole) // 2])  # a writer died mid-file
    TrialResult("other", alien, TrialStatus.DONE).write(  # copied from another study
        run_dir_for(runs, "three", alien))

    report = ingest_results(store, "three", runs)
    assert report.ingested == [good]
    assert len(report.corrupt) == 2
    assert any(line.startswith(f"{half_path}: unreadable result file") for line in report.corrupt)
    assert any(line.endswith(f"belongs to other/{alien}") for line in report.corrupt)
    assert store.statuses("three") == {good: "done", half: "pending", alien: "pending"}
    assert ingest_results(store, "three", runs).ingested == []  # and again: nothing new
