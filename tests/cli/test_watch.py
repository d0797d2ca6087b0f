"""``ablate watch``: a study recorded through the store API (no training), watched
finished, and watched while a thread records its last trials."""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from datetime import datetime, timedelta

import pytest
from click.testing import CliRunner

from ablate.cli import main
from ablate.dispatch.prepare import load_trials
from ablate.dispatch.progress import PROGRESS_FILE, ProgressFile, read_progress
from ablate.store import CostRecord, Store
from ablate.train.events import EpochEnded, Resumed, Stepped
from ablate.trials.lifecycle import TrialResult

RECIPE = """
name = "watched"
seeds = [0, 1]

[base.model]
backbone = "mobilenet_v3_small"
head = "deeplabv3plus"

[base.data]
name = "shapes"
classes = 3
image_size = 32

[grid]
"model.keep_last_expansion" = [true, false]
"train.lr" = [0.003, 0.01]
"""
# mIoU % per (keep_last_expansion, lr) and seed: keeping it is worth +10.25 points on
# average, lr 0.01 +3.75; the best configuration is true, 0.01 at 45.50 ± 2.12
MIOU = {("true", "0.003"): (40.0, 42.0), ("true", "0.01"): (44.0, 47.0),
        ("false", "0.003"): (30.0, 33.0), ("false", "0.01"): (34.0, 35.0)}
HOLDER = {"host": "node7", "pid": 4242, "executor": "local", "job_id": None}
T0 = datetime(2026, 1, 1, 12, 0, 0)


@pytest.fixture
def study(write_recipe, tmp_path):
    """The recorded study (8 trials, all pending), its database path and its trials."""
    db = tmp_path / "w.db"
    recipe, trials = load_trials(str(write_recipe(RECIPE)))
    store = Store(str(db))
    store.upsert_study(recipe.name, "", recipe.path, recipe.text)
    store.register_trials(recipe.name, trials)
    for arch in {t.arch_id for t in trials}:
        store.put_cost(CostRecord(arch_id=arch, params=1000, params_by_module={}, flops=2 * 10**9,
                                  flops_by_module=None, flops_convention="fvcore-mac",
                                  resolution=(32, 32)))
    return db, store, trials, tmp_path / "runs"


def _miou(trial) -> float:
    key = (str(trial.axes["model.keep_last_expansion"]).lower(), str(trial.axes["train.lr"]))
    return MIOU[key][trial.seed] / 100.0


def _record(store, trial, runs, claim_epoch: int | None = None) -> None:
    """``trial`` done after 10 s (the mean trial time the ETA uses)."""
    result = {"study": "watched", "trial_id": trial.trial_id, "name": trial.name,
              "run_dir": str(runs / trial.trial_id), "status": "done", "error": None,
              "started_at": T0.isoformat(), "finished_at": (T0 + timedelta(seconds=10)).isoformat(),
              "final": {"miou": _miou(trial), "pixel_acc": 0.9, "latency_ms": 1.5},
              "epochs": [{"epoch": 1, "step": 10, "metrics": {"train_loss": 0.5}}]}
    if claim_epoch is not None:
        result["claim_epoch"] = claim_epoch
    assert store.record(TrialResult.from_json({"format": 1, **result}))


def _claim(store, trial, runs):
    claim = store.claim("watched", trial.trial_id, HOLDER, 600, run_dir=str(runs / trial.trial_id))
    assert claim.epoch >= 1
    return claim


def _rows(text: str) -> list[list[str]]:
    """The cells of every table row rich drew."""
    return [[c.strip() for c in line.split("│")[1:-1]] for line in text.splitlines()
            if line.startswith("│")]


