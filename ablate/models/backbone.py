"""A backbone is an ``nn.Sequential``-like stack whose forward returns named taps."""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn


class TappedBackbone(nn.Module):
    """Runs ``features`` in order and returns the outputs at ``taps`` by name.

    Keeping ``features`` as one Sequential keeps torchvision's module names
    (``backbone.features.16`` is MobileNetV3-Large's last expansion layer), so
    per-module cost breakdowns read like the papers.
    """

    def __init__(self, features: nn.Sequential, taps: dict[int, str], channels: dict[str, int],
                 strides: dict[str, int]) -> None:
        super().__init__()
        last = max(taps)
        self.features = features[: last + 1] if last + 1 < len(features) else features
        self.taps = dict(taps)
        self.channels = dict(channels)
        self.strides = dict(strides)

    def forward(self, x: torch.Tensor) -> OrderedDict[str, torch.Tensor]:
        out: OrderedDict[str, torch.Tensor] = OrderedDict()
        for index, layer in enumerate(self.features):
            x = layer(x)
            if index in self.taps:
                out[self.taps[index]] = x
        return out
