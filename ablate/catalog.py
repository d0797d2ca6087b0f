"""The names ablate knows: the model and dataset registries, below the recipe schema.

The schema checks ``model.backbone``, ``model.head``, ``model.builder`` and ``data.name``
against these registries, and the model and dataset packages (above the schema) build
what a name refers to, so this module imports neither: each built-in entry is an
import path resolved only when used (``ablate.registry``). User code joins through the
``ablate.models`` / ``ablate.datasets`` entry-point groups or ``Registry.register``.
"""

from __future__ import annotations

from ablate.registry import Registry

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
# whole-model builders: plugins and run-time registrations only
MODELS = Registry("model builder", "model.builder", {}, group="ablate.models")

DATASETS = Registry("dataset", "data.name", {
    "shapes": "ablate.data.shapes:generate",
    "voc2012": "ablate.data.voc:find_samples",
    "cityscapes": "ablate.data.cityscapes:find_samples",
    "coco": "ablate.data.coco:find_samples",
    "folder": "ablate.data.folder:find_samples",
}, group="ablate.datasets")
BUILTIN_DATASETS = tuple(DATASETS.builtin_names())


def ignored_plugins(*registries: Registry) -> list[str]:
    """A line per installed plugin whose name a recipe cannot reach (a built-in's name,
    or another plugin's) in ``registries`` (default: models and datasets): said once by
    the commands that resolve names, as a plugin skipped without a word looks installed
    and working."""
    return [line for registry in (registries or (MODELS, DATASETS))
            for line in registry.ignored_plugins()]
