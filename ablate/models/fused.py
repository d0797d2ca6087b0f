"""Evaluation-mode convolution + batch norm folded into one weight and bias, cached per module.

The sparse executors (``ablate.models.sparse``) run every convolution of layer3, layer4
and the ASPP head on rows or gathered tiles. Batch norm in evaluation is a per-channel
affine map, so it folds into the preceding convolution: ``W' = W * s``, ``b' = (b - mean)
* s + beta`` with ``s = gamma / sqrt(var + eps)``. That removes two passes over every
activation (scale, shift) per convolution, which on rows cost as much as a third of the
multiply-adds' time when each pass was separate (profile in docs/benchmarks.md).

The folded tensors are cached on the convolution module and rebuilt when any tensor they
depend on changes (``Tensor._version`` counts in-place updates: an optimiser step, a
``load_state_dict``, new running statistics). The two paths of the selective model are
distinct modules with tied weights and their own statistics, so each gets its own fold.

**Rows times a weight** (``gemm``) runs on one of two backends per device: ``mm``
(``torch.addmm``: MKL or OpenBLAS on CPU, cuBLAS on CUDA) or ``conv``, the library's
1x1 convolution on a channels-last view of the rows (oneDNN on CPU, cuDNN on CUDA). The
matrix layouts are stored C_out x K so that either backend reads them without a copy.
On this project's 2-core AMD EPYC, oneDNN ran the sparse executor's GEMM shapes at
211-223 GFLOP/s against MKL's 155-199 (2 threads), so nothing is assumed: ``GEMM``
pins a backend per device type, else ``measure_gemm`` times both at the first call
on a device, dtype and thread count and keeps the faster.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import torch
from torch import nn
from torch.nn import functional as F

BACKENDS = ("mm", "conv")
GEMM: dict[str, str] = {}  # pinned backend per device type ("cpu", "cuda"); else measured
_measured: dict[tuple, str] = {}

LAYOUTS = ("matrix", "conv", "taps", "im2col")


def _versions(tensors: tuple[torch.Tensor | None, ...]) -> tuple:
    return tuple((id(t), t._version) for t in tensors if t is not None)


def _cached(conv: nn.Conv2d, slot: object, tensors: tuple, make: Callable[[], tuple]) -> tuple:
    """``make()``, kept on ``conv`` under ``slot`` until one of ``tensors`` changes."""
    key = _versions(tensors)
    cache = conv.__dict__.setdefault("_ablate_folded", {})
    hit = cache.get(slot)
    if hit is None or hit[0] != key:
        with torch.no_grad():
            hit = cache[slot] = (key, make())
    return hit[1]


def _statistics(bn: nn.BatchNorm2d) -> tuple[torch.Tensor, ...]:
    return bn.weight, bn.bias, bn.running_mean, bn.running_var


def _folded_bias(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> tuple[torch.Tensor, torch.Tensor]:
    """``bn``'s per-channel scale and the bias of ``conv`` followed by ``bn``."""
    weight = conv.weight.detach()
    bias = conv.bias.detach() if conv.bias is not None else weight.new_zeros(weight.shape[0])
    scale = bn.weight.detach() * torch.rsqrt(bn.running_var + bn.eps)
    return scale, (bias - bn.running_mean) * scale + bn.bias.detach()


def fold(conv: nn.Conv2d, bn: nn.BatchNorm2d | None = None, layout: str = "matrix"
         ) -> tuple[torch.Tensor, torch.Tensor]:
    """``conv`` followed by ``bn`` (evaluation statistics) as one ``(weight, bias)``.

    ``layout``: ``matrix`` C_in x C_out (a 1x1 conv as ``gemm(rows, weight, bias)``),
    ``conv`` C_out x C_in x kh x kw in channels-last memory (``F.conv2d`` on gathered
    tiles), ``taps`` 9 x C_in x C_out (one matrix per 3x3 tap, row-major taps) and
    ``im2col`` 9 C_in x C_out (the nine taps' inputs stacked, tap-major). The matrices
    are transposed views of C_out x K storage (``gemm``'s two backends read it as is).
    """
    if layout not in LAYOUTS:
        raise ValueError(f"unknown layout {layout!r}; allowed: {', '.join(LAYOUTS)}")
    if layout == "matrix" and conv.kernel_size != (1, 1):
        raise ValueError(f"layout {layout!r} is a 1x1 conv's, got kernel {conv.kernel_size}")

    def make() -> tuple[torch.Tensor, torch.Tensor]:
        weight = conv.weight.detach()
        if bn is None:
            bias = conv.bias.detach() if conv.bias is not None else weight.new_zeros(len(weight))
        else:
            scale, bias = _folded_bias(conv, bn)
            weight = weight * scale[:, None, None, None]
        return _arrange(weight, layout), bias.contiguous()

    stats = () if bn is None else _statistics(bn)
    return _cached(conv, layout, (conv.weight, conv.bias, *stats), make)


