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
import math
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ablate import extras
from ablate.data.voc import CLASS_NAMES as VOC_CLASS_NAMES
from ablate.data.voc import read_rgb
from ablate.errors import UserInputError
from ablate.paths import not_found

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
    # each kept annotation's id, and the file they are in: errors name them
    annotation_ids: tuple[Any, ...] = ()
    annotation_file: str = ""


def _require(path: Path) -> Path:
    if not path.exists():
        raise UserInputError(f"data.root: {not_found(path)} (expected {EXPECTED})")
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


class _Malformed(Exception):
    """An entry of an instances file that is not what COCO writes (its message names it)."""


def _shown(value: Any) -> str:
    """A JSON value as the file writes it, cut to 40 characters."""
    text = json.dumps(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _list(index: Any, key: str) -> list:
    if not isinstance(index, dict):
        raise _Malformed(f"it holds {_shown(index)}, not an object with 'images' and "
                         "'annotations'")
    if key not in index:
        raise _Malformed(f"it has no {key!r} list")
    if not isinstance(index[key], list):
        raise _Malformed(f"{key!r} is {_shown(index[key])}, not a list")
    return index[key]


def _field(entry: Any, where: str, key: str, kind: type | tuple[type, ...], what: str) -> Any:
    """``entry[key]``, which must be a ``kind`` (never a bool where a number is meant)."""
    if not isinstance(entry, dict):
        raise _Malformed(f"{where} is {_shown(entry)}, not an object")
    if key not in entry:
        raise _Malformed(f"{where} has no {key!r}")
    value = entry[key]
    if not isinstance(value, kind) or isinstance(value, bool):
        raise _Malformed(f"{where}.{key} is {_shown(value)}, not {what}")
    return value


def find_samples(root: Path, split: str, *, drop_unannotated: bool) -> list[CocoSample]:
    """Images of ``split`` sorted by image id, each with its VOC-category annotations.

    ``drop_unannotated`` applies the reference's training filter (see the module doc).
    An entry the reader needs that is missing or of another type is named, with its
    index in the file, in one line.
    """
    image_dir = _require(root / f"{split}2017")
    annotation_file = _require(annotation_path(root, split))
    try:
        with open(annotation_file, "rb") as f:
            index = json.load(f)
        by_image: dict[int, list[dict]] = defaultdict(list)
        for n, annotation in enumerate(_list(index, "annotations")):
            where = f"annotations[{n}]"
            if _field(annotation, where, "category_id", int, "an integer") \
                    in VOC_CLASS_OF_CATEGORY:
                if "segmentation" not in annotation:  # its value is checked as it loads
                    raise _Malformed(f"{where} has no 'segmentation'")
                if drop_unannotated:
                    area = _field(annotation, where, "area", (int, float), "a number")
                    if not math.isfinite(area):
                        raise _Malformed(f"{where}.area is {area}, not a finite number")
                image_id = _field(annotation, where, "image_id", int, "an integer")
                by_image[image_id].append(annotation)
        images = _list(index, "images")
        for n, image in enumerate(images):
            _field(image, f"images[{n}]", "id", int, "an integer")
            _field(image, f"images[{n}]", "file_name", str, "a file name")
        images = sorted(images, key=lambda image: image["id"])
    except _Malformed as error:
        raise UserInputError(
            f"data.root: {annotation_file} is not a COCO instances file ({error})") from None
    except (ValueError, RecursionError) as error:  # JSONDecodeError, UnicodeDecodeError
        why = str(error) if isinstance(error, ValueError) else "nested too deep"
        raise UserInputError(
            f"data.root: {annotation_file} is not a COCO instances file (not JSON: {why})"
        ) from None
    samples = []
    for image in images:
        annotations = by_image.get(image["id"], [])
        if drop_unannotated and not _has_valid_annotation(annotations):
            continue
        instances = tuple(
            (VOC_CLASS_OF_CATEGORY[a["category_id"]], a["segmentation"]) for a in annotations
        )
        samples.append(CocoSample(str(image_dir / image["file_name"]), instances,
                                  tuple(a.get("id") for a in annotations),
                                  str(annotation_file)))
    if not samples:
        raise UserInputError(
            f"data.root: {annotation_file} gives no usable images (expected {EXPECTED})"
        )
    return samples


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def segmentation_problem(segmentation: Any, height: int, width: int) -> str | None:
    """Why pycocotools cannot rasterise ``segmentation`` for an image of ``height`` x
    ``width``, or None. It takes what it is given: a NaN, infinite or far-off polygon
    vertex makes it allocate without bound (the process is killed), a polygon of fewer
    than 3 points is silently empty, an RLE's size is what it allocates."""
    if isinstance(segmentation, list):
        for polygon in segmentation:
            if not (isinstance(polygon, list) and len(polygon) >= 6 and len(polygon) % 2 == 0
                    and all(_number(v) for v in polygon)):
                return ("a polygon is not a list of 3 or more x, y pairs of finite numbers "
                        f"(got {str(polygon)[:40]})")
            xs, ys = polygon[0::2], polygon[1::2]
            if min(xs) < -width or max(xs) > 2 * width or min(ys) < -height \
                    or max(ys) > 2 * height:
                return (f"a polygon vertex lies far outside the {width}x{height} image (x "
                        f"{min(xs):g}..{max(xs):g}, y {min(ys):g}..{max(ys):g})")
        return None
    if isinstance(segmentation, dict):
        size, counts = segmentation.get("size"), segmentation.get("counts")
        if not (isinstance(size, list) and len(size) == 2
                and all(isinstance(v, int) and not isinstance(v, bool) for v in size)):
            return f"an RLE's size is not [height, width] (got {str(size)[:40]})"
        if size != [height, width]:
            return (f"image is {width}x{height} but an annotation's RLE mask is "
                    f"{size[1]}x{size[0]} (width x height)")
        if isinstance(counts, (str, bytes)):
            return None  # compressed: pycocotools checks it against the size
        if not (isinstance(counts, list) and all(isinstance(c, int) and not isinstance(c, bool)
                                                 and c >= 0 for c in counts)
                and sum(counts) == height * width):
            return (f"an RLE's counts are not run lengths summing to {height} x {width} "
                    f"(got {str(counts)[:40]})")
        return None
    return (f"a segmentation is {type(segmentation).__name__} {str(segmentation)[:40]}, not "
            "polygons or an RLE")


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
              image: str = "image", where: tuple[tuple[Any, ...], str] = ((), "")) -> np.ndarray:
    """The VOC label (uint8 (H, W)) of one image's kept instances; ``image`` names it in
    errors, and ``where`` (the annotations' ids, their file) the annotation at fault."""
    if not instances:
        return np.zeros((height, width), dtype=np.uint8)
    ids, annotation_file = where
    each = []
    for n, (_, seg) in enumerate(instances):
        named = f" (annotation {ids[n]} of {annotation_file})" if n < len(ids) else ""
        problem = segmentation_problem(seg, height, width) if seg else None
        if problem is None:
            try:
                each.append(instance_mask(seg, height, width))
                continue
            except Exception as err:  # pycocotools raises bare Exceptions
                problem = f"an annotation's segmentation cannot be decoded ({err})"
        if problem.startswith("image is"):  # the RLE's size: both sizes are the message
            named = ""
        raise UserInputError(f"{image}: {problem}{named}")
    masks = np.stack(each)
    classes = np.array([voc_class for voc_class, _ in instances], dtype=np.uint8)
    label = (masks * classes[:, None, None]).max(axis=0).astype(np.uint8)
    label[masks.sum(axis=0) > 1] = 255  # overlapping instances are ambiguous: ignore
    return label


def load(sample: CocoSample) -> tuple[np.ndarray, np.ndarray]:
    """(image uint8 (H, W, 3), label uint8 (H, W))."""
    image = read_rgb(sample.image)
    return image, label_map(sample.instances, image.shape[0], image.shape[1], sample.image,
                            (sample.annotation_ids, sample.annotation_file))
