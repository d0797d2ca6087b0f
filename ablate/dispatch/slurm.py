"""Run trials on Slurm: one job array per submission, through submitit.

Each array task runs ``SlurmTrial``, a checkpointable wrapper around ``run_trial``: when
Slurm preempts or requeues the job, the requeued task trains on from the trial's own
``checkpoint.pt``. Results travel as ``result.json`` files in the run folders (never
through the database from a job), so the driver, ``ablate status`` and a later
``ablate run`` all ingest the same files. A job that dies without writing one is
recorded as failed with the tail of its submitit log.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import submitit
from pydantic import ValidationError
from submitit.core.utils import FailedJobError, JobPaths, pickle_load
from submitit.slurm import slurm as submitit_slurm
from submitit.slurm.slurm import SlurmInfoWatcher

from ablate.clock import utc_now_iso
from ablate.dispatch.claiming import claim_and_run
from ablate.dispatch.entry import TrialJob
from ablate.dispatch.executor import ExecutorRequest, OnEvent
from ablate.dispatch.leases import NOT_TRAINED
from ablate.dispatch.results import RESULT_NAME, CorruptResult, ingest_results, read_result
from ablate.errors import AblateError, UserInputError
from ablate.recipes.schema import SlurmSpec
from ablate.train.events import (
    EpochEnded,
    Finished,
    JobCancelled,
    JobStateChanged,
    Resumed,
    Started,
    TrialEvent,
)

DEFAULT_FOLDER = "results/slurm"
JOB_INFO_NAME = "slurm.json"  # in each run folder: job id and submitit log paths
DEFAULT_MAX_ARRAY_SIZE = 1001  # Slurm's own default
RESULT_POLL_S = 0.5  # result files are cheap to look for
STATE_POLL_S = 3.0  # sacct is not: ask for the states of all jobs at once, now and then
RESULT_GRACE_S = 2.0  # a job that ended may still be flushing its result file (NFS)
LOG_TAIL_LINES = 40
# sacct states of a job that may still write its result (REQUEUED/PREEMPTED come back)
LIVE_STATES = frozenset({
    "PENDING", "CONFIGURING", "RUNNING", "COMPLETING", "REQUEUED", "REQUEUE_HOLD",
    "REQUEUE_FED", "RESIZING", "SUSPENDED", "PREEMPTED", "SIGNALING", "STAGE_OUT",
    "STOPPED", "READY", "UNKNOWN",
})


# -- parameters (pure) --------------------------------------------------------------------

def resolve_spec(spec: SlurmSpec, overrides: Mapping[str, Any] | None = None) -> SlurmSpec:
    """The recipe's ``[slurm]`` section with the options that were given (not None) on top."""
    given = {k: v for k, v in (overrides or {}).items() if v is not None}
    try:
        return SlurmSpec.model_validate({**spec.model_dump(), **given})
    except ValidationError as err:
        first = err.errors()[0]
        key = ".".join(str(p) for p in first["loc"])
        raise UserInputError(f"--{key.replace('_', '-')}: {first['msg']} "
                             f"(got {first.get('input')!r})") from None


