"""--tracking wandb with the real wandb package, offline, no network: every run is read
back from its transaction log (``run-<id>.wandb``) by wandb's own reader, ``wandb leet
inspect`` (records as JSON lines; ``--summary`` for the run's state, config, summary and
tags), and the summary run's tables from the files wandb wrote beside it. Nothing of
wandb's API is replaced."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from ablate.cli import main
from ablate.store import Store
from ablate.track import TrackedTrial, open_trackers
from ablate.track import wandb as wb
from ablate.train.events import EpochEnded, Resumed, Stepped

# make test installs the extra; a bare pytest without it says what to install (CI fails then)
if not os.environ.get("CI"):
    pytest.importorskip("wandb", reason="pip install -e '.[wandb]'")

WANDB_CLI = [sys.executable, "-m", "wandb"]


@dataclass
class RunFile:
    """One ``.wandb`` file as wandb's reader gives it back."""

    path: Path
    records: list[dict[str, Any]]
    summary: dict[str, Any]  # `leet inspect --summary`: state, config, summary, tags, ...

    @property
    def run(self) -> dict[str, Any]:  # the run record: id, name, group, job type, project
        return next(r["run"] for r in self.records if r["type"] == "run")

    def history(self, key: str) -> list[tuple[int, Any]]:
        return [(r["history"]["item"]["_step"], r["history"]["item"][key])
                for r in self.records if r["type"] == "history" and key in r["history"]["item"]]

    def media(self, key: str) -> Path:
        """A table or image the run logged (its summary entry names the file)."""
        return self.path.parent / "files" / self.summary["summary"][key]["path"]


def _inspect(path: Path, *flags: str) -> str:
    out = subprocess.run([*WANDB_CLI, "leet", "inspect", *flags, str(path)], capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return out.stdout


def read_back(path: Path) -> RunFile:
    records = [json.loads(line) for line in _inspect(path, "--json").splitlines() if line]
    return RunFile(path, records, json.loads(_inspect(path, "--summary", "--json")))


def runs_in(folder: Path) -> list[RunFile]:
    """The W&B runs written under a run folder, oldest first (one per attempt)."""
    files = [read_back(p) for p in (folder / "wandb").glob("offline-run-*/run-*.wandb")]
    return sorted(files, key=lambda f: f.path.parent.name)


def own_service() -> dict[str, str]:
    """The environment for a trial in a process of its own: without WANDB_SERVICE, which
    this process's wandb set and which would attach the child to this process's service."""
    return {k: v for k, v in os.environ.items() if k != "WANDB_SERVICE"}


@pytest.fixture(scope="session")
def reader():
    out = subprocess.run([*WANDB_CLI, "leet", "inspect", "--help"], capture_output=True)
    if out.returncode != 0:
        message = "this wandb has no `wandb leet inspect`, wandb's reader of .wandb files"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)


@pytest.fixture
def wandb_env(tmp_path, monkeypatch, reader):
    """No key, no server, no project from the environment; wandb's own folders in tmp."""
    for name in ("WANDB_MODE", "WANDB_API_KEY", "WANDB_BASE_URL", "WANDB_PROJECT",
                 "WANDB_ENTITY", "WANDB_DIR", "WANDB_INIT_TIMEOUT", "WANDB_FINISH_TIMEOUT"):
        monkeypatch.delenv(name, raising=False)
    for name in ("WANDB_CONFIG_DIR", "WANDB_CACHE_DIR", "WANDB_DATA_DIR", "WANDB_ARTIFACT_DIR"):
        monkeypatch.setenv(name, str(tmp_path / "wandb-home" / name.lower()))
    netrc = tmp_path / "netrc"
    netrc.write_text("")
    monkeypatch.setenv("NETRC", str(netrc))


