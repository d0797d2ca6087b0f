"""What a knock-out adds to building a network: its shape probes, side by side.

    .venv/bin/python bench/bench_knockout.py                     # DeepLabV3+ MobileNetV3-Large
    .venv/bin/python bench/bench_knockout.py --backbone resnet101 --head deeplabv3 \\
        --output-stride 8 --remove head.aspp.convs.3 --remove backbone.layer3.1

Each round builds the network without and with the knock-out (``model.remove``), on meta
(as ``ablate plan`` and ``cost`` do) and on the CPU with its weights (as a trial does),
interleaved so that the shared machine's load falls on both alike; medians of
``--repeats`` rounds, the first (cold) round left out. The difference is the knock-out:
two or three probe forward passes on meta and one of the edited network.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from machine import at_least, describe, user_error  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", default="mobilenet_v3_large")
    parser.add_argument("--head", default="deeplabv3plus")
    parser.add_argument("--output-stride", type=at_least(1), default=16)
    parser.add_argument("--remove", action="append", help="a module path (repeatable)")
    parser.add_argument("--repeats", type=at_least(1), default=5)
    args = parser.parse_args()
    remove = args.remove or ["head.aspp.convs.3", "backbone.features.5"]

    import torch

    from ablate.cost.analyse import build_on_meta
    from ablate.errors import UserInputError
    from ablate.models.build import build_model
    from ablate.recipes.schema import ModelSpec

    try:  # a model or module ablate refuses: its reason in one line, before any timing
        plain = ModelSpec(backbone=args.backbone, head=args.head,
                          output_stride=args.output_stride)
        knocked = ModelSpec(**{**plain.model_dump(), "remove": sorted(remove)})
        build_on_meta(knocked, 21)
    except (ValueError, UserInputError) as exc:
        parser.error(user_error(exc))
    print(f"machine: {describe(f'torch {torch.__version__}')}")
    print(f"model {args.backbone}/{args.head} OS {args.output_stride}, remove {remove}, "
          f"torch threads {torch.get_num_threads()}")

    def timed(fn) -> float:
        start = time.perf_counter()
        fn()
        return time.perf_counter() - start

    cases = {
        "meta, plain": lambda: build_on_meta(plain, 21),
        "meta, knocked out": lambda: build_on_meta(knocked, 21),
        "cpu, plain": lambda: build_model(plain, 21),
        "cpu, knocked out": lambda: build_model(knocked, 21),
    }
    for fn in cases.values():  # cold: lazy initialisation of meta kernels and modules
        fn()
    times: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(args.repeats):
        for name, fn in cases.items():
            times[name].append(timed(fn))
    median = {name: statistics.median(values) for name, values in times.items()}
    for name, value in median.items():
        print(f"{name:18s} {value:.3f} s (median of {args.repeats})")
    for where in ("meta", "cpu"):
        extra = median[f"{where}, knocked out"] - median[f"{where}, plain"]
        ratio = median[f"{where}, knocked out"] / median[f"{where}, plain"]
        print(f"{where}: the knock-out adds {extra:.3f} s ({ratio:.2f}x the plain build)")


if __name__ == "__main__":
    main()
