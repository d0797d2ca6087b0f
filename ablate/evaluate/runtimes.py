"""The same network on other runtimes: export or compile, time by batch size, check parity.

A *runtime* runs a trained model's forward pass: ``eager`` (PyTorch as trained),
``compile`` (``torch.compile``, inductor), ``onnxruntime`` (exported with
``torch.onnx.export``, run by ONNX Runtime) and ``tensorrt`` (``torch_tensorrt``, CUDA
only). Each is prepared once; a runtime that cannot export or compile the model is
recorded as unsupported with a one-line reason and the trial goes on.

Figures are plain floats so they fit the store's metrics table (see ``metric_key``):
``latency_ms@onnxruntime/bs8`` is the median milliseconds of one forward pass of a
batch of 8. Parity compares every runtime's logits with eager's on the evaluation images.
"""

from __future__ import annotations

import contextlib
import io
import statistics
import time
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from ablate.cost.latency import time_calls
from ablate.errors import error_line
from ablate.evaluate.metrics import IGNORE_INDEX, ConfusionMatrix
from ablate.evaluate.runtime_keys import (
    NEEDS,
    PARITY_MIOU_TOLERANCE,
    RUNTIMES,
    metric_key,
    missing_packages,
)

if TYPE_CHECKING:
    from ablate.recipes.schema import TrialSpec

ONNX_OPSET = 17
REASON_LENGTH = 200


class RuntimeUnsupported(Exception):
    """The model cannot be exported or compiled for a runtime; the message says why."""


