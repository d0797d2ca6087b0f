"""Parameter counts: total and per module."""

from __future__ import annotations

from torch import nn


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def params_by_module(model: nn.Module, depth: int = 3) -> dict[str, int]:
    """Parameters per module path, down to ``depth`` dots (``backbone.features.16``).

    Every parameter is counted once, under its module prefix cut to ``depth`` parts,
    so the values add up to the total.
    """
    counts: dict[str, int] = {}
    for name, param in model.named_parameters():
        parts = name.split(".")[:-1] or ["<root>"]
        key = ".".join(parts[:depth])
        counts[key] = counts.get(key, 0) + param.numel()
    return counts

