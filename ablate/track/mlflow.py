"""MLflow sink: one experiment per study, a parent run per ``ablate run``, a run per trial.

The tracking URI is ``$MLFLOW_TRACKING_URI`` (MLflow's own default otherwise), read by
the runner, which creates the experiment (named after the study) and the parent run and
hands both to the trials (``options["mlflow"]``), so a Slurm job needs no set-up of its
own. Each trial's run: the axes and seed as params, tags ``ablate.*`` (study, trial id,
configuration, variant, run folder), metrics with steps under the TensorBoard sink's
names (``train/loss``, ``train/lr``, ``val/miou``, ``epoch/train_loss``,
``final/<figure>``; ``@`` spelled ``:``, which MLflow refuses), ended FINISHED or
FAILED. The parent run gets the effects table as artifacts (``effects.csv``,
``effects.json``) when the study has effects. A trial that resumes from its checkpoint
continues its run (the run id is kept in the run folder, ``mlflow_run_id``) and logs
each figure from the step after the last one its earlier attempt logged. A tracking
server that does not answer fails fast (no retries, a 10 s timeout, unless the
``MLFLOW_HTTP_REQUEST_*`` variables say otherwise): one warning, never a waiting trial.
"""

from __future__ import annotations

import math
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from ablate import atomic
from ablate.track.tensorboard import hparam_value
from ablate.track.trial import TrackedTrial, ended_status
from ablate.train.events import EpochEnded, Resumed, Stepped, TrialEvent
from ablate.trials.lifecycle import TrialStatus

PARAM_MAX = 500  # MLflow refuses longer parameter values
RUN_ID_FILE = "mlflow_run_id"  # in the trial's run folder: a resumed trial continues its run
# MLflow's own defaults retry a dead server 7 times over minutes, per call
# how a trial ended -> MLflow's run status; a trial stopped without a result is KILLED
RUN_STATUS = {TrialStatus.DONE: "FINISHED", TrialStatus.FAILED: "FAILED"}
HTTP_DEFAULTS = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0", "MLFLOW_HTTP_REQUEST_TIMEOUT": "10"}


def _client(uri: str | None):
    for name, value in HTTP_DEFAULTS.items():
        os.environ.setdefault(name, value)
    # mlflow is heavy (and optional): imported only when a study asks for it
    from mlflow.tracking import MlflowClient  # lazy: optional mlflow

    return MlflowClient(tracking_uri=uri)


def start_study(study: str) -> dict[str, Any]:
    """The experiment (created on first use) and a new parent run, for the trials."""

    uri = os.environ.get("MLFLOW_TRACKING_URI") or None
    client = _client(uri)
    experiment = client.get_experiment_by_name(study)
    experiment_id = (experiment.experiment_id if experiment is not None
                     else client.create_experiment(study, tags={"ablate.study": study}))
    parent = client.create_run(experiment_id, run_name=study,
                               tags={"ablate.study": study, "ablate.role": "study"})
    return {"tracking_uri": uri, "experiment_id": experiment_id,
            "parent_run_id": parent.info.run_id}


def finish_study(options: dict[str, Any], effects, status: str = "FINISHED",
                 plots: dict[str, bytes] | None = None) -> None:
    """The effects table (a frame, or None) and the Pareto plots (file name -> PNG bytes)
    as the parent run's artifacts; the run ended."""

    client = _client(options.get("tracking_uri"))
    run_id = options["parent_run_id"]
    if effects is not None and not effects.empty:
        from ablate.report.render import to_csv  # lazy: loads numpy, pandas

        with tempfile.TemporaryDirectory() as tmp:
            (Path(tmp) / "effects.csv").write_text(to_csv(effects))  # true, not True
            (Path(tmp) / "effects.json").write_text(effects.to_json(orient="records",
                                                                    indent=2))
            client.log_artifact(run_id, str(Path(tmp) / "effects.csv"))
            client.log_artifact(run_id, str(Path(tmp) / "effects.json"))
    if plots:
        with tempfile.TemporaryDirectory() as tmp:
            for name, png in plots.items():
                (Path(tmp) / name).write_bytes(png)
                client.log_artifact(run_id, str(Path(tmp) / name))
    client.set_terminated(run_id, status)


def metric_name(key: str) -> str:
    """MLflow allows alphanumerics and ``_ - . : /`` and space: a runtime's figure
    ``latency_ms@onnxruntime/bs8`` becomes ``latency_ms:onnxruntime/bs8``."""
    key = key.replace("@", ":")
    return "".join(ch if ch.isalnum() or ch in "_-.:/ " else "_" for ch in key)


