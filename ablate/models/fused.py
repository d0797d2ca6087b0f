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
"""

from __future__ import annotations

import torch
from torch import nn

LAYOUTS = ("matrix", "affine", "conv", "taps", "im2col")


def _versions(tensors: tuple[torch.Tensor | None, ...]) -> tuple:
    return tuple((id(t), t._version) for t in tensors if t is not None)


def fold(conv: nn.Conv2d, bn: nn.BatchNorm2d | None = None, layout: str = "matrix"
         ) -> tuple[torch.Tensor, torch.Tensor]:
    """``conv`` followed by ``bn`` (evaluation statistics) as one ``(weight, bias)``.

    ``layout``: ``matrix`` C_in x C_out (a 1x1 conv as ``addmm(bias, rows, weight)``),
    ``affine`` (C_in + 1) x C_out, the matrix with the bias as its last row (for rows
    that end in a ones column), ``conv`` C_out x C_in x kh x kw in channels-last memory
    (``F.conv2d`` on gathered tiles), ``taps`` 9 x C_in x C_out (one matrix per 3x3
    tap, row-major taps) and ``im2col`` 9 C_in x C_out (the nine taps' inputs stacked,
    tap-major).
    """
    if layout not in LAYOUTS:
        raise ValueError(f"unknown layout {layout!r}; allowed: {', '.join(LAYOUTS)}")
    if layout in ("matrix", "affine") and conv.kernel_size != (1, 1):
        raise ValueError(f"layout {layout!r} is a 1x1 conv's, got kernel {conv.kernel_size}")
    stats = () if bn is None else (bn.weight, bn.bias, bn.running_mean, bn.running_var)
    key = _versions((conv.weight, conv.bias, *stats))
    cache = conv.__dict__.setdefault("_ablate_folded", {})
    hit = cache.get(layout)
    if hit is not None and hit[0] == key:
        return hit[1]
    with torch.no_grad():
        weight = conv.weight.detach()
        bias = (conv.bias.detach() if conv.bias is not None
                else weight.new_zeros(weight.shape[0]))
        if bn is not None:
            scale = bn.weight.detach() * torch.rsqrt(bn.running_var + bn.eps)
            weight = weight * scale[:, None, None, None]
            bias = (bias - bn.running_mean) * scale + bn.bias.detach()
        weight = _arrange(weight, layout)
        if layout == "affine":
            weight = torch.cat([weight, bias[None]])
    cache[layout] = (key, (weight, bias.contiguous()))
    return weight, bias


def _arrange(weight: torch.Tensor, layout: str) -> torch.Tensor:
    c_out, c_in = weight.shape[:2]
    if layout in ("matrix", "affine"):
        return weight.reshape(c_out, c_in).t().contiguous()
    if layout == "conv":
        return weight.contiguous(memory_format=torch.channels_last)
    if layout == "taps":
        return weight.permute(2, 3, 1, 0).reshape(-1, c_in, c_out).contiguous()
    return weight.permute(2, 3, 1, 0).reshape(-1, c_out).contiguous()  # im2col


def pointwise(rows: torch.Tensor, conv: nn.Conv2d, bn: nn.BatchNorm2d | None = None,
              relu: bool = True, out: torch.Tensor | None = None) -> torch.Tensor:
    """A 1x1 conv (+ folded batch norm, + ReLU) on rows (N x C_in) -> N x C_out."""
    weight, bias = fold(conv, bn, "matrix")
    y = torch.addmm(bias, rows, weight, out=out) if out is not None \
        else torch.addmm(bias, rows, weight)
    return y.relu_() if relu else y
