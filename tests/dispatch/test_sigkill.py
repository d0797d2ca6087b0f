"""Faults: the driver killed with SIGKILL mid-study, and broken result files on disk."""

from __future__ import annotations

import json
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
def test_sigkilled_run_is_finished_by_the_next_one_without_duplicates(tmp_path):
    recipe = tmp_path / "three.toml"
    recipe.write_text(THREE)
    db, runs = tmp_path / "k.db", tmp_path / "runs"
    command = [sys.executable, "-m", "ablate", "run", str(recipe), "--db", str(db),
               "--runs-dir", str(runs), "--lease-seconds", "2"]
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while done_count(db) < 1:
            assert proc.poll() is None, "the run ended before it could be killed"
            assert time.monotonic() < deadline, "no trial finished within 120 s"
            time.sleep(0.1)
        proc.send_signal(signal.SIGKILL)  # in the middle of the second trial
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    store = Store(str(db))
    after_kill = store.statuses("three")
    assert sorted(after_kill.values()).count("done") in (1, 2)
    assert "pending" in after_kill.values() or "running" in after_kill.values()

    # the killed runner's claim is released by its lease running out (2 s)
    deadline = time.monotonic() + 10
    unfinished = [t for t, s in after_kill.items() if s != "done"]
    while store.claimable("three", unfinished) != unfinished:
        assert time.monotonic() < deadline, "the killed runner's lease did not expire"
        time.sleep(0.2)
    again = CliRunner().invoke(main, command[3:])  # in-process: torch is imported already
    assert again.exit_code == 0, again.output
    records = store.trials("three")
    assert len(records) == 3 and {r.status for r in records} == {"done"}
    for r in records:
        keys = [e.key for e in store.epoch_metrics("three", r.trial_id)]
        assert keys.count("train_loss") == 1  # one epoch, ingested once
        assert r.metrics["steps"] == 2.0
    con = sqlite3.connect(db)
    assert con.execute("SELECT count(*) FROM studies").fetchone()[0] == 1
    assert con.execute("SELECT count(*) FROM trials").fetchone()[0] == 3
    assert con.execute("SELECT count(*) FROM costs").fetchone()[0] == 1
    metric_rows = con.execute("SELECT count(*) FROM metrics WHERE epoch IS NULL "
                              "GROUP BY trial_pk").fetchall()
    assert len({n for (n,) in metric_rows}) == 1  # the same final figures for each trial


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
