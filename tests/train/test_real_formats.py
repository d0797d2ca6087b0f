"""A trial trains and evaluates end to end on each real dataset format (tiny fixtures)."""

from __future__ import annotations

import numpy as np
import pytest

from ablate.recipes.schema import TrialSpec
from ablate.train.loop import train_and_evaluate
from tests.data.fixtures import write_cityscapes, write_coco, write_voc


def _label(height: int, width: int, value: int, ignore: int | None = None) -> np.ndarray:
    label = np.zeros((height, width), dtype=np.uint8)
    label[height // 4: height // 2, width // 4: width // 2] = value
    if ignore is not None:
        label[0, :] = ignore
    return label


def _spec(name: str, root, classes: int) -> TrialSpec:
    return TrialSpec.model_validate({
        "model": {"backbone": "mobilenet_v3_small", "head": "lraspp", "num_classes": classes},
        "data": {"name": name, "root": str(root), "crop_size": 32, "scale_range": [0.75, 1.25],
                 "workers": 0},
        "train": {"epochs": 1, "batch_size": 2, "log_every": 1},
        "eval": {"latency": False, "batch_size": 2},
    })


def _coco_polygon(image_id: int, ann_id: int, category: int) -> dict:
    return {"id": ann_id, "image_id": image_id, "category_id": category, "iscrowd": 0,
            "segmentation": [[4, 4, 30, 4, 30, 30, 4, 30]], "area": 1200.0,
            "bbox": [4, 4, 26, 26]}


# the classes in each format's validation labels, by the dataset's own names: the
# evaluation must report each of them (absent classes may show up as false positives)
VAL_CLASSES = {
    "voc2012": {"background", "bicycle", "bird"},  # ids 2 and 3 on background, 255 ignored
    "cityscapes": {"road", "car"},  # label ids 7 and 26; id 0 is ignored
    "coco": {"background", "person", "car"},  # categories 1 and 3 mapped to VOC's classes
}


@pytest.mark.slow
@pytest.mark.parametrize("dataset", ["voc2012", "cityscapes", "coco"])
def test_trial_on_each_real_format(tmp_path, dataset):
    if dataset == "voc2012":
        ids = [f"2007_00000{i}" for i in range(6)]
        write_voc(tmp_path, {i: _label(40, 48, 1 + n % 3, ignore=255) for n, i in enumerate(ids)},
                  {"train": ids[:4], "val": ids[4:]})
        classes = 21
    elif dataset == "cityscapes":
        for split, frames in (("train", 4), ("val", 2)):
            for f in range(frames):
                write_cityscapes(tmp_path, split, "aachen", f"00000{f}_000019",
                                 _label(40, 48, 26, ignore=0) + 7 * (_label(40, 48, 1) == 0))
        classes = 19
    else:
        pytest.importorskip("pycocotools")
        for split, count in (("train", 4), ("val", 2)):
            images = [{"id": i + 1, "file_name": f"{i:012d}.jpg", "height": 40, "width": 48}
                      for i in range(count)]
            write_coco(tmp_path, split, images,
                       [_coco_polygon(i + 1, i + 1, [1, 3, 18][i % 3]) for i in range(count)])
        classes = 21
    result = train_and_evaluate(_spec(dataset, tmp_path, classes), tmp_path / "run")
    final = result["final"]
    assert final["steps"] == 2.0  # 4 training images, batches of 2, one epoch
    assert np.isfinite(result["epochs"][0]["metrics"]["train_loss"])
    named = {key.removeprefix("iou/") for key in final if key.startswith("iou/")}
    assert VAL_CLASSES[dataset] <= named, named
    ious = [final[f"iou/{name}"] for name in named]
    assert final["miou"] == pytest.approx(sum(ious) / len(ious))
