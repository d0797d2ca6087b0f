"""GPU acceptance run: what ablate promises on CUDA, checked in one command.

    .venv/bin/python bench/gpu_check.py --out gpu.json        # a GPU machine, ~3-8 minutes
    .venv/bin/python bench/gpu_check.py --cpu                 # the dry mode (tests run it)
    .venv/bin/python bench/gpu_check.py --only sparse ddp     # some checks

Checks, each independent (its own process on a GPU, its own time budget; one that fails
prints FAIL with a one-line reason and the others still run):

- ``environment``: torch, CUDA, cuDNN, driver, every visible GPU and its clocks.
- ``amp_bf16``, ``amp_fp16``, ``channels_last``: the quick-start model
  (MobileNetV3-Large DeepLabV3+) trains through ``train_and_evaluate`` with that setting;
  the autocast dtype and memory format are read back; the loss must fall (last epoch's
  mean below the first's).
- ``deterministic``: the same trial twice with ``train.deterministic``. On the CPU the
  README promises bit-identical weights and metrics. On CUDA it promises repeatability up
  to the backward kernels without a deterministic version (bilinear upsampling): the
  evaluation of one set of weights must be bit-identical, torch may warn only about
  those kernels, and whether the trained weights are bit-equal is reported.
- ``latency_eager``, ``latency_compile``, ``latency_onnxruntime`` (CUDA execution
  provider), ``latency_tensorrt``: median ms at batch 1 and 8 (ablate's timer: CUDA
  synchronised around each call) and parity, the largest absolute logit difference to
  eager on the same input. A runtime whose package is missing is skipped ("not installed").
- ``sparse``: sparse selective execution against its dense emulation (DeepLabV3-ResNet-50
  OS-8, forced blob mask of density 0.5): parity within 1e-4 of the largest logit (TF32
  off), and both latencies.
- ``ddp``: one trial on every visible GPU through the local runner's DDP ranks (1 GPU: a
  1-process DistributedDataParallel run with NCCL).
- ``jobs_per_gpu``: a tiny real ``ablate run --jobs N`` with N = the GPU count: each trial
  records one distinct device.

``--cpu`` runs what the CPU can at tiny sizes (CUDA-only checks say why they are skipped),
in this process unless ``--isolate``. Prints one table; ``--out`` writes it as JSON. Exit
code 1 when any check failed.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # runs from a checkout without `pip install -e .`
sys.path.insert(0, str(ROOT / "bench"))
TOTAL_BUDGET_S = 460.0  # the whole run on one GPU stays within 8 minutes
RESULT_TAG = "GPU_CHECK_RESULT "

import gpu_throughput  # noqa: E402
from check_outcomes import Fail, Skip  # noqa: E402


class OutOfTime(Exception):
    pass


# -- helpers --------------------------------------------------------------------------------

def _device(cpu: bool):
    import torch

    if cpu:
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise Fail("no CUDA device visible (torch.cuda.is_available() is False); "
                   "use --cpu for the dry mode")
    return torch.device("cuda")


def _need_cuda(cpu: bool, what: str) -> None:
    if cpu:
        raise Skip(f"CUDA only: {what}")


def _quickstart(cpu: bool, **train: Any) -> dict[str, Any]:
    """The quick-start recipe's base trial (MobileNetV3-Large DeepLabV3+ on shapes), as a
    spec dict; tiny on the CPU."""
    import tomllib

    base = tomllib.loads((ROOT / "recipes" / "quickstart.toml").read_text())["base"]
    tree = {k: dict(v) for k, v in base.items()}
    tree["data"].update(workers=0, train_images=8 if cpu else 192,
                        val_images=4 if cpu else 48, image_size=32 if cpu else 64)
    tree["train"].update({"epochs": 2 if cpu else 3, "batch_size": 4 if cpu else 8,
                          "log_every": 1, "device": "cpu" if cpu else "cuda",
                          "warmup_steps": 0, **train})
    tree["eval"] = {"batch_size": 8, "latency": False, "flops": False}
    return {**tree, "seed": 0}


def _train(spec_tree: dict[str, Any], run_dir: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """``train_and_evaluate`` with the model and the autocast dtype it used captured."""
    import ablate.train.loop as loop
    from ablate.recipes.schema import TrialSpec

    seen: dict[str, Any] = {}
    real_amp = loop.amp_dtype

    def amp(train, device):
        seen["autocast"] = real_amp(train, device)
        return seen["autocast"]

    real_build = loop.build_model  # the name the trainer calls

    def build(*args, **kwargs):
        seen["model"] = real_build(*args, **kwargs)
        return seen["model"]

    loop.amp_dtype, loop.build_model = amp, build
    try:
        outcome = loop.train_and_evaluate(TrialSpec.model_validate(spec_tree), run_dir)
    finally:
        loop.amp_dtype, loop.build_model = real_amp, real_build
    return outcome, seen


def _losses(outcome: dict[str, Any]) -> list[float]:
    return [e["metrics"]["train_loss"] for e in outcome["epochs"]]


def _falling(losses: list[float]) -> None:
    if len(losses) < 2 or not all(x == x for x in losses):
        raise Fail(f"epoch losses {losses}: need two finite epochs")
    if not losses[-1] < losses[0]:
        raise Fail(f"loss did not fall: epoch means {', '.join(f'{x:.4f}' for x in losses)}")


# -- checks -----------------------------------------------------------------------------------

def check_environment(cpu: bool, work: Path) -> dict[str, Any]:
    import torch

    from ablate.cost.latency import timing_environment
    from ablate.dispatch.gpus import visible_gpus

    info: dict[str, Any] = {"torch": torch.__version__, "cuda_build": torch.version.cuda,
                            "cuda_available": torch.cuda.is_available()}
    if cpu:
        info["timing"] = timing_environment("cpu")
        return {"summary": f"torch {torch.__version__}, CPU", **info}
    _device(cpu)
    gpus = visible_gpus()
    info["gpus"] = [{"index": g.index, "id": g.id, "name": g.name} for g in gpus]
    info["timing"] = timing_environment("cuda:0")
    t = info["timing"]
    return {"summary": f"{len(gpus)} x {gpus[0].name}, CUDA {t.get('cuda')}, cuDNN "
                       f"{t.get('cudnn')}, driver {t.get('driver', '?')}", **info}


def _amp_check(cpu: bool, work: Path, amp: str) -> dict[str, Any]:
    import torch

    _need_cuda(cpu, "train.amp applies on CUDA only")
    _device(cpu)
    if amp == "bf16" and not torch.cuda.is_bf16_supported():
        raise Skip("this GPU has no bf16")
    outcome, seen = _train(_quickstart(cpu, amp=amp, deterministic=False), work / amp)
    want = torch.bfloat16 if amp == "bf16" else torch.float16
    if seen.get("autocast") != want:
        raise Fail(f"autocast dtype {seen.get('autocast')}, expected {want}")
    losses = _losses(outcome)
    _falling(losses)
    return {"summary": f"{str(want).removeprefix('torch.')} autocast, loss "
                       f"{losses[0]:.3f} -> {losses[-1]:.3f}", "losses": losses,
            "miou": outcome["final"].get("miou")}


def check_amp_bf16(cpu: bool, work: Path) -> dict[str, Any]:
    return _amp_check(cpu, work, "bf16")


def check_amp_fp16(cpu: bool, work: Path) -> dict[str, Any]:
    return _amp_check(cpu, work, "fp16")


def check_channels_last(cpu: bool, work: Path) -> dict[str, Any]:
    import torch

    _device(cpu)
    outcome, seen = _train(_quickstart(cpu, channels_last=True, amp="off",
                                       deterministic=False), work / "cl")
    convs = [m.weight for m in seen["model"].modules()
             if isinstance(m, torch.nn.Conv2d) and m.weight.shape[-1] > 1]
    if not all(w.is_contiguous(memory_format=torch.channels_last) for w in convs):
        raise Fail("conv weights are not channels-last after training")
    losses = _losses(outcome)
    _falling(losses)
    return {"summary": f"channels-last weights, loss {losses[0]:.3f} -> {losses[-1]:.3f}",
            "losses": losses, "device": outcome["device"]}


def check_deterministic(cpu: bool, work: Path) -> dict[str, Any]:
    import warnings

    import torch

    from ablate.train.checkpoint import CHECKPOINT_NAME, load_checkpoint

    device = _device(cpu)
    runs, warned = [], set()
    for n in range(2):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            # the CPU's promise needs no falling loss: one epoch is enough to compare
            extra = {"epochs": 1} if cpu else {}
            outcome, seen = _train(_quickstart(cpu, deterministic=True, amp="off", **extra),
                                   work / f"det{n}")
        for w in caught:
            text = str(w.message)
            if "does not have a deterministic implementation" in text:
                warned.add(text.split(" does not have")[0].strip())
        weights = load_checkpoint(work / f"det{n}" / CHECKPOINT_NAME)["model"]
        runs.append((outcome, weights, seen["model"]))
    (a, wa, model_a), (b, wb, _) = runs
    differ = [k for k in wa if not torch.equal(wa[k], wb[k])]
    max_diff = max((float((wa[k].float() - wb[k].float()).abs().max()) for k in differ),
                   default=0.0)
    same_metrics = a["final"] == b["final"] and _losses(a) == _losses(b)
    figures = {"weights_bit_equal": not differ, "tensors_differing": len(differ),
               "max_abs_weight_diff": max_diff, "metrics_equal": same_metrics,
               "nondeterministic_kernels": sorted(warned)}
    if cpu:  # README: bit-identical on one CPU machine
        if differ or not same_metrics:
            raise Fail(f"CPU runs differ: {len(differ)} weight tensors (max {max_diff:.3g}), "
                       f"metrics equal: {same_metrics}")
        return {"summary": "two CPU runs: weights and metrics bit-identical", **figures}
    # CUDA: only backward kernels without a deterministic version may differ (README)
    unexpected = [k for k in warned if "upsample_bilinear" not in k]
    if unexpected:
        raise Fail(f"torch warns of non-deterministic kernels the README does not name: "
                   f"{', '.join(unexpected)}")
    model_a.load_state_dict(wa)
    model_a.to(device).eval()
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(0)).to(device)
    with torch.no_grad():
        first, second = model_a(x)["out"], model_a(x)["out"]
    if not torch.equal(first, second):
        raise Fail("evaluating the same weights twice on CUDA gave different logits")
    figures["evaluation_bit_equal"] = True
    trained = "bit-identical" if not differ else \
        f"differ (max |dw| {max_diff:.2g}, as the README warns)"
    return {"summary": f"evaluation bit-identical; trained weights {trained}; warned: "
                       f"{', '.join(sorted(warned)) or 'none'}", **figures}


def _latency(cpu: bool, work: Path, runtime: str) -> dict[str, Any]:
    import torch

    from ablate.cost.latency import time_calls, timing_environment
    from ablate.evaluate.runtime_keys import missing_packages
    from ablate.evaluate.runtimes import RuntimeUnsupported, prepare
    from ablate.models.build import build_model
    from ablate.recipes.schema import ModelSpec

    device = _device(cpu)
    if runtime == "tensorrt":
        _need_cuda(cpu, "TensorRT runs on CUDA only")
    if runtime == "compile" and cpu:  # inductor's C++ build alone outlasts the dry run
        raise Skip("--cpu: inductor compiles C++ for minutes on a small CPU; the GPU run "
                   "times it (eval.runtimes tests cover compile on the CPU)")
    missing = missing_packages(runtime)
    if missing:
        raise Skip(f"not installed ({', '.join(missing)})")
    if runtime == "onnxruntime" and not cpu:
        import onnxruntime as ort

        if "CUDAExecutionProvider" not in ort.get_available_providers():
            raise Skip("not installed (onnxruntime has no CUDAExecutionProvider: "
                       "pip install onnxruntime-gpu)")
    side = 64 if cpu else 512
    spec = ModelSpec.model_validate({"backbone": "mobilenet_v3_large", "head": "deeplabv3plus",
                                     "bn_momentum": 0.1})
    torch.manual_seed(0)
    model = build_model(spec, 21).to(device).eval()
    example = torch.randn(1, 3, side, side, device=device)
    threads = torch.get_num_threads()
    try:
        runner = prepare(runtime, model, example, device, threads)
    except RuntimeUnsupported as err:
        raise Fail(f"could not prepare: {err}") from None
    if runtime == "onnxruntime" and runner.device != device.type:
        raise Fail(f"ran on {runner.device}, not {device.type}")
    warmup, runs = (1, 3) if cpu else (5, 30)
    figures: dict[str, Any] = {"prepare_s": round(runner.prepare_seconds, 2),
                               "version": runner.version, "device": runner.device}
    parts = []
    for bs in (1, 8):
        x = torch.randn(bs, 3, side, side, device=device)
        with torch.no_grad():
            eager = model(x)["out"].float()
            out = runner.run(x).float().to(eager.device)
        diff = float((out - eager).abs().max())
        ms = sorted(time_calls(lambda x=x: runner.run(x), device, max(warmup, 1), runs))
        figures[f"bs{bs}_ms"] = round(ms[len(ms) // 2], 3)
        figures[f"bs{bs}_max_abs_diff"] = diff
        figures[f"bs{bs}_max_eager"] = float(eager.abs().max())
        parts.append(f"bs{bs} {ms[len(ms) // 2]:.2f} ms (diff {diff:.1e})")
    if runtime == "eager":
        figures["timing"] = timing_environment(str(device))
    # parity: fp32 runtimes agree with eager to a small share of the largest logit
    worst = max(figures[f"bs{bs}_max_abs_diff"] / max(figures[f"bs{bs}_max_eager"], 1e-12)
                for bs in (1, 8))
    figures["max_rel_diff"] = worst
    if worst > 1e-2:
        raise Fail(f"parity: max |out - eager| is {worst:.2%} of the largest logit")
    return {"summary": f"{side}x{side}: " + ", ".join(parts), **figures}


def check_latency_eager(cpu: bool, work: Path) -> dict[str, Any]:
    return _latency(cpu, work, "eager")


def check_latency_compile(cpu: bool, work: Path) -> dict[str, Any]:
    return _latency(cpu, work, "compile")


def check_latency_onnxruntime(cpu: bool, work: Path) -> dict[str, Any]:
    return _latency(cpu, work, "onnxruntime")


def check_latency_tensorrt(cpu: bool, work: Path) -> dict[str, Any]:
    return _latency(cpu, work, "tensorrt")


def check_sparse(cpu: bool, work: Path) -> dict[str, Any]:
    import torch

    from ablate.cost.latency import time_calls
    from ablate.cost.selective import resnet_tap_size
    from ablate.models.selective import build_selective_deeplabv3
    from ablate.models.sparse import SparseSelective, forced_mask, forward_mixed, mask_grid
    from ablate.recipes.schema import ModelSpec

    device = _device(cpu)
    torch.backends.cudnn.allow_tf32 = False  # parity in fp32, not TF32's 10-bit mantissa
    torch.backends.cuda.matmul.allow_tf32 = False
    size = (72, 56) if cpu else (512, 1024)
    spec = ModelSpec.model_validate({"backbone": "resnet50", "head": "deeplabv3",
                                     "output_stride": 8, "selective": {
                                         "enabled": True, "execution": "sparse",
                                         "pooling": "avg"}})
    torch.manual_seed(0)
    model = build_selective_deeplabv3(spec, 19).to(device).eval()
    grid = mask_grid(2, tuple(resnet_tap_size(n, 8) for n in size))
    mask = forced_mask(grid, 0.5, "blobs").to(device)
    x = torch.randn(1, 3, *size, device=device)
    sparse = SparseSelective(model)
    with torch.no_grad():
        dense_out = forward_mixed(model, x, mask)["out"]
        sparse_out = sparse(x, mask)["out"]
    rel = float((sparse_out - dense_out).abs().max() / dense_out.abs().max())
    warmup, runs = (1, 2) if cpu else (3, 10)
    with torch.no_grad():
        t_sparse = sorted(time_calls(lambda: sparse(x, mask), device, warmup, runs))
        t_dense = sorted(time_calls(lambda: forward_mixed(model, x, mask), device, warmup, runs))
    ms_sparse, ms_dense = t_sparse[len(t_sparse) // 2], t_dense[len(t_dense) // 2]
    figures = {"max_rel_diff": rel, "sparse_ms": ms_sparse, "dense_emulation_ms": ms_dense,
               "ratio": ms_sparse / ms_dense, "resolution": list(size), "density": 0.5}
    if rel > 1e-4:
        raise Fail(f"sparse differs from dense emulation by {rel:.2e} of the largest logit "
                   "(README: within 1e-4)")
    return {"summary": f"{size[0]}x{size[1]} density 0.5: diff {rel:.1e}, sparse "
                       f"{ms_sparse:.1f} ms vs dense emulation {ms_dense:.1f} ms "
                       f"(x{ms_sparse / ms_dense:.2f})", **figures}


def _one_process_ddp() -> dict[str, Any]:
    """One GPU: DistributedDataParallel with NCCL and a world of one, a few steps."""
    import socket
    from datetime import timedelta

    import torch
    import torch.distributed as dist
    from torch.nn import functional as F

    from ablate.data.build import build_datasets
    from ablate.data.collate import collate_train
    from ablate.models.build import build_model
    from ablate.recipes.schema import TrialSpec

    spec = TrialSpec.model_validate(_quickstart(False))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    torch.cuda.set_device(0)
    dist.init_process_group("nccl", init_method=f"tcp://127.0.0.1:{port}", rank=0,
                            world_size=1, timeout=timedelta(minutes=2))
    try:
        torch.manual_seed(0)
        model = build_model(spec.model, 4).cuda()
        ddp = torch.nn.parallel.DistributedDataParallel(model, device_ids=[0])
        opt = torch.optim.AdamW(ddp.parameters(), lr=0.01)
        data = build_datasets(spec.data, seed=0).train
        loader = torch.utils.data.DataLoader(data, batch_size=8, shuffle=True,
                                             collate_fn=collate_train, drop_last=True)
        losses = []
        for _ in range(3):
            total, n = 0.0, 0
            for images, labels in loader:
                out = ddp(images.cuda())["out"]
                loss = F.cross_entropy(out, labels.cuda(), ignore_index=255)
                opt.zero_grad()
                loss.backward()
                opt.step()
                total, n = total + loss.item(), n + 1
            losses.append(total / n)
    finally:
        dist.destroy_process_group()
    _falling(losses)
    return {"summary": f"1-process DDP (NCCL), loss {losses[0]:.3f} -> {losses[-1]:.3f}",
            "ranks": 1, "losses": losses}


def check_ddp(cpu: bool, work: Path) -> dict[str, Any]:
    from ablate.dispatch.entry import TrialJob
    from ablate.dispatch.gpus import Gpu, visible_gpus
    from ablate.dispatch.local import LocalExecutor
    from ablate.train.events import Ended
    from ablate.trials.lifecycle import Trained

    if cpu:  # two stand-in devices: the same ranks, with gloo on the CPU
        gpus = [Gpu(0, "0", "cpu stand-in"), Gpu(1, "1", "cpu stand-in")]
        spec = _quickstart(True, device="auto")  # "cpu" would take no device slots
    else:
        _device(cpu)
        gpus = visible_gpus()
        if len(gpus) == 1:
            return _one_process_ddp()
        spec = _quickstart(False)
    job = TrialJob("gpu_check", "ddp", "ddp", spec, str(work / "ddp"))
    results: list[dict[str, Any]] = []
    LocalExecutor(jobs=1, gpus=gpus, gpus_per_trial=len(gpus), slots=True).run(
        [job], lambda j, e: results.append(e.outcome.result.to_json())
        if isinstance(e, Ended) and isinstance(e.outcome, Trained) else None)
    if not results:
        raise Fail("the trial ended without a result")
    result = results[0]
    if result["status"] != "done":
        raise Fail((result.get("error") or "failed").splitlines()[0])
    env = result["environment"]
    if env.get("ddp_ranks") != len(gpus):
        raise Fail(f"trained by {env.get('ddp_ranks', 1)} process(es), not {len(gpus)}")
    losses = _losses(result)
    _falling(losses)
    where = "CPU stand-ins for GPUs" if cpu else "GPUs"
    return {"summary": f"{len(gpus)} ranks on {where} {','.join(env['gpus'])}, loss "
                       f"{losses[0]:.3f} -> {losses[-1]:.3f}", "ranks": len(gpus),
            "gpus": env["gpus"], "losses": losses}


JOBS_RECIPE = """
name = "gpu_check_jobs"
seeds = [0]
[base.model]
backbone = "mobilenet_v3_small"
head = "deeplabv3plus"
aspp_channels = 32
bn_momentum = 0.1
[base.data]
name = "shapes"
classes = 3
image_size = 32
train_images = 16
val_images = 8
workers = 0
[base.train]
epochs = 1
batch_size = 8
[base.eval]
latency = false
flops = false
[grid]
"train.lr" = [{lrs}]
"""


def check_jobs_per_gpu(cpu: bool, work: Path) -> dict[str, Any]:
    from ablate.dispatch.gpus import FAKE_GPUS_ENV, visible_gpus
    from ablate.store import Store

    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])}
    if cpu:  # the test seam: two stand-in GPUs, trials train on the CPU
        env[FAKE_GPUS_ENV] = "cpu stand-in,cpu stand-in"
        env["OMP_NUM_THREADS"] = "1"
        n = 2
    else:
        _device(cpu)
        n = len(visible_gpus())
    recipe = work / "jobs.toml"
    recipe.write_text(JOBS_RECIPE.format(lrs=", ".join(f"0.00{i + 1}" for i in range(n))
                                         if n < 10 else ", ".join(f"{(i + 1) / 1000}"
                                                                  for i in range(n))))
    db = work / "jobs.db"
    proc = subprocess.run([sys.executable, "-m", "ablate", "run", str(recipe), "--db",
                           str(db), "--runs-dir", str(work / "runs"), "--jobs", str(n)],
                          capture_output=True, text=True, env=env, cwd=work, timeout=600)
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()
        raise Fail(f"ablate run exited {proc.returncode}: {tail[-1] if tail else ''}")
    records = Store(f"sqlite:///{db}").trials("gpu_check_jobs")
    devices = [",".join((r.environment or {}).get("gpus") or ["none"]) for r in records]
    if len(records) != n or any(r.status != "done" for r in records):
        raise Fail(f"{sum(r.status == 'done' for r in records)} of {n} trials done")
    if len(set(devices)) != n or any(d == "none" or "," in d for d in devices):
        raise Fail(f"trials' devices {devices}: expected one distinct device each")
    t0 = min(r.started_at for r in records)
    trace = [f"{r.name}: GPU {','.join(r.environment['gpus'])} "
             f"{(r.started_at - t0).total_seconds():.1f}-{(r.finished_at - t0).total_seconds():.1f} s"
             for r in sorted(records, key=lambda r: r.started_at)]
    where = "CPU stand-ins for devices" if cpu else "devices"
    return {"summary": f"--jobs {n}: {n} trials on {where} {', '.join(sorted(devices))}",
            "trace": trace}


CHECKS: dict[str, tuple[Callable[[bool, Path], dict[str, Any]], float]] = {
    # name: (check, budget in seconds on a GPU); cheap and central ones first
    "environment": (check_environment, 30),
    "amp_bf16": (check_amp_bf16, 45),
    "amp_fp16": (check_amp_fp16, 45),
    "channels_last": (check_channels_last, 45),
    "deterministic": (check_deterministic, 60),
    "latency_eager": (check_latency_eager, 30),
    "sparse": (check_sparse, 45),
    "ddp": (check_ddp, 60),
    "jobs_per_gpu": (check_jobs_per_gpu, 60),
    "latency_onnxruntime": (check_latency_onnxruntime, 60),
    "latency_compile": (check_latency_compile, 90),
    "latency_tensorrt": (check_latency_tensorrt, 90),
    # training at the GPU's speed (bench/gpu_throughput.py): run with --only and
    # --total-budget 600, apart from the acceptance run above
    **gpu_throughput.CHECKS,
}


def default_checks() -> list[str]:
    """What a run without --only runs: the acceptance checks, not the throughput ones."""
    return [name for name in CHECKS if name not in gpu_throughput.CHECKS]


# -- running ----------------------------------------------------------------------------------

def _one_line(err: BaseException) -> str:
    lines = str(err).strip().splitlines()
    text = lines[0] if lines else ""
    return text if isinstance(err, Fail | Skip) else f"{type(err).__name__}: {text}"


def run_here(name: str, cpu: bool, budget: float) -> dict[str, Any]:
    """One check in this process, its budget enforced by an alarm."""
    start = time.perf_counter()

    def alarm(signum, frame):
        raise OutOfTime(f"over its {budget:.0f} s budget")

    previous = signal.signal(signal.SIGALRM, alarm)
    signal.alarm(max(1, int(budget)))
    try:
        with tempfile.TemporaryDirectory(prefix=f"gpu_check_{name}_") as tmp:
            figures = CHECKS[name][0](cpu, Path(tmp))
        row = {"status": "PASS", "reason": figures.pop("summary", ""), "figures": figures}
    except Skip as err:
        row = {"status": "SKIP", "reason": f"skipped: {_one_line(err)}", "figures": {}}
    except OutOfTime as err:
        row = {"status": "FAIL", "reason": f"timed out: {err}", "figures": {}}
    except BaseException as err:  # noqa: BLE001  (a check's crash is its FAIL, not ours)
        if isinstance(err, KeyboardInterrupt):
            raise
        row = {"status": "FAIL", "reason": _one_line(err), "figures": {},
               "traceback": traceback.format_exc()}
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
    return {"check": name, **row, "seconds": round(time.perf_counter() - start, 1)}


def run_isolated(name: str, cpu: bool, budget: float) -> dict[str, Any]:
    """One check in a fresh process (a CUDA error or hang stays there), killed at its budget."""
    start = time.perf_counter()
    command = [sys.executable, str(Path(__file__).resolve()), "--child", name,
               "--budget", str(budget)] + (["--cpu"] if cpu else [])
    try:
        proc = subprocess.run(command, capture_output=True, text=True, timeout=budget + 15)
    except subprocess.TimeoutExpired:
        return {"check": name, "status": "FAIL", "reason": f"timed out after {budget:.0f} s",
                "figures": {}, "seconds": round(time.perf_counter() - start, 1)}
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith(RESULT_TAG):
            return json.loads(line[len(RESULT_TAG):])
    tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
    return {"check": name, "status": "FAIL", "reason": f"process exited {proc.returncode}: "
            f"{tail}", "figures": {}, "seconds": round(time.perf_counter() - start, 1)}


def print_table(rows: list[dict[str, Any]]) -> None:
    width = max(len(r["check"]) for r in rows)
    print(f"\n{'check':<{width}}  {'status':<6} {'s':>6}  result")
    for r in rows:
        print(f"{r['check']:<{width}}  {r['status']:<6} {r['seconds']:6.1f}  {r['reason']}")


def _seconds(text: str) -> float:
    """An argparse type: a budget above 0 s (--total-budget -5 skipped every check as
    "budget spent" and exited 0)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be above 0, got {text}")
    return value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, help="write the table as JSON here")
    parser.add_argument("--cpu", action="store_true",
                        help="dry mode: what the CPU can run, tiny sizes")
    parser.add_argument("--only", nargs="+", choices=list(CHECKS), metavar="CHECK",
                        help=f"only these checks: {', '.join(CHECKS)} [all but "
                             f"{', '.join(gpu_throughput.CHECKS)}]")
    parser.add_argument("--total-budget", type=_seconds, default=TOTAL_BUDGET_S,
                        metavar="SECONDS", help="the whole run's budget [%(default)s]")
    parser.add_argument("--isolate", action=argparse.BooleanOptionalAction, default=None,
                        help="each check in its own process [on a GPU: yes; --cpu: no]")
    parser.add_argument("--child", choices=list(CHECKS), help=argparse.SUPPRESS)
    parser.add_argument("--budget", type=float, default=60.0, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        row = run_here(args.child, args.cpu, args.budget)
        print(RESULT_TAG + json.dumps(row), flush=True)
        return 0

    try:  # a fresh machine: say what to install, not one ImportError per check
        import torch  # noqa: F401

        import ablate.recipes.schema  # noqa: F401
    except ImportError as err:
        print(f"gpu_check: {err} in {sys.executable}; create the environment first: "
              "make install (then .venv/bin/python bench/gpu_check.py)", file=sys.stderr)
        return 2
    isolate = (not args.cpu) if args.isolate is None else args.isolate
    names = args.only or default_checks()
    deadline = time.monotonic() + args.total_budget
    rows = []
    print(f"gpu_check: {'CPU dry mode' if args.cpu else 'GPU'}, {len(names)} checks, "
          f"{'each in its own process' if isolate else 'in this process'}", flush=True)
    for name in names:
        left = deadline - time.monotonic()
        budget = min(CHECKS[name][1], left)
        if left < 5:
            row = {"check": name, "status": "SKIP", "figures": {}, "seconds": 0.0,
                   "reason": f"skipped: the run's {args.total_budget:.0f} s budget is spent"}
        else:
            row = (run_isolated if isolate else run_here)(name, args.cpu, budget)
        rows.append(row)
        print(f"  {row['status']:<4} {name}: {row['reason']}", flush=True)
    print_table(rows)
    failed = [r["check"] for r in rows if r["status"] == "FAIL"]
    if args.out:
        import platform

        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({
            "mode": "cpu" if args.cpu else "gpu", "host": platform.node(),
            "command": " ".join(sys.argv), "failed": failed, "checks": rows}, indent=2))
        print(f"\nwrote {args.out}")
    return 1 if failed else 0


if __name__ == "__main__":
    with contextlib.suppress(BrokenPipeError):
        sys.exit(main())
