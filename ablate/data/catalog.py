"""Facts about each dataset that planning needs without importing torch.

``DATASETS`` is the dataset registry: the built-in readers, plugins of the
``ablate.datasets`` entry-point group and run-time registrations. A plugin (or
``data.builder``) is user code whose class count and image size planning cannot know,
so such a recipe sets ``model.num_classes`` and ``eval.resolution`` (or
``data.eval_size``) itself.
"""

from __future__ import annotations

from ablate.catalog import BUILTIN_DATASETS
from ablate.errors import UserInputError
from ablate.recipes.schema import DataSpec

NUM_CLASSES = {"voc2012": 21, "coco": 21, "cityscapes": 19}
# Resolution at which cost is reported when the recipe does not say (H, W).
EVAL_RESOLUTION = {"voc2012": (512, 512), "coco": (520, 520), "cityscapes": (1024, 2048)}

def user_dataset(data: DataSpec) -> str | None:
    """The builder reference of a dataset given by user code (None: a built-in reader)."""
    if data.builder is not None:
        return data.builder
    return None if data.name in BUILTIN_DATASETS else data.name


def dataset_num_classes(data: DataSpec) -> int:
    if data.name == "shapes" and data.builder is None:
        return data.classes
    if data.name == "folder":
        from ablate.data.folder import read_classes  # lazy: loads numpy

        return len(read_classes(data.root))
    if user_dataset(data) is not None:
        raise UserInputError(
            f"model.num_classes: required with {_user_key(data)} (ablate cannot know how many "
            "classes your dataset has without loading it)")
    return NUM_CLASSES[data.name]


def default_eval_resolution(data: DataSpec) -> tuple[int, int]:
    if data.name == "shapes" and data.builder is None:
        return (data.image_size, data.image_size)
    if data.name == "folder":
        from ablate.data.folder import first_image_size  # lazy: loads numpy

        return first_image_size(data.root, data.val_split)
    if user_dataset(data) is not None:
        raise UserInputError(
            f"eval.resolution: required with {_user_key(data)} (the [height, width] at which "
            "FLOPs and latency are reported); or set data.eval_size")
    return EVAL_RESOLUTION[data.name]


def _user_key(data: DataSpec) -> str:
    return (f"data.builder = {data.builder!r}" if data.builder is not None
            else f"data.name = {data.name!r}")
