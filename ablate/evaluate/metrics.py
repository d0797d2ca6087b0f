"""Segmentation metrics from one confusion matrix over the whole set."""

from __future__ import annotations

from dataclasses import dataclass

import torch

IGNORE_INDEX = 255


class ConfusionMatrix:
    """Accumulates ``counts[true, pred]`` over every evaluated pixel, ignore label excluded."""

    def __init__(self, num_classes: int, device: torch.device | str = "cpu") -> None:
        self.num_classes = num_classes
        self.counts = torch.zeros(num_classes, num_classes, dtype=torch.int64, device=device)

    @torch.no_grad()
    def update(self, pred: torch.Tensor, target: torch.Tensor) -> None:
        valid = target != IGNORE_INDEX
        n = self.num_classes
        index = target[valid].to(torch.int64) * n + pred[valid].to(torch.int64)
        self.counts += torch.bincount(index, minlength=n * n).reshape(n, n)

    def compute(self) -> SegmentationScores:
        return scores_from_confusion(self.counts.cpu())


@dataclass(frozen=True)
class SegmentationScores:
    miou: float  # fraction in [0, 1]
    pixel_accuracy: float
    iou_per_class: list[float | None]  # None where the class is absent from truth and prediction

    def as_metrics(self, class_names: list[str] | None = None) -> dict[str, float]:
        out = {"miou": self.miou, "pixel_acc": self.pixel_accuracy}
        for c, iou in enumerate(self.iou_per_class):
            if iou is not None:
                name = class_names[c] if class_names and c < len(class_names) else str(c)
                out[f"iou/{name}"] = iou
        return out


def scores_from_confusion(counts: torch.Tensor) -> SegmentationScores:
    """IoU_c = TP / (TP + FP + FN); mIoU over classes whose union is non-zero."""
    counts = counts.to(torch.float64)
    tp = counts.diag()
    union = counts.sum(0) + counts.sum(1) - tp
    present = union > 0
    iou = torch.where(present, tp / union.clamp(min=1), torch.zeros_like(tp))
    miou = float(iou[present].mean()) if bool(present.any()) else 0.0
    total = counts.sum()
    pixel_accuracy = float(tp.sum() / total) if total > 0 else 0.0
    per_class = [float(v) if p else None for v, p in zip(iou.tolist(), present.tolist())]
    return SegmentationScores(miou, pixel_accuracy, per_class)
