"""User datasets: ``data.builder = "package.module:function"`` or a plugin's name.

The function is called with ``**data.args`` (plus ``root=data.root`` when the recipe
sets it) and returns ``(train, val)``: two datasets (anything with ``__len__`` and
``__getitem__``) of ``(image, mask)`` pairs. An image is a PIL image, an array
``(H, W, 3)`` (RGB), ``(H, W, 4)`` (RGBA: alpha dropped, as PIL's ``convert("RGB")``
does), ``(H, W)`` or ``(H, W, 1)`` (grey, copied to R, G and B), or a tensor
``[3, H, W]`` (or ``[4, H, W]``, ``[1, H, W]``), uint8 or float in 0..1; a mask is a PIL
image, an array or a tensor ``(H, W)`` of class indices, 255 = ignore. The pairs then
go through the same transforms (scale, crop, flip, normalise) as the built-in readers.
A tensor whose first and last sizes both could be its channels (``[3, 4, 3]``) is read
the way whose height and width are its mask's; where both are (``[3, 3, 3]``) the
dataset says which with ``image_layout = "CHW"`` (or ``"HWC"``, which an array may
declare too), else the item is refused rather than guessed.
Errors in an item name the builder, the split and the index: ``data.builder
userds:build: train[4] mask: class index 7 out of range; ...``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ablate.catalog import DATASETS
from ablate.data.catalog import user_dataset
from ablate.errors import UserInputError
from ablate.recipes.schema import DataSpec
from ablate.registry import import_target, is_import_path, keyword_names

IGNORE = 255
CHANNELS = (1, 2, 3, 4)  # grey, grey + alpha, RGB, RGBA
LAYOUTS = ("CHW", "HWC")  # a dataset's image_layout: where a 3-d image keeps its channels
WIDE_MODES = ("I", "I;16", "I;16B", "I;16L", "I;16N", "F")  # PIL modes past 8 bits


def _key(data: DataSpec) -> str:
    return "data.builder" if data.builder is not None else "data.name"


def load_builder(data: DataSpec) -> Any:
    """The user's dataset function, imported; an error names the key that gave it
    (``data.builder`` or ``data.name``) in one line."""
    ref = user_dataset(data)
    assert ref is not None
    if data.builder is not None and is_import_path(ref):
        return import_target(ref, "data.builder")
    return DATASETS.load(ref)


def check_arguments(fn: Any, data: DataSpec) -> None:
    """Name a misspelt ``data.args`` key (or a ``data.root`` the function cannot take)
    before anything is recorded: a TypeError would fail every trial, one by one."""
    if data.root is not None and "root" in data.args:  # data.root would win without a word
        raise UserInputError("data.args.root: given with data.root, which is passed as "
                             "root=; set one of them")
    accepted = keyword_names(fn)
    if accepted is None:
        return
    ref = user_dataset(data)
    if data.root is not None and "root" not in accepted:
        raise UserInputError(f"data.root: {ref} has no argument 'root' (data.root is passed "
                             f"as root=); its arguments: {', '.join(accepted) or 'none'}")
    for key in data.args:
        if key not in accepted:
            allowed = ", ".join(a for a in accepted if a != "root") or "none"
            raise UserInputError(f"data.args.{key}: {ref} has no argument {key!r}; "
                                 f"allowed: {allowed}")


def call_builder(data: DataSpec) -> tuple[Any, Any, list[str] | None]:
    """(train, val, class names or None) from the user's function; one-line errors."""
    ref = user_dataset(data)
    assert ref is not None
    key = _key(data)
    fn = load_builder(data)
    check_arguments(fn, data)
    kwargs = dict(data.args)
    if data.root is not None:
        kwargs["root"] = data.root
    try:
        result = fn(**kwargs)
    except UserInputError:
        raise
    except Exception as err:
        raise UserInputError(f"{key}: {ref} raised {type(err).__name__}: {err}") from err
    if not isinstance(result, tuple | list) or len(result) != 2:
        raise UserInputError(f"{key}: {ref} returned a {type(result).__name__}; expected "
                             "(train, val) datasets of (image, mask) pairs")
    for name, split in zip(("train", "val"), result):
        if not hasattr(split, "__len__") or not hasattr(split, "__getitem__"):
            raise UserInputError(f"{key}: {ref} returned a {type(split).__name__} as its "
                                 f"{name} split; expected a dataset (__len__ and __getitem__)")
        if len(split) == 0:
            raise UserInputError(f"{key}: {ref} returned an empty {name} split")
    names = getattr(result[0], "class_names", None) or getattr(result[0], "classes", None)
    return result[0], result[1], list(names) if isinstance(names, list | tuple) else None


