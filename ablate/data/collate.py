"""Batching of variable-size samples."""

from __future__ import annotations

import torch
from torch import Tensor

from ablate.data.transforms import IGNORE_INDEX
from ablate.errors import UserInputError


def collate_eval(batch: list[tuple[Tensor, Tensor]]) -> tuple[Tensor, Tensor]:
    """Stack (image [3, H, W], label [H, W]) pairs of any sizes into one batch.

    Each pair is padded at the bottom and right to the largest height and width in the
    batch: images with 0 (the mean colour once normalised), labels with 255, so padded
    pixels never count in the confusion matrix. Also serves training batches when
    ``data.crop_size`` is unset.
    """
    height = max(label.shape[0] for _, label in batch)
    width = max(label.shape[1] for _, label in batch)
    images = torch.zeros((len(batch), batch[0][0].shape[0], height, width), dtype=batch[0][0].dtype)
    labels = torch.full((len(batch), height, width), IGNORE_INDEX, dtype=batch[0][1].dtype)
    for i, (image, label) in enumerate(batch):
        images[i, :, : label.shape[0], : label.shape[1]] = image
        labels[i, : label.shape[0], : label.shape[1]] = label
    return images, labels


class UnevenBatch(tuple):
    """What ``collate_train`` returns for samples of different sizes: their (H, W) sizes.

    Raising inside a DataLoader worker would reach the user as a multi-line wrapped
    traceback; the trainer raises the one-line ``uneven_batch_error`` instead.
    """


def collate_train(batch: list[tuple[Tensor, Tensor]]) -> tuple[Tensor, Tensor] | UnevenBatch:
    """Stack equal-size training samples; samples of different sizes give ``UnevenBatch``."""
    sizes = sorted({tuple(label.shape) for _, label in batch})
    if len(sizes) > 1:
        return UnevenBatch(sizes)
    from torch.utils.data import default_collate  # stacks into shared memory in workers

    return default_collate(batch)


def uneven_batch_error(sizes: UnevenBatch, data_name: str, batch_size: int):
    """The one-line input error for a training batch that cannot be formed."""
    shown = ", ".join(f"{h}x{w}" for h, w in list(sizes)[:3])
    side = min(min(size) for size in sizes)  # a crop within every image needs no padding
    return UserInputError(
        f"data.crop_size: not set, and {data_name} training images differ in size ({shown}, "
        f"height x width), so a batch of {batch_size} cannot be formed; set data.crop_size "
        f"(e.g. {side}, the smallest side in this batch), or train.batch_size = 1")
