"""Segmentation heads. Each reads the backbone's named features it needs."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F
from torchvision.models.segmentation.deeplabv3 import ASPP, DeepLabHead
from torchvision.models.segmentation.fcn import FCNHead


class DeepLabV3Head(nn.Module):
    """torchvision's DeepLabHead on the ``out`` feature."""

    def __init__(self, channels: dict[str, int], num_classes: int, rates: list[int]) -> None:
        super().__init__()
        self.head = DeepLabHead(channels["out"], num_classes, rates)

    def forward(self, features: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.head(features["out"])


class DeepLabV3PlusHead(nn.Module):
    """ASPP on ``out``, a 1x1 projection of ``low``, concat, two 3x3 convs, classifier.

    SPEC.md section 1: 1x1 low->48 + BN + ReLU; concat (48 + 256); 3x3 -> 256 + BN + ReLU
    twice; 1x1 -> classes with bias. No separable convs, no auxiliary head.
    """

    def __init__(self, channels: dict[str, int], num_classes: int, rates: list[int],
                 aspp_channels: int = 256, low_level_channels: int = 48) -> None:
        super().__init__()
        self.aspp = ASPP(channels["out"], rates, aspp_channels)
        self.project = nn.Sequential(
            nn.Conv2d(channels["low"], low_level_channels, 1, bias=False),
            nn.BatchNorm2d(low_level_channels),
            nn.ReLU(inplace=True),
        )
        width = aspp_channels
        self.decoder = nn.Sequential(
            nn.Conv2d(low_level_channels + aspp_channels, width, 3, padding=1, bias=False),
            nn.BatchNorm2d(width),
            nn.ReLU(inplace=True),
            nn.Conv2d(width, width, 3, padding=1, bias=False),
            nn.BatchNorm2d(width),
            nn.ReLU(inplace=True),
        )
        self.classifier = nn.Conv2d(width, num_classes, 1)

    def forward(self, features: dict[str, torch.Tensor]) -> torch.Tensor:
        low = self.project(features["low"])
        high = self.aspp(features["out"])
        high = F.interpolate(high, size=low.shape[-2:], mode="bilinear", align_corners=False)
        return self.classifier(self.decoder(torch.cat([high, low], dim=1)))


class AuxHead(nn.Module):
    """torchvision's FCNHead on the ``aux`` feature (training-time auxiliary loss)."""

    def __init__(self, channels: dict[str, int], num_classes: int, feature: str = "aux") -> None:
        super().__init__()
        self.feature = feature
        self.head = FCNHead(channels[feature], num_classes)

    def forward(self, features: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.head(features[self.feature])
