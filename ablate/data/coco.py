"""COCO 2017 instances turned into 21-class VOC segmentation, as torchvision's
segmentation reference (``references/segmentation/coco_utils.py``) does.

Layout under ``data.root``::

    <split>2017/<file_name>.jpg
    annotations/instances_<split>2017.json

Faithful to the reference:

- only annotations of the 20 VOC categories are kept (crowd ones included); COCO
  category ``CATEGORY_IDS[k]`` becomes VOC class ``k + 1``; everything else is
  background 0;
- each kept annotation is rasterised (polygons or RLE) with pycocotools; the label
  is the per-pixel maximum class over the instance masks, and every pixel covered by
  more than one kept instance, whatever their classes, becomes 255;
- the training set drops images whose kept annotations are none or whose summed
  ``area`` fields (from the JSON, not the rasterised masks) are not above 1000 px.

One extension: RLE whose ``counts`` is already a compressed string is decoded as is
(the reference only meets the uncompressed lists of ground-truth files). An
annotation with an empty ``segmentation`` contributes an empty mask.
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ablate import extras
from ablate.data.voc import CLASS_NAMES as VOC_CLASS_NAMES
from ablate.data.voc import read_rgb
from ablate.errors import UserInputError

CLASS_NAMES = list(VOC_CLASS_NAMES)
# COCO category id of VOC classes 1..20, in VOC order.
CATEGORY_IDS = [5, 2, 16, 9, 44, 6, 3, 17, 62, 21, 67, 18, 19, 4, 1, 64, 20, 63, 7, 72]
VOC_CLASS_OF_CATEGORY = {category: k + 1 for k, category in enumerate(CATEGORY_IDS)}
MIN_TRAIN_AREA = 1000  # summed annotation area an image must exceed to be trained on
EXPECTED = "COCO 2017 under data.root: <split>2017/ and annotations/instances_<split>2017.json"


@dataclass(frozen=True)
class CocoSample:
    image: str
    # (VOC class, COCO segmentation) for each kept annotation, in file order
    instances: tuple[tuple[int, Any], ...]


def _require(path: Path) -> Path:
    if not path.exists():
        raise UserInputError(f"data.root: {path} not found (expected {EXPECTED})")
    return path


def require_pycocotools() -> None:
    """Fail while building the dataset, not later inside a DataLoader worker."""
    if extras.missing("coco"):
        raise UserInputError(extras.needs("data.name = 'coco'", "coco"))


def annotation_path(root: Path, split: str) -> Path:
    return root / "annotations" / f"instances_{split}2017.json"


def annotation_shape_problem(path: Path, probe: int = 64) -> str | None:
    """An instances file that cannot be a JSON object, from its first and last bytes
    only (train2017's is 450 MB, too big to parse before every run): an empty file, an
    HTML page or a download cut short. None when it may be one; ``find_samples`` parses it."""
    try:
        with open(path, "rb") as f:
            head = f.read(probe).lstrip()
            f.seek(max(0, f.seek(0, 2) - probe))
            tail = f.read().rstrip()
    except OSError as err:
        return f"data.root: {path}: unreadable ({err.strerror or err})"
    if not head:
        why = "it is empty"
    elif not head.startswith(b"{"):
        why = f"it starts with {head[:12].decode('utf-8', 'replace')!r}, not '{{'"
    elif not tail.endswith(b"}"):
        why = "it does not end with '}': cut short?"
    else:
        return None
    return f"data.root: {path} is not a COCO instances file (a JSON object; {why})"


def _has_valid_annotation(annotations: list[dict]) -> bool:
    return bool(annotations) and sum(a["area"] for a in annotations) > MIN_TRAIN_AREA


def find_samples(root: Path, split: str, *, drop_unannotated: bool) -> list[CocoSample]:
    """Images of ``split`` sorted by image id, each with its VOC-category annotations.

    ``drop_unannotated`` applies the reference's training filter (see the module doc).
    """
    image_dir = _require(root / f"{split}2017")
    annotation_file = _require(annotation_path(root, split))
    try:
        with open(annotation_file) as f:
            index = json.load(f)
        by_image: dict[int, list[dict]] = defaultdict(list)
        for annotation in index["annotations"]:
            if annotation["category_id"] in VOC_CLASS_OF_CATEGORY:
                by_image[annotation["image_id"]].append(annotation)
        images = sorted(index["images"], key=lambda image: image["id"])
        samples = []
        for image in images:
            annotations = by_image.get(image["id"], [])
            if drop_unannotated and not _has_valid_annotation(annotations):
                continue
            instances = tuple(
                (VOC_CLASS_OF_CATEGORY[a["category_id"]], a["segmentation"]) for a in annotations
            )
            samples.append(CocoSample(str(image_dir / image["file_name"]), instances))
    except (json.JSONDecodeError, KeyError, TypeError) as error:
        raise UserInputError(
            f"data.root: {annotation_file} is not a COCO instances file ({type(error).__name__}: {error})"
        ) from None
    if not samples:
        raise UserInputError(
            f"data.root: {annotation_file} gives no usable images (expected {EXPECTED})"
        )
    return samples


def instance_mask(segmentation: Any, height: int, width: int) -> np.ndarray:
    """One annotation's ``segmentation`` (polygons or RLE) as a bool (H, W) mask."""
    from pycocotools import mask as coco_mask  # lazy: optional pycocotools

    if not segmentation:
        return np.zeros((height, width), dtype=bool)
    if isinstance(segmentation, dict) and isinstance(segmentation["counts"], (str, bytes)):
        rle = segmentation  # already compressed
    else:
        rle = coco_mask.frPyObjects(segmentation, height, width)
    mask = coco_mask.decode(rle)
    if mask.ndim == 3:  # one channel per polygon of the instance
        mask = mask.any(axis=2)
    return mask.astype(bool)


def label_map(instances: tuple[tuple[int, Any], ...], height: int, width: int,
              image: str = "image") -> np.ndarray:
    """The VOC label (uint8 (H, W)) of one image's kept instances; ``image`` names it in errors."""
    if not instances:
        return np.zeros((height, width), dtype=np.uint8)
    each = [instance_mask(seg, height, width) for _, seg in instances]
    for mask in each:  # an RLE carries its own size, which need not be the image's
        if mask.shape != (height, width):
            raise UserInputError(
                f"{image}: image is {width}x{height} but an annotation's RLE mask is "
                f"{mask.shape[1]}x{mask.shape[0]} (width x height)")
    masks = np.stack(each)
    classes = np.array([voc_class for voc_class, _ in instances], dtype=np.uint8)
    label = (masks * classes[:, None, None]).max(axis=0).astype(np.uint8)
    label[masks.sum(axis=0) > 1] = 255  # overlapping instances are ambiguous: ignore
    return label


def load(sample: CocoSample) -> tuple[np.ndarray, np.ndarray]:
    """(image uint8 (H, W, 3), label uint8 (H, W))."""
    image = read_rgb(sample.image)
    return image, label_map(sample.instances, image.shape[0], image.shape[1], sample.image)
