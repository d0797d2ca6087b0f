"""The trial entry point: a picklable function that local workers and Slurm jobs call."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ablate import __version__
from ablate.clock import utc_now_iso
from ablate.dispatch.gpus import VISIBLE_ENV, process_gpus
from ablate.dispatch.leases import DEFAULT_LEASE_SECONDS, LeaseLost
from ablate.dispatch.liveness import slurm_job_id
from ablate.dispatch.progress import ProgressFile
from ablate.dispatch.ranks import train_with_ranks
from ablate.dispatch.sharing import environment_record
from ablate.errors import UserInputError, headline
from ablate.track import TrackedTrial, open_trackers
from ablate.trials.lifecycle import DEFAULT_KEEP, TrialResult, TrialStatus


@dataclass(frozen=True)
class TrialJob:
    """Everything a worker needs; plain data so it pickles across processes and Slurm."""

    study: str
    trial_id: str
    name: str
    spec: dict[str, Any]
    run_dir: str
    # claims (ablate.dispatch.claiming): the database to claim the trial in (None: run
    # unclaimed), the lease, and when this study run started (failed trials recorded
    # before then are retried, ones failed since were retried by another runner)
    db: str | None = None
    lease_seconds: float = DEFAULT_LEASE_SECONDS
    failed_before: str | None = None
    # processes that train the trial together (DistributedDataParallel), one per GPU the
    # local runner gave it; Slurm starts its ranks itself and leaves this at 1
    ranks: int = 1
    # trackers (ablate.track): the sinks to feed, and what they record of the trial
    # (axes, seed, variant, config name, per-sink options)
    tracking: tuple[str, ...] = ()
    track_info: dict[str, Any] | None = None
    # what the run folder keeps of the checkpoint once the trial is done (KEEP_CHOICES)
    keep: str = DEFAULT_KEEP


def _now() -> str:
    return utc_now_iso()


def git_commit() -> str | None:
    here = Path(__file__).resolve().parent
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True,
                             text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def environment(device: str | None = None, device_name: str | None = None) -> dict[str, Any]:
    import torch  # lazy: loads torch
    import torchvision  # lazy: loads torchvision


    env = {
        "torch": torch.__version__, "torchvision": torchvision.__version__,
        "ablate": __version__, "git_commit": git_commit(), "host": socket.gethostname(),
        "python": sys.version.split()[0], "command": " ".join(sys.argv),
        "device": device, "device_name": device_name, "pid": os.getpid(),
        "slurm_job_id": slurm_job_id(),  # "<array>_<task>": whose result file this is
        "threads": torch.get_num_threads(),  # CPU-hours of a CPU trial (``dispatch.budget``)
    }
    gpus = process_gpus(device)  # which physical GPUs, by the ids CUDA_VISIBLE_DEVICES uses
    if gpus is not None:
        env.update(gpus=gpus["ids"], gpu_names=gpus["names"],
                   cuda_visible_devices=os.environ.get(VISIBLE_ENV))
    shared = environment_record()  # --trials-per-gpu: neighbours, how latency was timed
    if shared is not None:
        env["sharing"] = shared
    return env


def _code_files(spec: Any) -> dict[str, dict[str, str]]:
    """``trials.ids.code_files``; a file gone since training loses the record, not the trial."""
    from ablate.trials.ids import code_files  # lazy: loads pydantic

    try:
        return code_files(spec)
    except UserInputError:
        return {}


def run_trial(job: TrialJob, progress=None, claim_epoch: int | None = None,
              stopping: Callable[[], bool] | None = None) -> TrialResult:
    """Train and evaluate one trial, write its result file, and return the result.

    Never raises for a failing trial: the failure, with its traceback, is the result.
    ``claim_epoch`` (the claim it is trained under) goes into the result, so that a late
    result of a holder whose claim was taken over is not recorded. ``stopping()`` True:
    the cluster is stopping this job (Slurm's USR2, handled by submitit inside training),
    and an error raised meanwhile is raised, not recorded: it is the stop's, not the
    trial's (submitit's ``scontrol requeue`` can be killed by the SIGTERM of the very
    requeue it asked for, raising ``CalledProcessError`` in the middle of a step).
    """
    from ablate.recipes.schema import TrialSpec  # lazy: loads pydantic

    base = TrialResult(job.study, job.trial_id, TrialStatus.FAILED, name=job.name,
                       run_dir=job.run_dir, started_at=_now(), claim_epoch=claim_epoch)
    if _rank() == 0:  # epoch, step and loss in the run folder, for `ablate watch`
        progress = ProgressFile(job.run_dir).wrap(progress)
    trackers = _trackers(job)
    if trackers is not None:  # they see each event before the progress display does
        progress = trackers.wrap(progress)
    try:
        spec = TrialSpec.model_validate(job.spec)
        outcome = _train(spec, job, progress)
        result = base.replace(status=TrialStatus.DONE, epochs=outcome["epochs"])
        if _rank() == 0:  # the other ranks' figures are dropped: no cost or environment
            result = result.replace(final=_with_conditional_cost(spec, outcome["final"]),
                                    weights_report=outcome["weights_report"],
                                    environment=_trained_environment(spec, outcome))
    except (KeyboardInterrupt, LeaseLost):  # no result: the trial is not finished
        if trackers is not None:
            trackers.finish({"status": "interrupted"})
        raise
    except Exception as err:  # recorded as the trial's failure, the study goes on
        if stopping is not None and stopping():  # no result: the trial resumes when requeued
            if trackers is not None:
                trackers.finish({"status": "interrupted"})
            raise
        result = base.replace(error=f"{headline(err)}\n{traceback.format_exc()}",
                              environment=environment())
    result = result.replace(finished_at=_now())
    if trackers is not None:  # final figures and hparams; where they wrote, in environment
        tracking = trackers.finish(result.to_json())
        if tracking:
            result = result.replace(environment={**(result.environment or {}),
                                                 "tracking": tracking})
    if _rank() == 0:  # under DistributedDataParallel every rank runs the trial; one writes
        result.write(job.run_dir)
        if result.done:  # the result is on disk: the checkpoint's resume state is not needed
            _keep_finished(job)
    return result


def _keep_finished(job: TrialJob) -> None:
    """Thin the done trial's checkpoint to ``job.keep``. Whatever goes wrong doing so (a
    full disk, an unreadable checkpoint) leaves the checkpoint as it was and the trial
    done: its result is written, and an error here must not hand the trial back. (A
    ``weights.pt`` half written is a temporary file that ``ablate.atomic`` removes.)"""
    from ablate.train.checkpoint import keep_finished  # lazy: loads torch

    try:
        keep_finished(Path(job.run_dir), job.keep)
    except Exception as err:
        print(f"ablate: trial {job.trial_id}: checkpoint kept whole "
              f"({type(err).__name__}: {err})", file=sys.stderr)


def _trained_environment(spec, outcome: dict[str, Any]) -> dict[str, Any]:
    """Where and how the trial trained: versions, device, processes, timing, user code."""
    env = environment(outcome["device"], outcome["device_name"])
    if outcome.get("ranks", 1) > 1:  # trained by this many processes (DDP)
        env["ddp_ranks"] = outcome["ranks"]
    if outcome.get("gpu_peak_memory_gib") is not None:  # what --trials-per-gpu packs by
        env["gpu_peak_memory_gib"] = round(outcome["gpu_peak_memory_gib"], 3)
    if spec.eval.latency:  # how latency was timed: clock, device, driver, clocks
        from ablate.cost.latency import timing_environment  # lazy: loads torch

        env["timing"] = timing_environment(outcome["device"])
    if outcome.get("runtimes"):  # per-runtime status, reason, device, threads, version
        env["runtimes"] = outcome["runtimes"]
    code = _code_files(spec)  # the user's files that ran: `plan` names those edited since
    if code:
        env["code"] = code
    return env


def _trackers(job: TrialJob):
    """The trial's tracker sinks (rank 0 only), or None when it has none."""
    if not job.tracking or _rank() != 0:
        return None

    info = dict(job.track_info or {})
    return open_trackers(job.tracking, TrackedTrial(
        job.study, job.trial_id, job.name, job.run_dir, axes=info.get("axes") or {},
        seed=int(info.get("seed") or 0), variant=str(info.get("variant") or ""),
        config_name=str(info.get("config_name") or ""), options=info.get("options") or {},
        spec=job.spec))


