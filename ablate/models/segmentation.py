"""The assembled network: backbone -> head (-> auxiliary head), logits at input size."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


class SegmentationModel(nn.Module):
    def __init__(self, backbone: nn.Module, head: nn.Module, aux_head: nn.Module | None = None):
        super().__init__()
        self.backbone = backbone
        self.head = head
        self.aux_head = aux_head

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        size = x.shape[-2:]
        features = self.backbone(x)
        out = {"out": _resize(self.head(features), size)}
        if self.aux_head is not None:
            out["aux"] = _resize(self.aux_head(features), size)
        return out


def _resize(logits: torch.Tensor, size) -> torch.Tensor:
    if logits.shape[-2:] == size:
        return logits
    return F.interpolate(logits, size=size, mode="bilinear", align_corners=False)
