"""Run trials on this machine: in-process one after another, or in N worker processes.

Each trial is claimed by the process that trains it (``claim_and_run``); one held by
another runner comes back as a ``held`` result and is not trained here.

With GPUs (``gpus``), each trial takes whole devices from the runner's slots
(``ablate.dispatch.gpus``) and runs in a fresh worker process that sees only those
devices: ``CUDA_VISIBLE_DEVICES`` must be set before CUDA starts in a process, so a
worker is never reused for other devices. With ``trials_per_gpu`` K > 1 a device holds
up to K such trials at once (``ablate.dispatch.sharing``: how many fit, the gate that
keeps latency timing exclusive, the neighbours each trial records). On the CPU, the
``--jobs`` pool processes pass one such gate too (``sharing.CpuPool``): they share the
cores' caches and memory bandwidth.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import queue
import sys
import threading
import time
import traceback
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass, replace
from multiprocessing.managers import SyncManager
from typing import Any

from ablate.cpus import worker_threads
from ablate.dispatch import orphans, sharing
from ablate.dispatch.claiming import claim_and_run
from ablate.dispatch.entry import TrialJob
from ablate.dispatch.executor import ExecutorRequest, OnEvent
from ablate.dispatch.gpus import WORKER_NAMES_ENV, Gpu, GpuSlots, next_fitting, worker_environment
from ablate.train.events import Ended, TrialEvent
from ablate.trials.lifecycle import Outcome, Trained, TrialResult, Unclaimed

# the CPUs a worker's trial may use; ablate.data.build reads it (same name there: that
# module loads torch, which the runner process does not)
TRIAL_CPUS_ENV = "ABLATE_TRIAL_CPUS"
DEAD_WORKER_GRACE_S = 2.0  # a worker that exited may still be flushing its result


@dataclass(frozen=True)
class WorkerEvent:
    """A worker's message: one event of the trial it trains."""

    trial_id: str
    event: TrialEvent


@dataclass(frozen=True)
class WorkerEnded:
    """A worker's last message for a trial: what became of it."""

    trial_id: str
    outcome: Outcome


