"""Trials with several GPUs train under DistributedDataParallel: here two CPU processes (gloo)."""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import traceback
from pathlib import Path

import pytest

from ablate.dispatch.entry import TrialJob
from ablate.train.loop import EpochBatches
from ablate.trials.lifecycle import TrialResult

SPEC = {
    "model": {"backbone": "mobilenet_v3_small", "head": "deeplabv3plus", "aspp_channels": 32,
              "bn_momentum": 0.1},
    "data": {"name": "shapes", "classes": 3, "image_size": 32, "train_images": 16,
             "val_images": 8, "workers": 0},
    "train": {"optimizer": "sgd", "lr": 0.05, "epochs": 2, "batch_size": 8, "device": "cpu",
              "checkpoint_every": 1},
    "eval": {"latency": False},
    "seed": 1,
}


@pytest.mark.parametrize("size,batch,world", [(16, 8, 2), (37, 6, 3), (10, 4, 4)])
def test_each_rank_takes_a_disjoint_share_of_every_batch(size, batch, world):
    whole = EpochBatches(size, batch, seed=5)
    shards = [EpochBatches(size, batch, seed=5, rank=r, world=world) for r in range(world)]
    for epoch, start in ((0, 0), (3, 1)):  # a resumed epoch skips the same batches
        for b in (whole, *shards):
            b.epoch, b.start = epoch, start
        per_rank = [list(s) for s in shards]
        assert all(len(p) == len(whole) - start for p in per_rank)  # same number of steps
        for step, full in enumerate(whole):
            parts = [p[step] for p in per_rank]
            assert sorted(i for part in parts for i in part) == sorted(full)
            assert [len(p) for p in parts] == [len(full[r::world]) for r in range(world)]


def _rank_main(rank: int, world: int, folder: str, job: TrialJob, out) -> None:
    """What each Slurm task does: meet at the address rank 0 publishes in the job folder."""
    try:
        import torch
        import torch.distributed as dist

        import ablate.dispatch.entry as entry
        from ablate.dispatch.ranks import address_file, meet

        torch.set_num_threads(1)
        store = meet(rank, world, address_file(folder, "41", 0))
        dist.init_process_group("gloo", store=store, rank=rank, world_size=world)
        wrapped = []

        class Recording(torch.nn.parallel.DistributedDataParallel):
            def __init__(self, module, *args, **kwargs):
                super().__init__(module, *args, **kwargs)
                wrapped.append(module)

        torch.nn.parallel.DistributedDataParallel = Recording
        writes = []
        real_write = TrialResult.write
        TrialResult.write = lambda self, run_dir: writes.append(run_dir) or real_write(self, run_dir)
        result = entry.run_trial(job)
        weights = torch.cat([p.detach().flatten() for p in wrapped[0].parameters()])
        out.put((rank, result.status.value, result.error, len(wrapped), len(writes),
                 weights.tolist()))
        dist.destroy_process_group()
    except BaseException:
        out.put((rank, "crashed", traceback.format_exc(), 0, 0, []))


def _two_ranks(target, *args) -> list:
    """``target(rank, 2, *args, queue)`` in two spawned processes (torch runs in both: no
    fork); what each put on the queue, sorted by rank."""
    ctx = mp.get_context("spawn")
    out = ctx.Queue()
    procs = [ctx.Process(target=target, args=(r, 2, *args, out)) for r in range(2)]
    for p in procs:
        p.start()
    reports = sorted(out.get(timeout=240) for _ in procs)
    for p in procs:
        p.join(timeout=60)
    return reports


