"""Trackers: a trial's progress events mirrored into the tools researchers already use.

A tracker sink (TensorBoard, MLflow, W&B) receives the same events as the progress display
(``step``, ``epoch``) and the trial's result at the end, inside the process that trains
the trial (a local worker or a Slurm job), so it works wherever the trial runs. A tracker
can never fail a trial: its first exception becomes one warning and the sink goes quiet.
"""

from __future__ import annotations

from ablate.track.sinks import (
    SINKS,
    Trackers,
    check_available,
    finish_study,
    open_trackers,
    start_study,
)
from ablate.track.trial import TrackedTrial

__all__ = ["SINKS", "TrackedTrial", "Trackers", "check_available", "finish_study",
           "open_trackers", "start_study"]
