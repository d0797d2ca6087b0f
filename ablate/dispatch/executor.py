"""Executors run trial jobs. Picked by name: ``local`` here, ``slurm`` in its own module."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from ablate.dispatch.entry import TrialJob

# on_event(job, event): event["kind"] in {"start", "step", "epoch", "resume", "finish"};
# "finish" carries the result dict. Slurm adds "job_id" to "start" (sent at submission),
# "state" (the job's Slurm state changed) and "cancelled" (scancel'ed, no result).
OnEvent = Callable[[TrialJob, dict[str, Any]], None]


class Executor(Protocol):
    name: str

    def run(self, jobs: list[TrialJob], on_event: OnEvent) -> None:
        """Run every job, calling ``on_event`` as they progress and finish."""


def make_executor(name: str, **options: Any) -> Executor:
    if name == "local":
        from ablate.dispatch.local import LocalExecutor

        return LocalExecutor(jobs=options.get("jobs", 1), gpus=options.get("gpus"),
                             gpus_per_trial=options.get("gpus_per_trial") or 1)
    if name == "slurm":
        from ablate.dispatch.slurm import SlurmExecutor

        return SlurmExecutor(**options)
    from ablate.errors import UserInputError

    raise UserInputError(f"--executor: unknown executor {name!r}; allowed: local, slurm")