@pytest.mark.slow
def test_two_processes_train_one_trial_with_ddp(tmp_path):
    job = TrialJob("ddp", "t1", "two ranks", SPEC, str(tmp_path / "run"))
    reports = _two_ranks(_rank_main, str(tmp_path), job)
    for rank, status, error, _, _, _ in reports:
        assert status == "done", f"rank {rank}: {error}"
    (_, _, _, ddp0, writes0, weights0), (_, _, _, ddp1, writes1, weights1) = reports
    assert (ddp0, ddp1) == (1, 1)  # both trained through DistributedDataParallel
    assert (writes0, writes1) == (1, 0)  # rank 0 alone writes the result
    assert weights0 == weights1  # gradients averaged: the ranks never drift apart
    result = json.loads((Path(job.run_dir) / "result.json").read_text())
    assert result["status"] == "done" and result["final"]["steps"] == 4.0  # 2 epochs x 2 steps
    assert [e["step"] for e in result["epochs"]] == [2, 4]
    # done: the run folder keeps the weights alone (--keep weights, the default)
    assert (Path(job.run_dir) / "weights.pt").is_file()
    assert not (Path(job.run_dir) / "checkpoint.pt").exists()


@pytest.mark.slow
def test_local_ranks_meet_in_a_file_of_their_own_and_leave_nothing(tmp_path, monkeypatch):
    """``--gpus-per-trial 2`` on one machine (``dispatch.ranks``): the ranks rendezvous in a
    fresh file, not on a TCP port picked free and bound later (two trials starting at once
    could take the same one), and the file's folder goes with the trial."""
    import tempfile

    from ablate.dispatch.ranks import train_with_ranks
    from ablate.recipes.schema import TrialSpec

    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    used = []
    real_init = __import__("torch.distributed", fromlist=["x"]).init_process_group

    def init(*args, **kwargs):
        used.append(kwargs["init_method"])
        return real_init(*args, **kwargs)

    monkeypatch.setattr("torch.distributed.init_process_group", init)
    job = TrialJob("ddp", "t2", "two local ranks", SPEC, str(tmp_path / "run"), ranks=2)
    outcome = train_with_ranks(TrialSpec.model_validate(SPEC), job, lambda event: None)
    assert outcome["ranks"] == 2 and outcome["final"]["steps"] == 4.0
    assert len(used) == 1 and used[0].startswith(f"file://{scratch}/ablate-ranks-")
    assert list(scratch.glob("ablate-ranks-*")) == []  # the rendezvous folder is gone


COUNTS_ENV = "ABLATE_TEST_RANK_COUNTS"  # the file each rank records its evaluations in


def _count_evaluations(path: str, rank: int) -> None:
    """From now on, this process notes each evaluation and latency timing it starts."""
    import ablate.train.loop as loop

    real_evaluate = loop.evaluate

    def note(what: str) -> None:
        with open(path, "a") as f:
            f.write(f"{rank} {what}\n")

    def evaluate(*args, **kwargs):
        note("evaluate")
        return real_evaluate(*args, **kwargs)

    def latency(*args, **kwargs):
        note("latency")
        return {}, None

    loop.evaluate, loop.measure_trial_latency = evaluate, latency


def _counting_rank_main(rank: int, *args) -> None:
    """A spawned rank (``ranks._rank_main``) that notes its evaluations."""
    from ablate.dispatch import ranks

    _count_evaluations(os.environ[COUNTS_ENV], rank)
    ranks._rank_main(rank, *args)


@pytest.mark.slow
def test_every_rank_evaluates_its_share_and_only_rank_zero_times_latency(
        tmp_path, monkeypatch):
    """Both ranks evaluate after each epoch, each its share of the set (the figures are
    the whole set's: see the next test), and rank 1 times no latency: only rank 0's final
    figures are the trial's."""
    import ablate.train.loop as loop
    from ablate.dispatch import ranks
    from ablate.recipes.schema import TrialSpec

    counts = tmp_path / "counts"
    counts.touch()
    monkeypatch.setenv(COUNTS_ENV, str(counts))  # the spawned rank inherits it
    monkeypatch.setattr(ranks, "_rank_main", _counting_rank_main)
    for name in ("evaluate", "measure_trial_latency"):  # put back after the test
        monkeypatch.setattr(loop, name, getattr(loop, name))
    _count_evaluations(str(counts), 0)
    spec = {**SPEC, "eval": {"latency": True, "every": 1}}
    job = TrialJob("ddp", "t3", "counted ranks", spec, str(tmp_path / "run"), ranks=2)
    outcome = ranks.train_with_ranks(TrialSpec.model_validate(spec), job, lambda event: None)
    assert outcome["final"]["steps"] == 4.0 and "miou" in outcome["final"]
    noted = counts.read_text().splitlines()
    assert sorted(noted) == ["0 evaluate", "0 evaluate", "0 latency", "1 evaluate",
                             "1 evaluate"]


