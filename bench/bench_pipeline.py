"""Benchmark: the training input pipeline alone, images per second, as the trainer builds it.

A Pascal VOC 2012 folder is written here in the real format at VOC's sizes: ``--distinct``
photo-like JPEGs of 500x375 (smooth colour fields, shapes and sensor noise, quality 90:
about VOC's file sizes) with palette-PNG labels (classes 1-20, 255 borders); the split
file lists them ``--images`` times over, so an epoch is long enough to reach a steady
state without writing thousands of files. The pipeline is the trainer's own
(``ablate.train.loop.make_loaders`` on ``build_datasets``): decode (PIL), random scale
[0.5, 2.0], random crop ``--crop`` padded with the ignore label, flip, normalise, collate,
and on CUDA pinned memory and the copy to the device (synchronised). Nothing trains.

Timing: the first ``2 x workers + 2`` batches are untimed (workers start, their prefetched
stock is drawn down); the clock runs over the next ``--batches``. With 0 workers the rate
per CPU second of the loading process is printed too: the pipeline's cost, which a
shared, loaded machine does not change as it changes wall time. Rows: workers 0, 1, 2
and what ``data.workers = "auto"`` picks here. With ``--before REV`` the same rows run
against the code of git revision REV too (extracted to a temporary folder), alternating,
so before and after print side by side. Per-image decode times (PIL, torchvision.io) are
printed as well.

    .venv/bin/python bench/bench_pipeline.py [--before REV] [--repeats 3] [--workers 0 1 2 auto]
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
TREE_ENV = "BENCH_ABLATE_TREE"  # a child timing another revision's ablate
if TREE_ENV not in os.environ:
    sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from machine import at_least, describe, extract, user_error  # noqa: E402

VOC_SIZE = (375, 500)  # height, width: VOC's most common image size


# -- the data ------------------------------------------------------------------------------

def photo(rng: np.random.Generator, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """A photo-like image (smooth colour field, a few shapes, noise) and its label."""
    from PIL import Image

    coarse = rng.integers(0, 256, (6, 8, 3), dtype=np.uint8)
    field = np.asarray(Image.fromarray(coarse).resize((width, height), Image.BICUBIC),
                       dtype=np.float32)
    label = np.zeros((height, width), dtype=np.uint8)
    yy, xx = np.mgrid[0:height, 0:width]
    for _ in range(int(rng.integers(1, 4))):
        cy, cx = rng.integers(0, height), rng.integers(0, width)
        ry, rx = rng.integers(height // 10, height // 3), rng.integers(width // 10, width // 3)
        inside = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1
        edge = inside & ~(((yy - cy) / max(ry - 3, 1)) ** 2 + ((xx - cx) / max(rx - 3, 1)) ** 2 <= 1)
        field[inside] = field[inside] * 0.5 + rng.integers(0, 256, 3) * 0.5
        label[inside] = int(rng.integers(1, 21))
        label[edge] = 255  # VOC's object border
    field += rng.normal(0, 10, field.shape)
    return np.clip(field, 0, 255).astype(np.uint8), label


def write_voc(root: Path, distinct: int, images: int, seed: int = 0) -> None:
    """VOCdevkit/VOC2012: ``distinct`` JPEG + palette PNG pairs; train.txt lists
    ``images`` ids (the distinct ones, repeated), val.txt the first four."""
    from PIL import Image

    sys.path.insert(0, str(ROOT))
    from tests.data.fixtures import write_palette_png

    base = root / "VOCdevkit" / "VOC2012"
    (base / "JPEGImages").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    ids = [f"2008_{i:06d}" for i in range(distinct)]
    for image_id in ids:
        image, label = photo(rng, *VOC_SIZE)
        Image.fromarray(image).save(base / "JPEGImages" / f"{image_id}.jpg", quality=90)
        write_palette_png(base / "SegmentationClass" / f"{image_id}.png", label)
    splits = base / "ImageSets" / "Segmentation"
    splits.mkdir(parents=True, exist_ok=True)
    (splits / "train.txt").write_text("".join(f"{ids[i % distinct]}\n" for i in range(images)))
    (splits / "val.txt").write_text("".join(f"{i}\n" for i in ids[:4]))


# -- one measurement (also what a child process for --before runs) --------------------------

def pipeline_rate(root: Path, workers: int | str, batches: int, batch: int, crop: int,
                  device: str = "cpu", threads: int = 1) -> dict[str, Any]:
    """Images per second of the trainer's training loader over ``batches`` timed batches."""
    import torch

    import ablate.train.loop as loop
    from ablate.data.build import build_datasets, loader_options
    from ablate.recipes.schema import TrialSpec

    torch.set_num_threads(threads)
    spec = TrialSpec.model_validate({
        "data": {"name": "voc2012", "root": str(root), "crop_size": crop, "workers": workers},
        "train": {"batch_size": batch, "iterations": 1, "device": device}, "seed": 0})
    dev = torch.device(device)
    data = build_datasets(spec.data, seed=0)
    _, loader, _ = loop.make_loaders(spec, data, dev, 0, 1)
    picked = loader_options(spec.data, device)["num_workers"]
    warm = 2 * picked + 2
    if len(loader.batch_sampler) < warm + batches:
        raise SystemExit(f"--images: {len(data.train)} images make "
                         f"{len(loader.batch_sampler)} batches, need {warm + batches}")
    shapes, start, count = set(), None, 0
    for n, (images, labels) in enumerate(loader):
        if dev.type == "cuda":
            images = images.to(dev, non_blocking=True)
            labels = labels.to(dev, non_blocking=True)
        if n == warm - 1:
            if dev.type == "cuda":
                torch.cuda.synchronize()
            start, cpu_start = time.perf_counter(), time.process_time()
        elif n >= warm:
            shapes.add((tuple(images.shape), str(images.dtype), tuple(labels.shape)))
            count += images.shape[0]
            if n == warm + batches - 1:
                break
    if dev.type == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    cpu_seconds = time.process_time() - cpu_start
    del loader  # stops persistent workers
    # with 0 workers every sample is prepared in this process: images per CPU second is
    # the pipeline's cost, whatever else the machine runs (wall time is not, when shared)
    return {"workers": picked, "images": count, "seconds": seconds,
            "images_per_second": count / seconds,
            "images_per_cpu_second": count / cpu_seconds if picked == 0 else None,
            "batch_shapes": sorted(shapes),
            "pin_memory": loader_options(spec.data, device)["pin_memory"]}


