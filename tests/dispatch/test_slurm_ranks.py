"""A Slurm trial with two tasks (DistributedDataParallel): rank 0 claims it as a one-task
job does, rank 1 never opens the database and trains only when rank 0 holds the claim.

Each task is a spawned process running ``SlurmTrial`` with Slurm's environment; the two
meet in a file (gloo on the CPU) instead of at the address Slurm's environment names.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import re
import traceback
from datetime import timedelta
from pathlib import Path

import pytest

from ablate.dispatch.entry import TrialJob
from ablate.recipes.loader import parse_recipe
from ablate.store import Store
from ablate.trials.expand import expand
from ablate.trials.lifecycle import Held, Lost, Trained, Unclaimed
from tests.conftest import TINY_RECIPE

FIVE = TINY_RECIPE
for old, new in [
        ('"model.keep_last_expansion" = [true, false]',
         '"train.lr" = [0.001, 0.002, 0.003, 0.004, 0.005]'),
        ("[base.eval]", "[base.eval]\nlatency = false"),
        ("val_images = 8", "val_images = 8\nworkers = 0"),
        ("log_every = 1", 'log_every = 1\ndevice = "cpu"'),
        ('head = "deeplabv3plus"', 'head = "deeplabv3plus"\naspp_channels = 32')]:
    assert old in FIVE, old
    FIVE = FIVE.replace(old, new)
JOB_ID = "41_0"  # the array task both ranks are: SLURM_ARRAY_JOB_ID 41, task 0
ELSEWHERE = {"host": "another-node", "pid": 7, "executor": "local", "job_id": None}
REPORT_WAIT_S = 240  # bounds a failure only: a rank that hangs would wait 10 minutes


def _task(rank: int, rendezvous: str, jobs: list[TrialJob], out, fail_claim: str,
          lose_claim: str) -> None:
    """Rank ``rank`` of a two-task array task: what submitit runs in each task. Reports,
    per job, the outcome and how many times this rank started training."""
    try:
        os.environ.update(SLURM_NTASKS="2", SLURM_PROCID=str(rank), SLURM_CPUS_PER_TASK="1",
                          SLURM_ARRAY_JOB_ID="41", SLURM_ARRAY_TASK_ID="0")
        import torch.distributed as dist

        import ablate.dispatch.claiming as claiming
        import ablate.dispatch.entry as entry
        import ablate.dispatch.slurm as slurm
        from ablate.dispatch.ranks import RENDEZVOUS_TIMEOUT
        from ablate.errors import StoreError

        def init() -> int:
            if not dist.is_initialized():  # once per process, as in a Slurm task
                dist.init_process_group("gloo", init_method=f"file://{rendezvous}", rank=rank,
                                        world_size=2, timeout=RENDEZVOUS_TIMEOUT)
            return dist.get_rank()

        slurm._init_distributed = init
        trained: list[str] = []
        real_train = entry._train

        def counting_train(spec, job, progress):
            trained.append(job.trial_id)
            return real_train(spec, job, progress)

        entry._train = counting_train
        real_claim = Store.claim

        def claim(self, study, trial_id, *args, **kwargs):
            if trial_id == fail_claim:
                raise StoreError("disk I/O error")
            return real_claim(self, study, trial_id, *args, **kwargs)

        Store.claim = claim
        class LostAtOnce(claiming.Heartbeat):
            def __enter__(self):
                if self.claim.trial_id == lose_claim:  # its first look finds it taken over
                    self.lost.set()
                return super().__enter__()

        if rank == 0:
            claiming.Heartbeat = LostAtOnce
        for job in jobs:
            before = len(trained)
            outcome = slurm.SlurmTrial(job, 10)()
            out.put((job.trial_id, rank, outcome, len(trained) - before, os.getpid()))
    except BaseException:
        out.put(("crashed", rank, traceback.format_exc(), 0, os.getpid()))


def run_two_tasks(tmp_path: Path, jobs: list[TrialJob], *, fail_claim: str,
                  lose_claim: str) -> dict[tuple[str, int], tuple]:
    """(trial id, rank) -> (outcome, trainings started, pid) of a two-task job that runs
    ``jobs`` one after the other; claiming ``fail_claim`` meets a database error, and
    rank 0 loses the claim of ``lose_claim`` once it trains."""
    ctx = mp.get_context("spawn")  # torch runs in both ranks: no fork
    out = ctx.Queue()
    rendezvous = str(tmp_path / "rendezvous")
    procs = [ctx.Process(target=_task, args=(rank, rendezvous, jobs, out, fail_claim,
                                             lose_claim))
             for rank in range(2)]
    for p in procs:
        p.start()
    reports = {}
    for _ in range(2 * len(jobs)):
        trial_id, rank, outcome, trained, pid = out.get(timeout=REPORT_WAIT_S)
        assert trial_id != "crashed", f"rank {rank}: {outcome}"
        reports[trial_id, rank] = (outcome, trained, pid)
    for p in procs:
        p.join(timeout=60)
    assert [p.exitcode for p in procs] == [0, 0]
    return reports


def study(tmp_path: Path) -> tuple[str, list[TrialJob]]:
    """A SQLite study of five tiny trials, each queued as Slurm job 41_0 would be."""
    db = f"sqlite:///{tmp_path / 'ranks.db'}"
    store = Store(db)
    trials = expand(parse_recipe(FIVE, "r.toml"))
    store.upsert_study("tiny")
    store.register_trials("tiny", trials)
    jobs = []
    for trial in trials:
        run_dir = tmp_path / "runs" / trial.trial_id
        assert store.submitted("tiny", trial.trial_id, str(run_dir), job_id=JOB_ID)
        jobs.append(TrialJob("tiny", trial.trial_id, trial.name, trial.spec.model_dump(),
                             str(run_dir), db=db))
    return db, jobs


def folder(path: str) -> dict[str, bytes]:
    root = Path(path)
    return {str(f.relative_to(root)): f.read_bytes() for f in sorted(root.rglob("*"))
            if f.is_file()}


@pytest.fixture(scope="module")
def five_jobs(tmp_path_factory):
    """One two-task job runs five trials: one a live holder elsewhere holds, one that
    ``ablate cancel`` reset after it was queued, one whose claim meets a database error,
    one it claims and trains, and last (its task then ends) one whose claim rank 0 loses
    while it trains."""
    tmp_path = tmp_path_factory.mktemp("ranks")
    db, (held, cancelled, failing, free, lost) = study(tmp_path)
    store = Store(db)
    store.claim("tiny", held.trial_id, ELSEWHERE, 600, run_dir=held.run_dir)
    Path(held.run_dir).mkdir(parents=True)
    (Path(held.run_dir) / "claims.log").write_text("the other holder's claim\n")
    store.reset("tiny", [cancelled.trial_id])
    before = {job.trial_id: folder(job.run_dir) for job in (held, cancelled, failing)}
    reports = run_two_tasks(tmp_path, [held, cancelled, failing, free, lost],
                            fail_claim=failing.trial_id, lose_claim=lost.trial_id)
    return {"db": db, "held": held, "cancelled": cancelled, "failing": failing, "free": free,
            "lost": lost, "reports": reports, "before": before}


def record_of(jobs, which: str):
    (record,) = [r for r in Store(jobs["db"]).trials("tiny")
                 if r.trial_id == jobs[which].trial_id]
    return record


# the tests that read the one two-task job: slow (they train), on one worker (one job)
ranked = pytest.mark.xdist_group("slurm_ranks")


@pytest.mark.slow
@ranked
def test_rank_zero_claims_once_and_both_ranks_train(five_jobs):
    job, reports = five_jobs["free"], five_jobs["reports"]
    (out0, trained0, pid0), (out1, trained1, _) = (reports[job.trial_id, r] for r in (0, 1))
    assert (trained0, trained1) == (1, 1)  # both ranks trained, under one claim
    assert isinstance(out0, Trained) and out0.result.done
    assert isinstance(out1, Trained) and out1.result.done
    # rank 1's figures would be dropped: it neither evaluates at the end nor works out
    # costs and environment (nvidia-smi, the user's code files)
    assert (out1.result.final, out1.result.environment) == ({}, None)
    assert "miou" in out0.result.final and out0.result.environment["ddp_ranks"] == 2
    log = (Path(job.run_dir) / "claims.log").read_text().splitlines()
    (line,) = log  # claimed once, by rank 0's process, as job 41_0
    host = re.escape(os.uname().nodename)
    epoch = re.fullmatch(rf"\S+ epoch (\d+) claimed by {host}:{pid0} slurm job 41_0", line)
    assert epoch, line
    assert out0.result.claim_epoch == int(epoch.group(1))  # recorded under the claim's epoch
    record = record_of(five_jobs, "free")
    assert (record.status, record.job_id, record.attempts) == ("done", JOB_ID, 1)
    assert (record.holder["pid"], record.holder["job_id"]) == (pid0, JOB_ID)
    assert record.metrics["steps"] == 2.0  # 16 images, batches of 8 shared by two ranks
    # its devices are the ranks' (estimates and budgets count device-hours from these)
    assert record.environment["ddp_ranks"] == 2
    assert (Path(job.run_dir) / "result.json").is_file()


@pytest.mark.slow
@ranked
@pytest.mark.parametrize("which,outcome", [
    ("held", Held("running", ELSEWHERE)),
    ("cancelled", Held("cancelled", None)),
    ("failing", Unclaimed("disk I/O error")),
])
def test_neither_rank_trains_a_trial_rank_zero_did_not_claim(five_jobs, which, outcome):
    job, reports = five_jobs[which], five_jobs["reports"]
    for rank in (0, 1):
        got, trained, _ = reports[job.trial_id, rank]
        assert (got, trained) == (outcome, 0)  # rank 1 returns rank 0's outcome
    assert folder(job.run_dir) == five_jobs["before"][job.trial_id]  # nothing written
    record = record_of(five_jobs, which)
    expected = {"held": ("running", ELSEWHERE), "cancelled": ("pending", None),
                "failing": ("running", None)}[which]  # failing: still queued for job 41_0
    assert (record.status, record.holder) == expected


@pytest.mark.slow
@ranked
def test_rank_one_stops_when_rank_zero_loses_its_claim(five_jobs):
    """Rank 0's heartbeat finds the claim taken over: it stops after its first step and
    its task ends; rank 1, waiting for rank 0 in the next step, ends as well (its result
    is dropped) instead of hanging, and neither writes a result or a checkpoint."""
    job, reports = five_jobs["lost"], five_jobs["reports"]
    (out0, trained0, _), (out1, trained1, _) = (reports[job.trial_id, r] for r in (0, 1))
    assert (out0, trained0, trained1) == (Lost(), 1, 1)
    assert isinstance(out1, Trained) and not out1.result.done
    assert sorted(folder(job.run_dir)) == ["claims.log", "progress.json"]
    assert record_of(five_jobs, "lost").status == "running"  # its new holder records it


MEET = timedelta(seconds=30)  # bounds a failure only: rank 0 waits this long for rank 1


def slurm_task(monkeypatch, folder: Path, job_id: str, rank: int, restarts: str | None = None
               ) -> None:
    """This process's environment as task ``rank`` of two of Slurm job ``job_id`` (what
    the sbatch file and srun export), with nothing of torch.distributed's exported yet."""
    for key in ("MASTER_ADDR", "MASTER_PORT", "RANK", "WORLD_SIZE", "LOCAL_RANK",
                "LOCAL_WORLD_SIZE", "CUDA_VISIBLE_DEVICES", "SLURM_ARRAY_JOB_ID",
                "SLURM_ARRAY_TASK_ID", "SLURM_RESTART_COUNT"):
        monkeypatch.delenv(key, raising=False)
    for key, value in {"SUBMITIT_EXECUTOR": "slurm", "SUBMITIT_FOLDER": str(folder),
                       "SLURM_JOB_ID": job_id, "SLURM_JOB_NODELIST": "node1",
                       "SLURM_JOB_NUM_NODES": "1", "SLURM_NODEID": "0", "SLURM_NTASKS": "2",
                       "SLURM_PROCID": str(rank), "SLURM_LOCALID": str(rank)}.items():
        monkeypatch.setenv(key, value)
    if restarts is not None:
        monkeypatch.setenv("SLURM_RESTART_COUNT", restarts)


