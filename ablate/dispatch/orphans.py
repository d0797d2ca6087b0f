"""Pool workers whose runner was killed alone (``kill -9`` of ``ablate run``, not of its
process group): finish the trial they hold, take no queued one, and exit.

A ``ProcessPoolExecutor`` worker outlives its parent: it would go on with the trials
already queued to it and then wait for work forever, as would the manager process
that carries progress events. The worker holding a trial is alive, and its claim says
so (``ablate.dispatch.liveness``): it keeps the trial and records it. But nobody gets
its next result, so it takes no new trial (the next runner does) and exits once idle.
"""

from __future__ import annotations

import os
import threading
import time
from typing import Any

POLL_S = 1.0  # how often a worker looks whether its runner is still there

_parent: int | None = None
_training = threading.Event()  # set while this worker trains a trial
_state = threading.Lock()  # orders "orphaned?" against "starting a trial"


def watch_parent(parent: int) -> None:
    """Initializer of a pool worker (or the manager process) started by ``parent``."""
    global _parent
    _parent = parent
    threading.Thread(target=_exit_when_orphaned, daemon=True, name="orphan-watch").start()


def orphaned() -> bool:
    return _parent is not None and os.getppid() != _parent


def start_trial() -> None:
    """Called by a worker before it claims a trial: an orphan exits instead."""
    with _state:
        if orphaned():
            os._exit(0)  # the runner is gone: leave the queued trial to the next one
        _training.set()


def end_trial() -> None:
    _training.clear()


def send(queue: Any, item: Any) -> None:
    """Put a progress event; once the runner (and its manager) are gone, drop it: a lost
    progress line must not stop the training of a trial this worker still holds."""
    try:
        queue.put(item)
    except (OSError, EOFError):
        pass


def _exit_when_orphaned() -> None:
    while True:
        time.sleep(POLL_S)
        with _state:
            if orphaned() and not _training.is_set():
                os._exit(0)
