"""Sparse selective down-sampling against the dense dilated DeepLabV3, side by side.

    .venv/bin/python bench/bench_selective.py                  # all threads, wall clock, 512x1024
    .venv/bin/python bench/bench_selective.py --threads 1      # one thread, process CPU time
    # the quick set (8 cases, 3 calls each: about 3 minutes on a quiet 2-core CPU)
    .venv/bin/python bench/bench_selective.py --densities 0,0.5,1 --rounds 2
    .venv/bin/python bench/bench_selective.py --cuda-only --densities 0,0.5,1 --rounds 3  # batch 1, 8
    .venv/bin/python bench/bench_selective.py --batch 1,8 --densities 0.5,1 --rounds 3
    .venv/bin/python bench/bench_selective.py --calibrate      # the tiles/rows crossover only

DeepLabV3-ResNet-50, output stride 8, 19 classes, evaluation mode, no gradients.
``dense`` is the plain dilated model without a mask net, in torchvision's layout (NCHW),
channels-last, and channels-last with batch norm folded into the convs (``folded``,
``ablate.models.fused.fold_batch_norm``, as a deployment runs it); the *reference* is the
fastest of the three in each round. The sparse execution folds batch norm too, so the
ratio is what the mask saves; ``x unfolded`` is the ratio against the faster of NCHW and
channels-last alone (issue 34's original reference), where folding is part of the
saving. ``sparse`` is
``execution = "sparse"`` (``ablate.models.sparse``: mask net included, its mask replaced
by a forced one with ``round(density * cells)`` down-sampled cells per image, ``random``
or ``blobs`` layout; each image of a batch has its own mask). ``--kernels`` picks the
3x3 kernels: ``auto`` (the default: tiles or rows per path, by the device's measured
crossover; the ``kernels`` column shows the choice, high/low path), ``tiles``, ``rows``,
or several, comma-separated. At densities 0 and 1 the executor runs the plain networks;
with ``--plain-kernels``, rows of layout ``sparse`` run the sparse kernels there instead.

Timing: every round times each case once, in turn (dense and sparse side by side, so a
busy machine slows them alike), after one untimed warm-up call of each. With all threads
(the default: every CPU this process may use) the figure is wall-clock time; with
``--threads 1`` it is process CPU time, which does not count waiting for a core on a
shared machine. On CUDA every call is synchronised before and after (wall clock) and
the default batches are 1 and 8. Each ratio is the case over the round's reference; the
table gives the median ratio over rounds and its range (min-max). Targets (issue 34):
density 0.5 at most 0.75, density 1.0 at most 0.6 of the reference. The ``flops``
column is the arithmetic's bound: ``gflops_effective`` of ``ablate.cost.selective`` at
that density over the plain OS-8 model's FLOPs (fvcore; it counts a dilated conv's taps
outside the map, which both executions skip, so it is approximate); the time ratio
minus it is what gathers, scatters and the smaller ops cost.

    .venv/bin/python bench/bench_selective.py --miou            # accuracy, not time

``--miou`` trains recipes/selective_shapes.toml's model (64x64 shapes, CPU) once per
execution mode and sparsity weight, then evaluates each checkpoint under both
functions: the dense emulation (blend after layer4) and the sparse mixed-resolution
network. It prints the mIoU of each and the mask density.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from machine import at_least, describe, hxw  # noqa: E402

DENSITIES = (0.0, 0.25, 0.5, 0.75, 1.0)
TARGETS = {0.5: 0.75, 1.0: 0.6}


def _clock(device: str, threads: int):
    """The timer of a case: wall clock (synchronised on CUDA), or CPU time on one thread."""
    import torch

    if device == "cuda":
        def wall_synced(call) -> float:
            torch.cuda.synchronize()
            start = time.perf_counter()
            call()
            torch.cuda.synchronize()
            return time.perf_counter() - start
        return wall_synced, "wall, synchronised"
    clock, name = (time.process_time, "CPU time") if threads == 1 else (time.perf_counter, "wall")

    def timed(call) -> float:
        start = clock()
        call()
        return clock() - start
    return timed, name


def bench_device(device: str, size: tuple[int, int], batch: int, args) -> None:
    import torch

    from ablate.cost.selective import selective_cost
    from ablate.models.build import build_model
    from ablate.models.fused import backend, fold_batch_norm
    from ablate.models.selective import build_selective_deeplabv3
    from ablate.models.sparse import SparseSelective, forced_mask, mask_grid
    from ablate.recipes.schema import ModelSpec

    dev = torch.device(device)
    base = {"backbone": "resnet50", "head": "deeplabv3", "output_stride": 8}
    dense_model = build_model(ModelSpec.model_validate(base), args.classes).to(dev).eval()
    dense_cl = build_model(ModelSpec.model_validate(base), args.classes).to(dev).eval()
    dense_cl.load_state_dict(dense_model.state_dict())
    dense_cl = dense_cl.to(memory_format=torch.channels_last)
    folded = build_model(ModelSpec.model_validate(base), args.classes).to(dev).eval()
    folded.load_state_dict(dense_model.state_dict())
    fold_batch_norm(folded)
    folded = folded.to(memory_format=torch.channels_last)
    sel_spec = ModelSpec.model_validate({**base, "selective": {
        "enabled": True, "execution": "sparse", "pooling": args.pooling}})
    sparse_model = build_selective_deeplabv3(sel_spec, args.classes).to(dev).eval()
    x = torch.randn(batch, 3, *size, device=dev)
    x_cl = x.contiguous(memory_format=torch.channels_last)
    grid = mask_grid(2, tuple(-(-n // 8) for n in size))
    timer, clock_name = _clock(dev.type, torch.get_num_threads())

    cases: dict[tuple, object] = {("NCHW",): lambda: dense_model(x),
                                  ("channels-last",): lambda: dense_cl(x_cl),
                                  ("folded",): lambda: folded(x_cl)}
    for kernels in args.kernels:
        run = SparseSelective(sparse_model, kernels=kernels)
        for layout in args.layouts:
            for density in args.densities:
                cases[density, layout, kernels] = (
                    run, forced_mask(grid, density, layout, batch=batch).to(dev))
        if args.plain_kernels:  # densities 0 and 1 through the sparse kernels
            run = SparseSelective(sparse_model, shortcuts=False, kernels=kernels)
            for density in (0.0, 1.0):
                cases[density, "sparse", kernels] = (
                    run, forced_mask(grid, density, "random", batch=batch).to(dev))
    calls = {key: (case if callable(case) else
                   (lambda run=case[0], mask=case[1]: run(x, mask))) for key, case in cases.items()}
    chosen = {}
    times: dict[tuple, list[float]] = {key: [] for key in calls}
    with torch.no_grad():
        for key, call in calls.items():  # warm-up: weights folded, kernels chosen
            call()
            if len(key) == 3:
                chosen[key] = "/".join(cases[key][0].chosen.get(p, "-") for p in ("high", "low"))
        for _ in range(args.rounds):
            for key, call in calls.items():
                times[key].append(timer(call) * 1000.0)
    unfolded = [min(a, b) for a, b in zip(times["NCHW",], times["channels-last",])]
    reference = [min(a, b) for a, b in zip(unfolded, times["folded",])]
    # on CUDA, whether TF32 is allowed decides how fast cuDNN's and cuBLAS's fp32 run
    math = (f"TF32 in convs {torch.backends.cudnn.allow_tf32}, in matmuls "
            f"{torch.backends.cuda.matmul.allow_tf32}" if dev.type == "cuda"
            else f"{torch.get_num_threads()} threads")
    print(f"\n[{device}] DeepLabV3-ResNet-50 OS-8, {size[0]}x{size[1]}, batch {batch}, "
          f"mask grid {grid[0]}x{grid[1]}, pooling {args.pooling}, {math}, "
          f"GEMMs by {backend(dev)}; {clock_name} ms, median of {args.rounds} rounds")
    print("  x ref: against each round's fastest dense model (a dense row above 1: it was not "
          "the fastest in some rounds); x unfolded: against the faster of NCHW and "
          "channels-last")
    for name in ("NCHW", "channels-last", "folded"):
        ratios = [t / r for t, r in zip(times[name,], reference)]
        print(f"  dense {name:14s} {statistics.median(times[name,]):9.1f}   x ref "
              f"{statistics.median(ratios):.3f}")
    flops = {}
    for density in args.densities:
        cost = selective_cost(sel_spec, args.classes, size, density)
        flops[density] = cost["gflops_effective"] / cost["gflops_os8"]
    print(f"  {'density':>7} {'layout':>7} {'kernels':>11} {'ms':>9} {'x ref':>6} "
          f"{'range':>11} {'flops':>5} {'x unfolded':>10}  target")
    for key in calls:
        if len(key) != 3:
            continue
        density, layout, kernels = key
        ratios = [t / r for t, r in zip(times[key], reference)]
        mid = statistics.median(ratios)
        loose = statistics.median(t / r for t, r in zip(times[key], unfolded))
        target = TARGETS.get(density)
        verdict = "" if target is None or layout == "sparse" else \
            f"<= {target}: {'met' if mid <= target else 'NOT met'}"
        label = kernels if kernels != "auto" else f"auto {chosen[key]}"
        print(f"  {density:7.2f} {layout:>7} {label:>11} {statistics.median(times[key]):9.1f} "
              f"{mid:6.3f} {min(ratios):5.3f}-{max(ratios):5.3f} {flops[density]:5.3f} "
              f"{loose:10.3f}  {verdict}", flush=True)


def calibrate(device: str) -> None:
    import torch

    from ablate.models.blocksparse import CROSSOVER, measure_crossover

    figures = [measure_crossover(torch.device(device), size=(64, 128), runs=5) for _ in range(3)]
    committed = CROSSOVER.get(torch.device(device).type)
    print(f"[{device}] crossover occupancy t_tiles / t_rows, layer3/layer4 3x3 convs on a "
          f"64x128 map, {torch.get_num_threads()} threads: "
          + ", ".join(f"{f:.3f}" for f in figures)
          + f" (committed: {committed if committed is not None else 'none, measured at first use'})")


def miou_table(lambdas: list[float], work: Path, epochs: int | None = None,
               target: float | None = None, trained_modes: tuple[str, ...] = ("dense", "sparse")
               ) -> None:
    """Train the selective_shapes model per (execution, lambda); evaluate under both modes."""
    import tomllib

    import torch

    from ablate.data.build import build_datasets
    from ablate.data.collate import collate_eval
    from ablate.models.selective import build_selective_deeplabv3
    from ablate.recipes.schema import TrialSpec
    from ablate.train.checkpoint import CHECKPOINT_NAME, load_checkpoint
    from ablate.train.loop import evaluate, train_and_evaluate
    from ablate.trials.resolve import num_classes

    recipe = Path(__file__).resolve().parents[1] / "recipes" / "selective_shapes.toml"
    base = tomllib.loads(recipe.read_text())["base"]
    print(f"{'trained':>8} {'lambda':>7} {'density':>8} {'mIoU dense':>11} {'mIoU sparse':>12}"
          f"   at a forced blob mask of density 0.5: {'dense':>6} {'sparse':>7}")
    for trained in trained_modes:
        for lam in lambdas:
            tree = {k: dict(v) for k, v in base.items()}
            tree["model"]["selective"] = {**base["model"]["selective"], "lambda": lam,
                                          "execution": trained}
            if target is not None:  # the baseline's loss: pulls the density towards target
                tree["model"]["selective"].update(loss="target", target=target)
            if epochs is not None:
                tree["train"] = {**tree["train"], "epochs": epochs}
            spec = TrialSpec.model_validate({**tree, "seed": 0})
            run_dir = work / f"{trained}-{lam}"
            run_dir.mkdir(parents=True, exist_ok=True)
            train_and_evaluate(spec, run_dir)
            state = load_checkpoint(run_dir / CHECKPOINT_NAME)["model"]
            data = build_datasets(spec.data, seed=0)
            loader = torch.utils.data.DataLoader(data.val, batch_size=8, collate_fn=collate_eval)
            scores, models = {}, {}
            for execution in ("dense", "sparse"):
                selective = spec.model.selective.model_copy(update={"execution": execution})
                model_spec = spec.model.model_copy(update={"selective": selective})
                model = build_selective_deeplabv3(model_spec, num_classes(spec))
                model.load_state_dict(state, strict=execution == "sparse")
                models[execution] = model.eval()
                scores[execution] = evaluate(model, loader, num_classes(spec),
                                             torch.device("cpu"), data.class_names)
            print(f"{trained:>8} {lam:7.3f} {scores[trained]['mask_density']:8.3f} "
                  f"{100 * scores['dense']['miou']:11.2f} {100 * scores['sparse']['miou']:12.2f}"
                  f"{'':>42}{forced_miou(models['dense'], loader, 0.5, False):6.2f} "
                  f"{forced_miou(models['sparse'], loader, 0.5, True):7.2f}", flush=True)


def forced_miou(model, loader, density: float, sparse: bool) -> float:
    """mIoU (%) of ``model`` with a blob mask of ``density`` forced on every image."""
    import torch
    from torch.nn import functional as F

    from ablate.evaluate.metrics import ConfusionMatrix
    from ablate.models.masking import upsample_mask
    from ablate.models.sparse import SparseSelective, forced_mask, mask_grid

    n_classes = model.head.classifier.out_channels
    confusion = ConfusionMatrix(n_classes, torch.device("cpu"))
    d = model.selective.patch
    with torch.no_grad():
        for i, (images, labels) in enumerate(loader):
            taps = model.backbone.early(images)
            size = taps["layer2"].shape[-2:]
            mask = forced_mask(mask_grid(d, size), density, "blobs", seed=i, batch=len(images))
            if sparse:
                out = SparseSelective(model)(images, mask)["out"]
            else:  # the dense emulation's blend after layer4, with this mask
                high = model.backbone.high(taps["layer2"])[1]
                low = upsample_mask(model.backbone.low(taps["layer2"]), d, size)
                pixels = upsample_mask(mask, d, size)
                out = model.head({"out": pixels * low + (1 - pixels) * high})
                out = F.interpolate(out, size=images.shape[-2:], mode="bilinear",
                                    align_corners=False)
            confusion.update(out.argmax(1), labels)
    return 100 * confusion.compute().as_metrics([str(c) for c in range(n_classes)])["miou"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--resolution", type=hxw, default="512x1024", help="HxW")
    parser.add_argument("--classes", type=at_least(1), default=19)
    parser.add_argument("--pooling", default="fixed", choices=("fixed", "avg", "max"))
    parser.add_argument("--rounds", type=at_least(1), default=3, help="timed calls of each case")
    parser.add_argument("--threads", type=at_least(1), default=None,
                        help="torch threads (default: every CPU this process may use); "
                             "1 times process CPU time")
    parser.add_argument("--batch", default=None,
                        help="batch sizes, comma-separated (default: 1 on CPU, 1,8 on CUDA)")
    parser.add_argument("--densities", default=",".join(map(str, DENSITIES)),
                        help="shares of down-sampled cells, comma-separated")
    parser.add_argument("--layouts", default="random,blobs",
                        help="forced mask layouts, comma-separated: random, blobs")
    parser.add_argument("--kernels", default="auto",
                        help="auto, tiles, rows, or several comma-separated")
    parser.add_argument("--plain-kernels", action="store_true",
                        help="also time densities 0 and 1 through the sparse kernels")
    parser.add_argument("--cpu-only", action="store_true", help="skip the CUDA tables")
    parser.add_argument("--cuda-only", action="store_true", help="skip the CPU tables")
    parser.add_argument("--calibrate", action="store_true",
                        help="measure the tiles/rows crossover of each device, nothing else")
    parser.add_argument("--miou", action="store_true", help="mIoU of both functions instead")
    parser.add_argument("--lambdas", default="0.0,0.015,0.3",
                        help="--miou: sparsity weights, comma-separated")
    parser.add_argument("--work", default="/tmp/bench_selective", help="run folders (--miou)")
    parser.add_argument("--epochs", type=at_least(1), default=None, help="override train.epochs (--miou)")
    parser.add_argument("--trained", default="dense,sparse", help="--miou: execution modes to train")
    parser.add_argument("--target", type=float, default=None,
                        help="--miou: loss = target with this density instead of lambda")
    args = parser.parse_args()
    size = args.resolution
    args.densities = [float(v) for v in args.densities.split(",")]
    args.layouts = args.layouts.split(",")
    args.kernels = args.kernels.split(",")

    import torch

    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    torch.set_num_threads(args.threads or usable)
    print(describe(f"torch {torch.__version__}, {torch.get_num_threads()} threads"))
    print(f"command: {' '.join(sys.argv)}", flush=True)
    if args.miou:
        miou_table([float(v) for v in args.lambdas.split(",")], Path(args.work), args.epochs,
                   args.target, tuple(args.trained.split(",")))
        return
    devices = [] if args.cuda_only else ["cpu"]
    if torch.cuda.is_available() and not args.cpu_only:
        print(torch.cuda.get_device_name(0))
        devices.append("cuda")
    for device in devices:
        if args.calibrate:
            calibrate(device)
            continue
        batches = args.batch or ("1,8" if device == "cuda" else "1")
        for batch in (int(v) for v in batches.split(",")):
            bench_device(device, size, batch, args)


if __name__ == "__main__":
    main()
