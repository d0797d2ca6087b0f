"""The model registries and ``build_model``, the one way a spec becomes a network.

``BACKBONES`` and ``HEADS`` hold the built-in zoo as import paths (``ablate.models.zoo``
and friends import nothing from here, so there is no import circle); ``MODELS`` holds
whole-model builders: plugins of the ``ablate.models`` entry-point group and names
registered at run time. A spec with ``model.builder`` set is built by that builder
(``ablate.models.custom``); without it, by the named backbone and head.

Nothing here imports torch at module level: the recipe schema asks these registries
which names exist.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ablate.registry import Registry

if TYPE_CHECKING:
    from torch import nn

    from ablate.recipes.schema import ModelSpec

BACKBONES = Registry("backbone", "model.backbone", {
    "mobilenet_v3_large": "ablate.models.mobilenetv3:build_mobilenet_v3",
    "mobilenet_v3_small": "ablate.models.mobilenetv3:build_mobilenet_v3",
    "resnet50": "ablate.models.resnet:build_resnet",
    "resnet101": "ablate.models.resnet:build_resnet",
    "squeezenet1_0": "ablate.models.squeezenet:build_squeezenet",
})
HEADS = Registry("head", "model.head", {
    "deeplabv3": "ablate.models.zoo:deeplabv3",
    "deeplabv3plus": "ablate.models.zoo:deeplabv3plus",
    "fcn": "ablate.models.zoo:fcn",
    "lraspp": "ablate.models.zoo:lraspp",
    "fcn8s": "ablate.models.zoo:fcn8s",
})
MODELS = Registry("model builder", "model.builder", {}, group="ablate.models")


def build_model(spec: ModelSpec, num_classes: int) -> nn.Module:
    """Build the network a model spec describes (weights are loaded separately)."""
    from torch import nn

    if spec.builder is not None:
        from ablate.models.custom import build_custom

        model = build_custom(spec, num_classes)
    else:
        backbone = BACKBONES.load(spec.backbone)(spec)
        model = HEADS.load(spec.head)(backbone, num_classes, spec)
    if spec.bn_momentum is not None:
        for module in model.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                module.momentum = spec.bn_momentum
    return model
