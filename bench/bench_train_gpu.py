"""Benchmark: ablate's trainer against a plain PyTorch loop, images per second, on one device.

Both train the same network (built by ``build_model`` from one seed), with the same
optimizer and hyper-parameters, the same AMP mode and memory format, on the same device,
from the same in-memory images in the same order (``data.name = shapes`` at ``--size``
pixels, a few distinct images cycled; the indices each loop read are recorded and must be
equal). The trainer is ``train_and_evaluate`` itself; the plain loop is what one writes by
hand: DataLoader, autocast, ``F.cross_entropy``, backward, step, a poly learning rate.

Timing: both loops read their summed loss every ``--warmup`` steps (the trainer's
``train.log_every``), which waits for the device; the clock runs from the first such read
(steps 1..warmup are the warm-up: cuDNN plans, allocator, compile) to the last, so both
windows start and end synchronised and hold the same steps. The loops run alternately,
``--repeats`` times; medians and the ratio of medians are printed, each run's figure too,
per wall second and per CPU second of the process (on a shared CPU the wall clock also
counts waiting for a core; on CUDA the CPU row is the host's side alone).

    .venv/bin/python bench/bench_train_gpu.py                     # CUDA: both models, 513x513, bf16
    .venv/bin/python bench/bench_train_gpu.py --device cpu --size 128 --batch 4 --steps 12 --warmup 4
    .venv/bin/python bench/bench_train_gpu.py --compile           # adds train.compile rows

Models: ``quickstart`` (recipes/quickstart.toml: MobileNetV3-Large DeepLabV3+, OS 16) and
``resnet50`` (DeepLabV3+ on ResNet-50, OS 16), 21 classes (VOC's count).
"""

from __future__ import annotations

import argparse
import contextlib
import math
import shlex
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch.nn import functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from machine import at_least, describe  # noqa: E402

import ablate.train.loop as loop  # noqa: E402
from ablate.data.build import DatasetPair, build_datasets  # noqa: E402
from ablate.models.build import build_model  # noqa: E402
from ablate.recipes.schema import TrialSpec  # noqa: E402
from ablate.train.events import Stepped  # noqa: E402

MODELS = {
    "quickstart": {"backbone": "mobilenet_v3_large", "head": "deeplabv3plus",
                   "output_stride": 16, "bn_momentum": 0.1, "num_classes": 21},
    "resnet50": {"backbone": "resnet50", "head": "deeplabv3plus", "output_stride": 16,
                 "num_classes": 21},
}
DISTINCT_IMAGES = 16  # generated once per size; the loops cycle through them


def spec_for(model: str, *, size: int, batch: int, steps: int, warmup: int, device: str,
             amp: str = "bf16", channels_last: str | bool = "auto", compile: bool = False,
             deterministic: bool = False) -> TrialSpec:
    """One trial of ``steps`` steps in one epoch (no evaluation or checkpoint inside)."""
    return TrialSpec.model_validate({
        "model": MODELS[model],
        "data": {"name": "shapes", "classes": 4, "image_size": size, "workers": 0, "hflip": False,
                 "train_images": batch * steps, "val_images": batch},
        "train": {"optimizer": "sgd", "lr": 0.01, "momentum": 0.9, "weight_decay": 1e-4,
                  "iterations": steps, "batch_size": batch, "log_every": warmup,
                  # mixed precision is CUDA only (a CPU trial with it is refused): the CPU
                  # rows train in float32, as they did with the AMP mode ignored
                  "device": device, "amp": amp if device != "cpu" else "off",
                  "channels_last": channels_last,
                  "compile": compile, "deterministic": deterministic},
        "eval": {"batch_size": batch, "latency": False, "flops": False},
        "seed": 0})


class Recorded(torch.utils.data.Dataset):
    """``length`` items cycling through ``base``; records every index read, in order."""

    def __init__(self, base, length: int) -> None:
        self.base, self.length, self.seen = base, length, []

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int):
        self.seen.append(index)
        return self.base[index % len(self.base)]


