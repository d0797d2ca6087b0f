"""Each runtime's latency as a ratio to eager PyTorch, side by side, by batch size.

    .venv/bin/python bench/bench_runtimes.py                    # the three models, batch 1 and 8
    .venv/bin/python bench/bench_runtimes.py --batch-sizes 1 --runs 3 --models squeezenet_fcn

Models (random weights; latency does not depend on them): SqueezeNet 1.0 FCN-8s at
227x227 (21 classes), MobileNetV3-Large LR-ASPP and MobileNetV3-Large DeepLabV3+ at
512x512 (21 classes), evaluation mode, no gradients, NCHW. Runtimes: ``eager``,
``compile`` (torch.compile, inductor; its compile time is the ``prep s`` column, the
first call of each further batch size is an untimed warm-up) and ``onnxruntime``
(TorchScript ONNX export, CPU execution provider). Every figure is the median
milliseconds of one forward pass of the whole batch over ``--runs`` timed calls after
``--warmup`` untimed ones, with the same intra-op thread count for every runtime
(``ablate.evaluate.runtimes.measure_runtimes``, as a trial measures it). ``x eager`` is
the runtime's time over eager's at the same batch size (below 1: faster). Parity is
checked on two random 1-image batches: the largest absolute logit difference and the
share of pixels whose predicted class agrees with eager's.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

MODELS = {
    "squeezenet_fcn": ({"backbone": "squeezenet1_0", "head": "fcn8s"}, 227),
    "mnv3_lraspp": ({"backbone": "mobilenet_v3_large", "head": "lraspp"}, 512),
    "mnv3_deeplabv3plus": ({"backbone": "mobilenet_v3_large", "head": "deeplabv3plus"}, 512),
}
RUNTIMES = ("eager", "compile", "onnxruntime")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", nargs="+", choices=list(MODELS), default=list(MODELS))
    parser.add_argument("--batch-sizes", nargs="+", type=int, default=[1, 8])
    parser.add_argument("--runtimes", nargs="+", choices=RUNTIMES, default=list(RUNTIMES))
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None, help="default: torch's count")
    args = parser.parse_args()
    if "eager" not in args.runtimes:
        parser.error("--runtimes must include eager (the reference)")

    import torch
    from machine import describe

    from ablate.evaluate.runtimes import measure_runtimes
    from ablate.models.registry import build_model
    from ablate.recipes.schema import ModelSpec

    threads = args.threads or torch.get_num_threads()
    print(describe(f"torch {torch.__version__}, {threads} intra-op threads"))
    print(f"command: {' '.join(sys.argv)}")
    rows = []
    for name in args.models:
        fields, side = MODELS[name]
        torch.manual_seed(0)
        model = build_model(ModelSpec(**fields), 21).eval()
        g = torch.Generator().manual_seed(1)
        images = [(torch.randn(1, 3, side, side, generator=g),
                   torch.randint(0, 21, (1, side, side), generator=g)) for _ in range(2)]
        report = measure_runtimes(model, (side, side), torch.device("cpu"),
                                  runtimes=args.runtimes, batch_sizes=args.batch_sizes,
                                  warmup=args.warmup, runs=args.runs, threads=threads,
                                  images=images, n_classes=21)
        rows.append((name, side, report))
        print(f"  measured {name}", file=sys.stderr, flush=True)
    print_table(rows, args.runtimes, args.batch_sizes)
    print(f"at the end: {describe()}")  # the load shows how noisy the figures are


def print_table(rows, runtimes: list[str], batch_sizes: list[int]) -> None:
    header = ["model", "res", "bs", "eager ms"]
    for runtime in runtimes[1:]:
        header += [f"{runtime} ms", "x eager"]
    lines = [header]
    notes = []
    for name, side, report in rows:
        m = report.metrics
        for bs in batch_sizes:
            eager = m.get(f"latency_ms@eager/bs{bs}")
            line = [name, str(side), str(bs), _ms(eager)]
            for runtime in runtimes[1:]:
                value = m.get(f"latency_ms@{runtime}/bs{bs}")
                ratio = value / eager if value is not None and eager else None
                line += [_ms(value), f"{ratio:.2f}" if ratio is not None else "-"]
            lines.append(line)
        for runtime in runtimes[1:]:
            detail = report.details[runtime]
            if detail["status"] != "ok":
                notes.append(f"{name} {runtime}: unsupported: {detail['reason']}")
                continue
            notes.append(
                f"{name} {runtime}: prep {m[f'prepare_seconds@{runtime}']:.1f} s, parity max "
                f"|diff| {m.get(f'parity_max_abs@{runtime}', float('nan')):.2e}, argmax agrees "
                f"on {100 * m.get(f'parity_agree@{runtime}', float('nan')):.3f}% of pixels")
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    for line in lines:
        print("  ".join(cell.rjust(w) for cell, w in zip(line, widths)))
    for note in notes:
        print(note)


def _ms(value: float | None) -> str:
    return f"{value:.1f}" if value is not None else "-"


if __name__ == "__main__":
    main()