def slurm_parameters(spec: SlurmSpec, overrides: Mapping[str, Any] | None = None, *,
                     job_name: str = "ablate") -> dict[str, Any]:
    """submitit ``update_parameters`` keywords for one trial per array task.

    Options that are unset stay out, so the cluster's defaults apply. A trial with several
    GPUs runs one task per GPU (DistributedDataParallel), sharing the trial's CPUs.
    """
    spec = resolve_spec(spec, overrides)
    tasks = max(1, spec.gpus_per_trial)
    params: dict[str, Any] = {
        "name": job_name,
        "timeout_min": spec.time,
        "cpus_per_task": max(1, spec.cpus_per_trial // tasks),
        "slurm_array_parallelism": spec.array_parallelism,
    }
    if tasks > 1:
        params["tasks_per_node"] = tasks
    if spec.partition:
        params["slurm_partition"] = spec.partition
    if spec.gpus_per_trial:
        params["slurm_gpus_per_node"] = spec.gpus_per_trial
    if spec.mem:
        params["slurm_mem"] = spec.mem
    return params


def render_sbatch(parameters: Mapping[str, Any], folder: str | Path, array_size: int,
                  python: str = "python") -> str:
    """The sbatch file submitit writes for ``parameters`` (golden-tested, and compared with
    the file a real submission wrote).

    Uses submitit's own renderer and name mapping, so the text is exactly what is submitted.
    """

    renames = {**submitit_slurm.SlurmExecutor._equivalence_dict(), "name": "job_name"}
    native: dict[str, Any] = {}
    for key, value in parameters.items():
        key = key.removeprefix("slurm_")
        native[renames.get(key, key)] = value
    if array_size > 1:
        native["map_count"] = array_size
    folder = Path(folder)
    command = f"{python} -u -m submitit.core._submit {shlex.quote(str(folder))}"
    return submitit_slurm._make_sbatch_string(command=command, folder=folder, **native)


def array_chunks(items: list, max_array_size: int) -> list[list]:
    """Split into job arrays Slurm accepts (task ids 0..MaxArraySize-1)."""
    size = max(1, max_array_size)
    return [items[i:i + size] for i in range(0, len(items), size)]


def max_array_size() -> int:
    """``MaxArraySize`` from ``scontrol show config`` (Slurm's default if it cannot be read)."""
    try:
        out = subprocess.run(["scontrol", "show", "config"], capture_output=True, text=True,
                             timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return DEFAULT_MAX_ARRAY_SIZE
    for line in out.splitlines():
        key, _, value = line.partition("=")
        if key.strip() == "MaxArraySize" and value.strip().isdigit():
            return int(value.strip())
    return DEFAULT_MAX_ARRAY_SIZE


# -- the job side -------------------------------------------------------------------------

class SlurmTrial(submitit.helpers.Checkpointable):
    """What an array task runs. On requeue submitit calls ``checkpoint()``; the resubmitted
    trial finds its ``checkpoint.pt`` and ``train_and_evaluate`` resumes from it."""

    def __init__(self, job: TrialJob) -> None:
        self.job = job

    def __call__(self) -> dict[str, Any]:
        cpus = os.environ.get("SLURM_CPUS_PER_TASK")
        if cpus and cpus.isdigit():
            import torch  # lazy: loads torch (in the Slurm task only)

            torch.set_num_threads(int(cpus))  # torch would take every core of the node
        job = self.job
        if int(os.environ.get("SLURM_NTASKS", "1")) > 1:
            _init_distributed()
            # every rank runs the trial: claims are per process, so DDP trials run unclaimed
            job = replace(job, db=None)
        print(f"trial {job.trial_id} ({job.name}) run folder {job.run_dir}", flush=True)
        outcome = claim_and_run(job, progress=_log_progress, executor="slurm")
        if outcome["status"] in NOT_TRAINED:  # held by another runner: nothing to do here
            print(f"trial {job.trial_id} is {outcome.get('held_status')} elsewhere "
                  f"({outcome.get('holder')}); this task exits", flush=True)
        return outcome

    def checkpoint(self, *args: Any, **kwargs: Any) -> submitit.helpers.DelayedSubmission:
        # Training state lives in checkpoint.pt (written every train.checkpoint_every
        # steps), so resubmitting the same trial is enough.
        return submitit.helpers.DelayedSubmission(SlurmTrial(self.job))


def _init_distributed() -> None:
    """One task per GPU: rank, world size and rendezvous from Slurm's environment; each task
    sees only its own GPU. Without CUDA (a test cluster) the tasks train with gloo."""
    import torch  # lazy: loads torch (in the Slurm task only)
    import torch.distributed as dist  # lazy: loads torch (in the Slurm task only)

    submitit.helpers.TorchDistributedEnvironment().export(set_cuda_visible_devices=True)
    dist.init_process_group(backend="nccl" if torch.cuda.is_available() else "gloo")


def _log_progress(event: TrialEvent) -> None:
    """Epoch ends and resumes go to the job's log (``tail -f`` it to follow a trial)."""
    if isinstance(event, Resumed):
        print(f"resumed from checkpoint at step {event.step}", flush=True)
    elif isinstance(event, EpochEnded):
        loss = event.metrics.get("train_loss", float("nan"))
        print(f"epoch {event.epoch}/{event.epochs} step {event.step} "
              f"train_loss {loss:.4f}", flush=True)


# -- submitting and waiting ---------------------------------------------------------------

@dataclass(frozen=True)
class JobInfo:
    """Where a trial's Slurm job is: its id and its submitit logs."""

    job_id: str
    folder: str

    def paths(self):
        return JobPaths(self.folder, job_id=self.job_id, task_id=0)


def write_job_info(run_dir: str | Path, info: JobInfo) -> None:
    path = Path(run_dir) / JOB_INFO_NAME
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps({"job_id": info.job_id, "folder": info.folder,
                               "submitted_at": _now()}))
    os.replace(tmp, path)


def read_job_info(run_dir: str | Path | None) -> JobInfo | None:
    try:
        data = json.loads((Path(run_dir or "") / JOB_INFO_NAME).read_text())
        return JobInfo(str(data["job_id"]), str(data["folder"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None


class SlurmExecutor:
    """Submits trials as Slurm job arrays; waits for their result files unless ``detach``."""

    name = "slurm"

    def __init__(self, partition: str | None = None, gpus_per_trial: int = 0,
                 cpus_per_trial: int = 2, mem: str | None = None, time: int = 60,
                 array_parallelism: int = 64, folder: str | Path = DEFAULT_FOLDER,
                 detach: bool = False) -> None:
        self.spec = resolve_spec(SlurmSpec(), {
            "partition": partition, "gpus_per_trial": gpus_per_trial,
            "cpus_per_trial": cpus_per_trial, "mem": mem, "time": time,
            "array_parallelism": array_parallelism})
        self.folder = Path(folder).absolute()
        self.detach = detach

    @classmethod
    def for_study(cls, request: ExecutorRequest) -> SlurmExecutor:
        """The recipe's [slurm] section under the command-line flags; refuses to submit
        trials whose earlier jobs still run (they would run twice)."""
        recipe, store = request.recipe, request.store
        spec = resolve_spec(recipe.slurm, {**request.slurm,
                                           "gpus_per_trial": request.gpus_per_trial})
        if any(s.name == recipe.name for s in store.studies()):
            live = live_jobs(store, recipe.name, [t.trial_id for t in request.trials])
            if live:
                jobs = ", ".join(sorted(set(live.values()))[:5])
                raise UserInputError(
                    f"{len(live)} trial(s) of {recipe.name} still have Slurm jobs ({jobs}); "
                    f"follow them with 'ablate status {recipe.name}' or stop them with "
                    f"'ablate cancel {recipe.name}'")
        return cls(**spec.model_dump(), folder=Path(request.runs_dir).absolute().parent / "slurm",
                   detach=request.detach)

    def run(self, jobs: list[TrialJob], on_event: OnEvent) -> None:
        if not jobs:
            return
        submitted = self.submit(jobs, on_event)
        if not self.detach:
            wait_for_results(submitted, on_event)

    def submit(self, jobs: list[TrialJob], on_event: OnEvent) -> list[tuple[TrialJob, JobInfo]]:
        """One array per ``MaxArraySize`` jobs; a "start" event with each job id."""
        if shutil.which("sbatch") is None:
            raise UserInputError("--executor slurm: sbatch not found; is Slurm installed "
                                 "and on PATH (and SLURM_CONF set)?")
        executor = submitit.AutoExecutor(folder=self.folder, cluster="slurm",
                                         slurm_python=shlex.quote(sys.executable))
        executor.update_parameters(**slurm_parameters(self.spec,
                                                      job_name=f"ablate:{jobs[0].study}"))
        for job in jobs:  # a stale result must not be taken for this run's
            (Path(job.run_dir) / RESULT_NAME).unlink(missing_ok=True)
        submitted = []
        for chunk in array_chunks(jobs, max_array_size()):
            # jobs need not start in this directory: give them absolute run folders
            payloads = [SlurmTrial(replace(job, run_dir=str(Path(job.run_dir).absolute())))
                        for job in chunk]
            try:
                handles = executor.submit_array(payloads)
            except FailedJobError as err:
                first = next((ln for ln in str(err).splitlines() if ln.strip()), str(err))
                raise UserInputError(f"sbatch refused the job array: {first.strip()}") from None
            for job, handle in zip(chunk, handles):
                info = JobInfo(str(handle.job_id), str(self.folder))
                write_job_info(job.run_dir, info)
                submitted.append((job, info))
                on_event(job, Started(job_id=info.job_id))
        return submitted


def wait_for_results(submitted: list[tuple[TrialJob, JobInfo]], on_event: OnEvent, *,
                     sleep: Callable[[float], None] | None = None) -> None:
    """Until every job has a result: ``Finished`` with the result file, or with a failure built
    from the log when the job ended without one; ``JobCancelled`` when it was scancel'ed.

    A KeyboardInterrupt leaves the jobs running (they are followed with ``ablate status``).
    """
    sleep = sleep or _sleep
    waiting = {info.job_id: (job, info) for job, info in submitted}
    states: dict[str, str] = {}
    ended: dict[str, float] = {}  # job id -> when sacct first called it over
    next_states = 0.0
    while waiting:
        for job_id, (job, _info) in list(waiting.items()):
            result = own_result(job.study, job.trial_id, job.run_dir)
            if result is not None:
                del waiting[job_id]
                on_event(job, Finished(result))
        now = time.monotonic()
        if waiting and now >= next_states:
            next_states = now + STATE_POLL_S
            for job_id, state in job_states(list(waiting)).items():
                job, info = waiting[job_id]
                if state != states.get(job_id):
                    states[job_id] = state
                    on_event(job, JobStateChanged(job_id, state))
                if state in LIVE_STATES:
                    ended.pop(job_id, None)
                    continue
                if now - ended.setdefault(job_id, now) < RESULT_GRACE_S:
                    next_states = min(next_states, now + RESULT_GRACE_S)
                    continue
                if own_result(job.study, job.trial_id, job.run_dir) is not None:
                    continue  # picked up on the next pass
                del waiting[job_id]
                returned = job_returned(info)
                if isinstance(returned, dict) and returned.get("status") in NOT_TRAINED:
                    on_event(job, Finished(returned))  # left to its holder
                elif state == "CANCELLED":
                    on_event(job, JobCancelled(job_id))
                else:
                    on_event(job, Finished(dead_job_result(job, info, state)))
        if waiting:  # thousands of result files are not looked for twice a second
            sleep(max(RESULT_POLL_S, len(waiting) / 200))


def _sleep(seconds: float) -> None:
    time.sleep(seconds)


def own_result(study: str, trial_id: str, run_dir: str | Path | None) -> dict[str, Any] | None:
    """The trial's result file if it is complete and its own; None otherwise."""
    if not run_dir:
        return None
    try:
        result = read_result(Path(run_dir) / RESULT_NAME)
    except CorruptResult:
        return None
    if result["study"] != study or result["trial_id"] != trial_id:
        return None
    return result


def dead_job_result(job: TrialJob, info: JobInfo, state: str) -> dict[str, Any]:
    """A failed result for a job that ended (``state``) without writing its result file."""
    return {"study": job.study, "trial_id": job.trial_id, "name": job.name,
            "dead_job_id": info.job_id,  # the holder's own job died: its live lease is void
            "run_dir": job.run_dir, "status": "failed", "started_at": None,
            "finished_at": _now(), "final": {}, "epochs": [], "environment": None,
            "error": f"Slurm job {info.job_id} ended {state} without a result\n"
                     f"{job_log_text(info)}"}


def job_returned(info: JobInfo) -> Any:
    """What the job's function returned (submitit's result pickle); None if it raised,
    has not ended or left no readable pickle."""
    path = info.paths().result_pickle
    if not path.exists():
        return None
    try:
        outcome, value = pickle_load(path)
    except Exception:  # unreadable: as if there were none
        return None
    return value if outcome == "success" else None


def job_log_text(info: JobInfo) -> str:
    """The Python traceback submitit pickled, else the tail of the job's logs."""
    paths = info.paths()
    if paths.result_pickle.exists():
        try:
            outcome, value = pickle_load(paths.result_pickle)
            if outcome == "error":
                return str(value)
        except Exception:  # an unreadable pickle: fall back to the logs
            pass
    parts = []
    for path in (paths.stderr, paths.stdout):
        if path.is_file():
            lines = path.read_text(errors="replace").splitlines()[-LOG_TAIL_LINES:]
            parts.append(f"---- last {len(lines)} lines of {path} ----\n" + "\n".join(lines))
    return "\n".join(parts) or f"no log found at {paths.stderr}"


# -- asking Slurm -------------------------------------------------------------------------

def job_states(job_ids: list[str]) -> dict[str, str]:
    """sacct's state of each job (array tasks "123_4" included); UNKNOWN when sacct is
    unavailable or does not know the job yet."""
    if not job_ids:
        return {}

    bases = sorted({jid.split("_")[0] for jid in job_ids})
    command = ["sacct", "-o", "JobID,State", "--parsable2", "-j", ",".join(bases)]
    try:
        out = subprocess.run(command, capture_output=True, text=True, timeout=60).stdout
    except (OSError, subprocess.SubprocessError):
        out = ""
    info = SlurmInfoWatcher().read_info(out)
    states = {}
    for jid in job_ids:
        state = info.get(jid, {}).get("State") or "UNKNOWN"
        states[jid] = state.split()[0]  # "CANCELLED by 0" -> "CANCELLED"
    return states


def scancel(job_ids: list[str]) -> None:
    if not job_ids:
        return
    if shutil.which("scancel") is None:
        raise UserInputError("scancel not found; is Slurm installed and on PATH?")
    done = subprocess.run(["scancel", *job_ids], capture_output=True, text=True, timeout=60)
    # jobs that ended meanwhile are not an error
    errors = [ln for ln in done.stderr.splitlines()
              if ln.strip() and "already completing or completed" not in ln
              and "Invalid job id specified" not in ln]
    if done.returncode != 0 and errors:
        raise AblateError(f"scancel failed: {errors[0].strip()}")


# -- following and cancelling a study (``ablate status`` / ``ablate cancel``) ----------------

@dataclass(frozen=True)
class StudyFollowUp:
    study: str
    ingested: list[str]  # result files found since the last look
    corrupt: list[str]
    died: list[str]  # trials whose job ended without a result: now failed
    requeue: list[str]  # trials whose job was cancelled outside ablate: now pending
    slurm_states: dict[str, str]  # trial id -> Slurm state of its job (running trials)


def follow_study(store, study: str, runs_root: str | Path) -> StudyFollowUp:
    """Ingest every finished result of ``study`` and settle jobs that ended without one."""
    report = ingest_results(store, study, runs_root)
    running = [r for r in store.trials(study, with_metrics=False, status="running") if r.job_id]
    states = job_states([r.job_id for r in running])
    died, requeue, shown = [], [], {}
    for rec in running:
        state = states[rec.job_id]
        shown[rec.trial_id] = state
        if state in LIVE_STATES:
            continue
        result = own_result(study, rec.trial_id, rec.run_dir)
        returned = job_returned(read_job_info(rec.run_dir) or JobInfo(rec.job_id, DEFAULT_FOLDER))
        if result is not None:  # finished between the ingest and sacct
            store.ingest_result(result)
            report.ingested.append(rec.trial_id)
        elif isinstance(returned, dict) and returned.get("status") in NOT_TRAINED:
            continue  # the job found the trial held by another runner, which records it
        elif state == "CANCELLED":
            store.reset(study, [rec.trial_id])
            requeue.append(rec.trial_id)
        else:
            info = read_job_info(rec.run_dir) or JobInfo(rec.job_id, DEFAULT_FOLDER)
            job = TrialJob(study, rec.trial_id, rec.name, rec.spec, rec.run_dir or "")
            store.ingest_result(dead_job_result(job, info, state))
            died.append(rec.trial_id)
    return StudyFollowUp(study, report.ingested, report.corrupt, died, requeue, shown)


def live_jobs(store, study: str, trial_ids: list[str] | None = None) -> dict[str, str]:
    """Trial id -> job id of the trials whose Slurm job may still write a result."""
    running = [r for r in store.trials(study, with_metrics=False, status="running")
               if r.job_id and (trial_ids is None or r.trial_id in trial_ids)]
    if not running or shutil.which("sacct") is None:
        return {}
    states = job_states([r.job_id for r in running])
    return {r.trial_id: r.job_id for r in running if states[r.job_id] in LIVE_STATES}


def cancel_study(store, study: str, runs_root: str | Path) -> list[str]:
    """scancel the running jobs of ``study``; their trials go back to pending (a later
    run resumes them from their checkpoints). Returns the trial ids."""
    running = [r for r in store.trials(study, with_metrics=False, status="running") if r.job_id]
    scancel(sorted({r.job_id for r in running}))
    ingest_results(store, study, runs_root)  # a trial that finished just before stays done
    still = {tid for tid, status in store.statuses(study).items() if status == "running"}
    cancelled = [r.trial_id for r in running if r.trial_id in still]
    store.reset(study, cancelled)
    return cancelled


def _now() -> str:
    return utc_now_iso()