def run_in_worker(job: TrialJob, send: Callable[[WorkerEvent], None], threads: int,
                  gpus: Sequence[Gpu] = (), share: sharing.WorkerShare | None = None
                  ) -> Outcome:
    """What every local worker process runs for one trial, in the pool or on GPU slots.

    ``gpus`` become the only devices the process sees (before anything starts CUDA).
    The claim's database error is ``Unclaimed`` (``claim_and_run``); anything else that
    escapes before or around training (training's own errors are the trial's failure)
    is ``Unclaimed`` too, with its traceback: the trial stays as it was, this run goes
    on with the others, and the next run claims it. No worker path aborts the run.
    ``share``: the device is shared with other trials (``--trials-per-gpu``).
    """
    if gpus:
        os.environ.update(worker_environment(gpus))
        os.environ[WORKER_NAMES_ENV] = ",".join(g.name for g in gpus)
    os.environ[TRIAL_CPUS_ENV] = str(threads)  # sizes its DataLoader workers
    sharing.install(share)
    import torch  # lazy: loads torch (in the worker process only)

    torch.set_num_threads(max(1, threads // max(1, job.ranks)))
    try:
        return claim_and_run(job, progress=lambda event: send(WorkerEvent(job.trial_id, event)))
    except Exception as err:
        return Unclaimed(f"{type(err).__name__}: {err}\n{traceback.format_exc()}")


class LocalExecutor:
    name = "local"

    def __init__(self, jobs: int = 1, gpus: Sequence[Gpu] | None = None,
                 gpus_per_trial: int = 1, slots: bool | None = None,
                 trials_per_gpu: int = 1, gpu_memory_gib: float | None = None) -> None:
        self.jobs = max(1, jobs)
        self.gpus = list(gpus or [])
        self.gpus_per_trial = max(1, gpus_per_trial)
        self.trials_per_gpu = max(1, trials_per_gpu)
        self.gpu_memory_gib = gpu_memory_gib  # per trial; None: measured
        # one trial at a time on the first visible GPU runs in this process, as without
        # GPUs; any other device needs a worker that sees only it
        self.slots = slots if slots is not None else bool(self.gpus) and (
            self.jobs > 1 or self.gpus_per_trial > 1 or self.gpus[0].index != 0
            or self.trials_per_gpu > 1)

    @classmethod
    def for_study(cls, request: ExecutorRequest) -> LocalExecutor:
        return cls(jobs=request.jobs, gpus=request.gpus,
                   gpus_per_trial=request.gpus_per_trial or 1,
                   trials_per_gpu=request.trials_per_gpu,
                   gpu_memory_gib=request.gpu_memory_gib)

    def need(self, job: TrialJob) -> int:
        """Devices a trial takes: none when its spec trains on the CPU."""
        device = job.spec.get("train", {}).get("device", "auto")
        return 0 if device == "cpu" else self.gpus_per_trial

    def run(self, jobs: list[TrialJob], on_event: OnEvent) -> None:
        if self.slots:
            self._run_slots(jobs, on_event)
        elif self.jobs == 1:
            for job in jobs:  # in this process: an error while claiming is the same outcome
                outcome = _claim_here(job, lambda event, job=job: on_event(job, event))
                on_event(job, Ended(outcome))
        else:
            self._run_pool(jobs, on_event)

    def _run_pool(self, jobs: list[TrialJob], on_event: OnEvent) -> None:
        ctx = mp.get_context("spawn")  # fork after torch has started threads is unsafe
        manager = SyncManager(ctx=ctx)  # ctx.Manager(), exiting when this process dies
        manager.start(orphans.watch_parent, (os.getpid(),))
        events = manager.Queue()
        threads = worker_threads(self.jobs)
        by_id = {job.trial_id: job for job in jobs}
        stop = threading.Event()

        def pump() -> None:  # progress from workers -> the caller's callback
            while not stop.is_set():
                try:
                    message = events.get(timeout=0.2)
                except queue.Empty:
                    continue
                on_event(by_id[message.trial_id], message.event)

        pumper = threading.Thread(target=pump, daemon=True)
        pumper.start()
        try:
            cpus = sharing.CpuPool(ctx, self.jobs)  # latency timed with the others held
            with ProcessPoolExecutor(self.jobs, mp_context=ctx, initializer=_pool_start,
                                     initargs=(os.getpid(), *cpus.initargs())) as pool:
                pending: dict[Future, TrialJob] = {}
                for job in jobs:
                    pending[pool.submit(_pool_worker, job, events, threads)] = job
                while pending:
                    done, _ = wait(pending, return_when=FIRST_COMPLETED)
                    for future in done:
                        job = pending.pop(future)
                        on_event(job, Ended(future.result()))
        finally:
            stop.set()
            pumper.join()
            manager.shutdown()

    def _run_slots(self, jobs: list[TrialJob], on_event: OnEvent) -> None:
        """At most ``jobs`` trials at once, each on its own devices; the first pending
        trial that fits the free devices starts whenever a trial ends."""
        ctx = mp.get_context("spawn")
        messages = ctx.Queue()
        slots = GpuSlots(self.gpus)
        shared = sharing.RunnerSharing(ctx, self.gpus, self.trials_per_gpu,
                                       self.gpu_memory_gib, slots) \
            if self.trials_per_gpu > 1 else None
        threads = worker_threads(min(self.jobs, max(1, len(jobs))))
        pending = list(jobs)
        running: dict[str, tuple[Any, tuple[Gpu, ...], TrialJob]] = {}
        dead_since: dict[str, float] = {}
        last_look = time.monotonic()
        try:
            while pending or running:
                while pending and len(running) < self.jobs:
                    pick = next_fitting([self.need(j) for j in pending], slots.free)
                    if pick is None:
                        break
                    job = pending.pop(pick)
                    # no peek at the claims here: a second Store in this process opens the
                    # SQLite file, and closing it drops the driver's locks on it (POSIX)
                    held = slots.take(self.need(job)) or ()
                    if len(held) > 1:  # one process per device (DistributedDataParallel)
                        job = replace(job, ranks=len(held))
                    share = shared.start(job.trial_id, held) if shared and held else None
                    proc = ctx.Process(target=_slot_worker, name=f"ablate-{job.trial_id}",
                                       args=(job, held, messages, threads, share))
                    proc.start()
                    running[job.trial_id] = (proc, held, job)
                if not running:
                    if pending:  # runner_gpus refuses such a study before it starts
                        raise RuntimeError("no pending trial fits this runner's GPUs")
                    break
                if shared is not None:  # a first trial's memory decides how many fit
                    warning = shared.poll()
                    if warning:
                        print(f"Warning: {warning}", file=sys.stderr, flush=True)
                try:
                    message = messages.get(timeout=0.5)
                except queue.Empty:
                    message = _dead_worker(running, dead_since)  # also looked for below
                    if message is None:
                        continue
                if time.monotonic() - last_look > 1.0:
                    last_look = time.monotonic()
                    dead = _dead_worker(running, dead_since)
                    if dead is not None and dead is not message:
                        self._finish(dead, running, dead_since, slots, on_event, shared)
                if message.trial_id not in running:
                    continue
                if isinstance(message, WorkerEvent):
                    on_event(running[message.trial_id][2], message.event)
                    continue
                self._finish(message, running, dead_since, slots, on_event, shared)
        finally:
            for proc, _, _ in running.values():  # Ctrl-C reached them too: let them hand back
                proc.join(timeout=30)
                if proc.is_alive():
                    proc.terminate()

    @staticmethod
    def _finish(message: WorkerEnded, running, dead_since, slots: GpuSlots,
                on_event: OnEvent, shared: sharing.RunnerSharing | None = None) -> None:
        proc, held, job = running.pop(message.trial_id)
        proc.join()
        dead_since.pop(message.trial_id, None)
        if shared is not None:
            shared.end(message.trial_id, message.outcome)
        slots.give_back(held)
        on_event(job, Ended(message.outcome))


def _dead_worker(running, dead_since) -> WorkerEnded | None:
    """A worker that died without a result (killed, out of memory) fails its trial."""
    now = time.monotonic()
    for trial_id, (proc, _, job) in running.items():
        if proc.is_alive() or proc.exitcode == 0:  # exit 0: its result was sent
            continue
        first = dead_since.setdefault(trial_id, now)
        if now - first < DEAD_WORKER_GRACE_S:
            continue
        return WorkerEnded(trial_id, Trained(TrialResult.failure(
            job.study, trial_id, f"worker process exited with code {proc.exitcode} "
                                 "without a result", name=job.name, run_dir=job.run_dir)))
    return None


def _claim_here(job: TrialJob, progress) -> Outcome:
    """This process trains the trial (``--jobs 1`` without GPU slots)."""
    try:
        return claim_and_run(job, progress=progress)
    except Exception as err:  # as in a worker process: the run goes on
        return Unclaimed(f"{type(err).__name__}: {err}\n{traceback.format_exc()}")


def _slot_worker(job: TrialJob, gpus: tuple[Gpu, ...], messages, threads: int,
                 share: sharing.WorkerShare | None = None) -> None:
    """A fresh process for one trial on its devices (``share``: with other trials)."""
    try:
        outcome = run_in_worker(job, messages.put, threads, gpus, share)
    except KeyboardInterrupt:
        return  # claim_and_run handed the trial back; the parent stops too
    messages.put(WorkerEnded(job.trial_id, outcome))


def _pool_start(parent: int, gate: sharing.DeviceGate, seats: Any) -> None:
    """A pool process's initializer: watch the runner, take a place at the CPU gate."""
    orphans.watch_parent(parent)
    sharing.join(gate, seats)


def _pool_worker(job: TrialJob, events, threads: int) -> Outcome:
    """A pool process, reused for the next trial; one whose runner was killed takes none."""
    orphans.start_trial()
    try:
        with sharing.cpu_share() as share:
            return run_in_worker(job, lambda message: orphans.send(events, message), threads,
                                 share=share)
    finally:
        orphans.end_trial()
