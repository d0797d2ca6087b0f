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
``--warmup`` untimed ones, with the same intra-op thread count for every runtime, the
runtimes timed in turn call by call (a trial times them one after the other with
``ablate.evaluate.runtimes.measure_runtimes``; same preparation, same timer). ``x eager`` is
the runtime's time over eager's at the same batch size (below 1: faster). Parity is
checked on two random 1-image batches: the largest absolute logit difference and the
share of pixels whose predicted class agrees with eager's.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from machine import at_least, describe  # noqa: E402

MODELS = {
    "squeezenet_fcn": ({"backbone": "squeezenet1_0", "head": "fcn8s"}, 227),
    "mnv3_lraspp": ({"backbone": "mobilenet_v3_large", "head": "lraspp"}, 512),
    "mnv3_deeplabv3plus": ({"backbone": "mobilenet_v3_large", "head": "deeplabv3plus"}, 512),
}
RUNTIMES = ("eager", "compile", "onnxruntime")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", nargs="+", choices=list(MODELS), default=list(MODELS))
    parser.add_argument("--batch-sizes", nargs="+", type=at_least(1), default=[1, 8])
    parser.add_argument("--runtimes", nargs="+", choices=RUNTIMES, default=list(RUNTIMES))
    parser.add_argument("--warmup", type=at_least(0), default=2)
    parser.add_argument("--runs", type=at_least(1), default=5)
    parser.add_argument("--threads", type=at_least(1), default=None, help="default: torch's count")
    args = parser.parse_args()
    if "eager" not in args.runtimes:
        parser.error("--runtimes must include eager (the reference)")

    import torch

    from ablate.models.build import build_model
    from ablate.recipes.schema import ModelSpec

    threads = args.threads or torch.get_num_threads()
    print(describe(f"torch {torch.__version__}, {threads} intra-op threads"))
    print(f"command: {' '.join(sys.argv)}")
    rows = []
    for name in args.models:
        fields, side = MODELS[name]
        torch.manual_seed(0)
        model = build_model(ModelSpec(**fields), 21).eval()
        rows.append((name, side, measure(model, side, args, threads)))
        print(f"  measured {name}", file=sys.stderr, flush=True)
    print_table(rows, args.runtimes, args.batch_sizes)
    print(f"at the end: {describe()}")  # the load shows how noisy the figures are


def measure(model, side: int, args, threads: int):
    """Prepare every runtime, then time them in turn, call by call: a load that comes and
    goes on a shared machine then hits each runtime alike, so the ratios hold."""
    import statistics

    import torch

    from ablate.evaluate.runtimes import (
        Parity,
        RuntimeReport,
        RuntimeUnsupported,
        intra_op_threads,
        prepare,
        time_batches,
    )

    cpu = torch.device("cpu")
    report = RuntimeReport()
    runners = {}
    with intra_op_threads(threads), torch.no_grad():
        example = torch.randn(1, 3, side, side)
        for runtime in args.runtimes:
            try:
                runners[runtime] = prepare(runtime, model, example, cpu, threads)
            except RuntimeUnsupported as err:
                report.details[runtime] = {"status": "unsupported", "reason": str(err)}
                continue
            report.details[runtime] = {"status": "ok"}
            report.metrics[f"prepare_seconds@{runtime}"] = runners[runtime].prepare_seconds
        for bs in args.batch_sizes:
            x = torch.randn(bs, 3, side, side)
            times = {r: [] for r in runners}
            for runner in runners.values():
                time_batches(runner, x, cpu, args.warmup, 0)
            for _ in range(args.runs):
                for runtime, runner in runners.items():
                    times[runtime] += time_batches(runner, x, cpu, 0, 1)
            for runtime, ms in times.items():
                report.metrics[f"latency_ms@{runtime}/bs{bs}"] = statistics.median(ms)
        g = torch.Generator().manual_seed(1)
        for _ in range(2):  # parity on two random images
            image = torch.randn(1, 3, side, side, generator=g)
            labels = torch.randint(0, 21, (1, side, side), generator=g)
            eager = runners["eager"].run(image)
            for runtime in [r for r in runners if r != "eager"]:
                parity = report.details[runtime].setdefault("parity", Parity(21))
                parity.update(eager, runners[runtime].run(image), labels)
    for runtime, detail in report.details.items():
        if "parity" in detail:
            report.metrics.update(detail.pop("parity").figures(runtime, 0.0))
    return report


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