class _Logits(nn.Module):
    """The segmentation logits alone: exporters and compilers want one tensor out."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)["out"]


@dataclass
class Runner:
    """A prepared runtime: ``run(images)`` returns the logits as a CPU or device tensor."""

    name: str
    device: str
    run: Callable[[torch.Tensor], torch.Tensor]
    prepare_seconds: float = 0.0
    version: str = ""


def _eager(model: nn.Module, device: torch.device, example: torch.Tensor) -> Runner:
    logits = _Logits(model).eval()
    return Runner("eager", str(device.type), logits, 0.0, torch.__version__)


def _compile(model: nn.Module, device: torch.device, example: torch.Tensor) -> Runner:
    compiled = torch.compile(_Logits(model).eval())
    start = time.perf_counter()
    compiled(example)  # compiles here: the cost is the first call's
    return Runner("compile", str(device.type), compiled, time.perf_counter() - start,
                  torch.__version__)


def _onnxruntime(model: nn.Module, device: torch.device, example: torch.Tensor,
                 threads: int) -> Runner:
    import onnxruntime as ort  # lazy: optional onnxruntime

    start = time.perf_counter()
    buffer = io.BytesIO()
    with warnings.catch_warnings():  # tracer warnings about shape checks frozen at export
        warnings.simplefilter("ignore")
        # the TorchScript exporter: the dynamo one needs onnxscript (not in the extra)
        torch.onnx.export(_Logits(model).eval(), (example,), buffer, dynamo=False,
                          input_names=["images"], output_names=["logits"],
                          opset_version=ONNX_OPSET,
                          dynamic_axes={"images": {0: "n", 2: "h", 3: "w"},
                                        "logits": {0: "n", 2: "h", 3: "w"}})
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    providers: list = ["CPUExecutionProvider"]
    on_cuda = device.type == "cuda" and "CUDAExecutionProvider" in ort.get_available_providers()
    index = 0
    if on_cuda:
        index = device.index if device.index is not None else torch.cuda.current_device()
        providers.insert(0, ("CUDAExecutionProvider", {"device_id": index}))
    session = ort.InferenceSession(buffer.getvalue(), options, providers=providers)
    seconds = time.perf_counter() - start
    if on_cuda:
        classes = int(_Logits(model).eval()(example).shape[1])
        return Runner("onnxruntime", "cuda", _bound_run(session, classes, index), seconds,
                      ort.__version__)

    def run(images: torch.Tensor) -> torch.Tensor:
        feed = images.detach().to("cpu", torch.float32).contiguous().numpy()
        return torch.from_numpy(session.run(None, {"images": feed})[0])

    return Runner("onnxruntime", "cpu", run, seconds, ort.__version__)


def _bound_run(session, classes: int, index: int) -> Callable[[torch.Tensor], torch.Tensor]:
    """ONNX Runtime on CUDA reading and writing torch's device memory (I/O binding): no
    copies through the host, so it is timed like eager, on device tensors."""
    def run(images: torch.Tensor) -> torch.Tensor:
        images = images.detach().to(f"cuda:{index}", torch.float32).contiguous()
        n, _, h, w = images.shape
        out = torch.empty((n, classes, h, w), device=images.device, dtype=torch.float32)
        binding = session.io_binding()
        binding.bind_input("images", "cuda", index, np.float32, list(images.shape),
                           images.data_ptr())
        binding.bind_output("logits", "cuda", index, np.float32, list(out.shape), out.data_ptr())
        torch.cuda.synchronize(images.device)  # the input was written on torch's stream
        session.run_with_iobinding(binding)
        return out

    return run


def _tensorrt(model: nn.Module, device: torch.device, example: torch.Tensor) -> Runner:
    if device.type != "cuda":
        raise RuntimeUnsupported(f"needs a CUDA device (the trial ran on {device.type})")
    import torch_tensorrt  # lazy: optional torch_tensorrt

    start = time.perf_counter()
    compiled = torch.compile(_Logits(model).eval(), backend="tensorrt")
    compiled(example)
    return Runner("tensorrt", "cuda", compiled, time.perf_counter() - start,
                  torch_tensorrt.__version__)


def prepare(runtime: str, model: nn.Module, example: torch.Tensor, device: torch.device,
            threads: int) -> Runner:
    """Export or compile ``model`` for ``runtime``; ``RuntimeUnsupported`` if it cannot."""
    if runtime not in RUNTIMES:
        raise ValueError(f"unknown runtime {runtime!r}; allowed: {', '.join(RUNTIMES)}")
    missing = missing_packages(runtime)
    if missing:
        raise RuntimeUnsupported(f"{', '.join(missing)} not installed ({NEEDS[runtime][0]})")
    model.eval()
    try:
        with torch.no_grad():
            if runtime == "eager":
                return _eager(model, device, example)
            if runtime == "compile":
                return _compile(model, device, example)
            if runtime == "onnxruntime":
                return _onnxruntime(model, device, example, threads)
            return _tensorrt(model, device, example)
    except RuntimeUnsupported:
        raise
    except Exception as err:  # an exporter or compiler refusal is a finding, not a crash
        raise RuntimeUnsupported(error_line(err, REASON_LENGTH, with_type=True)) from err
    finally:
        model.eval()  # exporters restore the mode they found; keep evaluation mode


@torch.no_grad()
def time_batches(runner: Runner, images: torch.Tensor, device: torch.device, warmup: int,
                 runs: int) -> list[float]:
    """Milliseconds of each of ``runs`` calls after ``warmup`` untimed ones (the one timer
    of ``ablate.cost.latency``: CUDA synchronised before and after each call)."""

    return time_calls(lambda: runner.run(images), device, warmup, runs)


@contextlib.contextmanager
def intra_op_threads(threads: int):
    """PyTorch's intra-op thread count fixed for the block, restored after."""
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@dataclass
class Parity:
    """Running parity of one runtime against eager over the evaluation images."""

    n_classes: int
    max_abs: float = 0.0
    max_eager: float = 0.0
    agree: int = 0
    pixels: int = 0
    problem: str | None = None
    confusion: Any = None

    def update(self, eager: torch.Tensor, other: torch.Tensor, labels: torch.Tensor) -> None:
        if self.problem is not None:
            return
        if other.shape != eager.shape:
            self.problem = f"output shape {tuple(other.shape)} differs from eager's {tuple(eager.shape)}"
            return
        other = other.to(eager.device, torch.float32)
        self.max_abs = max(self.max_abs, float((other - eager).abs().max()))
        self.max_eager = max(self.max_eager, float(eager.abs().max()))
        pred = other.argmax(1)
        self.agree += int((pred == eager.argmax(1)).sum())
        self.pixels += pred.numel()
        if self.confusion is None:
            self.confusion = ConfusionMatrix(self.n_classes, "cpu")
        self.confusion.update(pred.cpu(), labels.cpu())

    def figures(self, runtime: str, eager_miou: float) -> dict[str, float]:
        if self.problem is not None or self.confusion is None:
            return {metric_key("parity_ok", runtime): 0.0}
        miou = self.confusion.compute().miou
        return {
            metric_key("parity_max_abs", runtime): self.max_abs,
            # relative to the largest eager logit: elementwise ratios explode near zero
            metric_key("parity_max_rel", runtime): self.max_abs / max(self.max_eager, 1e-12),
            metric_key("parity_agree", runtime): self.agree / max(self.pixels, 1),
            metric_key("miou", runtime): miou,
            metric_key("parity_miou_diff", runtime): miou - eager_miou,
            metric_key("parity_ok", runtime): float(
                abs(miou - eager_miou) <= PARITY_MIOU_TOLERANCE),
        }


