"""ResNet-50/101 backbones with torchvision's dilation scheme for output strides 8 and 16."""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

from ablate.errors import UserInputError
from ablate.recipes.schema import ModelSpec

# torchvision's ``replace_stride_with_dilation`` for layer2, layer3, layer4 per output stride
# (DeepLabV3 and FCN in torchvision use output stride 8).
DILATION = {
    8: [False, True, True],
    16: [False, False, True],
    32: [False, False, False],
}
AUX_STRIDE = {8: 8, 16: 16, 32: 16}  # layer3's output stride


class ResNetBackbone(nn.Module):
    """A torchvision ResNet without its pooling and classifier, returning named taps.

    The stages keep torchvision's attribute names (``conv1``, ``layer4``...), so an
    ImageNet state dict loads by key and cost breakdowns read ``backbone.layer4``.
    Taps: ``low`` = layer1 (256 ch, stride 4), ``aux`` = layer3 (1024 ch), ``out`` = layer4.
    """

    def __init__(self, resnet: nn.Module, output_stride: int) -> None:
        super().__init__()
        self.conv1 = resnet.conv1
        self.bn1 = resnet.bn1
        self.relu = resnet.relu
        self.maxpool = resnet.maxpool
        self.layer1 = resnet.layer1
        self.layer2 = resnet.layer2
        self.layer3 = resnet.layer3
        self.layer4 = resnet.layer4
        self.channels = {"low": 256, "aux": 1024, "out": 2048}
        self.strides = {"low": 4, "aux": AUX_STRIDE[output_stride], "out": output_stride}

    def forward(self, x: torch.Tensor) -> OrderedDict[str, torch.Tensor]:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        low = self.layer1(x)
        aux = self.layer3(self.layer2(low))
        out = self.layer4(aux)
        return OrderedDict([("low", low), ("aux", aux), ("out", out)])


def build_resnet(spec: ModelSpec) -> ResNetBackbone:
    from torchvision.models import resnet50, resnet101  # lazy: loads torchvision

    builders = {"resnet50": resnet50, "resnet101": resnet101}
    if spec.output_stride not in DILATION:
        raise UserInputError(
            f"model.output_stride: {spec.backbone} cannot give output stride "
            f"{spec.output_stride}; allowed: {', '.join(map(str, DILATION))}"
        )
    resnet = builders[spec.backbone](
        weights=None, replace_stride_with_dilation=DILATION[spec.output_stride]
    )
    return ResNetBackbone(resnet, spec.output_stride)