def fold_pair(conv: nn.Conv2d, bn: nn.BatchNorm2d, twin: nn.BatchNorm2d, layout: str = "matrix"
              ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor] | None:
    """``fold(conv, bn, layout)`` and the per-channel ``(ratio, shift)`` that turn its
    output into ``conv`` followed by ``twin`` instead: ``ratio * y + shift``.

    For the two paths of the selective model, whose convs share one weight and whose batch
    norms share their affine weight and bias but keep their own statistics: one GEMM over
    both paths' rows with ``bn`` folded, then the twin's rows corrected in one pass. With
    the affine weight shared, ``ratio = sqrt((var_bn + eps) / (var_twin + eps))`` needs no
    division by it (a zero gamma needs no special case). None where the two do not share it.
    """
    if bn.weight is not twin.weight or bn.bias is not twin.bias or bn.eps != twin.eps:
        return None
    weight, bias = fold(conv, bn, layout)

    def make() -> tuple[torch.Tensor, torch.Tensor]:
        ratio = torch.sqrt((bn.running_var + bn.eps) / (twin.running_var + twin.eps))
        return ratio, _folded_bias(conv, twin)[1] - ratio * bias

    ratio, shift = _cached(conv, ("pair", id(bn), id(twin), layout),
                           (conv.weight, conv.bias, *_statistics(bn), *_statistics(twin)), make)
    return weight, bias, ratio, shift


def _arrange(weight: torch.Tensor, layout: str) -> torch.Tensor:
    c_out, c_in = weight.shape[:2]
    if layout == "matrix":
        return weight.reshape(c_out, c_in).contiguous().t()
    if layout == "conv":
        return weight.contiguous(memory_format=torch.channels_last)
    if layout == "taps":
        return weight.permute(2, 3, 0, 1).reshape(-1, c_out, c_in).contiguous().transpose(1, 2)
    return weight.permute(0, 2, 3, 1).reshape(c_out, -1).contiguous().t()  # im2col


def gemm(rows: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None,
         out: torch.Tensor | None = None) -> torch.Tensor:
    """``rows @ weight + bias`` (M x K times K x N) on the device's backend (``GEMM``).

    ``weight`` is best a transposed view of an N x K tensor (``fold``'s matrices): the
    ``conv`` backend reads that storage as a 1x1 convolution's weight without a copy.
    ``out``: where to write (M x N, any strides), else a new tensor.
    """
    if backend(rows.device, rows.dtype) == "mm":
        if bias is None:
            return torch.mm(rows, weight) if out is None else torch.mm(rows, weight, out=out)
        return torch.addmm(bias, rows, weight) if out is None else \
            torch.addmm(bias, rows, weight, out=out)
    y = _conv_rows(rows, weight, bias)
    return y if out is None else out.copy_(y)


def _conv_rows(rows: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None
               ) -> torch.Tensor:
    """``rows @ weight + bias`` as the library's 1x1 convolution over an M x 1 image."""
    m, k = rows.shape
    w = weight.t().contiguous()  # N x K: a view when weight is fold's
    if m == 0:  # a convolution needs a pixel
        return rows.new_empty(0, w.shape[0])
    rows = rows.contiguous()
    image = rows.view(1, m, 1, k).permute(0, 3, 1, 2)  # channels-last 1 x K x M x 1
    y = F.conv2d(image, w.view(w.shape[0], k, 1, 1), bias)
    return y.permute(0, 2, 3, 1).reshape(m, -1)  # a view when the output is channels-last


def backend(device: torch.device, dtype: torch.dtype = torch.float32) -> str:
    """``gemm``'s backend on ``device``: ``GEMM``'s pin, else measured once (``measure_gemm``)."""
    return measured_once(GEMM, _measured, measure_gemm, device, dtype)