@dataclass
class RuntimeReport:
    """Float figures for the metrics table and per-runtime details for the trial's record."""

    metrics: dict[str, float] = field(default_factory=dict)
    details: dict[str, dict[str, Any]] = field(default_factory=dict)


def measure_runtimes(model: nn.Module, resolution: tuple[int, int], device: torch.device, *,
                     runtimes: Iterable[str] = ("eager",), batch_sizes: Iterable[int] = (1,),
                     warmup: int = 3, runs: int = 10, threads: int | None = None,
                     images: Iterable[tuple[torch.Tensor, torch.Tensor]] | None = None,
                     n_classes: int | None = None) -> RuntimeReport:
    """Latency of every runtime x batch size, and parity of each runtime against eager.

    ``images`` (the evaluation loader) and ``n_classes`` enable parity. The intra-op
    thread count (``threads``, default PyTorch's current one) is fixed for every runtime
    and stored as ``latency_threads``.
    """
    runtimes, batch_sizes = list(runtimes), list(batch_sizes)
    threads = threads or torch.get_num_threads()
    report = RuntimeReport(metrics={"latency_threads": float(threads),
                                    "latency_runs": float(runs)})
    was_training = model.training
    example = torch.randn(1, 3, *resolution, device=device)
    runners: dict[str, Runner] = {}
    with intra_op_threads(threads):
        for runtime in runtimes:
            detail: dict[str, Any] = {"threads": threads}
            report.details[runtime] = detail
            try:
                runner = prepare(runtime, model, example, device, threads)
            except RuntimeUnsupported as err:
                detail.update(status="unsupported", reason=str(err))
                report.metrics[metric_key("supported", runtime)] = 0.0
                continue
            runners[runtime] = runner
            detail.update(status="ok", device=runner.device, version=runner.version)
            if runtime != "eager":  # eager always runs and needs no preparing
                report.metrics[metric_key("supported", runtime)] = 1.0
                report.metrics[metric_key("prepare_seconds", runtime)] = runner.prepare_seconds
            for bs in batch_sizes:
                try:
                    x = torch.randn(bs, 3, *resolution, device=device)
                    # at least one untimed call: the first of a new shape may compile
                    times = time_batches(runner, x, device, max(warmup, 1), runs)
                except Exception as err:  # e.g. out of memory at a large batch
                    detail.setdefault("failed_batch_sizes", {})[str(bs)] = error_line(err, REASON_LENGTH, with_type=True)
                    continue
                report.metrics[metric_key("latency_ms", runtime, bs)] = statistics.median(times)
                report.metrics[metric_key("latency_ms_p90", runtime, bs)] = _p90(times)
        others = [r for r in runners if r != "eager"]
        if images is not None and n_classes and others:
            _parity(model, runners, others, images, n_classes, device, report, resolution)
    model.train(was_training)
    return report


