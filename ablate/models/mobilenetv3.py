"""MobileNetV3 backbones with control over every expansion layer (Kim et al. 2025)."""

from __future__ import annotations

from functools import partial

from torch import nn
from torchvision.models.mobilenetv3 import InvertedResidual, InvertedResidualConfig
from torchvision.ops.misc import Conv2dNormActivation

from ablate.errors import UserInputError
from ablate.models.backbone import TappedBackbone
from ablate.recipes.schema import ModelSpec

# One row per inverted-residual block, as in the paper's tables and torchvision:
# (input channels, kernel, expanded channels, output channels, squeeze-excite, activation, stride)
LARGE = [
    (16, 3, 16, 16, False, "RE", 1),  # block 0  stride 2   (no expansion: ratio 1)
    (16, 3, 64, 24, False, "RE", 2),  # block 1  C1 -> stride 4
    (24, 3, 72, 24, False, "RE", 1),  # block 2
    (24, 5, 72, 40, True, "RE", 2),  # block 3  C2 -> stride 8
    (40, 5, 120, 40, True, "RE", 1),  # block 4
    (40, 5, 120, 40, True, "RE", 1),  # block 5
    (40, 3, 240, 80, False, "HS", 2),  # block 6  C3 -> stride 16
    (80, 3, 200, 80, False, "HS", 1),  # block 7
    (80, 3, 184, 80, False, "HS", 1),  # block 8
    (80, 3, 184, 80, False, "HS", 1),  # block 9
    (80, 3, 480, 112, True, "HS", 1),  # block 10
    (112, 3, 672, 112, True, "HS", 1),  # block 11
    (112, 5, 672, 160, True, "HS", 2),  # block 12 C4 -> stride 32
    (160, 5, 960, 160, True, "HS", 1),  # block 13
    (160, 5, 960, 160, True, "HS", 1),  # block 14
]
SMALL = [
    (16, 3, 16, 16, True, "RE", 2),  # block 0  C1 -> stride 4 (no expansion: ratio 1)
    (16, 3, 72, 24, False, "RE", 2),  # block 1  C2 -> stride 8
    (24, 3, 88, 24, False, "RE", 1),  # block 2
    (24, 5, 96, 40, True, "HS", 2),  # block 3  C3 -> stride 16
    (40, 5, 240, 40, True, "HS", 1),  # block 4
    (40, 5, 240, 40, True, "HS", 1),  # block 5
    (40, 5, 120, 48, True, "HS", 1),  # block 6
    (48, 5, 144, 48, True, "HS", 1),  # block 7
    (48, 5, 288, 96, True, "HS", 2),  # block 8  C4 -> stride 32
    (96, 5, 576, 96, True, "HS", 1),  # block 9
    (96, 5, 576, 96, True, "HS", 1),  # block 10
]
ARCHS = {"mobilenet_v3_large": LARGE, "mobilenet_v3_small": SMALL}


def expandable_blocks(rows: list[tuple]) -> list[int]:
    return [i for i, row in enumerate(rows) if row[2] != row[0]]


def kept_expansions(name: str, expansion: str | list[int]) -> set[int]:
    """Block indices that keep their 1x1 expansion conv; validates the recipe's list."""
    rows = ARCHS[name]
    expandable = expandable_blocks(rows)
    if expansion == "all":
        return set(expandable)
    if expansion == "none":
        return set()
    for index in expansion:
        if not 0 <= index < len(rows):
            raise UserInputError(
                f"model.expansion: block {index} out of range for {name} (blocks 0-{len(rows) - 1})"
            )
        if index not in expandable:
            raise UserInputError(
                f"model.expansion: block {index} of {name} has expand ratio 1 and no expansion "
                f"layer to keep; blocks with one: {expandable}"
            )
    return set(expansion)


def block_settings(name: str, spec: ModelSpec) -> list[InvertedResidualConfig]:
    """Rows -> torchvision configs with expansions dropped and strides turned into dilation."""
    rows = ARCHS[name]
    keep = kept_expansions(name, spec.expansion)
    expandable = set(expandable_blocks(rows))
    stride, dilation = 2, 1  # after the stem
    settings = []
    for i, (cin, kernel, expanded, cout, se, act, block_stride) in enumerate(rows):
        if i in expandable and i not in keep:
            expanded = cin  # no 1x1 expansion: the depthwise conv works on the input width
        if block_stride == 2:
            if stride * 2 > spec.output_stride:
                dilation *= 2  # as torchvision's dilated=True: stride 1, the stage dilated
            else:
                stride *= 2
        settings.append(
            InvertedResidualConfig(cin, kernel, expanded, cout, se, act, block_stride, dilation, 1.0)
        )
    return settings


def build_mobilenet_v3(spec: ModelSpec) -> TappedBackbone:
    name = spec.backbone
    settings = block_settings(name, spec)
    norm = partial(nn.BatchNorm2d, eps=0.001, momentum=0.01)
    layers: list[nn.Module] = [
        Conv2dNormActivation(3, 16, kernel_size=3, stride=2, norm_layer=norm,
                             activation_layer=nn.Hardswish)
    ]
    layers += [InvertedResidual(cnf, norm) for cnf in settings]
    last_in = settings[-1].out_channels
    if spec.keep_last_expansion:
        layers.append(Conv2dNormActivation(last_in, 6 * last_in, kernel_size=1, norm_layer=norm,
                                           activation_layer=nn.Hardswish))
    features = nn.Sequential(*layers)

    # Taps: the last layer at stride 4 (low), the first at stride 8 (aux), the final one (out).
    strides, stride = [], 2
    for cnf in settings:
        if cnf.stride == 2 and cnf.dilation == 1:
            stride *= 2
        strides.append(stride)
    low = _last_index_at(strides, 4)  # features[:4] on Large: DeepLabv3+'s low-level input
    # torchvision's aux/LR-ASPP tap: the first block at stride 8 (features[4] on Large)
    aux = 1 + strides.index(8) if 8 in strides else None
    out_index = len(features) - 1
    out_channels = 6 * last_in if spec.keep_last_expansion else last_in
    taps = {low: "low", out_index: "out"}
    channels = {"low": settings[low - 1].out_channels, "out": out_channels}
    stride_of = {"low": 4, "out": strides[-1]}
    if aux is not None and aux not in taps:
        taps[aux] = "aux"
        channels["aux"] = settings[aux - 1].out_channels
        stride_of["aux"] = 8
    return TappedBackbone(features, taps, channels, stride_of)


def _last_index_at(strides: list[int], stride: int) -> int | None:
    """Index into ``features`` (stem is 0) of the last block whose output has this stride."""
    hits = [i for i, s in enumerate(strides) if s == stride]
    return hits[-1] + 1 if hits else None
