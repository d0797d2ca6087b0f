"""A small U-Net (Ronneberger, Fischer and Brox, "U-Net: Convolutional Networks for
Biomedical Image Segmentation", MICCAI 2015) with the knobs an ablation turns.

``depth`` down-sampling stages, ``width`` channels at full resolution (doubled per
stage) and ``skip``: how the decoder uses the encoder's feature maps at each scale
("concat" as in the paper, "add" as in LinkNet, "none": a plain encoder-decoder).
Inputs whose sides are not multiples of ``2 ** depth`` are padded and the logits cropped.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

SKIPS = ("concat", "add", "none")


def _block(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
        nn.Conv2d(cout, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
    )


class UNet(nn.Module):
    def __init__(self, num_classes: int, depth: int = 3, width: int = 16,
                 skip: str = "concat") -> None:
        super().__init__()
        if not 1 <= depth <= 6:
            raise ValueError(f"depth must be 1..6, got {depth}")
        if skip not in SKIPS:
            raise ValueError(f"skip must be one of {', '.join(SKIPS)}, got {skip!r}")
        self.depth, self.skip = depth, skip
        widths = [width * 2**i for i in range(depth + 1)]
        self.stem = _block(3, widths[0])
        self.down = nn.ModuleList(_block(widths[i], widths[i + 1]) for i in range(depth))
        self.up = nn.ModuleList(
            nn.ConvTranspose2d(widths[i + 1], widths[i], 2, stride=2) for i in reversed(range(depth))
        )
        merged = [widths[i] * (2 if skip == "concat" else 1) for i in reversed(range(depth))]
        self.decode = nn.ModuleList(
            _block(cin, widths[i]) for cin, i in zip(merged, reversed(range(depth)))
        )
        self.classifier = nn.Conv2d(widths[0], num_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        height, width = x.shape[-2:]
        multiple = 2**self.depth
        x = F.pad(x, (0, -width % multiple, 0, -height % multiple))
        features = [self.stem(x)]
        for block in self.down:
            features.append(block(F.max_pool2d(features[-1], 2)))
        y = features.pop()
        for up, decode in zip(self.up, self.decode):
            y, skip = up(y), features.pop()
            if self.skip == "concat":
                y = torch.cat([y, skip], 1)
            elif self.skip == "add":
                y = y + skip
            y = decode(y)
        return self.classifier(y)[..., :height, :width]


def build_unet(num_classes: int, depth: int = 3, width: int = 16, skip: str = "concat") -> UNet:
    """The builder a recipe names: ``model.builder = "custom_unet.model:build_unet"``."""
    return UNet(num_classes, depth=depth, width=width, skip=skip)