def test_a_task_meets_rank_zero_at_the_address_published_in_the_job_folder(
        monkeypatch, tmp_path):
    """Rank 1 of a requeued job connects to the store rank 0 published for this run of the
    job (not at submitit's MASTER_PORT), and its collectives give up after
    ``RENDEZVOUS_TIMEOUT`` (rank 0 lost its claim, and NCCL does not notice a peer that
    exited), as local ranks do. Rank 0 removes the address once both have met."""
    from concurrent.futures import ThreadPoolExecutor

    import torch.distributed as dist

    from ablate.dispatch import ranks, slurm

    monkeypatch.setattr(ranks, "ADDRESS_POLL_S", 0.01)
    slurm_task(monkeypatch, tmp_path, "41", rank=1, restarts="2")
    calls = []
    monkeypatch.setattr(dist, "init_process_group", lambda **kwargs: calls.append(kwargs))
    monkeypatch.setattr(dist, "get_rank", lambda: calls[-1]["rank"])
    (tmp_path / "41_1_rendezvous").write_text("127.0.0.1:1")  # the last run's, stale
    with ThreadPoolExecutor(1) as pool:
        zero = pool.submit(ranks.meet, 0, 2, ranks.address_file(tmp_path, "41", 2), MEET)
        assert slurm._init_distributed() == 1
        store = zero.result(timeout=60)
    (call,) = calls
    assert (call["rank"], call["world_size"], call["timeout"]) == (1, 2, ranks.RENDEZVOUS_TIMEOUT)
    store.set("from rank 0", "hello")
    assert call["store"].get("from rank 0") == b"hello"
    assert "MASTER_PORT" not in os.environ
    assert sorted(p.name for p in tmp_path.iterdir()) == ["41_1_rendezvous"]


