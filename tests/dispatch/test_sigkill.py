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
from ablate.dispatch.results import ingest_results, run_dir_for, write_result
from ablate.recipes.loader import parse_recipe
from ablate.store import Store
from ablate.trials.expand import expand
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
        deadline = time.monotonic() + 120
        while done_count(db) < 1:
            assert proc.poll() is None, "the run ended before it could be killed"
            assert time.monotonic() < deadline, "no trial finished within 120 s"
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

    started = time.monotonic()
    again = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "left" not in again.stdout and time.monotonic() - started < 120
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

    # the same study never interrupted, into another database: the same figures
    clean = tmp_path / "clean.db"
    out = CliRunner().invoke(main, ["run", str(recipe), "--db", str(clean),
                                    "--runs-dir", str(tmp_path / "clean-runs")])
    assert out.exit_code == 0, out.output
    expected = {r.trial_id: r.metrics for r in Store(str(clean)).trials("three")}
    for r in records:
        for key in ("miou", "pixel_acc", "train_loss"):
            if key in expected[r.trial_id]:
                assert r.metrics[key] == expected[r.trial_id][key], (r.name, key)


@pytest.mark.slow
def test_wait_takes_over_a_trial_once_its_holder_s_lease_expires(tmp_path):
    """A holder on another machine (its process cannot be inspected) keeps its trial until
    its lease expires; --wait waits for that here and then trains it."""
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
    assert "left 1 to other runners (1 running)" in out.output
    assert "or add --wait to wait for them here" in out.output
    from datetime import timedelta

    from ablate.store.models import TrialRow

    with store.session() as s:  # the far holder stopped renewing: 3 s of lease left
        row = s.query(TrialRow).filter(TrialRow.trial_id == trials[0].trial_id).one()
        row.lease_expires_at = store.database_time() + timedelta(seconds=3)
    out = CliRunner().invoke(main, [*base, "--wait"])
    assert out.exit_code == 0, out.output
    assert "waiting for 1 trial(s) other runners hold; the first lease expires at" in out.output
    assert {r.status for r in store.trials("three")} == {"done"}


def test_corrupt_result_files_are_reported_and_never_ingested(tmp_path):
    recipe = parse_recipe(THREE, "three.toml")
    trials = expand(recipe)
    store = Store(f"sqlite:///{tmp_path / 'c.db'}")
    store.upsert_study("three")
    store.register_trials("three", trials)
    good, half, alien = (t.trial_id for t in trials)
    runs = tmp_path / "runs"
    write_result(run_dir_for(runs, "three", good), {
        "study": "three", "trial_id": good, "status": "done", "error": None,
        "final": {"miou": 0.5}, "epochs": []})
    whole = json.dumps({"format": 1, "study": "three", "trial_id": half, "status": "done",
                        "final": {"miou": 0.9}, "epochs": []})
    half_path = run_dir_for(runs, "three", half) / "result.json"
    half_path.parent.mkdir(parents=True)
    half_path.write_text(whole[: len(whole) // 2])  # a writer died mid-file
    write_result(run_dir_for(runs, "three", alien), {  # copied from another study
        "study": "other", "trial_id": alien, "status": "done", "final": {}, "epochs": []})

    report = ingest_results(store, "three", runs)
    assert report.ingested == [good]
    assert len(report.corrupt) == 2
    assert any(line.startswith(f"{half_path}: unreadable result file") for line in report.corrupt)
    assert any(line.endswith(f"belongs to other/{alien}") for line in report.corrupt)
    assert store.statuses("three") == {good: "done", half: "pending", alien: "pending"}
    assert ingest_results(store, "three", runs).ingested == []  # and again: nothing new
