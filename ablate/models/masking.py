"""Tensor helpers both selective models share: patch pooling, mask sampling, tied copies.

``ablate.models.selective`` (dense emulation) and ``ablate.models.sparse`` (sparse
execution) both import these; neither imports the other's internals for them.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn
from torch.nn import functional as F


def pool_patches(x: torch.Tensor, d: int, mode: str) -> torch.Tensor:
    """Down-sample ``x`` by ``d``: one value per ``d x d`` patch.

    ``fixed`` keeps the top-left pixel, ``avg`` and ``max`` pool the patch. A border
    patch cut by the map edge is pooled over its pixels inside the map (ceil mode),
    so the result has ``ceil(H / d) x ceil(W / d)`` cells, the mask grid's size.
    """
    if mode == "fixed":
        return x[:, :, ::d, ::d]
    if mode == "avg":
        return F.avg_pool2d(x, d, ceil_mode=True)
    if mode == "max":
        return F.max_pool2d(x, d, ceil_mode=True)
    raise ValueError(f"unknown pooling mode {mode!r}; allowed: fixed, avg, max")


def upsample_mask(mask: torch.Tensor, d: int, size: tuple[int, int] | None = None
                  ) -> torch.Tensor:
    """Nearest up-sampling by ``d``: cell ``(i, j)`` covers pixels ``[d*i, d*i+d) x [d*j, d*j+d)``.

    ``size`` (H, W) crops the border cells that stick out of a map not divisible by
    ``d``. Used for the mask and for the low path's features alike.
    """
    up = mask.repeat_interleave(d, dim=-2).repeat_interleave(d, dim=-1)
    if size is not None:
        up = up[..., : size[0], : size[1]]
    return up


def gumbel_mask(logits: torch.Tensor, tau: float, hard: bool = True, training: bool = True
                ) -> torch.Tensor:
    """B x 2 x H x W logits -> B x 1 x H x W mask, 1 = down-sample the cell.

    Training: Gumbel-softmax sample at temperature ``tau``; ``hard`` gives exact 0/1
    values whose gradient is the soft sample's (straight-through). Evaluation: no
    noise; ``hard`` gives the argmax (a tie keeps full resolution), otherwise the
    softmax probability at temperature ``tau``.
    """
    if training:
        return F.gumbel_softmax(logits, tau=tau, hard=hard, dim=1)[:, 1:2]
    if hard:
        return (logits[:, 1:2] > logits[:, 0:1]).to(logits.dtype)
    return torch.softmax(logits / tau, dim=1)[:, 1:2]


def tie_parameters(src: nn.Module, dst: nn.Module) -> None:
    """Make every parameter of ``dst`` the very object of ``src`` (same module layout)."""
    for (_, a), (_, b) in zip(src.named_modules(), dst.named_modules()):
        for name, param in a.named_parameters(recurse=False):
            setattr(b, name, param)


def low_twin_filler(*stems: str) -> Callable[..., None]:
    """A ``load_state_dict`` pre-hook that fills ``low_<key>`` from ``<key>`` for every key
    under ``stems`` (e.g. ``"layer3."``, ``"head."``) whose low twin the state dict lacks.

    Tied parameters need nothing, but a low twin's BN running statistics are its own:
    a state dict without the twin (ImageNet weights, a plain OS-8 or dense-execution
    checkpoint) gives it the same tensor. A checkpoint of the model keeps its own values.
    """
    def fill(module: nn.Module, state_dict: dict, prefix: str, *args) -> None:
        for key in list(state_dict):
            local = key[len(prefix):]
            if key.startswith(prefix) and local.startswith(stems):
                state_dict.setdefault(prefix + "low_" + local, state_dict[key])

    return fill
