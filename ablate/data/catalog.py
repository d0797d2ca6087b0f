"""Facts about each dataset that planning needs without importing torch."""

from __future__ import annotations

from ablate.recipes.schema import DataSpec

NUM_CLASSES = {"voc2012": 21, "coco": 21, "cityscapes": 19}
# Resolution at which cost is reported when the recipe does not say (H, W).
EVAL_RESOLUTION = {"voc2012": (512, 512), "coco": (520, 520), "cityscapes": (1024, 2048)}


def dataset_num_classes(data: DataSpec) -> int:
    if data.name == "shapes":
        return data.classes
    return NUM_CLASSES[data.name]


def default_eval_resolution(data: DataSpec) -> tuple[int, int]:
    if data.name == "shapes":
        return (data.image_size, data.image_size)
    return EVAL_RESOLUTION[data.name]