def test_two_ddp_jobs_on_one_node_meet_apart_where_submitit_s_ports_collide(
        monkeypatch, tmp_path):
    """submitit derives MASTER_PORT from the job id, so two jobs of two tasks on one node
    can pick the same port; each job's tasks meet in a store of their own instead."""
    from concurrent.futures import ThreadPoolExecutor

    from submitit.helpers import TorchDistributedEnvironment

    from ablate.dispatch import ranks

    monkeypatch.setattr(ranks, "ADDRESS_POLL_S", 0.01)
    seen: dict[int, str] = {}
    for n in range(1, 5000):  # the first two job ids whose ports collide
        slurm_task(monkeypatch, tmp_path, str(n), rank=0)
        port = TorchDistributedEnvironment().master_port
        if port in seen:
            jobs = (seen[port], str(n))
            break
        seen[port] = str(n)
    with ThreadPoolExecutor(4) as pool:
        futures = {(job, rank): pool.submit(ranks.meet, rank, 2,
                                            ranks.address_file(tmp_path, job, 0), MEET)
                   for job in jobs for rank in (0, 1)}
        stores = {key: future.result(timeout=60) for key, future in futures.items()}
    assert stores[jobs[0], 0].port != stores[jobs[1], 0].port
    for job in jobs:
        stores[job, 0].set("job", job)
    assert [stores[job, 1].get("job") for job in jobs] == [job.encode() for job in jobs]
    assert list(tmp_path.iterdir()) == []  # the addresses go once both ranks have met
