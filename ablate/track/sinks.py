"""The fan-out from one trial's events to its tracker sinks, each guarded."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from ablate import extras
from ablate.errors import UserInputError
from ablate.track.mlflow import MlflowSink
from ablate.track.mlflow import finish_study as finish_mlflow
from ablate.track.mlflow import start_study as start_mlflow
from ablate.track.tensorboard import TensorBoardSink
from ablate.track.trial import TrackedTrial
from ablate.track.wandb import WandbSink
from ablate.track.wandb import start_study as start_wandb
from ablate.track.wandb_study import finish_study as finish_wandb
from ablate.train.events import Progress, TrialEvent

# --tracking NAME -> the module that needs to import for it, and the extra that installs it
SINKS: dict[str, tuple[str, str]] = {
    "tensorboard": ("tensorboard", "tensorboard"),
    "mlflow": ("mlflow", "mlflow"),
    "wandb": ("wandb", "wandb"),
}


class Sink(Protocol):
    name: str

    def event(self, event: TrialEvent) -> None: ...

    def finish(self, result: dict[str, Any]) -> dict[str, Any] | None: ...


def check_available(names: list[str] | tuple[str, ...]) -> None:
    """``--tracking``: refuse an unknown sink or one whose package is missing, before any
    trial runs (a missing package would otherwise be one warning per trial)."""

    for name in names:
        if name not in SINKS:
            raise UserInputError(f"--tracking: unknown tracker {name!r}; allowed: "
                                 f"{', '.join(SINKS)}")
        _, extra = SINKS[name]
        if extras.missing(extra):
            raise UserInputError(extras.needs(f"--tracking {name}", extra))


class Trackers:
    """The sinks of one trial. ``wrap(progress)`` feeds them every event before the
    progress display gets it; ``finish(result)`` hands them the result and says where
    each wrote (or why it stopped)."""

    def __init__(self, trial: TrackedTrial, sinks: list[Sink], failures: dict[str, str]) -> None:
        self.trial, self.sinks, self.failures = trial, sinks, dict(failures)

    def _guard(self, sink: Sink, call: Callable[[], Any]) -> Any:
        if sink.name in self.failures:
            return None
        try:
            return call()
        except Exception as err:  # a tracker never fails a trial: one warning, then quiet
            self._failed(sink.name, err)
            return None

    def _failed(self, name: str, err: BaseException) -> None:
        message = f"{type(err).__name__}: {err}".splitlines()[0][:300]
        self.failures[name] = message
        print(f"Warning: tracker {name} stopped for trial {self.trial.name}: {message}; "
              "training continues", file=sys.stderr, flush=True)

    def wrap(self, progress: Progress | None) -> Progress:
        def tracked(event: TrialEvent) -> None:
            for sink in self.sinks:
                self._guard(sink, lambda sink=sink: sink.event(event))
            if progress is not None:
                progress(event)

        return tracked

    def finish(self, result: dict[str, Any]) -> dict[str, Any]:
        """Hand ``result`` (``TrialResult.to_json()``) to every sink; returns where each
        wrote, or why it stopped, for the result's ``environment['tracking']``."""
        where: dict[str, Any] = {}
        for sink in self.sinks:
            info = self._guard(sink, lambda sink=sink: sink.finish(result))
            if sink.name not in self.failures:
                where[sink.name] = info or {}
        for name, message in self.failures.items():
            where[name] = {"error": message}
        return where


def open_trackers(names: list[str] | tuple[str, ...], trial: TrackedTrial) -> Trackers:
    """The named sinks for ``trial``; one that cannot start is a warning, not an error."""
    sinks: list[Sink] = []
    failures: dict[str, str] = {}
    trackers = Trackers(trial, sinks, failures)
    for name in dict.fromkeys(names):
        try:
            sinks.append(_make(name, trial))
        except Exception as err:  # e.g. the package vanished, an unwritable folder
            trackers._failed(name, err)
    return trackers


def _warn(what: str, err: BaseException) -> None:
    message = f"{type(err).__name__}: {err}".splitlines()[0][:300]
    print(f"Warning: {what}: {message}", file=sys.stderr, flush=True)


def start_study(names: list[str] | tuple[str, ...], study: str) -> dict[str, Any]:
    """Set-up in the runner before any trial (MLflow: the experiment and parent run; W&B:
    online or offline, decided once); the options go to every trial. A failure is one
    warning: the trials then warn too."""
    options: dict[str, Any] = {}
    if "mlflow" in names:
        try:
            options["mlflow"] = start_mlflow(study)
        except Exception as err:  # a tracker never stops a study
            _warn(f"tracker mlflow: no experiment for {study}", err)
    if "wandb" in names:
        try:
            options["wandb"] = start_wandb(study)
        except Exception as err:
            _warn(f"tracker wandb: no set-up for {study}", err)
        else:
            if options["wandb"]["reason"]:  # offline unasked: said once, not per trial
                print(f"Warning: tracker wandb: {options['wandb']['reason']}; runs are written "
                      "offline to the run folders (`wandb sync` them later)", file=sys.stderr,
                      flush=True)
    return options


def finish_study(options: dict[str, Any], store, study: str, failed: bool = False) -> None:
    """After the trials, the study's own runs: MLflow's parent run gets the effects table
    and the Pareto plots (PNG, mIoU against each measured cost) and is ended; W&B gets a
    summary run with the effects and configurations tables and the plots."""
    report = None
    for name in [name for name in ("mlflow", "wandb") if name in options]:
        try:
            if report is None:  # built once for both
                report = _study_report(store, study)
            if name == "mlflow":
                finish_mlflow(options["mlflow"], report[0].effects,
                              "FAILED" if failed else "FINISHED",
                              {f"{stem}.png": png for stem, _caption, png in report[1]})
            else:
                finish_wandb(options["wandb"], study, report[0], report[1],
                             _study_folder(store, study), failed=failed)
        except Exception as err:  # a tracker never fails a study
            _warn(f"tracker {name}: the study run of {study} was not completed", err)


def _study_report(store, study: str) -> tuple[Any, list[tuple[str, str, bytes]]]:
    """The study's report with effects, and its Pareto plots (stem, caption, PNG)."""
    from ablate.report.build import (  # lazy: loads pandas, matplotlib
        build_report,
        cost_axes,
        pareto_figures,
    )
    from ablate.report.plots import figure_png  # lazy: loads matplotlib

    report = build_report(store, [study], effects=True)
    figures = []
    if not report.configs.empty:
        figures = [(figure.stem, figure.caption, figure_png(figure.figure))
                   for figure in pareto_figures(report, cost_axes(report.configs))]
    return report, figures


def _study_folder(store, study: str) -> Path:
    """The study's folder of run folders (``<runs dir>/<study>``), from its trials."""
    for trial in store.trials(study, with_metrics=False):
        if trial.run_dir:
            return Path(trial.run_dir).parent
    return Path(os.environ.get("WANDB_DIR") or ".")


def _make(name: str, trial: TrackedTrial) -> Sink:
    # imported on demand: each sink pulls in its (heavy, optional) package
    if name == "tensorboard":
        return TensorBoardSink(trial)
    if name == "mlflow":
        return MlflowSink(trial)
    if name == "wandb":
        return WandbSink(trial)
    raise ValueError(f"unknown tracker {name!r}")
