"""Segmentation heads. Each reads the backbone's named features it needs.

A head's ``forward`` takes the backbone's dict of features and returns logits at
whatever stride it works at; ``SegmentationModel`` resizes them to the input.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F
from torchvision.models.segmentation.deeplabv3 import ASPP
from torchvision.models.segmentation.fcn import FCNHead as TorchvisionFCNHead
from torchvision.models.segmentation.lraspp import LRASPPHead as TorchvisionLRASPPHead


class DeepLabV3Head(nn.Module):
    """torchvision's ``DeepLabHead`` on ``out``: ASPP, 3x3 conv + BN + ReLU, 1x1 classifier.

    With 256 ASPP channels the parameters are exactly torchvision's.
    """

    def __init__(self, channels: dict[str, int], num_classes: int, rates: list[int],
                 aspp_channels: int = 256) -> None:
        super().__init__()
        self.aspp = ASPP(channels["out"], rates, aspp_channels)
        self.conv = nn.Sequential(
            nn.Conv2d(aspp_channels, aspp_channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(aspp_channels),
            nn.ReLU(),
        )
        self.classifier = nn.Conv2d(aspp_channels, num_classes, 1)

    def forward(self, features: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.classifier(self.conv(self.aspp(features["out"])))


class DeepLabV3PlusHead(nn.Module):
    """ASPP on ``out``, a 1x1 projection of the low-level feature, concat, two 3x3 convs.

    Kim et al. 2025 (Table 1 counts): 1x1 low->48 + BN + ReLU; concat (48 + 256); 3x3 -> 256 + BN + ReLU
    twice; 1x1 -> classes with bias. No separable convs, no auxiliary head.
    """

    def __init__(self, channels: dict[str, int], num_classes: int, rates: list[int],
                 aspp_channels: int = 256, low_level_channels: int = 48,
                 low_level: str = "low") -> None:
        super().__init__()
        self.low_level = low_level
        self.aspp = ASPP(channels["out"], rates, aspp_channels)
        self.project = nn.Sequential(
            nn.Conv2d(channels[low_level], low_level_channels, 1, bias=False),
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
        low = self.project(features[self.low_level])
        high = self.aspp(features["out"])
        high = F.interpolate(high, size=low.shape[-2:], mode="bilinear", align_corners=False)
        return self.classifier(self.decoder(torch.cat([high, low], dim=1)))


class FCNHead(TorchvisionFCNHead):
    """torchvision's ``FCNHead`` (3x3 conv to in/4 channels, BN, ReLU, dropout, 1x1) on a tap."""

    def __init__(self, channels: dict[str, int], num_classes: int, feature: str = "out") -> None:
        super().__init__(channels[feature], num_classes)
        self.feature = feature

    def forward(self, features: dict[str, torch.Tensor]) -> torch.Tensor:  # type: ignore[override]
        return super().forward(features[self.feature])


class AuxHead(FCNHead):
    """The training-time auxiliary classifier: ``FCNHead`` on the ``aux`` tap, as torchvision."""

    def __init__(self, channels: dict[str, int], num_classes: int, feature: str = "aux") -> None:
        super().__init__(channels, num_classes, feature)


class LRASPPHead(TorchvisionLRASPPHead):
    """torchvision's Lite R-ASPP: ``low`` is the stride-8 ``aux`` tap, ``high`` is ``out``.

    On MobileNetV3-Large that is features[4] (40 ch) and features[16] (960 ch), as in
    ``torchvision.models.segmentation.lraspp_mobilenet_v3_large``.
    """

    def __init__(self, channels: dict[str, int], num_classes: int,
                 inter_channels: int = 128) -> None:
        super().__init__(channels["aux"], channels["out"], num_classes, inter_channels)

    def forward(self, features: dict[str, torch.Tensor]) -> torch.Tensor:  # type: ignore[override]
        return super().forward({"low": features["aux"], "high": features["out"]})


class FCN8sHead(nn.Module):
    """FCN-8s decoder on SqueezeNet's taps (Jeon, Wang and Lee, Table 1).

    Score conv10's output and pool8 (both at 13x13 for 227x227), sum, transposed conv x2
    (conv11) -> 27, add scored pool4, transposed conv x2 (conv12) -> 55, add scored pool1,
    transposed conv x4 with an 11x11 kernel (conv13) -> 227. The transposed convs have no
    bias and no padding; they start as bilinear upsampling, as in the FCN paper.
    """

    def __init__(self, channels: dict[str, int], num_classes: int) -> None:
        super().__init__()
        self.score = nn.Conv2d(channels["out"], num_classes, 1)
        self.score_pool8 = nn.Conv2d(channels["pool8"], num_classes, 1)
        self.conv11 = nn.ConvTranspose2d(num_classes, num_classes, 3, stride=2, bias=False)
        self.score_pool4 = nn.Conv2d(channels["pool4"], num_classes, 1)
        self.conv12 = nn.ConvTranspose2d(num_classes, num_classes, 3, stride=2, bias=False)
        self.score_pool1 = nn.Conv2d(channels["pool1"], num_classes, 1)
        self.conv13 = nn.ConvTranspose2d(num_classes, num_classes, 11, stride=4, bias=False)
        for up in (self.conv11, self.conv12, self.conv13):
            _bilinear_init(up)

    def forward(self, features: dict[str, torch.Tensor]) -> torch.Tensor:
        x = self.score(features["out"]) + self.score_pool8(features["pool8"])
        x = _fit(self.conv11(x), features["pool4"]) + self.score_pool4(features["pool4"])
        x = _fit(self.conv12(x), features["pool1"]) + self.score_pool1(features["pool1"])
        return self.conv13(x)


def _fit(x: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Match a skip's spatial size. At 227x227 the sizes agree and this does nothing."""
    if x.shape[-2:] == like.shape[-2:]:
        return x
    return F.interpolate(x, size=like.shape[-2:], mode="bilinear", align_corners=False)


@torch.no_grad()
def _bilinear_init(up: nn.ConvTranspose2d) -> None:
    """Each class channel upsampled bilinearly on its own (FCN's initialisation)."""
    if up.weight.is_meta:
        return
    k = up.kernel_size[0]
    factor = (k + 1) // 2
    center = factor - 1 if k % 2 == 1 else factor - 0.5
    og = torch.arange(k, dtype=torch.float32)
    filt = 1 - (og - center).abs() / factor
    kernel = filt[:, None] * filt[None, :]
    up.weight.zero_()
    for c in range(min(up.in_channels, up.out_channels)):
        up.weight[c, c] = kernel
