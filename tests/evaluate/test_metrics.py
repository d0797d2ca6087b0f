from __future__ import annotations

import pytest
import torch

from ablate.evaluate.metrics import ConfusionMatrix, scores_from_confusion


def test_miou_from_a_hand_computed_confusion_matrix():
    # classes 0, 1, 2, 3; class 3 appears in neither truth nor prediction
    target = torch.tensor([[0, 0, 1, 1], [2, 2, 255, 0]])
    pred = torch.tensor([[0, 1, 1, 1], [2, 0, 3, 0]])
    cm = ConfusionMatrix(4)
    cm.update(pred, target)
    # counts[true, pred]: the 255 pixel is ignored, so class 3 stays absent
    expected = torch.tensor([[2, 1, 0, 0], [0, 2, 0, 0], [1, 0, 1, 0], [0, 0, 0, 0]])
    assert torch.equal(cm.counts, expected)
    scores = cm.compute()
    # IoU0 = 2/(3+3-2)=0.5, IoU1 = 2/(2+3-2)=2/3, IoU2 = 1/(2+1-1)=0.5
    assert scores.iou_per_class[0] == pytest.approx(0.5)
    assert scores.iou_per_class[1] == pytest.approx(2 / 3)
    assert scores.iou_per_class[2] == pytest.approx(0.5)
    assert scores.iou_per_class[3] is None
    assert scores.miou == pytest.approx((0.5 + 2 / 3 + 0.5) / 3)
    assert scores.pixel_accuracy == pytest.approx(5 / 7)


def test_one_matrix_over_the_set_not_a_mean_of_images():
    cm = ConfusionMatrix(2)
    cm.update(torch.tensor([1, 1, 1, 1]), torch.tensor([1, 1, 1, 1]))  # image 1: perfect class 1
    cm.update(torch.tensor([0, 0]), torch.tensor([0, 1]))  # image 2
    # pooled: TP0=1, FP0=1 (true 1 -> 0), FN0=0 -> 1/2; TP1=4, FN1=1 -> 4/5
    assert cm.compute().miou == pytest.approx((0.5 + 0.8) / 2)


def test_class_in_prediction_only_counts_with_zero_iou():
    scores = scores_from_confusion(torch.tensor([[3, 1], [0, 0]]))
    assert scores.iou_per_class == [pytest.approx(0.75), 0.0]
    assert scores.miou == pytest.approx(0.375)


def test_metrics_names_per_class():
    scores = scores_from_confusion(torch.tensor([[1, 0], [0, 1]]))
    assert scores.as_metrics(["bg", "cat"]) == {
        "miou": 1.0, "pixel_acc": 1.0, "iou/bg": 1.0, "iou/cat": 1.0}
