"""--tracking mlflow: a run per trial under the study's parent run, read back with
MlflowClient from a local SQLite tracking store."""

from __future__ import annotations

import os
import socket
import threading
from pathlib import Path

import pytest
from click.testing import CliRunner

from ablate.cli import main
from ablate.store import Store
from ablate.track import TrackedTrial, open_trackers
from ablate.train.events import EpochEnded, Resumed, Stepped

# make test installs the extra; a bare pytest without it says what to install (CI fails then)
if not os.environ.get("CI"):
    pytest.importorskip("mlflow", reason="pip install -e '.[mlflow]'")


@pytest.mark.slow
def test_every_trial_is_a_run_with_params_metrics_and_tags(tmp_path, tiny_recipe, monkeypatch):
    from mlflow.tracking import MlflowClient

    monkeypatch.chdir(tmp_path)  # MLflow puts artifacts in ./mlruns by default
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    db, runs = tmp_path / "ml.db", tmp_path / "runs"
    result = CliRunner().invoke(main, ["run", str(tiny_recipe), "--db", str(db), "--runs-dir",
                                       str(runs), "--tracking", "mlflow"])
    assert result.exit_code == 0, result.output
    assert "Warning" not in result.output
    client = MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name("tiny")
    found = client.search_runs([experiment.experiment_id])
    (parent,) = [r for r in found if r.data.tags.get("ablate.role") == "study"]
    children = {r.data.tags["ablate.trial_id"]: r for r in found if r is not parent
                and "ablate.trial_id" in r.data.tags}
    assert parent.info.status == "FINISHED"
    trials = Store(str(db)).trials("tiny")
    assert set(children) == {t.trial_id for t in trials}
    for trial in trials:
        run = children[trial.trial_id]
        assert run.info.status == "FINISHED" and run.info.run_name == trial.name
        assert run.data.tags["mlflow.parentRunId"] == parent.info.run_id
        assert run.data.tags["ablate.config_name"] == trial.config_name
        assert run.data.params == {
            "model.keep_last_expansion": "true" if trial.axes["model.keep_last_expansion"]
                                         else "false",  # as the configuration name spells it
            "seed": "0"}
        for key in ("miou", "pixel_acc", "latency_ms"):
            assert run.data.metrics[f"final/{key}"] == pytest.approx(trial.metrics[key])
        assert run.data.metrics["final/latency_ms:eager/bs1"] == pytest.approx(
            trial.metrics["latency_ms@eager/bs1"])
        history = client.get_metric_history(run.info.run_id, "train/loss")
        assert sorted(m.step for m in history) == [1, 2]
        (val,) = client.get_metric_history(run.info.run_id, "val/miou")
        assert val.step == 2
        assert trial.environment["tracking"] == {"mlflow": {"run_id": run.info.run_id}}
    # one effect (keep_last_expansion) in the parent's artifacts
    names = sorted(a.path for a in client.list_artifacts(parent.info.run_id))
    assert names == ["effects.csv", "effects.json", "pareto_gflops.png", "pareto_latency_ms.png",
                     "pareto_params.png"]


def test_the_effects_artifact_spells_booleans_as_the_report_csv_does(tmp_path, monkeypatch):
    import pandas as pd
    from mlflow.tracking import MlflowClient

    from ablate.track.mlflow import finish_study, start_study

    monkeypatch.chdir(tmp_path)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    options = start_study("s")
    finish_study(options, pd.DataFrame({"axis": ["model.x", "model.y"], "estimate": [0.5, 1.0],
                                        "zero_spread": [True, False]}))
    path = MlflowClient(uri).download_artifacts(options["parent_run_id"], "effects.csv",
                                                str(tmp_path))
    # pandas alone writes True/False; the report's CSV and JSON write true/false
    assert Path(path).read_text().splitlines() == [
        "axis,estimate,zero_spread", "model.x,0.5,true", "model.y,1.0,false"]


def test_an_unreachable_mlflow_is_a_warning_not_a_failed_trial(capsys):
    trackers = open_trackers(["mlflow"], TrackedTrial("s", "t1", "trial-1", "/nowhere"))
    assert trackers.sinks == []
    progress = trackers.wrap(None)
    progress(Stepped(step=1, total_steps=1, epoch=1, epochs=1, loss=1.0, lr=0.1))
    where = trackers.finish({"status": "done", "final": {}, "environment": {}})
    assert where["mlflow"]["error"].startswith("RuntimeError: no MLflow experiment")
    assert capsys.readouterr().err.count("Warning: tracker mlflow stopped") == 1


def test_a_resumed_trial_continues_its_mlflow_run(tmp_path, monkeypatch):
    from mlflow.tracking import MlflowClient

    from ablate.track.mlflow import MlflowSink, start_study

    monkeypatch.chdir(tmp_path)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    options = start_study("s")
    trial = TrackedTrial("s", "t1", "trial-1", str(tmp_path / "run"),
                         axes={"lr": 0.1, "model.keep_last_expansion": False, "x": None},
                         seed=3, options={"mlflow": options})
    first = MlflowSink(trial)
    first.event(Stepped(step=1, total_steps=2, epoch=1, epochs=1, loss=1.0, lr=0.1))  # then killed: no finish
    again = MlflowSink(trial)
    again.event(Resumed(1))  # the trial resumes from its checkpoint (train.loop says so)
    assert again.run_id == first.run_id
    again.event(Stepped(step=2, total_steps=2, epoch=1, epochs=1, loss=0.5, lr=0.1))
    again.finish({"status": "done", "final": {"miou": 0.4, "steps": 2}})
    client = MlflowClient(tracking_uri=uri)
    runs = client.search_runs([options["experiment_id"]], "tags.`ablate.trial_id` = 't1'")
    (run,) = runs  # one run, not one per attempt
    assert [m.step for m in client.get_metric_history(run.info.run_id, "train/loss")] == [1, 2]
    assert run.info.status == "FINISHED" and run.data.params == {
        "lr": "0.1", "model.keep_last_expansion": "false", "x": "none", "seed": "3"}
    assert run.data.tags["ablate.seed"] == "3" and run.data.tags["ablate.status"] == "done"


