"""Registrations: which backbone and head names a recipe may use."""

from __future__ import annotations

from torch import nn

from ablate.errors import UserInputError
from ablate.models.heads import AuxHead, DeepLabV3Head, DeepLabV3PlusHead
from ablate.models.mobilenetv3 import build_mobilenet_v3
from ablate.models.registry import register_backbone, register_head
from ablate.models.segmentation import SegmentationModel
from ablate.recipes.schema import ModelSpec

register_backbone("mobilenet_v3_large")(build_mobilenet_v3)
register_backbone("mobilenet_v3_small")(build_mobilenet_v3)


def _aux(backbone: nn.Module, num_classes: int, spec: ModelSpec) -> nn.Module | None:
    if not spec.aux_head:
        return None
    if "aux" not in backbone.channels:
        raise UserInputError(f"model.aux_head: backbone {spec.backbone} has no auxiliary tap")
    return AuxHead(backbone.channels, num_classes)


@register_head("deeplabv3")
def deeplabv3(backbone: nn.Module, num_classes: int, spec: ModelSpec) -> nn.Module:
    head = DeepLabV3Head(backbone.channels, num_classes, spec.aspp_rates)
    return SegmentationModel(backbone, head, _aux(backbone, num_classes, spec))


@register_head("deeplabv3plus")
def deeplabv3plus(backbone: nn.Module, num_classes: int, spec: ModelSpec) -> nn.Module:
    if "low" not in backbone.channels:
        raise UserInputError(f"model.head: backbone {spec.backbone} has no low-level tap")
    head = DeepLabV3PlusHead(
        backbone.channels, num_classes, spec.aspp_rates, spec.aspp_channels, spec.low_level_channels
    )
    return SegmentationModel(backbone, head, _aux(backbone, num_classes, spec))
