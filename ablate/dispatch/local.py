"""Run trials on this machine: in-process one after another, or in N worker processes.

Each trial is claimed by the process that trains it (``claim_and_run``); one held by
another runner comes back as a ``held`` result and is not trained here.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import queue
import threading
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait

from ablate.dispatch.claiming import claim_and_run
from ablate.dispatch.entry import TrialJob
from ablate.dispatch.executor import OnEvent


class LocalExecutor:
    name = "local"

    def __init__(self, jobs: int = 1) -> None:
        self.jobs = max(1, jobs)

    def run(self, jobs: list[TrialJob], on_event: OnEvent) -> None:
        if self.jobs == 1:
            for job in jobs:
                result = claim_and_run(job, progress=lambda event, job=job: on_event(job, event))
                on_event(job, {"kind": "finish", "result": result})
            return
        self._run_pool(jobs, on_event)

    def _run_pool(self, jobs: list[TrialJob], on_event: OnEvent) -> None:
        ctx = mp.get_context("spawn")  # fork after torch has started threads is unsafe
        manager = ctx.Manager()
        events = manager.Queue()
        threads = max(1, (os.cpu_count() or 1) // self.jobs)
        by_id = {job.trial_id: job for job in jobs}
        stop = threading.Event()

        def pump() -> None:  # progress from workers -> the caller's callback
            while not stop.is_set():
                try:
                    trial_id, event = events.get(timeout=0.2)
                except queue.Empty:
                    continue
                on_event(by_id[trial_id], event)

        pumper = threading.Thread(target=pump, daemon=True)
        pumper.start()
        try:
            with ProcessPoolExecutor(self.jobs, mp_context=ctx) as pool:
                pending: dict[Future, TrialJob] = {}
                for job in jobs:
                    pending[pool.submit(_worker, job, events, threads)] = job
                while pending:
                    done, _ = wait(pending, return_when=FIRST_COMPLETED)
                    for future in done:
                        job = pending.pop(future)
                        on_event(job, {"kind": "finish", "result": future.result()})
        finally:
            stop.set()
            pumper.join()
            manager.shutdown()


def _worker(job: TrialJob, events, threads: int) -> dict:
    import torch

    torch.set_num_threads(threads)
    return claim_and_run(job, progress=lambda event: events.put((job.trial_id, event)))