def test_a_resumed_run_holds_each_step_once(tmp_path, monkeypatch):
    """Killed at step 4 in its validation (step 4's loss logged, not its epoch's figures)
    with a checkpoint at step 2: the resumed attempt trains steps 3 and 4 again, and
    MLflow, which keeps every value logged at a step, gets each figure at each step once."""
    from mlflow.tracking import MlflowClient

    from ablate.track.mlflow import MlflowSink, start_study

    monkeypatch.chdir(tmp_path)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    trial = TrackedTrial("s", "t1", "trial-1", str(tmp_path / "run"),
                         options={"mlflow": start_study("s")})

    def steps(sink, first, last):
        for step in range(first, last + 1):
            sink.event(Stepped(step=step, total_steps=4, epoch=2, epochs=2, loss=1.0 / step,
                               lr=0.1))
            if step % 2 == 0 and (sink is not killed or step < last):
                sink.event(EpochEnded(epoch=step // 2, epochs=2, step=step,
                                      metrics={"val_miou": step / 10, "train_loss": 1.0}))

    killed = MlflowSink(trial)
    steps(killed, 1, 4)  # no finish: killed
    resumed = MlflowSink(trial)
    resumed.event(Resumed(2))
    steps(resumed, 3, 4)
    resumed.finish({"status": "done", "final": {"miou": 0.4, "steps": 4}})
    assert resumed.run_id == killed.run_id
    client = MlflowClient(tracking_uri=uri)
    history = {key: [m.step for m in client.get_metric_history(resumed.run_id, key)]
               for key in ("train/loss", "train/lr", "val/miou", "epoch/train_loss")}
    assert {key: sorted(got) for key, got in history.items()} == {
        "train/loss": [1, 2, 3, 4], "train/lr": [1, 2, 3, 4], "val/miou": [2, 4],
        "epoch/train_loss": [2, 4]}
    assert client.get_run(resumed.run_id).data.metrics["val/miou"] == 0.4


def test_a_trial_trained_from_scratch_again_is_a_new_mlflow_run(tmp_path, monkeypatch):
    """--force, or a retry without a checkpoint: no Resumed event, so the earlier run is
    left as it ended (a killed one marked KILLED) and the steps go to a new run, not a
    second time into the old one."""
    from mlflow.tracking import MlflowClient

    from ablate.track.mlflow import MlflowSink, start_study

    monkeypatch.chdir(tmp_path)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    trial = TrackedTrial("s", "t1", "trial-1", str(tmp_path / "run"),
                         options={"mlflow": start_study("s")})
    runs = []
    for finished in (True, False, True):  # done; killed (no finish); forced again
        sink = MlflowSink(trial)
        for step in (1, 2):
            sink.event(Stepped(step=step, total_steps=2, epoch=1, epochs=1, loss=1.0, lr=0.1))
        if finished:
            sink.finish({"status": "done", "final": {"miou": 0.4, "steps": 2}})
        runs.append(sink.run_id)
    assert len(set(runs)) == 3
    client = MlflowClient(tracking_uri=uri)
    assert [client.get_run(r).info.status for r in runs] == ["FINISHED", "KILLED", "FINISHED"]
    assert [client.get_run(r).data.tags.get("ablate.superseded_by") for r in runs] == [
        runs[1], runs[2], None]
    for run_id in runs:
        assert [m.step for m in client.get_metric_history(run_id, "train/loss")] == [1, 2]
    assert (tmp_path / "run" / "mlflow_run_id").read_text().strip() == runs[-1]


@pytest.fixture
def hanging_up_server():
    """A server that takes each connection and hangs up unanswered: its URL, and the list
    of connections it took (one per attempt of the client)."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    taken: list[int] = []

    def serve() -> None:
        while True:
            try:
                conn, _ = sock.accept()
            except OSError:  # shut down: the test is over
                return
            taken.append(1)  # before the hang-up: the client's error comes after it
            conn.close()

    server = threading.Thread(target=serve, daemon=True)
    server.start()
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}", taken
    finally:
        sock.shutdown(socket.SHUT_RDWR)  # wakes the accept
        sock.close()
        server.join(timeout=60)


def test_a_tracking_server_that_does_not_answer_fails_fast(monkeypatch, hanging_up_server):
    from ablate.track.mlflow import start_study

    url, taken = hanging_up_server
    monkeypatch.delenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", raising=False)
    monkeypatch.delenv("MLFLOW_HTTP_REQUEST_TIMEOUT", raising=False)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", url)
    with pytest.raises(Exception):  # noqa: B017  (MLflow raises its own kinds)
        start_study("s")
    # one attempt: MLflow's defaults retry 7 times with back-off, for minutes (counted,
    # not timed: importing mlflow alone takes seconds on a loaded machine)
    assert taken == [1]
