"""Executors run trial jobs; ``make_executor`` picks one by name from ``EXECUTORS``.

The interface (``Executor``, ``OnEvent``, ``ExecutorRequest``) lives here and the
executors in their own modules (``local``, ``slurm``), named by import path in the
registry: they import this module, not the other way round, and ``submitit`` loads only
when Slurm is asked for. Each executor class builds itself for a study from an
``ExecutorRequest`` (``for_study``), refusing what it cannot run.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from ablate.dispatch.entry import TrialJob
from ablate.registry import Registry
from ablate.train.events import TrialEvent

# on_event(job, event): every event of ``ablate.train.events``; each job ends with one
# ``Ended`` (its ``lifecycle.Outcome``), or, on Slurm, with ``JobCancelled`` when scancel'ed.
OnEvent = Callable[[TrialJob, TrialEvent], None]


@dataclass(frozen=True)
class ExecutorRequest:
    """What ``ablate run`` asks of an executor: the study and the runner's options."""

    recipe: Any  # ablate.recipes.loader.Recipe
    trials: list[Any]  # ablate.trials.expand.Trial
    store: Any  # ablate.store.Store
    runs_dir: str
    jobs: int = 1  # local worker processes
    gpus: list[Any] = field(default_factory=list)  # local: ablate.dispatch.gpus.Gpu
    gpus_per_trial: int | None = None
    trials_per_gpu: int = 1  # local: trials side by side on one device
    gpu_memory_gib: float | None = None  # local: GPU memory per trial (None: measured)
    detach: bool = False  # Slurm: submit and return
    slurm: dict[str, Any] = field(default_factory=dict)  # Slurm: command-line overrides


class Executor(Protocol):
    """Runs trial jobs. An executor may also have ``check(study, trials, source)``, which
    the study runner calls before it records anything: it raises for trials the executor
    would refuse to run (the Slurm executor asks ``sbatch --test-only``)."""

    name: str

    def run(self, jobs: list[TrialJob], on_event: OnEvent) -> None:
        """Run every job, calling ``on_event`` as they progress and finish."""


EXECUTORS = Registry("executor", "--executor", {
    "local": "ablate.dispatch.local:LocalExecutor",
    "slurm": "ablate.dispatch.slurm:SlurmExecutor",
})


def make_executor(name: str, request: ExecutorRequest) -> Executor:
    """``--executor NAME`` for a study: the registry's class, built by its ``for_study``."""
    return EXECUTORS.load(name).for_study(request)
