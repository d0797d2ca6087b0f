"""SqueezeNet 1.0 encoder with FCN skip taps (Jeon, Wang and Lee, "Image Segmentation Using
SqueezeNet based on CUDA C", Table 1)."""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

from ablate.errors import UserInputError
from ablate.recipes.schema import ModelSpec

# Indices into torchvision's ``squeezenet1_0().features`` whose outputs are tapped:
# the three max-pools (pool1 96 ch @55, pool4 256 ch @27, pool8 512 ch @13 for 227x227).
POOL_TAPS = {2: "pool1", 6: "pool4", 11: "pool8"}
OUTPUT_STRIDE = 16  # conv1 /2 and three max-pools /2 each; nothing is dilated


class SqueezeNetEncoder(nn.Module):
    """``features`` + conv10 (512 -> 1000, the ImageNet classifier conv) as a dense encoder.

    Taps: ``pool1``/``pool4``/``pool8`` (FCN-8s skips), ``low`` (= pool1, stride 4, for
    DeepLabv3+) and ``out`` (conv10 after ReLU, 1000 ch, stride 16).
    """

    def __init__(self, features: nn.Sequential, conv10: nn.Conv2d, dropout: float = 0.5) -> None:
        super().__init__()
        self.features = features
        self.dropout = nn.Dropout(dropout)
        self.conv10 = conv10
        self.relu = nn.ReLU(inplace=True)
        self.channels = {"pool1": 96, "pool4": 256, "pool8": 512, "low": 96, "out": 1000}
        self.strides = {"pool1": 4, "pool4": 8, "pool8": 16, "low": 4, "out": OUTPUT_STRIDE}

    def forward(self, x: torch.Tensor) -> OrderedDict[str, torch.Tensor]:
        out: OrderedDict[str, torch.Tensor] = OrderedDict()
        for index, layer in enumerate(self.features):
            x = layer(x)
            if index in POOL_TAPS:
                out[POOL_TAPS[index]] = x
        out["low"] = out["pool1"]
        out["out"] = self.relu(self.conv10(self.dropout(x)))
        return out


def build_squeezenet(spec: ModelSpec) -> SqueezeNetEncoder:
    from torchvision.models import squeezenet1_0  # lazy: loads torchvision

    if spec.output_stride != OUTPUT_STRIDE:
        raise UserInputError(
            f"model.output_stride: squeezenet1_0 cannot give output stride {spec.output_stride}; "
            f"allowed: {OUTPUT_STRIDE}"
        )
    net = squeezenet1_0(weights=None)
    return SqueezeNetEncoder(net.features, net.classifier[1])
