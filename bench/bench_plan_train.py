"""Benchmark: (a) `ablate plan` wall time, (b) ablate's trainer against a plain PyTorch loop.

Both loops train the same model on the same data with the same batch size, optimiser
and step count; they run alternately, several times, and the ratio of their median
images per second is printed. The first step of each run is a warm-up and not timed.

    .venv/bin/python bench/bench_plan_train.py [--steps 30] [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch.nn import functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from machine import at_least, describe  # noqa: E402

from ablate.data.build import build_datasets  # noqa: E402
from ablate.models.build import build_model  # noqa: E402
from ablate.recipes.loader import load_recipe  # noqa: E402
from ablate.train.events import Stepped  # noqa: E402
from ablate.train.loop import train_and_evaluate  # noqa: E402
from ablate.train.schedule import lr_at  # noqa: E402
from ablate.trials.expand import expand, parse_set  # noqa: E402
from ablate.trials.resolve import num_classes  # noqa: E402


def machine() -> str:
    return describe(f"torch {torch.__version__}, threads {torch.get_num_threads()}")

def time_plan() -> tuple[float, float]:
    """Cold (empty database: FLOPs counted) and warm (costs cached) `ablate plan`."""
    exe = str(Path(sys.executable).parent / "ablate")
    with tempfile.TemporaryDirectory() as tmp:
        db = str(Path(tmp) / "plan.db")
        subprocess.run([exe, "db", "upgrade", "--db", db], check=True, capture_output=True)
        times = []
        for _ in range(2):
            start = time.perf_counter()
            # cold: an empty per-user cost cache (a throwaway one), as well as database
            subprocess.run([exe, "plan", str(ROOT / "recipes/quickstart.toml"), "--db", db],
                           check=True, capture_output=True,
                           env={**os.environ, "ABLATE_CACHE_DIR": f"{tmp}/cache"})
            times.append(time.perf_counter() - start)
    return times[0], times[1]


def plain_loop(spec, steps: int) -> float:
    """The loop a researcher would write by hand; returns images per second."""
    torch.manual_seed(spec.seed)
    data = build_datasets(spec.data, seed=spec.seed)
    model = build_model(spec.model, num_classes(spec))
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=spec.train.lr,
                                  weight_decay=spec.train.weight_decay)
    loader = torch.utils.data.DataLoader(data.train, batch_size=spec.train.batch_size,
                                         shuffle=True, drop_last=True)
    step, start = 0, None
    while step < steps:
        for images, labels in loader:
            for group in optimizer.param_groups:
                group["lr"] = lr_at(step, steps, spec.train.lr)
            loss = F.cross_entropy(model(images)["out"], labels, ignore_index=255)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            step += 1
            if step == 1:
                start = time.perf_counter()  # first step is warm-up
            if step >= steps:
                break
    return (steps - 1) * spec.train.batch_size / (time.perf_counter() - start)


def ablate_trainer(spec, steps: int) -> float:
    stamps = []

    def progress(event):
        if isinstance(event, Stepped):
            stamps.append(time.perf_counter())

    with tempfile.TemporaryDirectory() as tmp:
        train_and_evaluate(spec, Path(tmp), progress)
    # stamps[0] is taken right after step 1 (warm-up), as in the plain loop
    return (steps - 1) * spec.train.batch_size / (stamps[-1] - stamps[0])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=at_least(1), default=30)
    parser.add_argument("--repeats", type=at_least(1), default=3)
    args = parser.parse_args()

    print(f"machine: {machine()}")
    cold, warm = time_plan()
    print(f"(a) ablate plan recipes/quickstart.toml: {cold:.2f} s cold (FLOPs counted), "
          f"{warm:.2f} s warm (costs cached in the database)")

    recipe = load_recipe(ROOT / "recipes/quickstart.toml")
    spec = expand(recipe, parse_set([
        f"train.iterations={args.steps}", "train.log_every=1", "eval.latency=false",
        "eval.every=1000", "data.val_images=8",
    ]))[0].spec  # all_expansions, last expansion kept: DeepLabV3+ on MobileNetV3-Large
    mine, plain = [], []
    for _ in range(args.repeats):  # alternate so that machine noise hits both alike
        plain.append(plain_loop(spec, args.steps))
        mine.append(ablate_trainer(spec, args.steps))
    p, m = statistics.median(plain), statistics.median(mine)
    print(f"(b) {spec.model.backbone} + {spec.model.head}, {spec.data.image_size}px, batch "
          f"{spec.train.batch_size}, {args.steps} steps x {args.repeats} alternating runs")
    print(f"    plain loop      {p:8.1f} img/s  (runs: {', '.join(f'{v:.1f}' for v in plain)})")
    print(f"    ablate trainer  {m:8.1f} img/s  (runs: {', '.join(f'{v:.1f}' for v in mine)})")
    print(f"    ratio trainer / plain = {m / p:.3f}  (target >= 0.95)")


if __name__ == "__main__":
    main()
