"""Sparse selective down-sampling against the dense dilated DeepLabV3, side by side.

    .venv/bin/python bench/bench_selective.py                        # 512x1024, CPU (+ CUDA if present)
    .venv/bin/python bench/bench_selective.py --resolution 256x512 --runs 5

DeepLabV3-ResNet-50, output stride 8, 19 classes, batch 1, evaluation mode, no
gradients. ``dense`` is the plain dilated model without a mask net (torchvision's
layout, NCHW; ``dense (channels-last)`` the same model in NHWC, often faster on
CPUs). ``sparse`` is ``execution = "sparse"`` (``ablate.models.sparse``: mask net
included, its mask replaced by a forced one with ``round(density * cells)``
down-sampled cells, ``random`` or ``blobs`` layout; at densities 0 and 1 it runs the
plain networks, ``rows`` times the row kernels there instead). Each figure is the median of
``--runs`` timed forwards after ``--warmup`` untimed ones, with the same thread count
for every model; wall-clock and process CPU time are both printed. Targets (issue 13): density 0.5 at most 0.75 x dense, density 1.0
at most 0.6 x dense, judged against the faster dense layout.

    .venv/bin/python bench/bench_selective.py --miou            # accuracy, not time

``--miou`` trains recipes/selective_shapes.toml's model (64x64 shapes, CPU) once per
execution mode and sparsity weight, then evaluates each checkpoint under both
functions: the dense emulation (blend after layer4) and the sparse mixed-resolution
network. It prints the mIoU of each and the mask density.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

DENSITIES = (0.0, 0.25, 0.5, 0.75, 1.0)
TARGETS = {0.5: 0.75, 1.0: 0.6}


def timed(fn, x, warmup: int, runs: int, sync) -> tuple[float, float]:
    """Median wall-clock and median process CPU milliseconds of ``fn(x)``.

    On a shared machine the wall clock includes waiting for a core; the CPU time (all
    threads of this process) is the work done, steadier under load.
    """
    import torch

    with torch.no_grad():
        for _ in range(warmup):
            fn(x)
        wall, cpu = [], []
        for _ in range(runs):
            sync()
            start, start_cpu = time.perf_counter(), time.process_time()
            fn(x)
            sync()
            wall.append((time.perf_counter() - start) * 1000.0)
            cpu.append((time.process_time() - start_cpu) * 1000.0)
    return statistics.median(wall), statistics.median(cpu)


def bench_device(device: str, size: tuple[int, int], args) -> None:
    import torch

    from ablate.models.build import build_model
    from ablate.models.selective import build_selective_deeplabv3
    from ablate.models.sparse import SparseSelective, forced_mask, mask_grid
    from ablate.recipes.schema import ModelSpec

    dev = torch.device(device)
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    base = {"backbone": "resnet50", "head": "deeplabv3", "output_stride": 8}
    dense_model = build_model(ModelSpec.model_validate(base), args.classes).to(dev).eval()
    sel_spec = ModelSpec.model_validate({**base, "selective": {
        "enabled": True, "execution": "sparse", "pooling": args.pooling}})
    sparse_model = build_selective_deeplabv3(sel_spec, args.classes).to(dev).eval()
    sparse = SparseSelective(sparse_model)
    rows_only = SparseSelective(sparse_model, shortcuts=False)
    x = torch.randn(1, 3, *size, device=dev)
    grid = mask_grid(2, tuple(-(-n // 8) for n in size))

    dense = timed(dense_model, x, args.warmup, args.runs, sync)
    dense_model = dense_model.to(memory_format=torch.channels_last)
    dense_cl = timed(dense_model, x.contiguous(memory_format=torch.channels_last),
                     args.warmup, args.runs, sync)
    ref = [min(a, b) for a, b in zip(dense, dense_cl)]
    print(f"\n[{device}] DeepLabV3-ResNet-50 OS-8, {size[0]}x{size[1]}, batch 1, "
          f"mask grid {grid[0]}x{grid[1]}, pooling {args.pooling}; wall / CPU ms, median "
          f"of {args.runs}")
    print(f"  dense (NCHW)          {dense[0]:9.1f} / {dense[1]:9.1f}")
    print(f"  dense (channels-last) {dense_cl[0]:9.1f} / {dense_cl[1]:9.1f}")
    print(f"  reference (faster)    {ref[0]:9.1f} / {ref[1]:9.1f}")
    print(f"  {'density':>7} {'layout':>7} {'sparse wall':>11} {'x ref':>6} {'sparse CPU':>11} "
          f"{'x ref':>6}  target")
    # "rows": densities 0 and 1 through the row kernels, without the plain-network shortcut
    cases = [(layout, d) for layout in ("random", "blobs") for d in DENSITIES]
    for layout, density in cases + [("rows", 0.0), ("rows", 1.0)]:
        run = rows_only if layout == "rows" else sparse
        mask = forced_mask(grid, density, "random" if layout == "rows" else layout).to(dev)
        ms = timed(lambda inp, m=mask, f=run: f(inp, m), x, args.warmup, args.runs, sync)
        ratios = [a / b for a, b in zip(ms, ref)]
        target = TARGETS.get(density)
        verdict = "" if target is None else f"<= {target}: wall " + ", CPU ".join(
            "met" if r <= target else "NOT met" for r in ratios)
        print(f"  {density:7.2f} {layout:>7} {ms[0]:11.1f} {ratios[0]:6.3f} {ms[1]:11.1f} "
              f"{ratios[1]:6.3f}  {verdict}", flush=True)


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
    parser.add_argument("--resolution", default="512x1024", help="HxW")
    parser.add_argument("--classes", type=int, default=19)
    parser.add_argument("--pooling", default="fixed", choices=("fixed", "avg", "max"))
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: all)")
    parser.add_argument("--cpu-only", action="store_true")
    parser.add_argument("--miou", action="store_true", help="mIoU of both functions instead")
    parser.add_argument("--lambdas", default="0.0,0.015,0.3")
    parser.add_argument("--work", default="/tmp/bench_selective", help="run folders (--miou)")
    parser.add_argument("--epochs", type=int, default=None, help="override train.epochs (--miou)")
    parser.add_argument("--trained", default="dense,sparse", help="--miou: execution modes to train")
    parser.add_argument("--target", type=float, default=None,
                        help="--miou: loss = target with this density instead of lambda")
    args = parser.parse_args()
    size = tuple(int(v) for v in args.resolution.lower().split("x"))

    import torch
    from machine import describe

    if args.threads:
        torch.set_num_threads(args.threads)
    print(describe(f"torch {torch.__version__}, {torch.get_num_threads()} threads"))
    print(f"command: {' '.join(sys.argv)}", flush=True)
    if args.miou:
        miou_table([float(v) for v in args.lambdas.split(",")], Path(args.work), args.epochs,
                   args.target, tuple(args.trained.split(",")))
        return
    bench_device("cpu", size, args)
    if torch.cuda.is_available() and not args.cpu_only:
        print(torch.cuda.get_device_name(0))
        bench_device("cuda", size, args)


if __name__ == "__main__":
    main()