def _finite(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


class MlflowSink:
    name = "mlflow"

    def __init__(self, trial: TrackedTrial) -> None:
        options = trial.options.get("mlflow")
        if not options:
            raise RuntimeError("no MLflow experiment for this study (the runner did not start one)")
        self.trial, self.options = trial, options
        self.client = _client(options.get("tracking_uri"))
        self.earlier = self._earlier_run()
        self.run_id: str | None = None  # opened at the first event: resumed, or from scratch
        self.logged: dict[str, int] = {}  # a continued run's last step per metric

    def _start(self, resumed: bool) -> None:
        """Continue the earlier attempt's run when training resumed from its checkpoint;
        else a new run (a forced rerun or a retry from scratch would otherwise log its
        steps a second time into the old run, under the old parent)."""
        earlier = self.earlier
        if resumed and earlier is not None:  # its params as logged
            self.run_id = earlier.info.run_id
            self.logged = self._last_steps(earlier)
            self.client.update_run(self.run_id, status="RUNNING")
            return
        if earlier is not None and earlier.info.status == "RUNNING":  # its process died
            self.client.set_terminated(earlier.info.run_id, "KILLED")
        trial, options = self.trial, self.options
        tags = {"mlflow.parentRunId": options["parent_run_id"], "ablate.study": trial.study,
                "ablate.trial_id": trial.trial_id, "ablate.config_name": trial.config_name,
                "ablate.variant": trial.variant, "ablate.run_dir": trial.run_dir,
                "ablate.seed": str(trial.seed), "ablate.status": TrialStatus.RUNNING.value}
        run = self.client.create_run(options["experiment_id"], run_name=trial.name, tags=tags)
        self.run_id = run.info.run_id
        if earlier is not None:  # a search can leave it out: no ablate.superseded_by
            self.client.set_tag(earlier.info.run_id, "ablate.superseded_by", self.run_id)
        self._remember()
        from mlflow.entities import Param  # lazy: optional mlflow

        # spelled as the configuration names and TensorBoard spell them (true, not True), so
        # a search for params.`model.keep_last_expansion` = 'true' finds the runs
        params = {key: str(hparam_value(value))[:PARAM_MAX] for key, value in trial.axes.items()}
        params["seed"] = str(trial.seed)
        self.client.log_batch(self.run_id, params=[Param(k, v) for k, v in params.items()])

    def _earlier_run(self):
        """The run (``mlflow.entities.Run``) of an earlier attempt of this trial, when it
        still exists."""

        path = Path(self.trial.run_dir) / RUN_ID_FILE
        try:
            run = self.client.get_run(path.read_text().strip())
        except Exception:  # no file, or a run the server no longer knows: a new run
            return None
        return run if run.data.tags.get("ablate.trial_id") == self.trial.trial_id else None

    def _last_steps(self, run) -> dict[str, int]:
        """Per metric, the last step ``run``'s earlier attempt logged. MLflow keeps every
        value logged at a step and cannot delete one: the steps a killed attempt logged
        after its checkpoint, trained again when it resumes, are logged once (by it)."""
        return {key: max(m.step for m in self.client.get_metric_history(run.info.run_id, key))
                for key in run.data.metrics}

    def _remember(self) -> None:
        folder = Path(self.trial.run_dir)
        folder.mkdir(parents=True, exist_ok=True)
        atomic.write_text(folder / RUN_ID_FILE, self.run_id + "\n")

    def _log(self, values: dict[str, Any], step: int) -> None:
        from mlflow.entities import Metric  # lazy: optional mlflow

        stamp = int(time.time() * 1000)
        metrics = [Metric(name, float(value), stamp, step)
                   for name, value in ((metric_name(k), v) for k, v in values.items())
                   if _finite(value) and step > self.logged.get(name, step - 1)]
        if metrics:
            self.client.log_batch(self.run_id, metrics=metrics)

    def event(self, event: TrialEvent) -> None:
        if isinstance(event, Resumed | Stepped | EpochEnded) and self.run_id is None:
            self._start(resumed=isinstance(event, Resumed))
        if isinstance(event, Stepped):
            self._log({"train/loss": event.loss, "train/lr": event.lr}, event.step)
        elif isinstance(event, EpochEnded):
            self._log({(f"val/{k[4:]}" if k.startswith("val_") else f"epoch/{k}"): v
                       for k, v in event.metrics.items()}, event.step)

    def finish(self, result: dict[str, Any]) -> dict[str, Any]:
        status = ended_status(result)
        if self.run_id is None:
            if status is None:  # stopped before its first step: nothing to say
                return {}
            self._start(resumed=False)  # failed before training: a run that says so
        if status is TrialStatus.DONE:
            final = result.get("final") or {}
            self._log({f"final/{k}": v for k, v in final.items()}, int(final.get("steps") or 0))
        self.client.set_tag(self.run_id, "ablate.status", str(result.get("status")))
        self.client.set_terminated(self.run_id, RUN_STATUS.get(status, "KILLED"))
        return {"run_id": self.run_id}
