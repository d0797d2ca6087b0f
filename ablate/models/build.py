"""``build_model``, the one way a spec becomes a network.

The registries it resolves names in (``BACKBONES``, ``HEADS``, ``MODELS``) live in
``ablate.catalog``, below the recipe schema. A spec with ``model.builder`` set is built
by that builder (``ablate.models.custom``); without it, by the named backbone and head.
Either way ``model.remove`` and ``model.replace`` then knock submodules out by path
(``ablate.models.knockout``), here, so that costs, training and checkpoints all see the
same network.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ablate.catalog import BACKBONES, HEADS

if TYPE_CHECKING:
    from torch import nn

    from ablate.recipes.schema import ModelSpec


def build_model(spec: ModelSpec, num_classes: int) -> nn.Module:
    """Build the network a model spec describes (weights are loaded separately)."""
    from torch import nn  # lazy: loads torch

    if spec.builder is not None:
        from ablate.models.custom import build_custom  # lazy: loads torch

        model = build_custom(spec, num_classes)
    else:
        backbone = BACKBONES.load(spec.backbone)(spec)
        model = HEADS.load(spec.head)(backbone, num_classes, spec)
    if spec.remove or spec.replace:
        from ablate.models.knockout import knock_out  # lazy: loads torch

        model = knock_out(model, spec)
    if spec.bn_momentum is not None:
        for module in model.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                module.momentum = spec.bn_momentum
    return model
