"""One trial trained by several processes (DistributedDataParallel): the local ranks a
worker starts, and what the ranks of a Slurm trial with several tasks tell each other.

Locally, this process is rank 0, one spawned process per other device. The local runner
gave this worker ``CUDA_VISIBLE_DEVICES=a,b,...``; rank 0 trains on the first of them
(``cuda:0`` here), rank r is started with only device r visible. Only rank 0 claims,
reports progress and writes the result; without CUDA (tests, ``gpu_check --cpu``) the
ranks train with gloo on the CPU.

Under Slurm every task is started at once: they meet in a store whose address rank 0
publishes in the job's folder (``meet``), then rank 0 claims and tells the others whether
they train (``tell_ranks``, ``hear_rank_zero``). Either way the ranks' collectives give up
after ``RENDEZVOUS_TIMEOUT``, so a rank whose peer stopped (a lost claim, a crash) ends
instead of waiting for good.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import shutil
import socket
import sys
import tempfile
import time
import traceback
from datetime import timedelta
from pathlib import Path
from typing import Any

from ablate import atomic
from ablate.dispatch.gpus import VISIBLE_ENV, device_ids
from ablate.errors import TrialFailed

RENDEZVOUS_TIMEOUT = timedelta(minutes=10)  # a rank that died leaves the others waiting
ADDRESS_POLL_S = 1.0  # how often a Slurm task looks for the address rank 0 publishes


def _init(rank: int, world: int, rendezvous: str) -> None:
    import torch  # lazy: loads torch
    import torch.distributed as dist  # lazy: loads torch

    options: dict[str, Any] = {}
    backend = "gloo"
    if torch.cuda.is_available():
        backend = "nccl"
        torch.cuda.set_device(0)  # the first visible device is this rank's
        options["device_id"] = torch.device("cuda", 0)  # NCCL binds it now, not lazily
    dist.init_process_group(backend, init_method=f"file://{rendezvous}", rank=rank,
                            world_size=world, timeout=RENDEZVOUS_TIMEOUT, **options)


def _rank_main(rank: int, world: int, rendezvous: str, spec: dict[str, Any], run_dir: str,
               device: str | None, threads: int) -> None:
    """Ranks 1..world-1: train without progress; rank 0 writes checkpoints and the result."""
    if device is not None:
        os.environ[VISIBLE_ENV] = device
    try:
        import torch  # lazy: loads torch (here, after VISIBLE_ENV names this rank's device)
        import torch.distributed as dist  # lazy: loads torch

        from ablate.recipes.schema import TrialSpec  # lazy: loads pydantic
        from ablate.train.loop import train_and_evaluate  # lazy: loads numpy, pydantic, torch

        torch.set_num_threads(threads)
        _init(rank, world, rendezvous)
        train_and_evaluate(TrialSpec.model_validate(spec), Path(run_dir))
        dist.destroy_process_group()
    except BaseException:
        print(f"rank {rank}: {traceback.format_exc()}", file=sys.stderr, flush=True)
        sys.exit(1)


def rank_devices(visible: str | None, world: int) -> list[str | None]:
    """The device of each of ``world`` local ranks, as ``CUDA_VISIBLE_DEVICES`` names it:
    rank r the r-th device the runner gave this worker (None where it gave none: the CPU)."""
    ids = device_ids(visible)
    return [ids[r] if r < len(ids) else None for r in range(world)]


def train_with_ranks(spec, job, progress) -> dict[str, Any]:
    """Train ``spec`` with ``job.ranks`` processes; returns rank 0's outcome."""
    import torch  # lazy: loads torch
    import torch.distributed as dist  # lazy: loads torch

    from ablate.train.loop import train_and_evaluate  # lazy: loads numpy, pydantic, torch

    world = job.ranks
    devices = rank_devices(os.environ.get(VISIBLE_ENV), world)
    ctx = mp.get_context("spawn")  # torch is running here: never fork
    # the ranks meet in a file no other trial uses: a free TCP port picked here could be
    # taken by another process before rank 0 binds it (two trials starting at once)
    folder = tempfile.mkdtemp(prefix="ablate-ranks-")
    rendezvous = str(Path(folder, "store"))
    threads = torch.get_num_threads()
    others = [ctx.Process(target=_rank_main, name=f"ablate-rank{r}",
                          args=(r, world, rendezvous, job.spec, job.run_dir,
                                devices[r], threads))
              for r in range(1, world)]
    try:
        for proc in others:
            proc.start()
        _init(0, world, rendezvous)
        try:
            outcome = train_and_evaluate(spec, Path(job.run_dir), progress)
        finally:
            dist.destroy_process_group()
    finally:
        for proc in others:
            if proc.pid is None:  # never started
                continue
            proc.join(timeout=60)
            if proc.is_alive():
                proc.terminate()
        shutil.rmtree(folder, ignore_errors=True)
    failed = [(r + 1, p.exitcode) for r, p in enumerate(others) if p.exitcode != 0]
    if failed:
        rank, code = failed[0]
        raise TrialFailed(f"rank {rank} of {world} exited with code {code} (its traceback "
                          "is on the runner's stderr)")
    return {**outcome, "ranks": world}


def address_file(folder: str | Path, job_id: str, restarts: int) -> Path:
    """Where rank 0 of a Slurm job publishes its store's address: in the job's submitit
    folder (every task reads it, as submitit requires), named by the job id and how many
    times Slurm restarted the job, so a requeued job never reads its last run's file."""
    return Path(folder) / f"{job_id}_{restarts}_rendezvous"


def meet(rank: int, world: int, published: Path, timeout: timedelta = RENDEZVOUS_TIMEOUT):
    """The store the ``world`` tasks of one Slurm job meet in (``init_process_group(store=)``).

    Rank 0 serves it on a port the system picks free, and holds it from then on, and writes
    ``host:port`` to ``published``; the others wait for that file and connect. submitit's
    rendezvous (``MASTER_PORT``) derives the port from the job id instead: two jobs on one
    node could pick the same one (about 1 in 40,000), or find it taken by any process.
    Rank 0 returns once every rank has connected, and removes the file then.
    """
    import torch.distributed as dist  # lazy: loads torch

    if rank == 0:
        host = socket.gethostname()
        store = dist.TCPStore(host, 0, world, is_master=True, timeout=timeout,
                              wait_for_workers=False)
        atomic.write_text(published, f"{host}:{store.port}")
        store.wait([f"ablate/joined/{r}" for r in range(1, world)], timeout)
        published.unlink(missing_ok=True)
        return store
    deadline = time.monotonic() + timeout.total_seconds()
    while not published.exists():
        if time.monotonic() > deadline:
            raise TimeoutError(f"rank {rank}: rank 0 published no address in {published} "
                               f"within {timeout}")
        time.sleep(ADDRESS_POLL_S)
    host, port = published.read_text().rsplit(":", 1)
    store = dist.TCPStore(host, int(port), world, is_master=False, timeout=timeout)
    store.set(f"ablate/joined/{rank}", "")
    return store


def tell_ranks(outcome: Any) -> None:
    """Rank 0 of a Slurm trial: None (train: the claim is ours), or the outcome that ends
    the trial in this job (held elsewhere, cancelled, not claimed) to every other rank."""
    import torch.distributed as dist  # lazy: loads torch

    dist.broadcast_object_list([outcome], src=0)


def hear_rank_zero() -> Any:
    """What rank 0 told (``tell_ranks``): None to train, else the outcome to return."""
    import torch.distributed as dist  # lazy: loads torch

    told: list[Any] = [None]
    dist.broadcast_object_list(told, src=0)
    return told[0]