@pytest.fixture
def silent_server():
    """A port that accepts connections and never answers (a hung server)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(8)
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"


@pytest.mark.slow
def test_a_study_reads_back_as_runs_grouped_by_configuration(tmp_path, tiny_recipe, wandb_env,
                                                             silent_server, monkeypatch):
    from ablate.report.build import build_report

    # a key, and a server that does not answer: offline after the probe, one warning
    monkeypatch.setattr(wb, "PROBE_TIMEOUT_S", 1.0)
    monkeypatch.setenv("WANDB_API_KEY", "k" * 40)
    monkeypatch.setenv("WANDB_BASE_URL", silent_server)
    db, runs = tmp_path / "wb.db", tmp_path / "runs"
    result = CliRunner().invoke(main, ["run", str(tiny_recipe), "--db", str(db), "--runs-dir",
                                       str(runs), "--tracking", "wandb", "--set", "seeds=[0,1]"])
    assert result.exit_code == 0, result.output
    assert result.output.count("Warning: tracker wandb") == 1
    assert f"{silent_server} does not answer (timed out)" in result.output
    store = Store(str(db))
    trials = store.trials("tiny")
    assert len(trials) == 4 and {t.status for t in trials} == {"done"}
    groups = Counter()
    for trial in trials:
        (run,) = runs_in(runs / "tiny" / trial.trial_id)
        record = run.run
        assert record["run_id"] == wb.run_id("tiny", trial.trial_id)
        assert (record["display_name"], record["job_type"], record["project"]) == (
            trial.name, "tiny", "tiny")
        groups[record["run_group"]] += 1
        config = run.summary["config"]
        assert {k: config[k] for k in ("model_keep_last_expansion", "seed", "configuration",
                                       "variant", "study", "trial_id", "axes")} == {
            "model_keep_last_expansion": trial.axes["model.keep_last_expansion"],
            "seed": trial.seed, "configuration": trial.config_name, "variant": "base",
            "study": "tiny", "trial_id": trial.trial_id, "axes": "model_keep_last_expansion"}
        assert not [k for k, v in config.items() if "." in k or v is None]
        # every resolved key of the trial's spec, flat, as the trial trained it
        assert (config["train_lr"], config["data_image_size"], config["model_backbone"],
                config["model_bn_momentum"]) == (0.003, 32, "mobilenet_v3_small", 0.1)
        resolved = {wb.config_key(k): wb.config_value(v)
                    for k, v in wb.flat_config(trial.spec).items()}
        assert len(resolved) > 40 and resolved.items() <= config.items()
        # every logged step (16 images, batch 8, log_every 1); the epoch row at its last step
        assert [step for step, _ in run.history("train/loss")] == [1, 2]
        assert run.history("epoch") == [(2, 1)]
        (step, val_miou), = run.history("val/miou")
        assert val_miou == pytest.approx(trial.metrics["miou"])  # the last evaluation
        summary = run.summary["summary"]
        assert summary["final/miou"] == pytest.approx(trial.metrics["miou"])
        assert summary["final/latency_ms_eager/bs1"] == pytest.approx(
            trial.metrics["latency_ms@eager/bs1"])
        assert not [k for k in summary if k.startswith(("train/", "val/", "epoch/"))]
        assert run.summary["state"] == "finished" and run.summary["tags"] == [
            "study:tiny", "status:done"]
        assert trial.environment["tracking"] == {"wandb": {
            "run_id": record["run_id"], "mode": "offline", "project": "tiny",
            "dir": str(run.path.parent)}}
    assert groups == {"keep_last_expansion=true": 2, "keep_last_expansion=false": 2}

    # the study's own run, in the study's folder: the report's tables and plots
    (study,) = runs_in(runs / "tiny")
    assert (study.run["job_type"], study.run["display_name"]) == ("summary", "tiny/summary")
    assert study.summary["state"] == "finished"
    report = build_report(store, ["tiny"], effects=True)
    effects = json.loads(study.media("effects").read_text())
    (row,) = [dict(zip(effects["columns"], r)) for r in effects["data"]]
    (expected,) = report.effects.to_dict("records")
    assert {k: row[k] for k in ("axis", "change", "n", "verdict")} == {
        "axis": "model.keep_last_expansion", "change": expected["change"], "n": 2,
        "verdict": expected["verdict"]}
    assert {"estimate", "ci_low", "ci_high", "p_adj"} <= set(row)
    table = json.loads(study.media("configurations").read_text())
    rows = {r[1]: dict(zip(table["columns"], r)) for r in table["data"]}
    for config in report.configs.to_dict("records"):
        got = rows[config["config_name"]]
        assert got["n"] == 2
        assert got["miou"] == f"{config['miou_mean']:.2f} ± {config['miou_std']:.2f}"
    for stem in ("params", "gflops", "latency_ms"):
        assert study.media(f"pareto/{stem}").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.slow
def test_an_interrupted_trial_continues_its_run_and_steps(tmp_path, tiny_recipe, wandb_env,
                                                          monkeypatch):
    from ablate.dispatch import local

    monkeypatch.setenv("WANDB_MODE", "offline")
    db, runs = tmp_path / "wb.db", tmp_path / "runs"
    args = ["run", str(tiny_recipe), "--db", str(db), "--runs-dir", str(runs), "--tracking",
            "wandb", "--set", "train.epochs=2", "--set", "train.checkpoint_every=1"]
    real = local.claim_and_run
    interrupted = []

    def ctrl_c_at_step_3(job, progress=None, **kwargs):
        if interrupted:
            return real(job, progress, **kwargs)
        interrupted.append(job.trial_id)

        def stop(event):  # after the trackers saw step 3; the checkpoint is step 2's
            if progress:
                progress(event)
            if isinstance(event, Stepped) and event.step == 3:
                raise KeyboardInterrupt

        return real(job, stop, **kwargs)

    monkeypatch.setattr(local, "claim_and_run", ctrl_c_at_step_3)
    assert CliRunner().invoke(main, args).exit_code == 130
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    first, again = runs_in(runs / "tiny" / interrupted[0])
    assert first.run["run_id"] == again.run["run_id"] == wb.run_id("tiny", interrupted[0])
    assert [s for s, _ in first.history("train/loss")] == [1, 2, 3]
    assert [s for s, _ in again.history("train/loss")] == [4]  # step 3 was logged already
    assert first.history("epoch") + again.history("epoch") == [(2, 1), (4, 2)]
    assert first.summary["state"] == "failed" and first.summary["tags"][-1] == "status:interrupted"
    assert any(r["type"] == "preempting" for r in first.records)
    assert again.summary["state"] == "finished" and "final/miou" in again.summary["summary"]


@pytest.mark.slow
def test_a_nan_loss_is_a_failed_run_and_a_failed_study(tmp_path, tiny_recipe, wandb_env,
                                                      monkeypatch):
    from ablate.train import loop

    monkeypatch.setenv("WANDB_MODE", "offline")
    real, calls = loop.segmentation_loss, []

    def nan_at_step_2(*args, **kwargs):
        loss, parts = real(*args, **kwargs)
        calls.append(1)
        return (loss * float("nan") if len(calls) % 2 == 0 else loss), parts

    monkeypatch.setattr(loop, "segmentation_loss", nan_at_step_2)
    db, runs = tmp_path / "wb.db", tmp_path / "runs"
    result = CliRunner().invoke(main, ["run", str(tiny_recipe), "--db", str(db), "--runs-dir",
                                       str(runs), "--tracking", "wandb"])
    assert result.exit_code == 1
    for trial in Store(str(db)).trials("tiny"):
        assert trial.status == "failed" and "loss became nan" in trial.error
        (run,) = runs_in(runs / "tiny" / trial.trial_id)
        assert run.summary["state"] == "failed" and run.summary["exit_code"] == 1
        assert run.summary["tags"] == ["study:tiny", "status:failed"]
        assert [s for s, _ in run.history("train/loss")] == [1]
        assert not [k for k in run.summary["summary"] if k.startswith("final/")]
    (study,) = runs_in(runs / "tiny")
    assert study.summary["state"] == "failed"


@pytest.mark.slow
def test_a_killed_attempt_is_continued_and_a_fresh_start_is_a_new_run(tmp_path, wandb_env,
                                                                      monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    run_dir = tmp_path / "run"
    trial = TrackedTrial("s", "t1", "lr=0.1/seed=0", str(run_dir), axes={"train.lr": 0.1},
                         config_name="lr=0.1", options={"wandb": {"mode": "offline"}})
    step = "Stepped(step={}, total_steps=6, epoch=1, epochs=1, loss=1.0, lr=0.1)"
    killed = subprocess.run([sys.executable, "-c", "\n".join([
        "import os",
        "from ablate.track.trial import TrackedTrial",
        "from ablate.track import wandb",
        "from ablate.train.events import Stepped",
        "wandb.SAVE_EVERY_S = 0  # the run file after every step: what a kill leaves is known",
        f"sink = wandb.WandbSink(TrackedTrial(**{trial.__dict__!r}))",
        *(f"sink.event({step.format(s)})" for s in (1, 2, 3)),
        "os._exit(9)  # killed: no finish, no exit hook"])], env=own_service(), timeout=300)
    assert killed.returncode == 9
    assert json.loads((run_dir / wb.RUN_FILE).read_text()) == {
        "id": wb.run_id("s", "t1"), "attempt": 1, "step": 3}

    resumed = wb.WandbSink(trial)  # from the checkpoint at step 2
    for event in (Resumed(2), *(Stepped(s, 6, 1, 1, 1.0 / s, 0.1) for s in (3, 4, 5))):
        resumed.event(event)
    resumed.finish({"status": "done", "final": {"miou": 0.5}})
    assert resumed.id == wb.run_id("s", "t1")
    killed_run, continued = runs_in(run_dir)
    assert killed_run.path.parent.name.endswith(f"-{resumed.id}")
    assert not any(r["type"] == "exit" for r in killed_run.records)  # never finished
    assert [s for s, _ in continued.history("train/loss")] == [4, 5]
    assert continued.run["run_id"] == resumed.id and continued.summary["state"] == "finished"

    fresh = wb.WandbSink(trial)  # trained from scratch again (e.g. --force): a new run
    fresh.event(Stepped(1, 6, 1, 1, 1.0, 0.1))
    fresh.finish({"status": "failed"})
    assert fresh.id == wb.run_id("s", "t1", attempt=2)
    assert runs_in(run_dir)[-1].summary["state"] == "failed"


@pytest.mark.slow
def test_a_trial_on_a_host_that_cannot_reach_the_server_writes_offline(tmp_path, wandb_env,
                                                                       monkeypatch, capsys):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        refused = f"http://127.0.0.1:{sock.getsockname()[1]}"
    monkeypatch.setenv("WANDB_API_KEY", "k" * 40)
    monkeypatch.setenv("WANDB_BASE_URL", refused)
    # the runner (on a login node) found the server; this Slurm node does not
    trial = TrackedTrial("s", "t1", "lr=0.1/seed=0", str(tmp_path / "run"), config_name="lr=0.1",
                         options={"wandb": {"mode": "online", "project": "s",
                                            "host": "login-node"}})
    trackers = open_trackers(["wandb"], trial)
    progress = trackers.wrap(None)
    progress(Stepped(step=1, total_steps=1, epoch=1, epochs=1, loss=1.0, lr=0.1))
    where = trackers.finish({"status": "done", "final": {"miou": 0.5}})
    assert where["wandb"]["mode"] == "offline"
    err = capsys.readouterr().err
    assert err.count("Warning: tracker wandb") == 1 and f"{refused} does not answer" in err
    (run,) = runs_in(tmp_path / "run")
    assert run.summary["state"] == "finished" and run.summary["summary"]["final/miou"] == 0.5


@pytest.mark.slow
def test_the_summary_holds_the_final_figures_only(tmp_path, wandb_env):
    """No history figure keeps a summary value, the epoch counter neither: a grouped runs
    table then averages only what the report averages."""
    trial = TrackedTrial("s", "t1", "n", str(tmp_path / "run"),
                         options={"wandb": {"mode": "offline"}})
    sink = wb.WandbSink(trial)
    sink.event(Stepped(step=1, total_steps=2, epoch=1, epochs=2, loss=1.0, lr=0.1))
    sink.event(EpochEnded(epoch=1, epochs=2, step=1, metrics={"val_miou": 0.3, "train_loss": 1.0}))
    sink.finish({"status": "done", "final": {"miou": 0.3, "latency_ms@eager/bs1": 2.0}})
    (run,) = runs_in(tmp_path / "run")
    assert run.history("epoch") == [(1, 1)]
    assert sorted(k for k in run.summary["summary"] if not k.startswith("_")) == [
        "final/latency_ms_eager/bs1", "final/miou"]


@pytest.mark.slow
def test_a_requeued_slurm_trial_is_failed_then_continued(tmp_path, wandb_env):
    """submitit requeues a preempted trial with sys.exit(-1) from its signal handler: the
    exception passes the trial's handlers; wandb's exit hook ends the run failed, the
    sink's keeps its last step, and the requeued job continues the run after it."""
    run_dir = tmp_path / "run"
    trial = TrackedTrial("s", "t1", "n", str(run_dir), options={"wandb": {"mode": "offline"}})
    exited = subprocess.run([sys.executable, "-c", "\n".join([
        "import sys",
        "from ablate.track.trial import TrackedTrial",
        "from ablate.track.wandb import WandbSink",
        "from ablate.train.events import Stepped",
        f"sink = WandbSink(TrackedTrial(**{trial.__dict__!r}))",
        *(f"sink.event(Stepped({s}, 5, 1, 1, 1.0, 0.1))" for s in (1, 2, 3)),
        "sys.exit(-1)"])], env=own_service(), timeout=300)
    assert exited.returncode == 255
    assert json.loads((run_dir / wb.RUN_FILE).read_text())["step"] == 3

    requeued = wb.WandbSink(trial)
    for event in (Resumed(2), *(Stepped(s, 5, 1, 1, 1.0, 0.1) for s in (3, 4, 5))):
        requeued.event(event)
    requeued.finish({"status": "done", "final": {"miou": 0.5}})
    preempted, continued = runs_in(run_dir)
    assert (preempted.summary["state"], preempted.summary["exit_code"]) == ("failed", -1)
    assert [s for s, _ in preempted.history("train/loss")] == [1, 2, 3]
    assert [s for s, _ in continued.history("train/loss")] == [4, 5]
    assert continued.run["run_id"] == preempted.run["run_id"] == wb.run_id("s", "t1")


