"""A trial trains and evaluates end to end on each real dataset format (tiny fixtures)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ablate.data.build import build_datasets
from ablate.data.collate import collate_eval
from ablate.recipes.schema import TrialSpec
from ablate.train.loop import evaluate, train_and_evaluate
from tests.data.fixtures import TINY_VAL_CLASSES, write_tiny_dataset


def _spec(name: str, root, classes: int) -> TrialSpec:
    return TrialSpec.model_validate({
        "model": {"backbone": "mobilenet_v3_small", "head": "lraspp", "num_classes": classes},
        "data": {"name": name, "root": str(root), "crop_size": 32, "scale_range": [0.75, 1.25],
                 "workers": 0},
        "train": {"epochs": 1, "batch_size": 2, "log_every": 1},
        "eval": {"latency": False, "batch_size": 2},
    })


@pytest.mark.slow
@pytest.mark.parametrize("dataset", ["voc2012", "cityscapes", "coco"])
def test_trial_on_each_real_format(tmp_path, dataset):
    if dataset == "coco":
        pytest.importorskip("pycocotools")
    write_tiny_dataset(dataset, tmp_path)
    classes = 19 if dataset == "cityscapes" else 21
    result = train_and_evaluate(_spec(dataset, tmp_path, classes), tmp_path / "run")
    final = result["final"]
    assert final["steps"] == 2.0  # 4 training images, batches of 2, one epoch
    assert np.isfinite(result["epochs"][0]["metrics"]["train_loss"])
    # the evaluation must report each class of the validation labels (absent classes
    # may show up as false positives)
    named = {key.removeprefix("iou/") for key in final if key.startswith("iou/")}
    assert TINY_VAL_CLASSES[dataset] <= named, named
    ious = [final[f"iou/{name}"] for name in named]
    assert final["miou"] == pytest.approx(sum(ious) / len(ious))


class Constant(torch.nn.Module):
    """Predicts one class everywhere: the evaluation's figures follow by hand."""

    def __init__(self, classes: int, predicted: int) -> None:
        super().__init__()
        self.classes, self.predicted = classes, predicted

    def forward(self, images):
        out = torch.zeros(images.shape[0], self.classes, *images.shape[2:])
        out[:, self.predicted] = 1.0
        return {"out": out}


@pytest.mark.parametrize("dataset, classes, predicted", [("voc2012", 21, 0),
                                                         ("cityscapes", 19, 0)])
def test_miou_over_the_val_split_by_hand(tmp_path, dataset, classes, predicted):
    """Background (VOC) or road (Cityscapes) everywhere on the 2 validation images."""
    write_tiny_dataset(dataset, tmp_path)
    pair = build_datasets(_spec(dataset, tmp_path, classes).data)
    loader = torch.utils.data.DataLoader(pair.val, batch_size=2, collate_fn=collate_eval)
    metrics = evaluate(Constant(classes, predicted), loader, classes, torch.device("cpu"),
                       pair.class_names)
    # each 40x48 image: row 0 ignored (VOC 255, Cityscapes id 0), a 10x12 square of another
    # class, the predicted class on the rest
    hit, square = 2 * (40 * 48 - 48 - 120), 2 * 120
    iou = hit / (hit + square)  # the squares are the predicted class's false positives
    named = sorted(TINY_VAL_CLASSES[dataset], key=pair.class_names.index)
    assert metrics == pytest.approx({
        "miou": iou / len(named), "pixel_acc": hit / (hit + square),
        **{f"iou/{name}": iou if i == 0 else 0.0 for i, name in enumerate(named)}})