def fit_to(images: torch.Tensor, labels: torch.Tensor, size: tuple[int, int]
           ) -> tuple[torch.Tensor, torch.Tensor]:
    """Crop at the bottom and right, or pad (images with 0, labels with the ignore label),
    to ``size``: the shape a runtime was exported or compiled for."""
    h, w = size
    if tuple(images.shape[-2:]) == (h, w):
        return images, labels
    images, labels = images[..., :h, :w], labels[..., :h, :w]
    pad = (0, w - images.shape[-1], 0, h - images.shape[-2])
    return (nn.functional.pad(images, pad, value=0.0),
            nn.functional.pad(labels, pad, value=IGNORE_INDEX))


def _parity(model: nn.Module, runners: dict[str, Runner], others: list[str], images: Iterable,
            n_classes: int, device: torch.device, report: RuntimeReport,
            size: tuple[int, int]) -> None:
    eager = runners.get("eager") or _eager(model, device, torch.empty(0))
    reference = ConfusionMatrix(n_classes, "cpu")
    parity = {r: Parity(n_classes) for r in others}
    with torch.no_grad():
        for batch, labels in images:
            # an export traces shape checks at its example's size: compare at that size
            batch, labels = fit_to(batch, labels, size)
            batch = batch.to(device)
            logits = eager.run(batch).float().cpu()
            reference.update(logits.argmax(1), labels.cpu())
            for runtime in others:
                try:
                    out = runners[runtime].run(batch).float().cpu()
                except Exception as err:  # a shape the export did not foresee
                    parity[runtime].problem = parity[runtime].problem or error_line(err, REASON_LENGTH, with_type=True)
                    continue
                parity[runtime].update(logits, out, labels)
    eager_miou = reference.compute().miou
    report.metrics[metric_key("miou", "eager")] = eager_miou
    for runtime, p in parity.items():
        report.metrics.update(p.figures(runtime, eager_miou))
        report.details[runtime]["parity_miou_tolerance"] = PARITY_MIOU_TOLERANCE
        if p.problem:
            report.details[runtime]["parity_problem"] = p.problem


def _p90(times: list[float]) -> float:
    return sorted(times)[max(0, int(round(0.9 * len(times))) - 1)]


def measure_trial_latency(model: nn.Module, spec: TrialSpec, device: torch.device,
                          images: Any = None, n_classes: int | None = None,
                          ) -> tuple[dict[str, float], dict[str, Any]]:
    """A trial's latency figures: every ``eval.runtimes`` x ``eval.latency_batch_sizes``.

    Returns the float figures for the metrics table (``latency_ms@<runtime>/bs<n>`` and
    parity, see ``ablate.evaluate.runtimes``) and the per-runtime details (status, reason,
    device, threads, version) that go with the trial's environment. ``latency_ms`` and
    ``latency_ms_p90`` stay the eager batch-1 figures that every report reads.
    """
    from ablate.trials.resolve import eval_resolution  # lazy: loads pydantic

    ev = spec.eval
    report = measure_runtimes(
        model, eval_resolution(spec), device, runtimes=ev.runtimes,
        batch_sizes=ev.latency_batch_sizes, warmup=ev.latency_warmup, runs=ev.latency_runs,
        threads=ev.latency_threads, images=images, n_classes=n_classes)
    figures = dict(report.metrics)
    if metric_key("latency_ms", "eager", 1) in figures:
        figures["latency_ms"] = figures[metric_key("latency_ms", "eager", 1)]
        figures["latency_ms_p90"] = figures[metric_key("latency_ms_p90", "eager", 1)]
    return figures, report.details
