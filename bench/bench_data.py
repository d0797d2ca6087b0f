"""Benchmark: training throughput and the data-loading profile, ablate's trainer against a plain loop.

The model is the quick-start one (recipes/quickstart.toml: DeepLabV3+ on MobileNetV3-Large,
last expansion layer kept). It trains on

* a Pascal VOC 2012 folder written here in the real on-disk format (JPEG images, palette
  PNG labels, split files; tests/data/fixtures.py), read with ``data.name = voc2012``,
  random scale + ``data.crop_size`` crop, with ``data.cache`` off/on and ``data.workers``
  0 and 2;
* the embedded, in-memory ``shapes`` dataset of the quick-start recipe.

For each data setting, ablate's trainer (``train_and_evaluate``) and a hand-written PyTorch
loop train the same model on the same datasets (``build_datasets``), with the same batch
size, optimiser, DataLoader workers and step count. All settings and both loops run
alternately, ``--repeats`` times, so machine noise hits them alike; medians are printed.
The first step of every run is a warm-up and is not timed: images/s covers steps 2..N,
end to end, epoch boundaries included.

The trainer writes a checkpoint (model + optimiser, fsync'd) at every epoch end; a plain
loop does not. "excl. ckpt" is the trainer's throughput with the time spent inside
``save_checkpoint`` (measured here) taken out of the timed window. The trainer writes on
a background thread, so that time overlaps training: the column is an upper bound, and
"trainer/plain" is the figure to quote.

"data wait" is the share of the training time spent waiting for the next batch: the
trainer's own per-epoch ``data_wait_fraction``, weighted by epoch time; the plain loop
measures the same thing the same way.

``--cuda`` (with a GPU) adds trainer runs on the GPU with ``train.amp`` bf16/fp16 and
``train.channels_last`` against fp32, on ``shapes`` at ``--cuda-size`` pixels.

    .venv/bin/python bench/bench_data.py [--steps 8] [--repeats 2] [--threads 1] [--cuda]
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import shlex
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from machine import at_least, describe, hxw  # noqa: E402

import ablate.train.loop as loop_module  # noqa: E402
from ablate.data import shapes  # noqa: E402
from ablate.data.build import build_datasets  # noqa: E402
from ablate.models.build import build_model  # noqa: E402
from ablate.recipes.loader import load_recipe  # noqa: E402
from ablate.train.events import Stepped  # noqa: E402
from ablate.train.loop import train_and_evaluate  # noqa: E402
from ablate.train.schedule import lr_at  # noqa: E402
from ablate.trials.expand import expand, parse_set  # noqa: E402
from ablate.trials.resolve import num_classes  # noqa: E402
from tests.data.fixtures import write_voc  # noqa: E402

# the quick-start's full model: DeepLabV3+, every expansion conv and the last one kept
QUICKSTART_MODEL = {"head": "deeplabv3plus", "keep_last_expansion": True, "expansion": "all"}
COMMON = ["train.log_every=1", "eval.latency=false", "eval.every=1000"]


def machine() -> str:
    return describe(f"torch {torch.__version__}, threads {torch.get_num_threads()}")

# -- data ----------------------------------------------------------------------------------


def write_voc_dataset(root: Path, n_train: int, n_val: int, height: int, width: int) -> None:
    """VOCdevkit/VOC2012 with JPEGs and palette-PNG labels: a few class rectangles, 255 borders."""
    rng = np.random.default_rng(0)
    labels: dict[str, np.ndarray] = {}
    for index in range(n_train + n_val):
        label = np.zeros((height, width), dtype=np.uint8)
        for _ in range(int(rng.integers(1, 4))):
            h, w = int(rng.integers(height // 6, height // 2)), int(rng.integers(width // 6, width // 2))
            top, left = int(rng.integers(0, height - h)), int(rng.integers(0, width - w))
            label[top:top + h, left:left + w] = 255  # VOC's object border
            label[top + 2:top + h - 2, left + 2:left + w - 2] = int(rng.integers(1, 21))
        labels[f"2008_{index:06d}"] = label
    ids = list(labels)
    write_voc(root, labels, {"train": ids[:n_train], "val": ids[n_train:]})


def memoise_shapes() -> None:
    """Generate each ``shapes`` split once per process (its build is outside every timed
    window; this only saves wall time). The arrays are never written to."""
    shapes.generate = functools.lru_cache(maxsize=None)(shapes.generate)


def quickstart_spec(overrides: list[str]):
    recipe = load_recipe(ROOT / "recipes/quickstart.toml")
    for trial in expand(recipe, parse_set(COMMON + overrides)):
        if all(getattr(trial.spec.model, k) == v for k, v in QUICKSTART_MODEL.items()):
            return trial.spec
    raise SystemExit(f"recipes/quickstart.toml has no trial with model {QUICKSTART_MODEL}")


# -- the two loops -------------------------------------------------------------------------


class CheckpointClock:
    """Wraps the trainer's ``save_checkpoint`` to record when each write ran."""

    def __init__(self) -> None:
        self.spans: list[tuple[float, float]] = []
        self.bytes = 0

    @contextlib.contextmanager
    def installed(self):
        original = loop_module.save_checkpoint

        def timed(path, payload):
            start = time.perf_counter()
            original(path, payload)
            self.spans.append((start, time.perf_counter()))
            if Path(path).is_file():
                self.bytes = Path(path).stat().st_size

        loop_module.save_checkpoint = timed
        try:
            yield self
        finally:
            loop_module.save_checkpoint = original

    def seconds_within(self, start: float, end: float) -> float:
        return sum(b - a for a, b in self.spans if a >= start and b <= end)