_PAIRS: dict[tuple, DatasetPair] = {}


def bench_data(spec: TrialSpec) -> DatasetPair:
    """The images both loops train on: ``DISTINCT_IMAGES`` of ``shapes``, cycled to the
    spec's training-set size (generated once per size)."""
    data = spec.data
    key = (data.image_size, data.train_images, data.val_images)
    if key not in _PAIRS:
        few = data.model_copy(update={"train_images": min(DISTINCT_IMAGES, data.train_images)})
        pair = build_datasets(few, seed=spec.seed)
        _PAIRS[key] = DatasetPair(Recorded(pair.train, data.train_images), pair.val,
                                  pair.class_names)
    _PAIRS[key].train.seen = []
    return _PAIRS[key]


@dataclass
class Run:
    images_per_second: float
    seen: list[int] = field(repr=False)
    first_step_s: float | None = None
    # per CPU second of this process (its threads included): on a shared, loaded CPU the
    # wall clock also counts waiting for a core; on CUDA it is the host's share only
    images_per_cpu_second: float = math.nan


def _window(stamps: list[tuple[float, float]], spec: TrialSpec) -> tuple[float, float]:
    """Images per second (wall, CPU) between the first and the last synchronised loss
    read; ``stamps`` are (perf_counter, process_time) pairs."""
    train = spec.train
    images = (train.iterations - train.log_every) * train.batch_size  # inside the window
    return (images / (stamps[-1][0] - stamps[0][0]),
            images / max(stamps[-1][1] - stamps[0][1], 1e-9))


def _stamp() -> tuple[float, float]:
    return time.perf_counter(), time.process_time()


def trainer(spec: TrialSpec) -> Run:
    """``train_and_evaluate`` on the bench's data; stamps at its loss reads (Stepped)."""
    data = bench_data(spec)
    stamps: list[tuple[float, float]] = []

    def progress(event) -> None:
        if isinstance(event, Stepped):
            stamps.append(_stamp())

    real = loop.build_datasets
    loop.build_datasets = lambda data_spec, **_kwargs: data  # seed=, num_classes=
    try:
        with tempfile.TemporaryDirectory(prefix="bench_train_") as tmp:
            result = loop.train_and_evaluate(spec, Path(tmp), progress)
    finally:
        loop.build_datasets = real
    first = result["epochs"][0]["metrics"].get("first_step_seconds")
    wall, cpu = _window(stamps, spec)
    return Run(wall, list(data.train.seen), first, cpu)


def _order(spec: TrialSpec, size: int) -> list[int]:
    """The trainer's epoch-0 sample order, so that the plain loop reads the same images."""
    return [i for batch in loop.EpochBatches(size, spec.train.batch_size, spec.seed)
            for i in batch]


