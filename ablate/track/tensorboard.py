"""TensorBoard sink: event files in ``<run folder>/tensorboard``.

Scalars (figures as the trainer produces them: mIoU and pixel accuracy as fractions,
x axis the global step): ``train/loss`` and ``train/lr`` at every logged step,
``val/<figure>`` (``val/miou``, ``val/pixel_acc``, ...) and ``epoch/<figure>``
(``epoch/train_loss``, ``epoch/images_per_second``, ...) at each epoch's last step, and
``final/<figure>`` for every final figure. The hparams plugin gets the trial's axes (its
variant too, where the recipe has variants, and its seed) as hyper-parameters and ``final/miou``, ``final/pixel_acc``, ``final/latency_ms``
as its metrics, so ``tensorboard --logdir RUNS/STUDY`` compares the trials side by side.
An attempt that logs steps again (resumed, or from scratch) purges the earlier attempt's
values from those steps on, as TensorBoard does for a restarted run.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from ablate.track.trial import TrackedTrial, ended_status
from ablate.train.events import EpochEnded, Resumed, Stepped, TrialEvent
from ablate.trials.lifecycle import TrialStatus

SUBDIR = "tensorboard"
HPARAM_METRICS = ("miou", "pixel_acc", "latency_ms")


def log_dir(run_dir: str | Path) -> Path:
    return Path(run_dir) / SUBDIR


def hparam_value(value: Any) -> int | float | str:
    """Numbers stay numbers; booleans are spelled as in TOML and config names ("true":
    torch would write them as 1 and 0); anything else as its text."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float | str):
        return value
    return "none" if value is None else str(value)


class TensorBoardSink:
    name = "tensorboard"

    def __init__(self, trial: TrackedTrial) -> None:
        # torch.utils.tensorboard imports tensorboard (slow): only when a trial asks for it
        from torch.utils.tensorboard import SummaryWriter  # lazy: optional tensorboard; loads torch

        self.trial = trial
        self.dir = log_dir(trial.run_dir)
        self.earlier = any(self.dir.glob("events.out.tfevents.*"))  # an earlier attempt's
        self.dir.mkdir(parents=True, exist_ok=True)  # an unwritable folder: it cannot start
        self.writer_class = SummaryWriter
        self.writer: Any = None  # opened at the first event: resumed, or from scratch
        self.step = 0

    def _open(self, resumed_at: int | None = None) -> None:
        """The event writer. Over an earlier attempt's files TensorBoard would draw both
        attempts' values at the same steps: a resumed trial hides what its earlier attempt
        logged after the checkpoint, one trained from scratch again (``--force``, a retry
        without a checkpoint) hides all of it (TensorBoard's purge of a restarted run)."""
        purge = None
        if self.earlier:
            purge = 0 if resumed_at is None else resumed_at + 1
        self.writer = self.writer_class(log_dir=str(self.dir), purge_step=purge)

    def _scalar(self, tag: str, value: Any, step: int) -> None:
        if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
            self.writer.add_scalar(tag, float(value), step)

    def event(self, event: TrialEvent) -> None:
        if isinstance(event, Resumed | Stepped | EpochEnded) and self.writer is None:
            self._open(event.step if isinstance(event, Resumed) else None)
        if isinstance(event, Stepped):
            self.step = event.step
            self._scalar("train/loss", event.loss, self.step)
            self._scalar("train/lr", event.lr, self.step)
        elif isinstance(event, EpochEnded):
            self.step = event.step
            for key, value in event.metrics.items():
                tag = f"val/{key[4:]}" if key.startswith("val_") else f"epoch/{key}"
                self._scalar(tag, value, self.step)
            self.writer.flush()  # readable while the trial trains

    def finish(self, result: dict[str, Any]) -> dict[str, Any]:
        status = ended_status(result)
        if self.writer is None:
            if status is None:  # stopped before its first step: it resumes later
                return {"log_dir": str(self.dir)}
            self._open()
        try:
            if status is TrialStatus.DONE:
                self._final(result.get("final") or {})
        finally:
            self.writer.close()
        return {"log_dir": str(self.dir)}

    def _final(self, final: dict[str, Any]) -> None:
        from torch.utils.tensorboard.summary import (
            hparams,  # lazy: optional tensorboard; loads torch
        )

        step = int(final.get("steps", self.step) or self.step)
        for key, value in sorted(final.items()):
            self._scalar(f"final/{key}", value, step)
        params = {k: hparam_value(v) for k, v in self.trial.axes.items()}
        if self.trial.variant and self.trial.variant != "base":  # "base": a recipe without
            params["variant"] = self.trial.variant  # variants; with them, they are an axis
        params["seed"] = self.trial.seed
        metrics = {f"final/{k}": float(final[k]) for k in HPARAM_METRICS
                   if isinstance(final.get(k), int | float) and math.isfinite(final[k])}
        experiment, start, end = hparams(params, metrics)
        file_writer = self.writer._get_file_writer()
        for summary in (experiment, start, end):
            file_writer.add_summary(summary, step)
