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
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import submitit
from pydantic import ValidationError
from submitit.core.utils import FailedJobError, JobPaths, pickle_load
from submitit.slurm import slurm as submitit_slurm
from submitit.slurm.slurm import SlurmInfoWatcher

from ablate import atomic
from ablate.clock import utc_now_iso
from ablate.dispatch.claiming import claim_and_run, describe_holder
from ablate.dispatch.entry import TrialJob, run_trial
from ablate.dispatch.executor import ExecutorRequest, OnEvent
from ablate.dispatch.gpus import VISIBLE_ENV, device_ids
from ablate.dispatch.ranks import (
    RENDEZVOUS_TIMEOUT,
    address_file,
    hear_rank_zero,
    meet,
    tell_ranks,
)
from ablate.dispatch.results import ingest_results, own_result
from ablate.errors import AblateError, UserInputError
from ablate.recipes.schema import SlurmSpec
from ablate.store.claims import CANCELLED
from ablate.train.events import (
    Ended,
    EpochEnded,
    JobCancelled,
    JobStateChanged,
    Resumed,
    Submitted,
    TrialEvent,
)
from ablate.trials.lifecycle import (
    RESULT_NAME,
    Held,
    Interrupted,
    JobDied,
    Lost,
    Outcome,
    Trained,
    TrialResult,
    TrialStatus,
    Unclaimed,
)

DEFAULT_FOLDER = "results/slurm"
JOB_INFO_NAME = "slurm.json"  # in each run folder: job id and submitit log paths
DEFAULT_MAX_ARRAY_SIZE = 1001  # Slurm's own default
RESULT_POLL_S = 0.5  # result files are cheap to look for
STATE_POLL_S = 3.0  # sacct is not: ask for the states of all jobs at once, now and then
SBATCH_TIMEOUT_S = 60  # sbatch, sinfo and scontrol wait this long for slurmctld
RESULT_GRACE_S = 2.0  # a job that ended may still be flushing its result file (NFS)
# PREEMPTED is also what sacct shows for the moment between a preemption and the requeue;
# a job still PREEMPTED after this long was not requeued (PreemptMode=CANCEL)
PREEMPT_GRACE_S = 60.0
LOG_TAIL_LINES = 40
# sacct states of a job that may still write its result (REQUEUED comes back)
LIVE_STATES = frozenset({
    "PENDING", "CONFIGURING", "RUNNING", "COMPLETING", "REQUEUED", "REQUEUE_HOLD",
    "REQUEUE_FED", "RESIZING", "SUSPENDED", "SIGNALING", "STAGE_OUT", "STOPPED", "READY",
    "UNKNOWN",
})
# final sacct states in which the cluster, not the trial, stopped the job: the trial
# resumes from its checkpoint on the next run and the stop is not counted as a failure
INTERRUPTED_STATES = {
    "PREEMPTED": TrialStatus.PREEMPTED, "NODE_FAIL": TrialStatus.PREEMPTED,
    "BOOT_FAIL": TrialStatus.PREEMPTED, "DEADLINE": TrialStatus.TIMED_OUT,
    "TIMEOUT": TrialStatus.TIMED_OUT,
}


# -- parameters (pure) --------------------------------------------------------------------

