"""FLOP handles: one small pure function per operator, in fvcore's convention.

Each handle gets the call's positional arguments, keyword arguments and output, and
returns ``(operator name, flops)``. Only shapes are read, so the tensors may live on
the ``meta`` device. The formulas are fvcore's (``fvcore/nn/jit_handles.py``): one
multiply-add is one flop; batch norm, upsampling and adaptive pooling are counted;
additions, activations and pooling other than adaptive average are not.
"""

from __future__ import annotations

from collections.abc import Callable
from math import prod
from typing import Any

import numpy as np
import torch
from torch.nn import functional as F

Handle = Callable[[tuple, dict, Any], tuple[str, int]]


def _arg(args: tuple, kwargs: dict, index: int, name: str, default: Any = None) -> Any:
    if len(args) > index:
        return args[index]
    return kwargs.get(name, default)


def conv(args: tuple, kwargs: dict, out: Any) -> tuple[str, int]:
    """``batch x prod(weight) x prod(output spatial)``; bias is not counted."""
    x, w = args[0], _arg(args, kwargs, 1, "weight")
    return "conv", x.shape[0] * prod(w.shape) * prod(out.shape[2:])


def conv_transpose(args: tuple, kwargs: dict, out: Any) -> tuple[str, int]:
    """Transposed: every input position meets the whole kernel (``prod(input spatial)``)."""
    x, w = args[0], _arg(args, kwargs, 1, "weight")
    return "conv", x.shape[0] * prod(w.shape) * prod(x.shape[2:])


def convolution(args: tuple, kwargs: dict, out: Any) -> tuple[str, int]:
    """``torch.convolution(input, weight, bias, stride, padding, dilation, transposed, ...)``."""
    transposed = bool(_arg(args, kwargs, 6, "transposed", False))
    return (conv_transpose if transposed else conv)(args, kwargs, out)


def _norm(x: torch.Tensor, affine: bool, training: bool) -> int:
    if training:
        return x.numel() * (5 if affine else 4)
    return x.numel() * (2 if affine else 1)


def functional_batch_norm(args: tuple, kwargs: dict, out: Any) -> tuple[str, int]:
    """``F.batch_norm(input, running_mean, running_var, weight, bias, training, ...)``."""
    weight = _arg(args, kwargs, 3, "weight")
    training = bool(_arg(args, kwargs, 5, "training", False))
    return "batch_norm", _norm(args[0], weight is not None, training)


def aten_batch_norm(args: tuple, kwargs: dict, out: Any) -> tuple[str, int]:
    """``torch.batch_norm(input, weight, bias, running_mean, running_var, training, ...)``."""
    weight = _arg(args, kwargs, 1, "weight")
    training = bool(_arg(args, kwargs, 5, "training", False))
    return "batch_norm", _norm(args[0], weight is not None, training)


def _affine_norm(name: str, weight_index: int) -> Handle:
    """Group, layer and instance norm: ``numel x (5 if affine else 4)``."""

    def handle(args: tuple, kwargs: dict, out: Any) -> tuple[str, int]:
        weight = _arg(args, kwargs, weight_index, "weight")
        return name, _norm(args[0], weight is not None, training=True)

    return handle


def interpolate(args: tuple, kwargs: dict, out: Any) -> tuple[str, int]:
    """``F.interpolate`` on 4-D input: the aten op it becomes decides the count.

    nearest -> upsample_nearest2d (1 per output element), bilinear -> upsample_bilinear2d
    (4 per output element), area -> adaptive_avg_pool2d (1 per input element). fvcore has
    no handle for the other modes (or for 3-D/5-D input): they count 0.
    """
    x = args[0]
    mode = _arg(args, kwargs, 3, "mode", "nearest")
    antialias = bool(_arg(args, kwargs, 6, "antialias", False))
    if x.dim() != 4 or antialias:
        return f"upsample_{mode}", 0
    if mode == "nearest":
        return "upsample_nearest2d", out.numel()
    if mode == "bilinear":
        return "upsample_bilinear2d", 4 * out.numel()
    if mode == "area":
        return "adaptive_avg_pool2d", x.numel()
    return f"upsample_{mode}", 0


