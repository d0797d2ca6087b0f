"""Batching of variable-size samples."""

from __future__ import annotations

import torch
from torch import Tensor

from ablate.data.transforms import IGNORE_INDEX


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