def decode_ms(root: Path, repeats: int = 20) -> dict[str, float]:
    """Milliseconds to decode one VOC JPEG and its label: PIL (what ablate reads with)
    and torchvision.io."""
    from ablate.data import voc

    base = root / "VOCdevkit" / "VOC2012"
    image, label = sorted((base / "JPEGImages").iterdir())[0], sorted(
        (base / "SegmentationClass").iterdir())[0]
    out: dict[str, float] = {}

    def timed(name: str, call) -> None:
        call()
        start = time.perf_counter()
        for _ in range(repeats):
            call()
        out[name] = (time.perf_counter() - start) / repeats * 1000

    timed("PIL jpeg", lambda: voc.read_rgb(str(image)))
    timed("PIL png", lambda: voc.read_palette_label(str(label)))
    try:
        from torchvision.io import decode_jpeg, decode_png, read_file
    except ImportError:
        return out
    timed("torchvision.io jpeg", lambda: decode_jpeg(read_file(str(image))))
    timed("torchvision.io png", lambda: decode_png(read_file(str(label))))
    return out


# -- side by side -----------------------------------------------------------------------------

def measure(tree: Path | None, root: Path, workers: int | str, args) -> dict[str, Any]:
    """One row: in this process (the current code) or a child on another tree."""
    if tree is None:
        return pipeline_rate(root, workers, args.batches, args.batch, args.crop, args.device,
                             args.threads)
    env = {**os.environ, "PYTHONPATH": str(tree), TREE_ENV: str(tree)}
    command = [sys.executable, str(Path(__file__).resolve()), "--child", str(root),
               "--workers", str(workers), "--batches", str(args.batches), "--batch",
               str(args.batch), "--crop", str(args.crop), "--device", args.device,
               "--threads", str(args.threads)]
    out = subprocess.run(command, capture_output=True, text=True, env=env)
    if out.returncode != 0:  # its own one-line error (--images too few...), not a traceback
        raise SystemExit(f"{tree}: {(out.stderr.strip().splitlines() or ['no output'])[-1]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def _workers(text: str) -> int | str:
    """An argparse type: a worker count of 0 or more, or ``auto``."""
    return text if text == "auto" else at_least(0)(text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", nargs="+", type=_workers,
                        default=["0", "1", "2", "auto"], help="worker counts (0: none) or auto")
    parser.add_argument("--batches", type=at_least(1), default=12, help="timed batches per row")
    parser.add_argument("--batch", type=at_least(1), default=8)
    parser.add_argument("--crop", type=at_least(1), default=513)
    parser.add_argument("--distinct", type=at_least(1), default=32, help="distinct image files")
    parser.add_argument("--images", type=at_least(1), default=400, help="training-set length")
    parser.add_argument("--repeats", type=at_least(1), default=2)
    parser.add_argument("--threads", type=at_least(1), default=1,
                        help="torch threads in the loading process (workers use 1)")
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu",
                        help="cuda: pinned memory and the copy to the device, as the trainer")
    parser.add_argument("--before", metavar="REV", help="also time git revision REV")
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    workers = [w if w == "auto" else int(w) for w in args.workers]
    if args.child:
        print(json.dumps(pipeline_rate(args.child, workers[0], args.batches, args.batch,
                                       args.crop, args.device, args.threads)))
        return 0
    import torch

    print(f"command: {shlex.join([Path(sys.executable).name, *sys.argv])}")
    print(f"machine: {describe(f'torch {torch.__version__}')}; loading process: "
          f"{args.threads} torch thread(s)")
    with tempfile.TemporaryDirectory(prefix="bench_pipeline_") as tmp:
        root = Path(tmp) / "voc"
        start = time.perf_counter()
        write_voc(root, args.distinct, args.images)
        size = sum(p.stat().st_size for p in (root / "VOCdevkit/VOC2012/JPEGImages").iterdir())
        print(f"VOC folder: {args.distinct} JPEGs {VOC_SIZE[1]}x{VOC_SIZE[0]} (mean "
              f"{size / args.distinct / 1000:.0f} kB) + palette PNGs, train.txt lists "
              f"{args.images}; written in {time.perf_counter() - start:.1f} s")
        print("decode, ms per file: " + ", ".join(
            f"{k} {v:.2f}" for k, v in decode_ms(root).items()))
        trees: list[tuple[str, Path | None]] = [("now", None)]
        if args.before:
            trees.insert(0, (args.before, extract(args.before, Path(tmp) / "before")))
        print(f"crop {args.crop}, batch {args.batch}, {args.batches} timed batches per row, "
              f"{args.repeats} alternating repeats, device {args.device}")
        rows: dict[tuple[str, Any], list[dict]] = {}
        for repeat in range(args.repeats):
            order = trees if repeat % 2 == 0 else trees[::-1]
            for w in workers:
                for name, tree in order:
                    rows.setdefault((name, w), []).append(measure(tree, root, w, args))
            print(f"  repeat {repeat + 1}/{args.repeats} ({time.perf_counter() - start:.0f} s)",
                  flush=True)
    print(f"\n{'workers':<14}" + "".join(f"{name + ' img/s':>16}" for name, _ in trees)
          + ("   now/before" if args.before else "") + "   runs")
    for w in workers:
        medians = [statistics.median(r["images_per_second"] for r in rows[(n, w)])
                   for n, _ in trees]
        picked = rows[(trees[-1][0], w)][0]["workers"]
        label = f"auto ({picked})" if w == "auto" else str(w)
        runs = " | ".join(", ".join(f"{r['images_per_second']:.1f}" for r in rows[(n, w)])
                          for n, _ in trees)
        ratio = f"{medians[-1] / medians[0]:13.2f}" if args.before else ""
        print(f"{label:<14}" + "".join(f"{m:16.1f}" for m in medians) + ratio + f"   {runs}")
        if picked == 0:  # the same rows per CPU second of the one process doing the work
            cpu = [statistics.median(r["images_per_cpu_second"] for r in rows[(n, w)])
                   for n, _ in trees]
            ratio = f"{cpu[-1] / cpu[0]:13.2f}" if args.before else ""
            runs = " | ".join(", ".join(f"{r['images_per_cpu_second']:.1f}"
                                        for r in rows[(n, w)]) for n, _ in trees)
            print(f"{label + ' per CPU s':<14}" + "".join(f"{m:16.1f}" for m in cpu) + ratio
                  + f"   {runs}")
    return 0


def _refused(exc: BaseException) -> str | None:
    """The one line of a refusal in words: the bench's own (``--images`` too few) or
    ablate's (a batch larger than the training set); None for anything else."""
    if isinstance(exc, SystemExit):
        return exc.code if isinstance(exc.code, str) else None
    from ablate.errors import UserInputError

    return user_error(exc) if isinstance(exc, UserInputError) else None


if __name__ == "__main__":
    try:
        sys.exit(main())
    except (SystemExit, Exception) as exc:  # a refusal: one line, exit 2, as argparse's
        line = _refused(exc)
        if line is None:
            raise
        print(f"{Path(sys.argv[0]).name}: error: {line}", file=sys.stderr)
        sys.exit(2)
