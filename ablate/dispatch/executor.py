"""Executors run trial jobs; ``make_executor`` picks one by name from ``EXECUTORS``.

The interface (``Executor``, ``OnEvent``) lives here and the executors in their own
modules (``local``, ``slurm``), named by import path in the registry: they import this
module, not the other way round, and ``submitit`` loads only when Slurm is asked for.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from ablate.dispatch.entry import TrialJob
from ablate.registry import Registry

# on_event(job, event): event["kind"] in {"start", "step", "epoch", "resume", "finish"};
# "finish" carries the result dict. Slurm adds "job_id" to "start" (sent at submission),
# "state" (the job's Slurm state changed) and "cancelled" (scancel'ed, no result).
OnEvent = Callable[[TrialJob, dict[str, Any]], None]


class Executor(Protocol):
    name: str

    def run(self, jobs: list[TrialJob], on_event: OnEvent) -> None:
        """Run every job, calling ``on_event`` as they progress and finish."""


EXECUTORS = Registry("executor", "--executor", {
    "local": "ablate.dispatch.local:LocalExecutor",
    "slurm": "ablate.dispatch.slurm:SlurmExecutor",
})


def make_executor(name: str, **options: Any) -> Executor:
    executor = EXECUTORS.load(name)
    if name == "local":
        return executor(jobs=options.get("jobs", 1), gpus=options.get("gpus"),
                        gpus_per_trial=options.get("gpus_per_trial") or 1)
    return executor(**options)