@pytest.mark.slow
def test_wandb_runs_beside_tensorboard_and_mlflow(tmp_path, wandb_env, monkeypatch):
    pytest.importorskip("mlflow", reason="pip install -e '.[mlflow]'")
    pytest.importorskip("tensorboard", reason="pip install -e '.[tensorboard]'")
    from ablate.track import start_study

    monkeypatch.chdir(tmp_path)  # MLflow's artifacts
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    monkeypatch.setenv("WANDB_MODE", "offline")
    options = start_study(["mlflow", "wandb"], "s")
    trial = TrackedTrial("s", "t1", "lr=0.1/seed=0", str(tmp_path / "run"),
                         axes={"train.lr": 0.1}, config_name="lr=0.1", options=options)
    trackers = open_trackers(["tensorboard", "mlflow", "wandb"], trial)
    progress = trackers.wrap(None)
    for step in (1, 2):
        progress(Stepped(step=step, total_steps=2, epoch=1, epochs=1, loss=1.0 / step, lr=0.1))
    where = trackers.finish({"status": "done", "final": {"miou": 0.5, "steps": 2.0}})
    assert set(where) == {"tensorboard", "mlflow", "wandb"}
    assert not [name for name, info in where.items() if "error" in info]
    (run,) = runs_in(tmp_path / "run")
    assert run.history("train/loss") == [(1, 1.0), (2, 0.5)]
    assert run.summary["summary"]["final/miou"] == 0.5