class PairReader:
    """``load`` for ``SegmentationDataset``: item ``i`` of a user dataset as numpy arrays.

    A class (not a closure) so DataLoader workers can pickle it.
    """

    def __init__(self, dataset: Any, what: str, num_classes: int | None = None) -> None:
        self.dataset = dataset
        self.what = what  # e.g. "data.builder userds:build: train"
        self.num_classes = num_classes  # class indices at or above it are refused
        self.layout = getattr(dataset, "image_layout", None)
        if self.layout is not None and self.layout not in LAYOUTS:
            raise UserInputError(f"{what}: image_layout = {self.layout!r}; expected "
                                 f"{' or '.join(map(repr, LAYOUTS))} (or no attribute)")

    def __call__(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        item = self.dataset[index]
        if not isinstance(item, tuple | list) or len(item) != 2:
            raise UserInputError(f"{self.what}[{index}]: expected an (image, mask) pair, got "
                                 f"{type(item).__name__}")
        mask = _mask(item[1], f"{self.what}[{index}] mask")
        if self.num_classes is not None:
            bad = (mask >= self.num_classes) & (mask != IGNORE)
            if bad.any():  # cross-entropy would fail deep inside (a device assert on CUDA)
                raise UserInputError(
                    f"{self.what}[{index}] mask: class index {int(mask[bad].max())} out of "
                    f"range; model.num_classes = {self.num_classes} "
                    f"(0..{self.num_classes - 1}, {IGNORE} = ignore)")
        image = _image(item[0], f"{self.what}[{index}] image", mask.shape, self.layout)
        if image.shape[:2] != mask.shape:  # said here, where the item has a name
            raise UserInputError(
                f"{self.what}[{index}]: image is {image.shape[1]}x{image.shape[0]} but its "
                f"mask is {mask.shape[1]}x{mask.shape[0]} (width x height)")
        return image, mask


def reader_label(data: DataSpec) -> str:
    """How an item's error names the dataset: ``data.builder userds:build``."""
    return f"{_key(data)} {user_dataset(data)}"


def _array(value: Any) -> np.ndarray:
    if hasattr(value, "detach"):  # a torch tensor
        return value.detach().cpu().numpy()
    return np.asarray(value)


def _image(value: Any, what: str, size: tuple[int, ...], layout: str | None) -> np.ndarray:
    """An item's image as (H, W, 3) uint8; ``size`` is its mask's (H, W), ``layout`` the
    dataset's ``image_layout`` (None: a tensor's is worked out, an array is (H, W, C))."""
    is_tensor = hasattr(value, "detach")
    reading = layout or ("auto" if is_tensor else "HWC")
    if hasattr(value, "convert") and not is_tensor:  # PIL
        # convert("RGB") clips a 16-bit or float image to 255 without a word; read its
        # values instead, so it is checked like the same numpy array
        value = np.asarray(value) if value.mode in WIDE_MODES else value.convert("RGB")
        reading = "HWC"
    array = _array(value)
    if array.dtype.kind not in "biuf":  # a str, None, a list of objects: "shape []" says little
        raise UserInputError(f"{what}: a {type(value).__name__}; expected a PIL image, an "
                             "array (H, W, 3) or a tensor [3, H, W]")
    shape = array.shape  # as given, for the errors
    if array.ndim == 3 and _channels_first(shape, size, reading, what):
        array = array.transpose(1, 2, 0)  # [C, H, W] -> (H, W, C)
    if array.ndim == 2:
        array = array[..., None]
    if array.ndim != 3 or array.shape[2] not in CHANNELS:
        declared = f" (the dataset's image_layout = {layout!r})" if layout else ""
        raise UserInputError(f"{what}: shape {list(shape)}; expected (H, W, 3) RGB, "
                             "(H, W, 4) RGBA, (H, W) or (H, W, 1) grey, or [3, H, W]"
                             + declared)
    # As PIL's convert("RGB") does for "LA" and "RGBA" images: the alpha channel is
    # dropped, not composited, and grey is copied to R, G and B; so an array and the
    # PIL image made from it give the same pixels.
    if array.shape[2] in (2, 4):
        array = array[..., :-1]
    if array.shape[2] == 1:
        array = np.repeat(array, 3, axis=2)
    if array.dtype.kind == "f":
        if array.size and (array.min() < 0 or array.max() > 1):
            raise UserInputError(f"{what}: float values outside 0..1; give uint8 0..255 or "
                                 "float 0..1 (ablate normalises)")
        array = np.round(array * 255)
    elif array.dtype != np.uint8 and array.size and (array.min() < 0 or array.max() > 255):
        # a 16-bit image would wrap around modulo 256 in the uint8 cast
        raise UserInputError(f"{what}: {array.dtype} values {array.min()}..{array.max()} "
                             "outside 0..255; give uint8 0..255 or float 0..1 (scale it first)")
    return array.astype(np.uint8)


def _channels_first(shape: tuple[int, ...], size: tuple[int, ...], layout: str,
                    what: str) -> bool:
    """Whether a 3-d image is ``[C, H, W]``: as ``layout`` says, or for ``"auto"`` (a
    tensor) where its first size is a channel count and its last is not; where both are,
    the reading whose (H, W) is the mask's. A ``[4, 4, 3]`` tensor is (H, W, C) with a
    4x3 mask; ``[3, 3, 3]`` with a 3x3 mask fits both and is refused, not guessed."""
    if layout != "auto":
        return layout == "CHW"
    first, last = shape[0] in CHANNELS, shape[2] in CHANNELS
    if not (first and last):
        return first
    chw, hwc = tuple(shape[1:]) == tuple(size), tuple(shape[:2]) == tuple(size)
    if chw and hwc:
        raise UserInputError(
            f"{what}: tensor {list(shape)} reads as [C, H, W] and as (H, W, C) beside its "
            f"{size[0]}x{size[1]} mask; say which with image_layout = \"CHW\" (or \"HWC\") "
            "on the dataset")
    return chw or not hwc  # neither fits: [C, H, W], and the size check names both


def _mask(value: Any, what: str) -> np.ndarray:
    array = _array(value)
    if array.dtype.kind not in "biuf":
        raise UserInputError(f"{what}: a {type(value).__name__}; expected (H, W) class indices "
                             "(a PIL image, an array or a tensor)")
    if array.ndim == 3 and 1 in (array.shape[0], array.shape[-1]):
        array = array.reshape(array.shape[1:] if array.shape[0] == 1 else array.shape[:2])
    if array.ndim != 2:
        raise UserInputError(f"{what}: shape {list(array.shape)}; expected (H, W) class indices")
    if array.size and (array.min() < 0 or array.max() > 255):
        raise UserInputError(f"{what}: values outside 0..255 (class indices, 255 = ignore)")
    return array.astype(np.uint8)