@pytest.mark.slow  # ~1 s: the effects of a study
def test_finished_study_prints_once_and_exits_0(study):
    db, store, trials, runs = study
    for trial in trials:
        _record(store, trial, runs)
    before = (db.stat().st_mtime_ns, sorted(p.name for p in db.parent.iterdir()))
    result = CliRunner().invoke(main, ["watch", "--db", str(db), "--interval", "0.05"])
    assert result.exit_code == 0, result.output
    out = result.output
    assert out.count("watched: 8 done of 8 trial(s)") == 1  # printed once
    assert "complete" in out and "time left" not in out and "running" not in out
    assert ("best so far: keep_last_expansion=true,lr=0.01  mIoU 45.50 ± 2.12 % (n=2)"
            in out)
    effects = {row[0]: row for row in _rows(out)}
    assert effects["model.keep_last_expansion"][1:4] == ["true -> false", "-10.25", "[-19.80, -0.70]"]
    assert effects["train.lr"][1:4] == ["0.003 -> 0.01", "+3.75", "[-5.80, +13.30]"]
    # the named study too; nothing written (no -wal/-shm files left, the file untouched)
    named = CliRunner().invoke(main, ["watch", "watched", "--db", str(db)])
    assert named.exit_code == 0 and named.output == out
    assert (db.stat().st_mtime_ns, sorted(p.name for p in db.parent.iterdir())) == before


@pytest.mark.slow
def test_running_study_refreshes_until_the_last_trial_is_recorded(study, monkeypatch):
    db, store, trials, runs = study
    from ablate.dispatch import live

    looks = threading.Condition()
    taken = [0]  # snapshots taken so far
    real_snapshot = live.study_snapshot

    def snapshot(*args, **kwargs):  # counts the looks the writer waits for
        try:
            return real_snapshot(*args, **kwargs)
        finally:
            with looks:
                taken[0] += 1
                looks.notify_all()

    def after_a_look() -> None:  # the next change only once watch has seen the last one
        with looks:
            seen = taken[0]
            assert looks.wait_for(lambda: taken[0] > seen, timeout=60)

    monkeypatch.setattr(live, "study_snapshot", snapshot)
    for trial in trials[:4]:
        _record(store, trial, runs)
    running = _claim(store, trials[4], runs)
    tracker = ProgressFile(runs / trials[4].trial_id)  # what the worker writes
    tracker.event(Stepped(step=5, total_steps=10, epoch=1, epochs=2, loss=0.8125, lr=0.003))

    def finish_the_study():  # the runner records the running trial, then the rest
        with looks:
            assert looks.wait_for(lambda: taken[0] >= 1, timeout=60)  # the first look
        _record(store, trials[4], runs, running.epoch)
        for trial in trials[5:]:
            after_a_look()
            _record(store, trial, runs, _claim(store, trial, runs).epoch)

    writer = threading.Thread(target=finish_the_study)
    writer.start()
    try:
        result = CliRunner().invoke(main, ["watch", "watched", "--db", str(db),
                                           "--interval", "0.1"])
    finally:
        writer.join()
    assert result.exit_code == 0, result.output
    snapshots = result.output.split("\nwatched: ")
    first, last = snapshots[0], snapshots[-1]
    assert first.startswith("watched: 4 done, 1 running, 3 pending of 8 trial(s)")
    # 3 pending x 10 s + half of the running one's 10 s, one trial at a time
    assert "time left: about 35 s (a trial takes 10 s on average; 1 at a time)" in first
    (row,) = [r for r in _rows(first) if r[1] == "node7:4242 local"]
    assert row[0] == trials[4].name and row[3:] == ["1/2", "5/10", "0.812", "-"]
    assert "best so far: keep_last_expansion=true,lr=0.01  mIoU 45.50 ± 2.12 % (n=2)" in first
    assert last.startswith("8 done of 8 trial(s)") and "complete" in last
    assert len(snapshots) >= 3  # refreshed as trials were recorded, not only at the end