def adaptive_avg_pool2d(args: tuple, kwargs: dict, out: Any) -> tuple[str, int]:
    return "adaptive_avg_pool2d", args[0].numel()


def grid_sample(args: tuple, kwargs: dict, out: Any) -> tuple[str, int]:
    return "grid_sampler", 4 * out.numel()  # fvcore assumes bilinear


def linear(args: tuple, kwargs: dict, out: Any) -> tuple[str, int]:
    x, w = args[0], _arg(args, kwargs, 1, "weight")
    return "linear", x.numel() * w.shape[0]


def matmul(args: tuple, kwargs: dict, out: Any) -> tuple[str, int]:
    a, b = args[0], args[1]
    return "matmul", a.numel() * b.shape[-1]


def bmm(args: tuple, kwargs: dict, out: Any) -> tuple[str, int]:
    a, b = args[0], args[1]
    n, c, t = a.shape
    return "bmm", n * c * t * b.shape[-1]


def addmm(args: tuple, kwargs: dict, out: Any) -> tuple[str, int]:
    a, b = args[1], args[2]
    return "addmm", a.shape[0] * a.shape[1] * b.shape[1]


def einsum(args: tuple, kwargs: dict, out: Any) -> tuple[str, int]:
    """fvcore's rule: two fast paths, otherwise numpy's optimal contraction path / 2."""
    equation = args[0].replace(" ", "")
    operands = args[1] if len(args) == 2 and isinstance(args[1], (list, tuple)) else args[1:]
    shapes = [list(t.shape) for t in operands]
    letters = dict.fromkeys(k for k in equation if k.isalpha())
    equation = equation.translate({ord(k): 97 + i for i, k in enumerate(letters)})
    if equation == "abc,abd->acd":
        n, c, t = shapes[0]
        return "einsum", n * c * t * shapes[-1][-1]
    if equation == "abc,adc->adb":
        n, t, g = shapes[0]
        return "einsum", n * t * g * shapes[-1][1]
    path = np.einsum_path(equation, *[np.zeros(s) for s in shapes], optimize="optimal")[1]
    for line in path.split("\n"):
        if "optimized flop" in line.lower():
            return "einsum", int(np.floor(float(line.split(":")[-1]) / 2))
    return "einsum", 0


def default_handles() -> dict[Callable, Handle]:
    """The operator -> handle map, keyed by the callables ``__torch_function__`` sees."""
    tensor = torch.Tensor
    return {
        torch.conv1d: conv, torch.conv2d: conv, torch.conv3d: conv,
        torch.conv_transpose1d: conv_transpose, torch.conv_transpose2d: conv_transpose,
        torch.conv_transpose3d: conv_transpose,
        torch.convolution: convolution,
        F.batch_norm: functional_batch_norm, torch.batch_norm: aten_batch_norm,
        F.group_norm: _affine_norm("group_norm", 2), torch.group_norm: _affine_norm("group_norm", 2),
        F.layer_norm: _affine_norm("layer_norm", 2), torch.layer_norm: _affine_norm("layer_norm", 2),
        F.instance_norm: _affine_norm("instance_norm", 3),
        torch.instance_norm: _affine_norm("instance_norm", 1),
        F.interpolate: interpolate,
        F.adaptive_avg_pool2d: adaptive_avg_pool2d,
        torch._C._nn.adaptive_avg_pool2d: adaptive_avg_pool2d,
        F.grid_sample: grid_sample,
        F.linear: linear,
        torch.matmul: matmul, tensor.matmul: matmul, torch.mm: matmul, tensor.mm: matmul,
        torch.bmm: bmm, tensor.bmm: bmm,
        torch.addmm: addmm, tensor.addmm: addmm,
        torch.einsum: einsum,
    }
