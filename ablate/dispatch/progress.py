"""``progress.json``: a running trial's latest epoch, step and loss in its run folder.

The worker rewrites it (at most once a second, atomically) from the same progress events
the ``ablate run`` display gets, so that ``ablate watch`` can show what each running trial
is doing without any write to the database (and with no schema change).
"""

from __future__ import annotations

import contextlib
import json
import time
from pathlib import Path
from typing import Any

from ablate import atomic
from ablate.train.events import EpochEnded, Progress, Resumed, Stepped, TrialEvent

PROGRESS_FILE = "progress.json"
WRITE_EVERY_S = 1.0  # a step event at most this often; epoch ends always

class ProgressFile:
    """Mirrors a trial's ``step``/``epoch``/``resume`` events into ``run_dir/progress.json``.

    A failed write is ignored: the file is a courtesy to watchers, never a reason for a
    trial to fail.
    """

    def __init__(self, run_dir: str | Path) -> None:
        self.path = Path(run_dir) / PROGRESS_FILE
        self.state: dict[str, Any] = {}
        self.last_write = 0.0

    def wrap(self, progress: Progress | None) -> Progress:
        def recorded(event: TrialEvent) -> None:
            self.event(event)
            if progress is not None:
                progress(event)

        return recorded

    def event(self, event: TrialEvent) -> None:
        if isinstance(event, Stepped):
            self.state.update(step=event.step, total_steps=event.total_steps, epoch=event.epoch,
                              epochs=event.epochs, loss=event.loss)
        elif isinstance(event, EpochEnded):
            self.state.update(epoch=event.epoch, step=event.step, epochs=event.epochs)
            if "val_miou" in event.metrics:
                self.state["val_miou"] = event.metrics["val_miou"]
        elif isinstance(event, Resumed):
            self.state.update(step=event.step, resumed_at_step=event.step)
        else:
            return
        now = time.monotonic()
        if isinstance(event, Stepped) and now - self.last_write < WRITE_EVERY_S:
            return
        self.last_write = now
        with contextlib.suppress(OSError, TypeError, ValueError):
            self.path.parent.mkdir(parents=True, exist_ok=True)
            atomic.write_text(self.path, json.dumps({**self.state, "updated_unix": time.time()}))


def read_progress(run_dir: str | Path | None) -> dict[str, Any] | None:
    """A trial's latest ``progress.json``; None when there is none (yet) or it is unreadable."""
    if not run_dir:
        return None
    try:
        data = json.loads((Path(run_dir) / PROGRESS_FILE).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None