def ablate_trainer(spec, steps: int) -> dict[str, float]:
    stamps: list[float] = []

    def progress(event):
        if isinstance(event, Stepped):
            stamps.append(time.perf_counter())

    clock = CheckpointClock()
    with tempfile.TemporaryDirectory() as tmp, clock.installed():
        result = train_and_evaluate(spec, Path(tmp), progress)
    # stamps[0] is taken right after step 1 (warm-up), as in the plain loop
    window = stamps[-1] - stamps[0]
    ckpt = clock.seconds_within(stamps[0], stamps[-1])
    images = (steps - 1) * spec.train.batch_size
    epochs = [e["metrics"] for e in result["epochs"]]
    seconds = sum(m["epoch_seconds"] for m in epochs)
    wait = sum(m["data_wait_fraction"] * m["epoch_seconds"] for m in epochs) / seconds
    return {"ips": images / window, "ips_no_ckpt": images / (window - ckpt), "wait": wait,
            "ckpt_s": ckpt, "ckpt_mb": clock.bytes / 1e6}


def plain_loop(spec, steps: int, device: str = "cpu") -> dict[str, float]:
    """The loop a researcher would write by hand, on the same datasets and DataLoader workers."""
    torch.manual_seed(spec.seed)
    data = build_datasets(spec.data, seed=spec.seed)
    model = build_model(spec.model, num_classes(spec)).to(device)
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=spec.train.lr,
                                  weight_decay=spec.train.weight_decay)
    workers = 0 if spec.data.workers == "auto" and spec.data.name == "shapes" else spec.data.workers
    if workers == "auto":
        raise SystemExit("plain_loop: set data.workers explicitly")
    loader = torch.utils.data.DataLoader(
        data.train, batch_size=spec.train.batch_size, shuffle=True, drop_last=True,
        num_workers=workers, persistent_workers=workers > 0, pin_memory=device == "cuda")
    step, start, wait = 0, None, 0.0
    loop_start = time.perf_counter()
    while step < steps:
        fetch = time.perf_counter()
        for images, labels in loader:
            wait += time.perf_counter() - fetch
            images = images.to(device, non_blocking=True)
            labels = labels.to(device, non_blocking=True)
            for group in optimizer.param_groups:
                group["lr"] = lr_at(step, steps, spec.train.lr)
            loss = F.cross_entropy(model(images)["out"], labels, ignore_index=255)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            step += 1
            if step == 1:
                loss.item()  # first step is warm-up (and waits for the GPU)
                start = time.perf_counter()
            if step >= steps:
                break
            fetch = time.perf_counter()
    if device == "cuda":
        torch.cuda.synchronize()
    end = time.perf_counter()
    return {"ips": (steps - 1) * spec.train.batch_size / (end - start),
            "wait": wait / (end - loop_start)}


# -- reporting -----------------------------------------------------------------------------


def med(runs: list[dict[str, float]], key: str) -> float:
    return statistics.median(r[key] for r in runs)


def runs_text(runs: list[dict[str, float]], key: str = "ips") -> str:
    return ", ".join(f"{r[key]:.2f}" for r in runs)