def plain(spec: TrialSpec) -> Run:
    """The loop one writes by hand, with the trainer's settings."""
    train = spec.train
    data = bench_data(spec)
    device = torch.device(train.device if train.device != "auto" else
                          "cuda" if torch.cuda.is_available() else "cpu")
    torch.manual_seed(spec.seed)
    torch.use_deterministic_algorithms(train.deterministic, warn_only=True)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = train.cudnn_benchmark and not train.deterministic
        torch.backends.cudnn.deterministic = train.deterministic
    channels_last = train.channels_last is True or (
        train.channels_last == "auto" and device.type == "cuda")
    memory_format = torch.channels_last if channels_last else torch.preserve_format
    model = build_model(spec.model, spec.model.num_classes).to(device, memory_format=memory_format)
    model.train()
    forward = torch.compile(model) if train.compile else model
    optimizer = torch.optim.SGD(model.parameters(), lr=train.lr, momentum=train.momentum,
                                weight_decay=train.weight_decay)
    dtype = loop.amp_dtype(train, device)
    autocast = torch.autocast(device.type, dtype=dtype) if dtype else contextlib.nullcontext()
    scaler = torch.amp.GradScaler("cuda", enabled=dtype == torch.float16)
    loader = torch.utils.data.DataLoader(
        data.train, batch_size=train.batch_size, sampler=_order(spec, len(data.train)),
        drop_last=True, num_workers=0, pin_memory=device.type == "cuda")
    running = torch.zeros((), dtype=torch.float64, device=device)
    stamps: list[tuple[float, float]] = []
    first_step_s = None
    for step, (images, labels) in enumerate(loader, start=1):
        start = time.perf_counter()
        images = images.to(device, non_blocking=True)
        labels = labels.to(device, non_blocking=True)
        if channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        for group in optimizer.param_groups:
            group["lr"] = train.lr * (1 - (step - 1) / train.iterations) ** train.power
        with autocast:
            loss = F.cross_entropy(forward(images)["out"], labels, ignore_index=255)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        running += loss.detach()
        if step == 1 and train.compile:
            float(running)
            first_step_s = time.perf_counter() - start
        if step % train.log_every == 0 or step == train.iterations:
            if not math.isfinite(float(running)):  # the read waits for the device
                raise RuntimeError(f"plain loop: loss not finite at step {step}")
            stamps.append(_stamp())
        if step == train.iterations:
            break
    wall, cpu = _window(stamps, spec)
    return Run(wall, list(data.train.seen), first_step_s, cpu)


@dataclass
class Pair:
    """Side-by-side runs of one setting: plain and trainer, alternating."""

    label: str
    plain: list[Run] = field(default_factory=list)
    trainer: list[Run] = field(default_factory=list)

    @property
    def ratio(self) -> float:
        return median(self.trainer) / median(self.plain)

    @property
    def cpu_ratio(self) -> float:
        """trainer / plain in images per CPU second of the process."""
        return median(self.trainer, "cpu") / median(self.plain, "cpu")

    def same_data(self) -> bool:
        return all(p.seen == t.seen for p, t in zip(self.plain, self.trainer, strict=True))


def median(runs: list[Run], clock: str = "wall") -> float:
    return statistics.median(r.images_per_second if clock == "wall" else
                             r.images_per_cpu_second for r in runs)


def compare(label: str, spec: TrialSpec, repeats: int) -> Pair:
    """``repeats`` runs of each loop, alternating which goes first."""
    pair = Pair(label)
    for repeat in range(repeats):
        for which in (("plain", "trainer") if repeat % 2 == 0 else ("trainer", "plain")):
            getattr(pair, which).append(plain(spec) if which == "plain" else trainer(spec))
    return pair


def settings(args) -> list[tuple[str, TrialSpec]]:
    rows = []
    precision = args.amp if args.device == "cuda" else "fp32"  # the CPU trains in float32
    for model in args.models:
        common = dict(size=args.size, batch=args.batch, steps=args.steps, warmup=args.warmup,
                      device=args.device, amp=args.amp, channels_last=args.channels_last)
        rows.append((f"{model} {precision}", spec_for(model, **common)))
        if args.compile:
            rows.append((f"{model} {precision} compile",
                         spec_for(model, compile=True, **common)))
        if args.deterministic:
            rows.append((f"{model} {precision} deterministic",
                         spec_for(model, deterministic=True, **common)))
    return rows


def device_line(device: str) -> str:
    if device != "cuda":
        return f"CPU: {describe(f'torch {torch.__version__}, threads {torch.get_num_threads()}')}"
    props = torch.cuda.get_device_properties(0)
    return (f"{props.name}, {props.total_memory / 2**30:.0f} GiB, CUDA {torch.version.cuda}, "
            f"cuDNN {torch.backends.cudnn.version()}, torch {torch.__version__}; host: "
            f"{describe()}")


