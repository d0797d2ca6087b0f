"""DeepLab-style transforms on (image, label) tensor pairs.

An image arrives as a uint8 tensor [3, H, W], its label as a uint8 tensor [H, W] of
class ids (255 = ignore). Training: random scale -> random crop (padded when the
image is smaller) -> normalise -> horizontal flip. Evaluation: the full image, or a
fixed resize to ``eval_size``, then normalise. Labels are always resized with
nearest-neighbour sampling so no class id is ever invented.

Each transform has two steps. ``prepare`` is deterministic, so a dataset may cache its
output; ``finish`` does the rest and draws every random number from the generator it
is given (``None`` means torch's global RNG, which a DataLoader seeds per worker).
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


def resize_pair(image: Tensor, label: Tensor, size: tuple[int, int]) -> tuple[Tensor, Tensor]:
    """Resize to ``size`` (H, W): the image bilinearly, the label by nearest neighbour."""
    if tuple(label.shape) == tuple(size):
        return image, label
    # Antialiasing matches PIL when shrinking. "nearest-exact" samples pixel centres,
    # as PIL does; plain "nearest" is shifted by half a pixel against the bilinear image.
    image = F.interpolate(
        image[None], size=size, mode="bilinear", align_corners=False, antialias=True
    )
    label = F.interpolate(label[None, None], size=size, mode="nearest-exact")
    return image[0], label[0, 0]


def random_scale(
    image: Tensor,
    label: Tensor,
    scale_range: tuple[float, float],
    generator: torch.Generator | None,
) -> tuple[Tensor, Tensor]:
    """Resize both by one factor drawn uniformly from ``scale_range``."""
    scale = _uniform(scale_range[0], scale_range[1], generator)
    height, width = label.shape
    size = (max(1, round(height * scale)), max(1, round(width * scale)))
    return resize_pair(image, label, size)


def random_crop(
    image: Tensor, label: Tensor, size: int, generator: torch.Generator | None
) -> tuple[Tensor, Tensor]:
    """A ``size`` x ``size`` window, placed as if the pair were first padded at the bottom
    and right to at least that size; returns only the unpadded part (see ``pad_to``)."""
    height, width = label.shape
    top = _randint(max(height - size, 0) + 1, generator)
    left = _randint(max(width - size, 0) + 1, generator)
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
    """uint8 [3, H, W] in 0..255 -> float32, standardised per channel."""
    mean_t = torch.tensor(mean, dtype=torch.float32)[:, None, None]
    std_t = torch.tensor(std, dtype=torch.float32)[:, None, None]
    return (image.to(torch.float32) / 255.0 - mean_t) / std_t


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
        image, label = random_scale(image, label, self.scale_range, generator)
        if self.crop_size is not None:
            # Crop the uint8 image before normalising: a scaled Cityscapes frame is large.
            image, label = random_crop(image, label, self.crop_size, generator)
        image = normalize(image, self.mean, self.std)
        if self.crop_size is not None:
            image, label = pad_to(image, label, (self.crop_size, self.crop_size))
        if self.hflip and float(torch.rand((), generator=generator)) < 0.5:
            image, label = image.flip(-1), label.flip(-1)
        return image.contiguous(), label.to(torch.int64)


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
