"""Checks of bench/gpu_check.py for training at the GPU's speed (run apart from the
acceptance run, they take longer):

    .venv/bin/python bench/gpu_check.py --only train_throughput data_pipeline trials_per_gpu \\
        --total-budget 600 --out results/gpu_throughput.json
    .venv/bin/python bench/gpu_check.py --only train_compile --out results/gpu_compile.json

- ``train_throughput``: ablate's trainer against a plain loop (bench/bench_train_gpu.py),
  quick-start model and DeepLabV3+ ResNet-50 at 513x513, batch 8, bf16, channels-last:
  trainer/plain must be at least ``TRAINER_GOAL`` for both, from the same data.
- ``train_compile``: the trainer with ``train.compile`` against without, quick-start at
  513x513: images per second after the first step, and the first step (compiling) apart.
- ``data_pipeline``: the input pipeline alone (bench/bench_pipeline.py: VOC-format JPEG and
  PNG files at 500x375, crop 513, the trainer's loader with the workers ``auto`` picks,
  pinned memory, copied to the GPU) against the trainer's step rate on the quick-start
  model at 513x513: at least ``PIPELINE_GOAL`` times it, else the bottleneck is stated.
- ``trials_per_gpu``: 8 quick-start trials (recipes/quickstart.toml, seeds 0 and 1) by
  ``ablate run --trials-per-gpu K`` on GPU 0 for K = 1, 2, 4: trials per hour, each
  trial's neighbours and how its latency was timed.

``--cpu`` runs each at tiny sizes (trials_per_gpu on one fake GPU), train_compile excepted.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from check_outcomes import Fail, Skip

ROOT = Path(__file__).resolve().parents[1]
TRAINER_GOAL = 0.95
PIPELINE_GOAL = 1.2


def _cuda(cpu: bool) -> None:
    """A GPU unless ``cpu``; on the CPU one thread (a shared 2-core machine crawls with
    more: each op waits for both threads to be scheduled)."""
    import torch

    if cpu:
        torch.set_num_threads(1)
    elif not torch.cuda.is_available():
        raise Fail("no CUDA device visible; use --cpu for the dry mode")


def _sizes(cpu: bool) -> dict[str, Any]:
    if cpu:
        return dict(size=32, batch=2, steps=4, warmup=2, device="cpu")
    return dict(size=513, batch=8, steps=40, warmup=10, device="cuda")


def check_train_throughput(cpu: bool, work: Path) -> dict[str, Any]:
    import bench_train_gpu as bench

    _cuda(cpu)
    models = ["quickstart"] if cpu else ["quickstart", "resnet50"]
    pairs = [bench.compare(f"{m} bf16", bench.spec_for(m, amp="bf16", **_sizes(cpu)),
                           1 if cpu else 2) for m in models]
    rows = bench.result_rows(pairs)
    figures = {"rows": rows, "device": bench.device_line("cpu" if cpu else "cuda")}
    text = "; ".join(f"{r['setting']} trainer {r['trainer_ips']:.1f} vs plain "
                     f"{r['plain_ips']:.1f} img/s ({r['ratio']:.3f})" for r in rows)
    if not all(r["same_data"] for r in rows):
        raise Fail(f"the loops read different images: {text}")
    low = [r for r in rows if r["ratio"] < TRAINER_GOAL]
    if low and not cpu:  # on the CPU the ratio is reported, the goal is the GPU's
        raise Fail(f"trainer/plain below {TRAINER_GOAL}: {text}")
    return {"summary": text, **figures}


def check_train_compile(cpu: bool, work: Path) -> dict[str, Any]:
    import bench_train_gpu as bench

    if cpu:
        raise Skip("--cpu: inductor compiles the training graph for minutes on a small CPU "
                   "(bench/bench_train_gpu.py --compile measures it)")
    _cuda(cpu)
    sizes = _sizes(cpu)
    eager = bench.trainer(bench.spec_for("quickstart", **sizes))
    compiled = bench.trainer(bench.spec_for("quickstart", compile=True, **sizes))
    ratio = compiled.images_per_second / eager.images_per_second
    return {"summary": f"quick-start 513x513 bf16: compiled {compiled.images_per_second:.1f} "
                       f"vs eager {eager.images_per_second:.1f} img/s (x{ratio:.2f}); first "
                       f"step {compiled.first_step_s:.1f} s compiling",
            "eager_ips": eager.images_per_second, "compiled_ips": compiled.images_per_second,
            "ratio": ratio, "first_step_s": compiled.first_step_s}


def check_data_pipeline(cpu: bool, work: Path) -> dict[str, Any]:
    import bench_pipeline as pipeline
    import bench_train_gpu as bench

    _cuda(cpu)
    sizes = _sizes(cpu)
    root = work / "voc"
    pipeline.write_voc(root, distinct=4 if cpu else 32, images=40 if cpu else 480)
    crop, batch = (64, 2) if cpu else (513, 8)
    device = "cpu" if cpu else "cuda"
    batches = 3 if cpu else 30
    auto = pipeline.pipeline_rate(root, "auto", batches, batch, crop, device)
    one = pipeline.pipeline_rate(root, 1, batches, batch, crop, device)
    step = bench.trainer(bench.spec_for("quickstart", amp="bf16", **sizes))
    ratio = auto["images_per_second"] / step.images_per_second
    figures = {"pipeline_ips": auto["images_per_second"], "workers": auto["workers"],
               "one_worker_ips": one["images_per_second"], "pin_memory": auto["pin_memory"],
               "train_ips": step.images_per_second, "ratio": ratio,
               "decode_ms": pipeline.decode_ms(root), "cpus": len(os.sched_getaffinity(0))}
    text = (f"crop {crop}: pipeline {auto['images_per_second']:.0f} img/s with "
            f"{auto['workers']} worker(s) (1 worker: {one['images_per_second']:.0f}) vs "
            f"training {step.images_per_second:.0f} img/s: x{ratio:.2f}")
    if ratio < PIPELINE_GOAL and not cpu:
        need = PIPELINE_GOAL * step.images_per_second / max(one["images_per_second"], 1e-9)
        raise Fail(f"bottleneck: the input pipeline; {text}; about {need:.0f} workers at "
                   f"the one-worker rate would keep up")
    return {"summary": text, **figures}


TRIALS_RECIPE_SEEDS = "seeds = [0, 1]"


def _study(cpu: bool, work: Path, k: int, gpu_env: dict[str, str]) -> dict[str, Any]:
    """One ``ablate run --trials-per-gpu k`` of the 8-trial study; its trials per hour."""
    from ablate.store import Store

    text = (ROOT / "recipes" / "quickstart.toml").read_text()
    name = f"quickstart_k{k}"
    text = text.replace('name = "quickstart"', f'name = "{name}"')
    text = text.replace("seeds = [0, 1, 2]", TRIALS_RECIPE_SEEDS)
    if cpu:  # tiny: 2 trials (one variant, one seed), 1 epoch of 16 images at 32 px
        text = (text.replace(TRIALS_RECIPE_SEEDS, "seeds = [0]")
                .replace("image_size = 64", "image_size = 32")
                .replace("train_images = 192", "train_images = 16")
                .replace("val_images = 48", "val_images = 8\nworkers = 0")
                .replace("epochs = 3", "epochs = 1"))
    recipe = work / f"{name}.toml"
    recipe.write_text(text)
    db = work / f"{name}.db"
    env = {**os.environ, **gpu_env, "PYTHONPATH": os.pathsep.join(
        [str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])}
    command = [sys.executable, "-m", "ablate", "run", str(recipe), "--db", str(db),
               "--runs-dir", str(work / f"runs_{k}"), "--trials-per-gpu", str(k)]
    command += ["--variant", "all_expansions"] if cpu else ["--gpus", "0"]
    proc = subprocess.run(command, capture_output=True, text=True, env=env, cwd=work,
                          timeout=600)
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()
        raise Fail(f"ablate run --trials-per-gpu {k} exited {proc.returncode}: "
                   f"{tail[-1] if tail else ''}")
    records = Store(f"sqlite:///{db}").trials(name)
    if any(r.status != "done" for r in records):
        raise Fail(f"--trials-per-gpu {k}: {sum(r.status == 'done' for r in records)} of "
                   f"{len(records)} trials done")
    start = min(r.started_at for r in records)
    span = (max(r.finished_at for r in records) - start).total_seconds()
    sharing = [r.environment.get("sharing") or {} for r in records]
    return {"k": k, "trials": len(records), "seconds": round(span, 1),
            "trials_per_hour": round(len(records) * 3600 / span, 1),
            "most_neighbours": max((len(s.get("shared_with", [])) for s in sharing), default=0),
            "latency": sorted({s.get("latency", "own device") for s in sharing}),
            "published_latency": sum("latency_ms" in r.metrics for r in records),
            "mode": sorted({s.get("mode", "-") for s in sharing})}


def check_trials_per_gpu(cpu: bool, work: Path) -> dict[str, Any]:
    from ablate.dispatch.gpus import FAKE_GPUS_ENV

    _cuda(cpu)
    gpu_env = {FAKE_GPUS_ENV: "cpu stand-in", "OMP_NUM_THREADS": "1"} if cpu else {}
    runs = [_study(cpu, work, k, gpu_env) for k in ((2,) if cpu else (1, 2, 4))]
    if any(r["k"] > 1 and r["most_neighbours"] == 0 for r in runs):
        raise Fail(f"no trial recorded a neighbour: {runs}")
    withheld = [r for r in runs if r["published_latency"] < r["trials"]]
    text = ", ".join(f"K={r['k']}: {r['trials_per_hour']:.0f} trials/h ({r['trials']} in "
                     f"{r['seconds']:.0f} s)" for r in runs)
    if withheld:
        text += f"; latency withheld in {len(withheld)} run(s)"
    return {"summary": text, "runs": runs}


CHECKS = {
    "train_throughput": (check_train_throughput, 150),
    "data_pipeline": (check_data_pipeline, 120),
    "trials_per_gpu": (check_trials_per_gpu, 330),
    "train_compile": (check_train_compile, 300),
}