def print_table(pairs: list[Pair]) -> None:
    print(f"\n{'setting':<28}{'plain img/s':>13}{'trainer img/s':>15}{'trainer/plain':>15}"
          f"{'same data':>11}   runs (plain | trainer)")
    for p in pairs:
        runs = (", ".join(f"{r.images_per_second:.1f}" for r in p.plain) + " | "
                + ", ".join(f"{r.images_per_second:.1f}" for r in p.trainer))
        print(f"{p.label:<28}{median(p.plain):13.1f}{median(p.trainer):15.1f}{p.ratio:15.3f}"
              f"{'yes' if p.same_data() else 'NO':>11}   {runs}")
        cpu = (", ".join(f"{r.images_per_cpu_second:.1f}" for r in p.plain) + " | "
               + ", ".join(f"{r.images_per_cpu_second:.1f}" for r in p.trainer))
        print(f"{'  per CPU second':<28}{median(p.plain, 'cpu'):13.1f}"
              f"{median(p.trainer, 'cpu'):15.1f}{p.cpu_ratio:15.3f}{'':>11}   {cpu}")
        first = [r.first_step_s for r in p.plain + p.trainer if r.first_step_s is not None]
        if first:
            print(f"{'':<28}first step (compiling): {', '.join(f'{s:.1f}' for s in first)} s")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=["cuda", "cpu"],
                        default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--models", nargs="+", choices=list(MODELS), default=list(MODELS))
    parser.add_argument("--size", type=at_least(1), default=513, help="image side (pixels)")
    parser.add_argument("--batch", type=at_least(1), default=8)
    parser.add_argument("--steps", type=at_least(2), default=60, help="steps per run, warm-up included")
    parser.add_argument("--warmup", type=at_least(1), default=10,
                        help="untimed steps; also the steps between loss reads")
    parser.add_argument("--amp", choices=["bf16", "fp16", "off"], default="bf16")
    parser.add_argument("--channels-last", default="auto", choices=["auto", "true", "false"])
    parser.add_argument("--repeats", type=at_least(1), default=3)
    parser.add_argument("--threads", type=at_least(0), default=0, help="torch threads (0: default)")
    parser.add_argument("--compile", action="store_true", help="add train.compile rows")
    parser.add_argument("--deterministic", action="store_true",
                        help="add rows with train.deterministic (ablate's default)")
    args = parser.parse_args(argv)
    if args.steps < 2 * args.warmup or args.steps % args.warmup:
        parser.error("--steps: a multiple of --warmup, at least twice it")
    args.channels_last = {"true": True, "false": False}.get(args.channels_last, "auto")
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"command: {shlex.join([Path(sys.executable).name, *sys.argv])}")
    print(f"device: {device_line(args.device)}")
    amp = args.amp if args.device == "cuda" else f"{args.amp} (CUDA only: the CPU trains in float32)"
    print(f"{args.size}x{args.size}, batch {args.batch}, SGD, amp {amp}, channels-last "
          f"{args.channels_last}, {args.steps} steps of which {args.warmup} warm-up, loss "
          f"read every {args.warmup}; {args.repeats} alternating runs per loop")
    start = time.perf_counter()
    pairs = []
    for label, spec in settings(args):
        pairs.append(compare(label, spec, args.repeats))
        print(f"  {label}: trainer/plain {pairs[-1].ratio:.3f}, per CPU second "
              f"{pairs[-1].cpu_ratio:.3f} ({time.perf_counter() - start:.0f} s)", flush=True)
    print_table(pairs)
    print(f"\ntotal {time.perf_counter() - start:.0f} s")
    return 0


def result_rows(pairs: list[Pair]) -> list[dict[str, Any]]:
    """The table as plain data (for bench/gpu_check.py's JSON)."""
    return [{"setting": p.label, "plain_ips": round(median(p.plain), 2),
             "trainer_ips": round(median(p.trainer), 2), "ratio": round(p.ratio, 4),
             "cpu_ratio": round(p.cpu_ratio, 4), "same_data": p.same_data(),
             "first_step_s": [r.first_step_s for r in p.plain + p.trainer
                              if r.first_step_s is not None]} for p in pairs]


if __name__ == "__main__":
    sys.exit(main())
