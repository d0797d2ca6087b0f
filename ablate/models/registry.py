"""Name -> builder registries for backbones and heads; ``build_model`` assembles a spec."""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from ablate.errors import UserInputError
from ablate.recipes.schema import ModelSpec

BackboneBuilder = Callable[[ModelSpec], nn.Module]
HeadBuilder = Callable[[dict[str, int], int, ModelSpec], nn.Module]

BACKBONES: dict[str, BackboneBuilder] = {}
HEADS: dict[str, HeadBuilder] = {}


def register_backbone(name: str) -> Callable[[BackboneBuilder], BackboneBuilder]:
    def wrap(fn: BackboneBuilder) -> BackboneBuilder:
        BACKBONES[name] = fn
        return fn

    return wrap


def register_head(name: str) -> Callable[[HeadBuilder], HeadBuilder]:
    def wrap(fn: HeadBuilder) -> HeadBuilder:
        HEADS[name] = fn
        return fn

    return wrap


def build_model(spec: ModelSpec, num_classes: int) -> nn.Module:
    """Build the network a model spec describes (weights are loaded separately)."""
    from ablate.models import zoo  # noqa: F401  (fills the registries)

    if spec.backbone not in BACKBONES:
        raise UserInputError(
            f"model.backbone: unknown backbone {spec.backbone!r}; allowed: {', '.join(sorted(BACKBONES))}"
        )
    if spec.head not in HEADS:
        raise UserInputError(
            f"model.head: unknown head {spec.head!r}; allowed: {', '.join(sorted(HEADS))}"
        )
    backbone = BACKBONES[spec.backbone](spec)
    model = HEADS[spec.head](backbone, num_classes, spec)
    if spec.bn_momentum is not None:
        for module in model.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                module.momentum = spec.bn_momentum
    return model