def test_bad_input_is_one_line_exit_2(study, tmp_path):
    db, _store, _trials, _runs = study
    unknown = CliRunner().invoke(main, ["watch", "nope", "--db", str(db)])
    assert unknown.exit_code == 2
    assert unknown.output.strip().splitlines() == [
        f"Error: STUDY: no study 'nope' in sqlite:///{db}; known: watched"]
    missing = tmp_path / "absent.db"
    gone = CliRunner().invoke(main, ["watch", "--db", str(missing)])
    assert gone.exit_code == 2 and len(gone.output.strip().splitlines()) == 1
    assert not missing.exists()  # never created
    bad = CliRunner().invoke(main, ["watch", "--db", str(db), "--interval", "0"])
    assert bad.exit_code == 2 and "--interval" in bad.output


def test_ctrl_c_exits_130_quietly(study, monkeypatch):
    db, store, trials, runs = study
    _claim(store, trials[0], runs)  # still running: the watch would go on

    def interrupted(_seconds):
        raise KeyboardInterrupt

    monkeypatch.setattr(time, "sleep", interrupted)
    result = CliRunner().invoke(main, ["watch", "--db", str(db), "--interval", "0.05"])
    assert result.exit_code == 130
    assert "Traceback" not in result.output and "Error" not in result.output
    assert result.output.startswith("watched: 1 running, 7 pending of 8 trial(s)")


def test_before_any_trial_is_done_the_time_left_comes_from_the_running_trials_pace(
        study, monkeypatch):
    """Hours of a long study's first trials had no estimate ("estimated once a trial is
    done"): the running trials' steps give one, said to be of training only."""
    from ablate.dispatch import live

    db, store, trials, runs = study
    for trial in trials[:2]:
        _claim(store, trial, runs)
    ProgressFile(runs / trials[0].trial_id).event(
        Stepped(step=40, total_steps=100, epoch=1, epochs=2, loss=0.5, lr=0.01))
    resumed = ProgressFile(runs / trials[1].trial_id)  # 20 steps since it resumed at 50
    resumed.event(Resumed(step=50))
    resumed.last_write = float("-inf")  # the next step is written at once (no throttle)
    resumed.event(Stepped(step=70, total_steps=100, epoch=2, epochs=2, loss=0.4, lr=0.01))
    started = max(r.started_at for r in store.trials("watched") if r.started_at)
    # the database's clock, 60 s after both claims: no sleep, no wall clock
    monkeypatch.setattr(Store, "database_time", lambda self: started + timedelta(seconds=60))
    snap = live.study_snapshot(Store(str(db), read_only=True), "watched")
    # paces: 60 s for 40 % -> 150 s; 60 s for the 20 % since its resume -> 300 s; median 225
    assert snap.paced and snap.mean_trial_s == pytest.approx(225.0, rel=1e-3)  # claims' ms
    # 6 pending x 225 s + 60 % and 30 % of 225 s left, 2 at a time: 776.25 s
    assert snap.eta_s == pytest.approx((6 * 225 + 0.6 * 225 + 0.3 * 225) / 2, rel=1e-3)
    monkeypatch.setattr(time, "sleep", lambda _s: (_ for _ in ()).throw(KeyboardInterrupt))
    out = CliRunner().invoke(main, ["watch", "--db", str(db)]).output
    assert ("time left: about 12 min 56 s, training only (at the running trials' pace a trial "
            "trains in 3 min 45 s; evaluation counts once a trial is done; 2 at a time)") \
        in " ".join(out.split())


def test_a_pace_needs_two_percent_of_the_steps_since_the_claim():
    from ablate.dispatch.live import RunningTrial, paced_trial_s

    def trial(step, elapsed, resumed=None):
        return RunningTrial("t", "h", 0.0, elapsed, step=step, total_steps=1000,
                            resumed_at_step=resumed)

    assert trial(19, 30.0).paced_s() is None  # 1.9 %: mostly set-up so far
    assert trial(20, 30.0).paced_s() == pytest.approx(1500.0)
    assert trial(520, 30.0, resumed=510).paced_s() is None  # 1 % since its resume
    assert trial(20, None).paced_s() is None and trial(None, 30.0).paced_s() is None
    assert paced_trial_s([trial(20, 30.0), trial(40, 30.0), trial(5, 30.0)]) \
        == pytest.approx((1500.0 + 750.0) / 2)
    assert paced_trial_s([trial(5, 30.0)]) is None


