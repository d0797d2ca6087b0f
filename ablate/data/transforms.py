"""DeepLab-style transforms on (image, label) tensor pairs.

An image arrives as a uint8 tensor [3, H, W], its label as a uint8 tensor [H, W] of
class ids (255 = ignore). Training: random scale -> random crop (padded when the
image is smaller) -> normalise -> horizontal flip. Evaluation: the full image, or a
fixed resize to ``eval_size``, then normalise. Labels are always resized with
nearest-neighbour sampling so no class id is ever invented.

Each transform has two steps. ``prepare`` is deterministic, so a dataset may cache its
output; ``finish`` does the rest and draws every random number from the generator it
is given (``None`` means torch's global RNG, which a DataLoader seeds per worker).

Speed (``bench/bench_pipeline.py``): an image may arrive as a channels-last view of the
decoder's (H, W, 3) array, which torch resizes about three times faster than a
contiguous [3, H, W] one (the uint8 path torchvision's transforms v2 also takes), and
``finish`` writes the normalised pixels straight into the padded, flipped output: one
float32 buffer per sample, the same values as resize -> crop -> normalise -> pad -> flip
step by step (a test compares them bit for bit).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
IGNORE_INDEX = 255


def _uniform(low: float, high: float, generator: torch.Generator | None) -> float:
    return low + (high - low) * float(torch.rand((), generator=generator))


def _randint(high: int, generator: torch.Generator | None) -> int:
    """A uniform integer in [0, high)."""
    return int(torch.randint(high, (), generator=generator))


def _batch(image: Tensor) -> Tensor:
    """``image[None]``. A packed channels-last [3, H, W] view gets the batch stride of a
    packed [1, 3, H, W] tensor: torch takes its fast channels-last uint8 resize only then
    (~3x faster than on a contiguous image; the same values)."""
    channels, height, width = image.shape
    if image.stride() != (1, width * channels, channels):
        return image[None]
    return image.as_strided((1, channels, height, width), (image.numel(), 1, width * channels, channels))


def resize_pair(image: Tensor, label: Tensor, size: tuple[int, int]) -> tuple[Tensor, Tensor]:
    """Resize to ``size`` (H, W): the image bilinearly, the label by nearest neighbour."""
    if tuple(label.shape) == tuple(size):
        return image, label
    # Antialiasing matches PIL when shrinking. "nearest-exact" samples pixel centres,
    # as PIL does; plain "nearest" is shifted by half a pixel against the bilinear image.
    return resize_image(image, size), nearest_exact(label, *label_indices(label, size))


def resize_image(image: Tensor, size: tuple[int, int]) -> Tensor:
    """Bilinear, antialiased when shrinking (as PIL)."""
    if tuple(image.shape[1:]) == tuple(size):
        return image
    out = F.interpolate(_batch(image), size=size, mode="bilinear", align_corners=False,
                        antialias=True)
    return out[0]


def label_indices(label: Tensor, size: tuple[int, int]) -> tuple[Tensor, Tensor]:
    """The source row and column of each pixel of ``label`` resized to ``size`` with
    ``F.interpolate(mode="nearest-exact")``: torch's own kernel maps two index ramps, so
    the mapping is exactly its."""
    return _source_index(label.shape[0], size[0]), _source_index(label.shape[1], size[1])


def nearest_exact(label: Tensor, rows: Tensor, cols: Tensor) -> Tensor:
    """The label resized by gathering ``label_indices`` (or a window of them: a crop of
    the resized label without resizing the rest); several times faster on uint8 labels
    than the interpolation kernel on the whole label."""
    return label[rows[:, None], cols]


def _source_index(length: int, out: int) -> Tensor:
    ramp = torch.arange(length, dtype=torch.float32)[None, None, :, None]
    picked = F.interpolate(ramp, size=(out, 1), mode="nearest-exact")
    return picked.view(out).to(torch.int64)


def _scaled(shape: tuple[int, int], scale: float) -> tuple[int, int]:
    return max(1, round(shape[0] * scale)), max(1, round(shape[1] * scale))


def _window(shape: tuple[int, int], size: int, generator: torch.Generator | None
            ) -> tuple[int, int]:
    """Top and left of a ``size`` window in a ``shape`` pair padded to at least ``size``."""
    top = _randint(max(shape[0] - size, 0) + 1, generator)
    left = _randint(max(shape[1] - size, 0) + 1, generator)
    return top, left


def random_scale(
    image: Tensor,
    label: Tensor,
    scale_range: tuple[float, float],
    generator: torch.Generator | None,
) -> tuple[Tensor, Tensor]:
    """Resize both by one factor drawn uniformly from ``scale_range``."""
    scale = _uniform(scale_range[0], scale_range[1], generator)
    size = _scaled(tuple(label.shape), scale)
    return resize_pair(image, label, size)


def random_crop(
    image: Tensor, label: Tensor, size: int, generator: torch.Generator | None
) -> tuple[Tensor, Tensor]:
    """A ``size`` x ``size`` window, placed as if the pair were first padded at the bottom
    and right to at least that size; returns only the unpadded part (see ``pad_to``)."""
    top, left = _window(tuple(label.shape), size, generator)
    rows, cols = slice(top, top + size), slice(left, left + size)
    return image[:, rows, cols], label[rows, cols]


def pad_to(image: Tensor, label: Tensor, size: tuple[int, int]) -> tuple[Tensor, Tensor]:
    """Pad at the bottom and right to ``size`` (H, W): the image with 0, the label with 255."""
    height, width = label.shape
    pad_h, pad_w = max(size[0] - height, 0), max(size[1] - width, 0)
    if pad_h == 0 and pad_w == 0:
        return image, label
    image = F.pad(image, (0, pad_w, 0, pad_h), value=0.0)
    label = F.pad(label, (0, pad_w, 0, pad_h), value=IGNORE_INDEX)
    return image, label


def normalize(
    image: Tensor, mean: tuple[float, ...] = IMAGENET_MEAN, std: tuple[float, ...] = IMAGENET_STD
) -> Tensor:
    """uint8 [3, H, W] in 0..255 -> float32 (contiguous), standardised per channel."""
    out = image.to(torch.float32, memory_format=torch.contiguous_format)
    return normalize_(out, mean, std)


def normalize_(image: Tensor, mean: tuple[float, ...], std: tuple[float, ...]) -> Tensor:
    """``normalize`` in place on a float32 [3, H, W] tensor (or a view into one): the same
    operations in the same order, so the same values."""
    mean_t = torch.tensor(mean, dtype=torch.float32)[:, None, None]
    std_t = torch.tensor(std, dtype=torch.float32)[:, None, None]
    return image.div_(255.0).sub_(mean_t).div_(std_t)


def place(
    image: Tensor,
    label: Tensor,
    size: tuple[int, int],
    flip: bool,
    mean: tuple[float, ...],
    std: tuple[float, ...],
) -> tuple[Tensor, Tensor]:
    """normalise -> ``pad_to(size)`` -> flip if ``flip``, in one output buffer per tensor.

    The pair goes where padding then flipping would put it (top left, or top right when
    flipped); the rest is 0 in the image (the mean colour) and 255 in the label.
    """
    height, width = label.shape
    out_h, out_w = max(size[0], height), max(size[1], width)
    cols = slice(out_w - width, out_w) if flip else slice(0, width)
    out_image = torch.empty((image.shape[0], out_h, out_w), dtype=torch.float32)
    out_image[:, height:].zero_()  # the padding alone: a crop inside the image has none
    out_image[:, :height, : out_w - width if flip else 0].zero_()
    out_image[:, :height, width if not flip else out_w :].zero_()
    out_label = torch.full((out_h, out_w), IGNORE_INDEX, dtype=torch.int64)
    region = out_image[:, :height, cols]
    region.copy_(image.flip(-1) if flip else image)
    normalize_(region, mean, std)
    out_label[:height, cols] = label.flip(-1) if flip else label
    return out_image, out_label


@dataclass(frozen=True)
class TrainTransform:
    """Random scale, random crop of ``crop_size`` (None: no crop), optional flip, normalise.

    Padding happens after normalisation, so a padded image pixel is 0: the mean colour,
    as the original DeepLab pads with the mean pixel. Padded label pixels are 255.
    """

    crop_size: int | None = None
    scale_range: tuple[float, float] = (0.5, 2.0)
    hflip: bool = True
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD

    def prepare(self, image: Tensor, label: Tensor) -> tuple[Tensor, Tensor]:
        return image, label

    def finish(
        self, image: Tensor, label: Tensor, generator: torch.Generator | None = None
    ) -> tuple[Tensor, Tensor]:
        # random_scale, random_crop, normalize, pad_to and the flip, in this order, with
        # the same draws; the label is gathered for the crop window only
        scale = _uniform(self.scale_range[0], self.scale_range[1], generator)
        size = _scaled(tuple(label.shape), scale)
        image = resize_image(image, size)
        rows, cols = label_indices(label, size)
        if self.crop_size is not None:
            # Crop the uint8 image before normalising: a scaled Cityscapes frame is large.
            top, left = _window(size, self.crop_size, generator)
            image = image[:, top : top + self.crop_size, left : left + self.crop_size]
            rows, cols = rows[top : top + self.crop_size], cols[left : left + self.crop_size]
            size = (self.crop_size, self.crop_size)
        label = nearest_exact(label, rows, cols)
        flip = self.hflip and float(torch.rand((), generator=generator)) < 0.5
        return place(image, label, size, flip, self.mean, self.std)


@dataclass(frozen=True)
class EvalTransform:
    """The full image, or a fixed resize to ``size`` (H, W); then normalise."""

    size: tuple[int, int] | None = None
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD

    def prepare(self, image: Tensor, label: Tensor) -> tuple[Tensor, Tensor]:
        if self.size is None:
            return image, label
        return resize_pair(image, label, self.size)

    def finish(
        self, image: Tensor, label: Tensor, generator: torch.Generator | None = None
    ) -> tuple[Tensor, Tensor]:
        return normalize(image, self.mean, self.std), label.to(torch.int64)