def _train(spec, job: TrialJob, progress) -> dict[str, Any]:
    """This process trains the trial, or, given several GPUs by the local runner, is rank 0
    of ``job.ranks`` processes that train it together. The outcome's ``ranks``: how many
    processes trained it (one rank per task of a Slurm trial with several tasks)."""
    from ablate.train.loop import (  # lazy: loads numpy, pydantic, torch
        distributed_rank_world,
        train_and_evaluate,
    )

    world = distributed_rank_world()[1]
    if job.ranks > 1 and world == 1:
        return train_with_ranks(spec, job, progress)
    return {**train_and_evaluate(spec, Path(job.run_dir), progress), "ranks": world}


def _rank() -> int:
    from ablate.train.loop import distributed_rank_world  # lazy: loads numpy, pydantic, torch

    return distributed_rank_world()[0]


def _with_conditional_cost(spec, final: dict[str, float]) -> dict[str, float]:
    """Effective FLOPs of a selective down-sampling model at its measured mask density."""
    if not spec.model.selective.enabled or "mask_density" not in final:
        return final
    from ablate.cost.selective import selective_cost  # lazy: loads pydantic, torch
    from ablate.trials.resolve import eval_resolution, num_classes  # lazy: loads pydantic

    return {**final, **selective_cost(spec.model, num_classes(spec), eval_resolution(spec),
                                      final["mask_density"])}
