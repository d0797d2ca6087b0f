"""The built-in heads; ``ablate.catalog`` names them (and the backbones).

Backbones return a dict of named taps and carry ``channels`` and ``strides`` dicts:
``low`` (stride 4), ``aux`` (torchvision's auxiliary / LR-ASPP low tap) and ``out``;
SqueezeNet adds its FCN skips ``pool1``/``pool4``/``pool8``. Heads read taps by name.
"""

from __future__ import annotations

from torch import nn

from ablate.errors import UserInputError
from ablate.models.heads import (
    AuxHead,
    DeepLabV3Head,
    DeepLabV3PlusHead,
    FCN8sHead,
    FCNHead,
    LRASPPHead,
)
from ablate.models.segmentation import SegmentationModel
from ablate.models.selective import build_selective_deeplabv3, check_selective_spec
from ablate.recipes.schema import ModelSpec


def _aux(backbone: nn.Module, num_classes: int, spec: ModelSpec) -> nn.Module | None:
    if not spec.aux_head:
        return None
    if "aux" not in backbone.channels:
        raise UserInputError(f"model.aux_head: backbone {spec.backbone} has no auxiliary tap")
    return AuxHead(backbone.channels, num_classes)


def _no_aux(spec: ModelSpec) -> None:
    if spec.aux_head:
        raise UserInputError(f"model.aux_head: the {spec.head} head has no auxiliary head; "
                             "set model.aux_head = false")


def _no_selective(spec: ModelSpec) -> None:
    """Selective down-sampling is DeepLabV3's alone: another head would build the plain
    network and train it with the mask-net settings ignored."""
    if spec.selective.enabled:
        check_selective_spec(spec)  # refuses: its head is not deeplabv3


def _need(backbone: nn.Module, spec: ModelSpec, tap: str, what: str) -> None:
    if tap not in backbone.channels:
        raise UserInputError(
            f"model.head: {spec.head} needs the {what} tap {tap!r}, which backbone "
            f"{spec.backbone} does not have (taps: {', '.join(backbone.channels)})"
        )


def deeplabv3(backbone: nn.Module, num_classes: int, spec: ModelSpec) -> nn.Module:
    if spec.selective.enabled:
        return build_selective_deeplabv3(spec, num_classes)
    head = DeepLabV3Head(backbone.channels, num_classes, spec.aspp_rates, spec.aspp_channels)
    return SegmentationModel(backbone, head, _aux(backbone, num_classes, spec))


def deeplabv3plus(backbone: nn.Module, num_classes: int, spec: ModelSpec) -> nn.Module:
    _no_selective(spec)
    low_level = "low" if spec.low_level == "auto" else spec.low_level
    if low_level not in backbone.channels:
        raise UserInputError(
            f"model.low_level: backbone {spec.backbone} has no tap {low_level!r}; "
            f"allowed: auto, {', '.join(backbone.channels)}"
        )
    head = DeepLabV3PlusHead(
        backbone.channels, num_classes, spec.aspp_rates, spec.aspp_channels,
        spec.low_level_channels, low_level,
    )
    return SegmentationModel(backbone, head, _aux(backbone, num_classes, spec))


def fcn(backbone: nn.Module, num_classes: int, spec: ModelSpec) -> nn.Module:
    _no_selective(spec)
    head = FCNHead(backbone.channels, num_classes)
    return SegmentationModel(backbone, head, _aux(backbone, num_classes, spec))


def lraspp(backbone: nn.Module, num_classes: int, spec: ModelSpec) -> nn.Module:
    _no_selective(spec)
    _need(backbone, spec, "aux", "stride-8 low-level")
    _no_aux(spec)
    return SegmentationModel(backbone, LRASPPHead(backbone.channels, num_classes))


def fcn8s(backbone: nn.Module, num_classes: int, spec: ModelSpec) -> nn.Module:
    _no_selective(spec)
    if spec.backbone != "squeezenet1_0":
        raise UserInputError(
            f"model.head: fcn8s is defined on squeezenet1_0's pool taps only "
            f"(got backbone {spec.backbone})"
        )
    _no_aux(spec)
    return SegmentationModel(backbone, FCN8sHead(backbone.channels, num_classes))