def cpu_section(args) -> None:
    tmp = tempfile.TemporaryDirectory(prefix="bench_data_voc_")
    root = Path(tmp.name)
    height, width = args.image_size
    start = time.perf_counter()
    write_voc_dataset(root, args.train_images, 4, height, width)
    print(f"VOC-format data: {args.train_images} train + 4 val images, {height}x{width} "
          f"(JPEG + palette PNG), written in {time.perf_counter() - start:.1f} s to {root}")

    voc = ["data.name=voc2012", f'data.root="{root}"', f"data.crop_size={args.crop}",
           "data.eval_size=[64, 64]", f"train.iterations={args.steps}"]
    settings = []  # (label, spec)
    for cache in (False, True):
        for workers in (0, 2):
            spec = quickstart_spec(voc + [f"data.cache={str(cache).lower()}",
                                          f"data.workers={workers}"])
            settings.append((f"voc2012 cache={'on ' if cache else 'off'} workers={workers}", spec))
    shapes_spec = quickstart_spec([f"train.iterations={args.steps}", "data.val_images=8"])
    settings.append(("shapes in memory, workers=auto (0)", shapes_spec))

    spec0 = settings[0][1]
    print(f"\n(a) CPU: {spec0.model.backbone} + {spec0.model.head} (last expansion kept), batch "
          f"{spec0.train.batch_size}, {spec0.train.optimizer}, {args.steps} steps (step 1 = warm-up, "
          f"untimed) x {args.repeats} alternating runs; voc2012: {height}x{width} -> random "
          f"scale {spec0.data.scale_range} -> crop {args.crop}, {num_classes(spec0)} classes; "
          f"shapes: {shapes_spec.data.image_size}px, {shapes_spec.data.train_images} images, "
          f"{num_classes(shapes_spec)} classes")
    steps_per_epoch = args.train_images // spec0.train.batch_size
    boundaries = (args.steps - 1) // steps_per_epoch
    print(f"    voc2012: {steps_per_epoch} steps per epoch, so {boundaries} epoch ends (trainer "
          f"checkpoints) fall inside the timed window; shapes: "
          f"{(args.steps - 1) // (shapes_spec.data.train_images // shapes_spec.train.batch_size)}")

    results: dict[str, dict[str, list]] = {label: {"plain": [], "trainer": []}
                                           for label, _ in settings}
    wall = time.perf_counter()
    for repeat in range(args.repeats):
        for label, spec in settings:
            order = ("plain", "trainer") if repeat % 2 == 0 else ("trainer", "plain")
            for which in order:
                if which == "plain":
                    results[label]["plain"].append(plain_loop(spec, args.steps))
                else:
                    results[label]["trainer"].append(ablate_trainer(spec, args.steps))
        print(f"    ... repeat {repeat + 1}/{args.repeats} done ({time.perf_counter() - wall:.0f} s)",
              flush=True)
    tmp.cleanup()

    print(f"\n    {'setting':<36}{'plain':>8}{'trainer':>9}{'trainer/':>10}{'excl.':>8}"
          f"{'data wait':>11}{'data wait':>11}")
    print(f"    {'':<36}{'img/s':>8}{'img/s':>9}{'plain':>10}{'ckpt':>8}{'trainer':>11}"
          f"{'plain':>11}")
    for label, _ in settings:
        p, t = results[label]["plain"], results[label]["trainer"]
        print(f"    {label:<36}{med(p, 'ips'):8.2f}{med(t, 'ips'):9.2f}"
              f"{med(t, 'ips') / med(p, 'ips'):10.3f}{med(t, 'ips_no_ckpt') / med(p, 'ips'):8.3f}"
              f"{med(t, 'wait'):11.1%}{med(p, 'wait'):11.1%}")
    print("    runs, img/s (plain | trainer | trainer excl. ckpt):")
    for label, _ in settings:
        p, t = results[label]["plain"], results[label]["trainer"]
        print(f"      {label:<36}{runs_text(p)} | {runs_text(t)} | {runs_text(t, 'ips_no_ckpt')}")
    ckpt = [r for label, _ in settings for r in results[label]["trainer"] if r["ckpt_s"] > 0]
    if ckpt:
        per = statistics.median(r["ckpt_s"] / boundaries for r in ckpt)
        print(f"    trainer checkpoint: {ckpt[0]['ckpt_mb']:.0f} MB, median {per:.2f} s per "
              f"epoch end")
    parts = []
    for workers in (0, 2):
        on = results[f"voc2012 cache=on  workers={workers}"]
        off = results[f"voc2012 cache=off workers={workers}"]
        parts.append(f"workers {workers}: plain "
                     f"{med(on['plain'], 'ips') / med(off['plain'], 'ips'):.3f}, trainer excl. ckpt "
                     f"{med(on['trainer'], 'ips_no_ckpt') / med(off['trainer'], 'ips_no_ckpt'):.3f}")
    print(f"    img/s cache on / off: {'; '.join(parts)}")