@pytest.mark.slow
def test_a_forced_rerun_leaves_one_run_per_seed_in_the_group(tmp_path, wandb_env, monkeypatch):
    """--force on a done trial: W&B's grouped view must average its seed once, with the
    new attempt's figure, so the done attempt's run leaves the configuration's group and
    keeps its state (finished)."""
    monkeypatch.setenv("WANDB_MODE", "offline")
    run_dir = tmp_path / "run"
    trial = TrackedTrial("s", "t1", "lr=0.1/seed=0", str(run_dir), axes={"train.lr": 0.1},
                         config_name="lr=0.1", options={"wandb": {"mode": "offline"}})
    for miou in (0.25, 0.5):  # done, then trained from scratch again and done
        sink = wb.WandbSink(trial)
        sink.event(Stepped(1, 1, 1, 1, 1.0, 0.1))
        sink.finish({"status": "done", "final": {"miou": miou}})
    group = {}  # each run as its latest file leaves it
    for run in runs_in(run_dir):
        group[run.run["run_id"]] = (run.run["run_group"], run.summary["state"],
                                    run.summary["tags"])
    assert group == {
        wb.run_id("s", "t1"): ("lr=0.1/superseded", "finished",
                               ["study:s", "status:done", "superseded"]),
        wb.run_id("s", "t1", attempt=2): ("lr=0.1", "finished", ["study:s", "status:done"])}
    in_group = [r for r in runs_in(run_dir) if group[r.run["run_id"]][0] == "lr=0.1"
                and "final/miou" in r.summary["summary"]]
    assert [r.summary["summary"]["final/miou"] for r in in_group] == [0.5]