def _eval_set():
    """Seven labelled 8x8 images (an odd count: the ranks' shares differ in size)."""
    import torch

    g = torch.Generator().manual_seed(3)
    return [(torch.randn(3, 8, 8, generator=g), torch.randint(0, 3, (8, 8), generator=g))
            for _ in range(7)]


def _eval_model(rank: int):
    """A small network with BatchNorm and a mask (as selective down-sampling's); each
    rank's running statistics differ, as after DistributedDataParallel training steps."""
    import torch
    from torch import nn

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.norm, self.head, self.gate = nn.BatchNorm2d(3), nn.Conv2d(3, 3, 1), nn.Conv2d(3, 1, 1)

        def forward(self, x):  # in float64: no near-tie flips with the batch's make-up
            x = self.norm(x.double())
            return {"out": self.head(x), "mask": torch.sigmoid(self.gate(x))}

    torch.manual_seed(0)
    net = Net().double()
    net.norm.running_mean.fill_(0.5 * rank)
    net.norm.running_var.fill_(1.0 + rank)
    return net


def _sharded_eval_main(rank: int, world: int, store_file: str, out) -> None:
    try:
        import torch
        import torch.distributed as dist

        from ablate.recipes.schema import TrialSpec
        from ablate.train.loop import evaluate, share_of_validation

        torch.set_num_threads(1)
        dist.init_process_group("gloo", init_method=f"file://{store_file}", rank=rank,
                                world_size=world)
        spec = TrialSpec.model_validate({**SPEC, "eval": {"batch_size": 2}})
        loader = share_of_validation(spec, type("Data", (), {"val": _eval_set()}),
                                     torch.device("cpu"), rank, world)
        metrics = evaluate(_eval_model(rank), loader, 3, torch.device("cpu"),
                           ["a", "b", "c"], world=world)
        out.put((rank, len(loader.dataset), metrics))
        dist.destroy_process_group()
    except BaseException:
        out.put((rank, -1, traceback.format_exc()))


@pytest.mark.slow
def test_ranks_evaluating_their_shares_give_the_figures_of_one_process(tmp_path):
    """Two ranks (gloo) evaluate images 0, 2, 4, 6 and 1, 3, 5 with rank 0's model: the
    same confusion counts, hence the same mIoU, pixel accuracy and per-class IoU, and the
    same mask density as one process evaluating all seven (rank 1's own BatchNorm
    statistics, which differ, are not used)."""
    import torch

    from ablate.train.loop import evaluate

    reports = _two_ranks(_sharded_eval_main, str(tmp_path / "store"))
    for rank, size, metrics in reports:
        assert size > 0, f"rank {rank}: {metrics}"
    assert [size for _, size, _ in reports] == [4, 3]
    whole = torch.utils.data.DataLoader(_eval_set(), batch_size=2)
    alone = evaluate(_eval_model(0), whole, 3, torch.device("cpu"), ["a", "b", "c"])
    assert set(alone) >= {"miou", "pixel_acc", "iou/a", "mask_density", "mask_density_std"}
    for _, _, metrics in reports:  # every rank returns the whole set's figures
        assert metrics.keys() == alone.keys()
        for key, value in alone.items():
            assert metrics[key] == pytest.approx(value, rel=1e-6, abs=0) if "mask" in key \
                else metrics[key] == value, key
    other = evaluate(_eval_model(1), whole, 3, torch.device("cpu"), ["a", "b", "c"])
    assert other["miou"] != alone["miou"]  # rank 1's statistics would have changed them