def test_read_only_store_refuses_writes(study):
    db, _store, trials, _runs = study
    reader = Store(str(db), read_only=True)
    assert len(reader.trials("watched")) == 8
    with pytest.raises(Exception, match="readonly"):
        reader.record(TrialResult.failure("watched", trials[0].trial_id, "no"))
    assert sqlite3.connect(db).execute("SELECT count(*) FROM trials WHERE status = 'failed'"
                                       ).fetchone() == (0,)


def test_progress_file_is_throttled_and_never_fails(tmp_path, monkeypatch):
    from types import SimpleNamespace

    from ablate.dispatch import progress

    now = [1000.0]  # the tracker's clock, moved by the test: a slow machine changes nothing
    monkeypatch.setattr(progress, "time", SimpleNamespace(monotonic=lambda: now[0],
                                                          time=time.time))
    tracker = ProgressFile(tmp_path / "run")
    seen = []
    wrapped = tracker.wrap(seen.append)
    wrapped(Stepped(step=1, total_steps=4, epoch=1, epochs=1, loss=2.0, lr=0.1))
    now[0] += 0.5
    wrapped(Stepped(step=2, total_steps=4, epoch=1, epochs=1, loss=1.5, lr=0.1))
    assert read_progress(tmp_path / "run")["step"] == 1  # the second within a second: held
    wrapped(EpochEnded(epoch=1, epochs=1, step=4, metrics={"train_loss": 1.0, "val_miou": 0.25}))
    data = json.loads((tmp_path / "run" / PROGRESS_FILE).read_text())
    assert (data["step"], data["loss"], data["val_miou"]) == (4, 1.5, 0.25)  # epoch ends: at once
    now[0] += 0.75
    wrapped(Stepped(step=5, total_steps=8, epoch=2, epochs=2, loss=0.5, lr=0.1))
    assert read_progress(tmp_path / "run")["step"] == 4  # within a second of the epoch's end
    now[0] += 0.25
    wrapped(Stepped(step=6, total_steps=8, epoch=2, epochs=2, loss=0.25, lr=0.1))
    assert read_progress(tmp_path / "run")["step"] == 6  # a second on: written
    assert [type(e) for e in seen] == [Stepped, Stepped, EpochEnded, Stepped, Stepped]
    (tmp_path / "file").write_text("")
    blocked = ProgressFile(tmp_path / "file")  # its folder is a file: writes fail quietly
    blocked.event(EpochEnded(epoch=1, epochs=1, step=1))
    assert read_progress(tmp_path / "file") is None and read_progress(None) is None


@pytest.mark.slow  # trains one tiny trial
def test_a_trained_trial_leaves_its_progress_in_its_run_folder(tiny_recipe, tmp_path):
    db, runs = tmp_path / "t.db", tmp_path / "runs"
    result = CliRunner().invoke(main, ["run", str(tiny_recipe), "--db", str(db), "--runs-dir",
                                       str(runs), "--trial", "keep_last_expansion=true/seed=0"])
    assert result.exit_code == 0, result.output
    (trial,) = [t for t in Store(str(db)).trials("tiny") if t.status == "done"]
    progress = read_progress(runs / "tiny" / trial.trial_id)
    # 16 images in batches of 8: 2 steps, the last epoch's end written at once
    assert {k: progress[k] for k in ("epoch", "epochs", "step", "total_steps")} == {
        "epoch": 1, "epochs": 1, "step": 2, "total_steps": 2}
    assert progress["loss"] > 0 and 0 <= progress["val_miou"] <= 1