def measured_once(pinned: dict, measured: dict, measure: Callable, device: torch.device,
                  dtype: torch.dtype):
    """``pinned[device.type]`` if pinned, else ``measure(device, dtype)``, kept in
    ``measured`` per device, dtype and thread count (a figure of one thread count says
    nothing of another)."""
    if device.type in pinned:
        return pinned[device.type]
    key = (str(device), dtype, torch.get_num_threads())
    if key not in measured:
        measured[key] = measure(device, dtype)
    return measured[key]


def best_times(calls: dict[str, Callable[[], object]], device: torch.device,
               runs: int) -> dict[str, float]:
    """Each call's fastest time in seconds: all called in turn, ``runs`` times after one
    untimed warm-up call each, synchronised on CUDA. The fastest, because a busy machine
    slows a call and never speeds it."""
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    best = dict.fromkeys(calls, float("inf"))
    for run in range(runs + 1):
        for name, call in calls.items():
            sync()
            start = time.perf_counter()
            call()
            sync()
            if run:  # run 0 is the warm-up
                best[name] = min(best[name], time.perf_counter() - start)
    return best


# (M, K, N): layer4's first 1x1 conv and 3x3 conv (im2col) on 2,048 rows, the ASPP's taps
_SHAPES = ((2048, 2048, 512), (2048, 4608, 512), (2048, 2048, 256))


@torch.no_grad()
def measure_gemm(device: torch.device, dtype: torch.dtype = torch.float32, runs: int = 2) -> str:
    """The faster backend on ``device`` for the sparse executor's GEMM shapes (``_SHAPES``).

    Both backends run every shape in turn (``best_times``), and the fastest times of all
    shapes are summed per backend.
    """
    totals = dict.fromkeys(BACKENDS, 0.0)
    for m, k, n in _SHAPES:
        rows = torch.randn(m, k, device=device, dtype=dtype)
        weight = torch.randn(n, k, device=device, dtype=dtype).t()
        bias = torch.randn(n, device=device, dtype=dtype)
        calls = {"mm": lambda r=rows, w=weight, b=bias: torch.addmm(b, r, w),
                 "conv": lambda r=rows, w=weight, b=bias: _conv_rows(r, w, b)}
        for name, seconds in best_times(calls, device, runs).items():
            totals[name] += seconds
    return min(totals, key=totals.get)


def pointwise(rows: torch.Tensor, conv: nn.Conv2d, bn: nn.BatchNorm2d | None = None,
              relu: bool = True, out: torch.Tensor | None = None) -> torch.Tensor:
    """A 1x1 conv (+ folded batch norm, + ReLU) on rows (N x C_in) -> N x C_out."""
    weight, bias = fold(conv, bn, "matrix")
    y = gemm(rows, weight, bias, out=out)
    return y.relu_() if relu else y


def fold_batch_norm(model: nn.Module) -> int:
    """Fold, in place, every evaluation-mode batch norm of ``model`` that follows a conv.

    A ``BatchNorm2d`` folds into the ``Conv2d`` before it in an ``nn.Sequential`` (the
    ASPP's branches, the head, a ResNet's down-sampling shortcut, MobileNet's
    conv-norm-activation blocks) or when named ``bnN`` beside a ``convN`` (torchvision's
    ResNet stem and bottlenecks, whose forward applies ``bnN`` to ``convN``'s output and
    to nothing else). The conv becomes ``torch.nn.utils.fusion.fuse_conv_bn_eval``'s and
    the batch norm an ``nn.Identity``: the function is unchanged up to float rounding and
    two passes over each activation are gone, as a deployment (TorchScript freezing,
    ONNX Runtime, TensorRT) runs the model. Returns how many were folded.
    """
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    if model.training:
        raise ValueError("fold_batch_norm needs a model in evaluation mode")
    folded = 0
    for parent in list(model.modules()):
        pairs = []
        if isinstance(parent, nn.Sequential):
            names = list(parent._modules)
            pairs += list(zip(names, names[1:]))
        pairs += [(f"conv{i}", f"bn{i}") for i in range(1, 10) if f"bn{i}" in parent._modules]
        for conv_name, bn_name in pairs:
            conv, bn = parent._modules.get(conv_name), parent._modules.get(bn_name)
            if isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d):
                parent._modules[conv_name] = fuse_conv_bn_eval(conv, bn)
                parent._modules[bn_name] = nn.Identity()
                folded += 1
    return folded