def cuda_section(args, device: str = "cuda") -> None:
    if device == "cuda" and not torch.cuda.is_available():
        print("\n(b) GPU: skipped (--cuda given, but torch sees no CUDA device): no AMP "
              "(bf16/fp16) or channels-last rows")
        return
    name = torch.cuda.get_device_name() if device == "cuda" else "cpu (smoke test)"
    batch, size, steps = args.cuda_batch, args.cuda_size, args.cuda_steps
    base = [f"train.device={device}", f"train.iterations={steps}", f"train.batch_size={batch}",
            f"data.image_size={size}", f"data.train_images={batch * (steps + 2)}",
            "data.val_images=16"]
    configs = [("fp32", "off", "false"), ("fp32 + channels_last", "off", "true"),
               ("bf16", "bf16", "false"), ("bf16 + channels_last", "bf16", "true"),
               ("fp16", "fp16", "false"), ("fp16 + channels_last", "fp16", "true")]
    if device == "cuda" and not torch.cuda.is_bf16_supported():
        configs = [c for c in configs if c[1] != "bf16"]
        print("    (bf16 rows skipped: this GPU does not support bf16)")
    specs = [(label, quickstart_spec(base + [f"train.amp={amp}", f"train.channels_last={cl}"]))
             for label, amp, cl in configs]
    print(f"\n(b) GPU {name}: trainer on shapes {size}px, batch {batch}, {steps} steps (step 1 = "
          f"warm-up) x {args.repeats} alternating runs, one epoch (no checkpoint in the window)")
    if device == "cuda":
        torch.backends.cudnn.benchmark = True  # as the trainer sets it, for the plain loop too
    runs: dict[str, list] = {label: [] for label, _ in specs}
    plain: list = []
    for repeat in range(args.repeats):
        order = [("plain", specs[0][1])] + specs
        for label, spec in order if repeat % 2 == 0 else order[::-1]:
            if label == "plain":
                plain.append(plain_loop(spec, steps, device))
            else:
                runs[label].append(ablate_trainer(spec, steps))
    fp32 = med(runs["fp32"], "ips")
    print(f"    {'plain loop, fp32':<30}{med(plain, 'ips'):9.1f} img/s  (runs: {runs_text(plain, 'ips')})")
    for label, _ in specs:
        r = runs[label]
        print(f"    {'trainer, ' + label:<30}{med(r, 'ips'):9.1f} img/s  x{med(r, 'ips') / fp32:.2f} "
              f"vs fp32  data wait {med(r, 'wait'):.1%}  (runs: {runs_text(r)})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=8, help="steps per run, first is warm-up")
    parser.add_argument("--repeats", type=at_least(1), default=2)
    parser.add_argument("--threads", type=at_least(1), default=1,
                        help="torch intra-op threads for the training process (0: torch's default)")
    parser.add_argument("--image-size", type=hxw, default="375x500", help="VOC images, HxW")
    parser.add_argument("--train-images", type=at_least(1), default=24, help="VOC training images")
    parser.add_argument("--crop", type=at_least(1), default=64, help="data.crop_size")
    parser.add_argument("--cuda", action="store_true", help="also time AMP / channels-last on a GPU")
    parser.add_argument("--cuda-size", type=at_least(1), default=256)
    parser.add_argument("--cuda-batch", type=at_least(1), default=16)
    parser.add_argument("--cuda-steps", type=at_least(2), default=50)
    parser.add_argument("--no-cpu", action="store_true", help="skip the CPU rows (with --cuda)")
    args = parser.parse_args()
    if args.steps < 2:
        parser.error("--steps: at least 2 (the first is a warm-up)")

    default_threads = torch.get_num_threads()
    if args.threads:
        torch.set_num_threads(args.threads)
    memoise_shapes()
    print(f"command: {shlex.join([Path(sys.executable).name, *sys.argv])}")
    print(f"machine: {machine()} (torch's default here: {default_threads} threads)")
    start = time.perf_counter()
    if not args.no_cpu:
        cpu_section(args)
    if args.cuda:
        cuda_section(args)
    else:
        print("\n(b) GPU rows (AMP bf16/fp16, channels-last vs fp32): not run (pass --cuda)")
    print(f"\ntotal {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
