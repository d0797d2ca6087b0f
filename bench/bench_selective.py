"""Sparse selective down-sampling against the dense dilated DeepLabV3, side by side.

    .venv/bin/python bench/bench_selective.py                        # 512x1024, CPU (+ CUDA if present)
    .venv/bin/python bench/bench_selective.py --resolution 256x512 --runs 5

DeepLabV3-ResNet-50, output stride 8, 19 classes, batch 1, evaluation mode, no
gradients. ``dense`` is the plain dilated model without a mask net (torchvision's
layout, NCHW; ``dense (channels-last)`` the same model in NHWC, often faster on
CPUs). ``sparse`` is ``execution = "sparse"`` (``ablate.models.sparse``: mask net
included, its mask replaced by a forced one with ``round(density * cells)``
down-sampled cells, ``random`` or ``blobs`` layout). Each figure is the median of
``--runs`` timed forwards after ``--warmup`` untimed ones, with the same thread count
for every model. Targets (issue 13): density 0.5 at most 0.75 x dense, density 1.0
at most 0.6 x dense, judged against the faster dense layout.
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


def timed(fn, x, warmup: int, runs: int, sync) -> float:
    """Median milliseconds of ``fn(x)``."""
    import torch

    with torch.no_grad():
        for _ in range(warmup):
            fn(x)
        times = []
        for _ in range(runs):
            sync()
            start = time.perf_counter()
            fn(x)
            sync()
            times.append((time.perf_counter() - start) * 1000.0)
    return statistics.median(times)


def bench_device(device: str, size: tuple[int, int], args) -> None:
    import torch

    from ablate.models.registry import build_model
    from ablate.models.selective import build_selective_deeplabv3
    from ablate.models.sparse import SparseSelective, forced_mask, mask_grid
    from ablate.recipes.schema import ModelSpec

    dev = torch.device(device)
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    base = {"backbone": "resnet50", "head": "deeplabv3", "output_stride": 8}
    dense = build_model(ModelSpec.model_validate(base), args.classes).to(dev).eval()
    sel_spec = ModelSpec.model_validate({**base, "selective": {
        "enabled": True, "execution": "sparse", "pooling": args.pooling}})
    sparse_model = build_selective_deeplabv3(sel_spec, args.classes).to(dev).eval()
    sparse = SparseSelective(sparse_model)
    x = torch.randn(1, 3, *size, device=dev)
    grid = mask_grid(2, tuple(-(-n // 8) for n in size))

    dense_ms = timed(dense, x, args.warmup, args.runs, sync)
    dense_cl = dense.to(memory_format=torch.channels_last)
    cl_ms = timed(dense_cl, x.contiguous(memory_format=torch.channels_last),
                  args.warmup, args.runs, sync)
    ref = min(dense_ms, cl_ms)
    print(f"\n[{device}] DeepLabV3-ResNet-50 OS-8, {size[0]}x{size[1]}, batch 1, "
          f"mask grid {grid[0]}x{grid[1]}, pooling {args.pooling}")
    print(f"  dense (NCHW)          {dense_ms:9.1f} ms")
    print(f"  dense (channels-last) {cl_ms:9.1f} ms   reference = {ref:.1f} ms")
    print(f"  {'density':>7} {'layout':>7} {'sparse ms':>10} {'x ref':>7} {'target':>8}")
    for layout in ("random", "blobs"):
        for density in DENSITIES:
            mask = forced_mask(grid, density, layout).to(dev)
            ms = timed(lambda inp, m=mask: sparse(inp, m), x, args.warmup, args.runs, sync)
            ratio = ms / ref
            target = TARGETS.get(density)
            verdict = "" if target is None else (
                f"<= {target}: {'met' if ratio <= target else 'NOT met'}")
            print(f"  {density:7.2f} {layout:>7} {ms:10.1f} {ratio:7.3f}  {verdict}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--resolution", default="512x1024", help="HxW")
    parser.add_argument("--classes", type=int, default=19)
    parser.add_argument("--pooling", default="fixed", choices=("fixed", "avg", "max"))
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: all)")
    parser.add_argument("--cpu-only", action="store_true")
    args = parser.parse_args()
    size = tuple(int(v) for v in args.resolution.lower().split("x"))

    import torch
    from machine import describe

    if args.threads:
        torch.set_num_threads(args.threads)
    print(describe(f"torch {torch.__version__}, {torch.get_num_threads()} threads"))
    print(f"command: {' '.join(sys.argv)}")
    bench_device("cpu", size, args)
    if torch.cuda.is_available() and not args.cpu_only:
        print(torch.cuda.get_device_name(0))
        bench_device("cuda", size, args)


if __name__ == "__main__":
    main()
