"""A small convolutional segmenter whose weights can be stored scaled.

``scale`` stores every weight and bias as ``v`` and uses ``w = scale * v``. The network
computes the same function class for every ``scale``, and starts from the same function
(``v`` is initialised as PyTorch's default ``w`` divided by ``scale``), but plain SGD sees
another problem: the gradient with respect to ``v`` is ``scale`` times the gradient with
respect to ``w``, and a step in ``v`` moves ``w`` ``scale`` times further, so SGD at
learning rate ``lr`` on ``v`` is SGD at ``scale**2 * lr`` on ``w`` (momentum included,
without weight decay). With ``scale = 10`` the best learning rate is 100 times smaller.
Adam would not see the difference (its steps are invariant to a gradient's scale).

No normalisation layer: a BatchNorm after a convolution would undo the weight's scale.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


class ScaledConv2d(nn.Module):
    """A convolution whose weight and bias are ``scale`` times the stored parameters."""

    def __init__(self, cin: int, cout: int, kernel: int, scale: float) -> None:
        super().__init__()
        reference = nn.Conv2d(cin, cout, kernel, padding=kernel // 2)  # PyTorch's default init
        self.scale, self.padding = scale, kernel // 2
        self.weight = nn.Parameter(reference.weight.detach() / scale)
        self.bias = nn.Parameter(reference.bias.detach() / scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.scale * self.weight, self.scale * self.bias,
                        padding=self.padding)


class SmallSegmenter(nn.Sequential):
    """Three 3x3 convolutions with ReLU, then a 1x1 classifier, at full resolution."""

    def __init__(self, num_classes: int, width: int, scale: float) -> None:
        super().__init__(
            ScaledConv2d(3, width, 3, scale), nn.ReLU(),
            ScaledConv2d(width, width, 3, scale), nn.ReLU(),
            ScaledConv2d(width, width, 3, scale), nn.ReLU(),
            ScaledConv2d(width, num_classes, 1, scale),
        )


def build(*, num_classes: int, width: int = 16, scale: float = 1.0) -> nn.Module:
    """The builder a recipe names: ``model.builder = "fair_lr.model:build"``."""
    if not scale > 0:
        raise ValueError(f"scale must be positive, got {scale}")
    return SmallSegmenter(num_classes, width, scale)
