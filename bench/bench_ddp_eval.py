"""Benchmark: evaluation under DistributedDataParallel, every rank on the whole set (what
ablate did before) against each rank on its share (``ablate.train.loop.share_of_validation``
and ``evaluate(world=K)``, what it does now).

K ranks (``--ranks``; gloo on the CPU, one thread each, or NCCL with one GPU each when
``--device cuda`` and K GPUs are visible) build the same model and evaluate ``--images``
validation images of the embedded ``shapes`` data at ``--size``. Each mode is timed
``--repeats`` times after one untimed warm-up pass, synchronised, as the slowest rank's
wall time (an evaluation ends for the trial when its last rank ends). The two modes'
figures must agree (the shares' confusion counts summed equal the whole set's).

    .venv/bin/python bench/bench_ddp_eval.py [--ranks 2] [--images 64] [--size 128]
        [--model quickstart|resnet50] [--device cpu|cuda] [--repeats 3]
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import statistics
import sys
import tempfile
import time
import traceback
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.machine import describe  # noqa: E402

MODELS = {
    "quickstart": {"backbone": "mobilenet_v3_large", "head": "deeplabv3plus",
                   "output_stride": 16},
    "resnet50": {"backbone": "resnet50", "head": "deeplabv3", "output_stride": 8},
}


def _spec(args) -> dict:
    return {
        "model": MODELS[args.model],
        "data": {"name": "shapes", "classes": 4, "image_size": args.size, "train_images": 8,
                 "val_images": args.images, "workers": 0},
        "train": {"device": args.device, "batch_size": 8},
        "eval": {"batch_size": args.batch, "latency": False},
        "seed": 0,
    }


def _rank(rank: int, args, store: str, out) -> None:
    try:
        import torch
        import torch.distributed as dist

        from ablate.data.build import build_datasets
        from ablate.models.build import build_model
        from ablate.recipes.schema import TrialSpec
        from ablate.train.loop import evaluate, make_loaders, share_of_validation

        torch.set_num_threads(1)
        cuda = args.device == "cuda"
        if cuda:
            torch.cuda.set_device(rank)
        device = torch.device("cuda", rank) if cuda else torch.device("cpu")
        dist.init_process_group("nccl" if cuda else "gloo", init_method=f"file://{store}",
                                rank=rank, world_size=args.ranks)
        spec = TrialSpec.model_validate(_spec(args))
        data = build_datasets(spec.data, seed=0, num_classes=4)
        torch.manual_seed(0)
        model = build_model(spec.model, 4).to(device)
        _, _, whole, = make_loaders(spec, data, device, rank, args.ranks)
        share = share_of_validation(spec, data, device, rank, args.ranks)

        def timed(loader, world):
            dist.barrier()
            t0 = time.perf_counter()
            metrics = evaluate(model, loader, 4, device, data.class_names, world=world)
            if cuda:
                torch.cuda.synchronize(device)
            seconds = torch.tensor([time.perf_counter() - t0], dtype=torch.float64,
                                   device=device)
            dist.all_reduce(seconds, op=dist.ReduceOp.MAX)  # the slowest rank's
            return float(seconds), metrics

        rows = {"whole": [], "share": []}
        timed(whole, 1), timed(share, args.ranks)  # warm-up
        for _ in range(args.repeats):  # alternating, so load drifts hit both
            rows["whole"].append(timed(whole, 1))
            rows["share"].append(timed(share, args.ranks))
        out.put((rank, {k: ([s for s, _ in v], v[-1][1]) for k, v in rows.items()}))
        dist.destroy_process_group()
    except BaseException:
        out.put((rank, traceback.format_exc()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ranks", type=int, default=2)
    parser.add_argument("--images", type=int, default=64)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--batch", type=int, default=8, help="eval.batch_size")
    parser.add_argument("--model", choices=sorted(MODELS), default="quickstart")
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    for name, least in (("ranks", 2), ("images", 1), ("size", 32), ("batch", 1), ("repeats", 1)):
        if getattr(args, name) < least:
            parser.error(f"--{name} must be at least {least}, got {getattr(args, name)}")
    import torch

    extra = f"torch {torch.__version__}, {args.ranks} ranks, 1 thread each"
    if args.device == "cuda":
        extra += f", {torch.cuda.get_device_name(0)}"
    print(describe(extra))
    ctx = mp.get_context("spawn")
    out = ctx.Queue()
    with tempfile.TemporaryDirectory() as folder:
        procs = [ctx.Process(target=_rank, args=(r, args, str(Path(folder) / "store"), out))
                 for r in range(args.ranks)]
        for p in procs:
            p.start()
        reports = dict(out.get(timeout=1800) for _ in procs)
        for p in procs:
            p.join(timeout=60)
    for rank, report in sorted(reports.items()):
        if isinstance(report, str):
            sys.exit(f"rank {rank} failed:\n{report}")
    (whole, whole_metrics), (share, share_metrics) = reports[0]["whole"], reports[0]["share"]
    same = all(whole_metrics[k] == share_metrics[k] for k in whole_metrics if "iou" in k
               or k == "pixel_acc")
    print(f"{args.model} at {args.size}x{args.size}, {args.images} images, "
          f"eval.batch_size {args.batch}, {args.device}; median of {args.repeats} "
          "(slowest rank's wall time)")
    print(f"{'every rank, whole set (before)':34s} {statistics.median(whole):8.2f} s")
    print(f"{'each rank, its share (now)':34s} {statistics.median(share):8.2f} s")
    print(f"{'ratio now / before':34s} {statistics.median(share) / statistics.median(whole):8.2f}")
    print(f"mIoU {100 * share_metrics['miou']:.2f} %, the same as the whole set's: {same}")
    if not same:
        sys.exit("the shares' figures differ from the whole set's")


if __name__ == "__main__":
    main()