def resolve_spec(spec: SlurmSpec, overrides: Mapping[str, Any] | None = None) -> SlurmSpec:
    """The recipe's ``[slurm]`` section with the options that were given (not None) on top."""
    given = {k: v for k, v in (overrides or {}).items() if v is not None}
    try:
        return SlurmSpec.model_validate({**spec.model_dump(), **given})
    except ValidationError as err:
        first = err.errors()[0]
        key = ".".join(str(p) for p in first["loc"])
        message = first["msg"].removeprefix("Value error, ")
        raise UserInputError(f"--{key.replace('_', '-')}: {message} "
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

    equivalence, make_sbatch = _submitit_renderer()
    renames = {**equivalence(), "name": "job_name"}
    native: dict[str, Any] = {}
    for key, value in parameters.items():
        key = key.removeprefix("slurm_")
        native[renames.get(key, key)] = value
    if array_size > 1:
        native["map_count"] = array_size
    folder = Path(folder)
    command = f"{python} -u -m submitit.core._submit {shlex.quote(str(folder))}"
    return make_sbatch(command=command, folder=folder, **native)


def _submitit_renderer():
    """submitit's own sbatch renderer and option names. They are private (no public API
    renders a submission file), so pyproject pins the minor version they were tested
    with (``submitit>=1.5,<1.6``); a submitit without them is one clear error."""
    try:
        return (submitit_slurm.SlurmExecutor._equivalence_dict,
                submitit_slurm._make_sbatch_string)
    except AttributeError as err:
        raise AblateError(f"submitit {submitit.__version__} lacks {err.name or err}: ablate "
                          "renders sbatch files with submitit 1.5.x; pip install "
                          "'submitit>=1.5,<1.6'") from None


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
    trial finds its ``checkpoint.pt`` and ``train_and_evaluate`` resumes from it.

    submitit calls ``checkpoint()`` when Slurm signals the job (``--signal=USR2@90``):
    the job is near its time limit or being preempted. That is recorded with the trial
    (``timed_out`` or ``preempted``, not a failure) as the job hands its claim back, and
    the requeued job takes it back and resumes without counting an attempt.
    """

    def __init__(self, job: TrialJob, timeout_min: float | None = None) -> None:
        self.job = job
        self.timeout_min = timeout_min
        self._started = time.time()
        self._interruption: TrialStatus | None = None

    def __call__(self) -> Outcome:
        self._started, self._interruption = time.time(), None
        cpus = os.environ.get("SLURM_CPUS_PER_TASK")
        if cpus and cpus.isdigit():
            import torch  # lazy: loads torch (in the Slurm task only)

            torch.set_num_threads(int(cpus))  # torch would take every core of the node
        job = self.job
        print(f"trial {job.trial_id} ({job.name}) run folder {job.run_dir}", flush=True)
        decided = None
        if int(os.environ.get("SLURM_NTASKS", "1")) > 1:
            # one task per GPU: rank 0 claims as a one-task job does and tells the others
            # whether they train; they never open the database
            rank = _init_distributed()
            if rank != 0:
                return _follow_rank_zero(job, rank)
            decided = tell_ranks
        outcome = claim_and_run(job, progress=_log_progress, executor="slurm",
                                interrupted=lambda: self._interruption, decided=decided)
        _log_left(job, outcome)
        return outcome

    def checkpoint(self, *args: Any, **kwargs: Any) -> submitit.helpers.DelayedSubmission:
        # Training state lives in checkpoint.pt (written every train.checkpoint_every
        # steps), so resubmitting the same trial is enough.
        self._interruption = interruption_kind(time.time() - self._started, self.timeout_min)
        print(f"trial {self.job.trial_id}: job {self._interruption.replace('_', ' ')}; it "
              "resumes from its checkpoint when requeued", flush=True)
        return submitit.helpers.DelayedSubmission(SlurmTrial(self.job, self.timeout_min))


def interruption_kind(ran_s: float, timeout_min: float | None) -> TrialStatus:
    """Why Slurm signalled a job that ran ``ran_s`` seconds: submitit's own rule, timed
    out once it has run past its guaranteed walltime (80 % of the limit, at most the
    limit less 10 minutes), preempted before (pure)."""
    if timeout_min is None:
        return TrialStatus.PREEMPTED
    limit = timeout_min * 60
    return TrialStatus.TIMED_OUT if ran_s >= min(limit * 0.8, limit - 600) \
        else TrialStatus.PREEMPTED


def _init_distributed() -> int:
    """One task per GPU: rank and world size from Slurm's environment, each task sees only
    its own GPU; the tasks meet in a store whose address rank 0 publishes in the job's
    folder (``ranks.meet``; submitit's ``MASTER_PORT``, derived from the job id, can be
    another job's). Without CUDA (a test cluster) the tasks train with gloo. A
    collective gives up after ``RENDEZVOUS_TIMEOUT``: a rank whose peers stopped (rank 0
    lost its claim, a task crashed) ends rather than holding its GPU. Returns this rank."""
    import torch  # lazy: loads torch (in the Slurm task only)
    import torch.distributed as dist  # lazy: loads torch (in the Slurm task only)

    env = submitit.JobEnvironment()
    device = task_device(os.environ.get(VISIBLE_ENV), env.local_rank)
    os.environ[VISIBLE_ENV] = device  # before CUDA starts: this task sees its GPU only
    restarts = int(os.environ.get("SLURM_RESTART_COUNT") or 0)  # set once requeued
    store = meet(env.global_rank, env.num_tasks,
                 address_file(env.paths.folder, env.job_id, restarts))
    dist.init_process_group(backend="nccl" if torch.cuda.is_available() else "gloo",
                            store=store, rank=env.global_rank, world_size=env.num_tasks,
                            timeout=RENDEZVOUS_TIMEOUT)
    return dist.get_rank()


def task_device(visible: str | None, local_rank: int) -> str:
    """The GPU the task of ``local_rank`` trains on, as ``CUDA_VISIBLE_DEVICES`` names it:
    the ``local_rank``-th of the job's devices that Slurm made visible (physical ids
    such as ``2,3`` where the cluster does not renumber GPUs per job), the one device a
    task was bound to (``--gpus-per-task``), else ``local_rank`` (submitit's choice,
    which picks another job's GPU where ids are not renumbered)."""
    ids = device_ids(visible)
    if len(ids) == 1:
        return ids[0]
    return ids[local_rank] if local_rank < len(ids) else str(local_rank)


def _follow_rank_zero(job: TrialJob, rank: int) -> Outcome:
    """Rank ``rank`` > 0 of a Slurm trial: trains beside rank 0 only while rank 0 holds the
    claim, else ends with rank 0's outcome; it writes nothing (rank 0 writes checkpoints and
    the result). When rank 0 stops training (its claim taken over, a failure, a stop) this
    rank's next collective fails, at once when rank 0's task has exited (gloo), else after
    ``RENDEZVOUS_TIMEOUT``: its result is not the trial's and is dropped."""
    outcome = hear_rank_zero()
    if outcome is None:
        result = run_trial(job, progress=_log_progress)
        if not result.done:
            why = (result.error or "").split("\n", 1)[0]
            print(f"rank {rank}: trial {job.trial_id} stopped here ({why}); rank 0's log "
                  "says what became of it", flush=True)
        outcome = Trained(result)
    _log_left(job, outcome)
    return outcome


def _log_left(job: TrialJob, outcome: Outcome) -> None:
    """Why a task trains nothing: the trial was cancelled or is held elsewhere."""
    if isinstance(outcome, Held) and outcome.why == CANCELLED:
        print(f"trial {job.trial_id} was reset by 'ablate cancel' while this job started; "
              "this task exits", flush=True)
    elif isinstance(outcome, Held):  # held by another runner: nothing to do here
        by = f" ({describe_holder(dict(outcome.holder))})" if outcome.holder else ""
        print(f"trial {job.trial_id} is {outcome.why} elsewhere{by}; this task exits",
              flush=True)


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
    atomic.write_text(path, json.dumps({"job_id": info.job_id, "folder": info.folder,
                                        "submitted_at": _now()}))


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
        self._accepted: set[str] = set()  # array scripts sbatch --test-only accepted

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

    def check(self, study: str, trials: int, source: str = "") -> None:
        """Refuse, before anything is recorded, a job array that sbatch would refuse (a
        partition that does not exist, more memory, CPUs or GPUs than a node has, a time
        over the partition's limit): ``sbatch --test-only`` on the array's own script,
        which submits nothing and writes no file. ``source``: the recipe, named in the
        message."""
        _require_sbatch()
        size = max(1, min(trials, max_array_size()))
        script = render_sbatch(slurm_parameters(self.spec, job_name=f"ablate:{study}"),
                               self.folder, size, python=shlex.quote(sys.executable))
        if script in self._accepted:  # ``ablate run`` checks a new database's stand-in first
            return
        try:
            done = subprocess.run(["sbatch", "--test-only"], input=script, capture_output=True,
                                  text=True, timeout=SBATCH_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            raise AblateError(f"--executor slurm: sbatch --test-only did not answer in "
                              f"{SBATCH_TIMEOUT_S} s; is the cluster's slurmctld up? "
                              "(nothing was recorded)") from None
        except OSError as err:
            raise AblateError(f"--executor slurm: cannot run sbatch: {err.strerror or err} "
                              "(nothing was recorded)") from None
        if done.returncode != 0:
            raise refused_error(done.stderr or done.stdout, source, recorded=False)
        self._accepted.add(script)

    def run(self, jobs: list[TrialJob], on_event: OnEvent) -> None:
        if not jobs:
            return
        submitted = self.submit(jobs, on_event)
        if not self.detach:
            wait_for_results(submitted, on_event)

    def submit(self, jobs: list[TrialJob], on_event: OnEvent) -> list[tuple[TrialJob, JobInfo]]:
        """One array per ``MaxArraySize`` jobs; a ``Submitted`` event with each job id."""
        _require_sbatch()
        executor = submitit.AutoExecutor(folder=self.folder, cluster="slurm",
                                         slurm_python=shlex.quote(sys.executable))
        executor.update_parameters(**slurm_parameters(self.spec,
                                                      job_name=f"ablate:{jobs[0].study}"))
        for job in jobs:  # a stale result must not be taken for this run's
            (Path(job.run_dir) / RESULT_NAME).unlink(missing_ok=True)
        submitted = []
        for chunk in array_chunks(jobs, max_array_size()):
            # jobs need not start in this directory: give them absolute run folders
            payloads = [SlurmTrial(replace(job, run_dir=str(Path(job.run_dir).absolute())),
                                   self.spec.time) for job in chunk]
            try:
                handles = executor.submit_array(payloads)
            except FailedJobError as err:
                raise refused_error(str(err)) from None
            for job, handle in zip(chunk, handles):
                info = JobInfo(str(handle.job_id), str(self.folder))
                write_job_info(job.run_dir, info)
                submitted.append((job, info))
                on_event(job, Submitted(info.job_id))
        return submitted


def _require_sbatch() -> None:
    if shutil.which("sbatch") is None:
        raise UserInputError("--executor slurm: sbatch not found; is Slurm installed "
                             "and on PATH (and SLURM_CONF set)?")
    conf = os.environ.get("SLURM_CONF")
    if conf and not Path(conf).is_file():  # sbatch would retry it for 60 s, then fail
        raise UserInputError(f"--executor slurm: SLURM_CONF ({conf}) is not a file; set it "
                             "to this cluster's slurm.conf, or unset it (nothing was recorded)")


# what sbatch says when it reaches no controller (none configured, none listening, a
# configuration it cannot read)
UNREACHABLE = ("unable to contact slurm controller", "could not establish a configuration "
               "source", "resolve_ctls_from_dns_srv", "fetch_config: dns srv lookup failed",
               "unable to process configuration file")


def refused_error(output: str, source: str = "", *, recorded: bool = True) -> UserInputError:
    """sbatch's refusal as one line: its first words, the partitions there are when it
    named the partition, and where the job's options come from."""
    first = next((ln.strip() for ln in output.splitlines() if ln.strip()), "no reason given")
    first = first.removeprefix("sbatch: error: ").removeprefix("sbatch: ")
    nothing = "" if recorded else "; nothing was recorded"
    if any(words in output.lower() for words in UNREACHABLE):  # no job option is the cause
        conf = os.environ.get("SLURM_CONF")
        return UserInputError(
            f"sbatch cannot reach a Slurm controller: {first}{nothing}; is slurmctld running "
            f"here, and SLURM_CONF ({conf or 'unset'}) this cluster's slurm.conf?")
    known = partitions() if "partition" in first.lower() else []
    allowed = f" (partitions here: {', '.join(known)})" if known else ""
    where = f" or the [slurm] section of {source}" if source else " or the recipe's [slurm]"
    return UserInputError(f"sbatch refused the job array: {first}{allowed}{nothing}; check "
                          f"--partition, --mem, --time, --cpus-per-trial, --gpus-per-trial"
                          f"{where}")


def partitions() -> list[str]:
    """The cluster's partition names (``sinfo``); none when sinfo cannot say."""
    try:
        done = subprocess.run(["sinfo", "-h", "-o", "%R"], capture_output=True, text=True,
                              timeout=SBATCH_TIMEOUT_S)
    except (OSError, subprocess.SubprocessError):
        return []
    return sorted({ln.strip() for ln in done.stdout.splitlines() if ln.strip()}) \
        if done.returncode == 0 else []


def wait_for_results(submitted: list[tuple[TrialJob, JobInfo]], on_event: OnEvent, *,
                     sleep: Callable[[float], None] | None = None) -> None:
    """Until every job has an end: ``Ended`` with what became of its trial (its result
    file; ``job_ended``'s outcome when the job ended without one), or ``JobCancelled``
    when it was scancel'ed.

    A KeyboardInterrupt leaves the jobs running (they are followed with ``ablate status``).
    """
    sleep = sleep or _sleep
    waiting = {info.job_id: (job, info) for job, info in submitted}
    states: dict[str, str] = {}
    ended: dict[str, float] = {}  # job id -> when sacct first called it over
    next_states = 0.0
    while waiting:
        for job_id, (job, _info) in list(waiting.items()):
            result = job_result(job, job_id)
            if result is not None:
                del waiting[job_id]
                on_event(job, Ended(Trained(result)))
        now = time.monotonic()
        if waiting and now >= next_states:
            next_states = now + STATE_POLL_S
            for job_id, state in job_states(list(waiting)).items():
                job, info = waiting[job_id]
                if state != states.get(job_id):
                    states[job_id] = state
                    on_event(job, JobStateChanged(job_id, state))
                grace = PREEMPT_GRACE_S if state == "PREEMPTED" else RESULT_GRACE_S
                if state in LIVE_STATES:
                    ended.pop(job_id, None)
                    continue
                if now - ended.setdefault(job_id, now) < grace:
                    next_states = min(next_states, now + RESULT_GRACE_S)
                    continue
                if job_result(job, job_id) is not None:
                    continue  # picked up on the next pass
                del waiting[job_id]
                if state == "CANCELLED":
                    on_event(job, JobCancelled(job_id))
                else:
                    on_event(job, Ended(job_ended(job, info, state)))
        if waiting:  # thousands of result files are not looked for twice a second
            sleep(max(RESULT_POLL_S, len(waiting) / 200))


def job_result(job: TrialJob, job_id: str) -> TrialResult | None:
    """The trial's result file if this job, or no Slurm job, wrote it. One that another
    Slurm job wrote is not this job's end: a job scancel'ed a moment before this one was
    submitted for the same trial can still write its result after the submission removed
    the stale file (the store refuses it, as the claim it was trained under is void), and
    this job trains on."""
    result = own_result(job.study, job.trial_id, job.run_dir)
    if result is None:
        return None
    writer = (result.environment or {}).get("slurm_job_id")
    return result if writer in (None, job_id) else None


def job_ended(job: TrialJob, info: JobInfo, state: str) -> Outcome:
    """What became of a trial whose job ended (sacct ``state``) without a result file:
    ``Held``/``Lost`` as the job itself returned them (another runner records the trial),
    ``Unclaimed`` likewise (the database failed as it claimed: nothing was trained);
    ``Interrupted`` when the cluster stopped it for good (preempted, node failure, time
    limit): it resumes from its checkpoint on the next run; else ``JobDied``, a failure
    with the job's logs (a crash outside Python, out of memory, a non-zero exit)."""
    returned = job_returned(info)
    if isinstance(returned, (Held, Lost, Unclaimed)):
        return returned
    if state in INTERRUPTED_STATES:
        return Interrupted(info.job_id, INTERRUPTED_STATES[state],
                           f"Slurm job {info.job_id} ended {state}")
    log = job_log_text(info)
    if "UncompletedJobError" in log:  # submitit gave up requeuing: a limit, not a failure
        status = TrialStatus.TIMED_OUT if "timed-out" in log else TrialStatus.PREEMPTED
        return Interrupted(info.job_id, status, f"Slurm job {info.job_id} was not requeued "
                                                "(submitit: timed-out too many times)")
    return JobDied(info.job_id, TrialResult.failure(
        job.study, job.trial_id, f"Slurm job {info.job_id} ended {state} without a result\n"
                                 f"{log}",
        name=job.name, run_dir=job.run_dir, finished_at=_now()))


def _sleep(seconds: float) -> None:
    time.sleep(seconds)


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
    """sacct's state of each job (array tasks "123_4" included), else squeue's (a job
    just submitted); UNKNOWN when neither knows it."""
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
    unknown = [jid for jid, state in states.items() if state == "UNKNOWN"]
    if unknown:  # slurmdbd records a job a moment after sbatch: squeue knows it at once
        states.update(_queue_states(unknown) or {})
    requeued = [jid for jid, state in states.items() if state == "REQUEUED"]
    if requeued:
        # sacct shows a requeued job REQUEUED until it starts again, so one cancelled
        # while it waited to start stays REQUEUED there for good: slurmctld knows it
        # ended, and a job it no longer holds (purged MinJobAge after its end) never
        # starts again; one still waiting stays REQUEUED
        held = _queue_states(requeued, every_state=True)
        for jid in requeued if held is not None else []:
            if held.get(jid) not in LIVE_STATES:
                states[jid] = held.get(jid, "CANCELLED")
    return states


def _queue_states(job_ids: list[str], every_state: bool = False) -> dict[str, str] | None:
    """squeue's state of each job it still lists (a pending array's tasks one by one;
    ``every_state``: ended ones too, as long as slurmctld holds them); jobs it does not
    list are left out. None when squeue could not say."""
    bases = sorted({jid.split("_")[0] for jid in job_ids})
    command = ["squeue", "--array", "--noheader", "--format=%i|%T", "--jobs", ",".join(bases)]
    if every_state:
        command.append("--states=all")
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.SubprocessError):
        return None
    # a job slurmctld no longer holds: an error when it is the only one asked for
    if done.returncode != 0 and "Invalid job id specified" not in done.stderr + done.stdout:
        return None
    listed = dict(line.strip().split("|", 1) for line in done.stdout.splitlines()
                  if "|" in line)
    return {jid: listed[jid] for jid in job_ids if listed.get(jid)}


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
    interrupted: list[str]  # trials whose job the cluster stopped for good: resume next run
    # trial id -> Slurm state of its job: a running trial's, and the last job of a trial
    # that is not done (a cancelled trial's CANCELLED)
    slurm_states: dict[str, str]
    # trials whose job could not claim them (a database error; nothing trained): now pending
    unclaimed: list[str] = field(default_factory=list)


def follow_study(store, study: str, runs_root: str | Path) -> StudyFollowUp:
    """Ingest every finished result of ``study`` and settle jobs that ended without one.
    Each change is made only while the trial is still that job's (another process may
    have recorded, cancelled or queued it again since it was read): what the follow-up
    lists is what it changed."""
    report = ingest_results(store, study, runs_root)
    records = [r for r in store.trials(study, with_metrics=False) if r.job_id]
    running = [r for r in records if r.status is TrialStatus.RUNNING]
    # a waiting or failed trial keeps its last job's id (cancelled: it fences that job
    # out); its state says why it waits, not a job it is still queued for
    ended = [r for r in records if r.status not in (TrialStatus.RUNNING, TrialStatus.DONE)]
    states = job_states(sorted({r.job_id for r in running + ended}))
    shown = {r.trial_id: states[r.job_id] for r in ended}
    died, requeue, interrupted, unclaimed = [], [], [], []
    for rec in running:
        state = states[rec.job_id]
        shown[rec.trial_id] = state
        if state in LIVE_STATES:
            continue
        job = TrialJob(study, rec.trial_id, rec.name, rec.spec, rec.run_dir or "")
        result = job_result(job, rec.job_id)
        if result is not None:  # finished between the ingest and sacct
            if store.record(result):
                report.ingested.append(rec.trial_id)
            continue
        if state == "CANCELLED":
            if store.reset_job(study, rec.trial_id, rec.job_id):
                requeue.append(rec.trial_id)
            continue
        info = read_job_info(rec.run_dir) or JobInfo(rec.job_id, DEFAULT_FOLDER)
        match job_ended(job, info, state):
            case Interrupted(status=status):
                if store.interrupt_job(study, rec.trial_id, rec.job_id, status):
                    interrupted.append(rec.trial_id)
            case JobDied(job_id=job_id, result=failure):
                if store.record(failure, dead_job=job_id):
                    died.append(rec.trial_id)
            case Unclaimed():  # its claim failed on a database error: nothing was trained
                if store.reset_job(study, rec.trial_id, rec.job_id):
                    unclaimed.append(rec.trial_id)
            case _:  # the job found the trial held by another runner, which records it
                pass
    return StudyFollowUp(study, report.ingested, report.corrupt, died, requeue, interrupted,
                         shown, unclaimed)


def _job_trials(store, study: str, trial_ids: list[str] | None = None):
    """The records of ``study``'s trials that a Slurm job may still train, and sacct's state
    of those jobs: running trials (queued, or held by their job), and trials the cluster
    stopped (preempted, timed out) whose job may have been requeued. The states are asked
    only where sacct is (``states`` is then empty)."""
    records = [r for r in store.trials(study, with_metrics=False)
               if r.job_id and (r.status is TrialStatus.RUNNING or r.status.interrupted)
               and (trial_ids is None or r.trial_id in trial_ids)]
    if not records or shutil.which("sacct") is None:
        return records, {}
    return records, job_states(sorted({r.job_id for r in records}))


def live_jobs(store, study: str, trial_ids: list[str] | None = None) -> dict[str, str]:
    """Trial id -> job id of the trials whose Slurm job may still write a result: running
    ones, and ones the cluster stopped whose job was requeued (it resumes them)."""
    records, states = _job_trials(store, study, trial_ids)
    return {r.trial_id: r.job_id for r in records if states.get(r.job_id) in LIVE_STATES}


def cancel_study(store, study: str, runs_root: str | Path) -> list[str]:
    """scancel the jobs of ``study`` that may still train a trial (``live_jobs``: a
    preempted trial's requeued job included); their trials go back to pending (a later
    run resumes them from their checkpoints), and the jobs cannot claim them again.
    Returns the trial ids."""
    records, states = _job_trials(store, study)
    # every running trial's job (sacct may not know a job just submitted); a stopped
    # trial's only while it is requeued: one that ended for good resumes on the next run
    jobs = {r.trial_id: r.job_id for r in records
            if r.status is TrialStatus.RUNNING or states.get(r.job_id) in LIVE_STATES}
    scancel(sorted(set(jobs.values())))
    ingest_results(store, study, runs_root)  # a trial that finished just before stays done
    return [tid for tid, job_id in jobs.items() if store.reset_job(study, tid, job_id)]


def _now() -> str:
    return utc_now_iso()
