"""Time ``count_flops`` on meta tensors beside plain fvcore on real tensors.

    .venv/bin/python bench/bench_cost.py                      # DeepLabV3-ResNet101 OS 8, 1024x2048
    .venv/bin/python bench/bench_cost.py --resolution 256x512 --backbone mobilenet_v3_large

The fast path is timed cold (first call in the process: lazy initialisation of
meta kernels included, module imports not) and warm (median of ``--repeats``), model build on meta included. fvcore
runs once: it is a full forward pass on the CPU.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from machine import at_least, describe, hxw, user_error  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", default="resnet101")
    parser.add_argument("--head", default="deeplabv3")
    parser.add_argument("--output-stride", type=at_least(1), default=8)
    parser.add_argument("--classes", type=at_least(1), default=19)
    parser.add_argument("--resolution", type=hxw, default="1024x2048", help="HxW")
    parser.add_argument("--repeats", type=at_least(1), default=3)
    parser.add_argument("--skip-fvcore", action="store_true", help="time the fast path only")
    args = parser.parse_args()
    height, width = args.resolution

    import torch

    from ablate.cost.analyse import build_on_meta
    from ablate.cost.flops import count_flops, fvcore_flops
    from ablate.models.build import build_model
    from ablate.recipes.schema import ModelSpec

    print(f"machine: {describe(f'torch {torch.__version__}')}")
    start = time.perf_counter()
    import ablate.models.zoo  # noqa: F401  (torchvision's model modules)

    print(f"imports: {time.perf_counter() - start:.3f} s (not counted below)")
    try:  # a model ablate refuses: its reason in one line, before anything is timed
        spec = ModelSpec(backbone=args.backbone, head=args.head,
                         output_stride=args.output_stride)
    except ValueError as exc:
        parser.error(user_error(exc))
    print(f"model {args.backbone}/{args.head} OS {args.output_stride}, {args.classes} classes, "
          f"{height}x{width}, torch threads {torch.get_num_threads()}")

    def fast() -> tuple[int, float, float]:
        start = time.perf_counter()
        model = build_on_meta(spec, args.classes)
        built = time.perf_counter()
        total = count_flops(model, (height, width)).total
        return total, built - start, time.perf_counter() - built

    total, build_s, count_s = fast()
    print(f"fast  cold: build {build_s:.3f} s + count {count_s:.3f} s = {build_s + count_s:.3f} s")
    runs = [fast() for _ in range(args.repeats)]
    warm = statistics.median(b + c for _, b, c in runs)
    print(f"fast  warm: {warm:.3f} s (median of {args.repeats}: build "
          f"{statistics.median(b for _, b, _ in runs):.3f} s, count "
          f"{statistics.median(c for _, _, c in runs):.3f} s)")
    print(f"fast  total: {total:,} flops ({total / 1e9:.2f} GFLOPs, fvcore-mac)")
    if args.skip_fvcore:
        return

    start = time.perf_counter()
    model = build_model(spec, args.classes)
    built = time.perf_counter()
    reference = int(fvcore_flops(model, (height, width)).total())
    done = time.perf_counter()
    slow = done - start
    print(f"fvcore real tensors: build {built - start:.3f} s + count {done - built:.3f} s "
          f"= {slow:.3f} s")
    print(f"fvcore total: {reference:,} flops; equal: {reference == total}")
    print(f"ratio fvcore / fast: {slow / warm:.1f}x warm, {slow / (build_s + count_s):.1f}x cold")


if __name__ == "__main__":
    main()
