"""Writers of tiny datasets in the real on-disk formats, for tests under tmp_path."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

COLOUR = (200, 100, 50)  # every fixture image is this solid colour (exact through JPEG)


def voc_palette() -> list[int]:
    """The Pascal VOC colour map: class k's colour from the bits of k."""
    palette = []
    for index in range(256):
        red = green = blue = 0
        bits = index
        for shift in range(7, -1, -1):
            red |= (bits & 1) << shift
            green |= ((bits >> 1) & 1) << shift
            blue |= ((bits >> 2) & 1) << shift
            bits >>= 3
        palette += [red, green, blue]
    return palette


def write_image(path: Path, height: int, width: int, colour=COLOUR) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.empty((height, width, 3), dtype=np.uint8)
    pixels[...] = colour
    Image.fromarray(pixels).save(path, quality=100)


def write_palette_png(path: Path, label: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    height, width = label.shape
    image = Image.frombytes("P", (width, height), label.astype(np.uint8).tobytes())
    image.putpalette(voc_palette())
    image.save(path)


def write_voc(root: Path, labels: dict[str, np.ndarray], splits: dict[str, list[str]]) -> None:
    """VOCdevkit/VOC2012 with one JPEG and one palette PNG per id, and split files."""
    base = root / "VOCdevkit" / "VOC2012"
    for image_id, label in labels.items():
        write_image(base / "JPEGImages" / f"{image_id}.jpg", *label.shape)
        write_palette_png(base / "SegmentationClass" / f"{image_id}.png", label)
    split_dir = base / "ImageSets" / "Segmentation"
    split_dir.mkdir(parents=True, exist_ok=True)
    for name, ids in splits.items():
        (split_dir / f"{name}.txt").write_text("".join(f"{i}\n" for i in ids))


def write_sbd(
    root: Path,
    labels: dict[str, np.ndarray],
    train: list[str],
    val: list[str],
    folder: str = "benchmark_RELEASE/dataset",
) -> None:
    """SBD's cls/<id>.mat (a GTcls struct) and split files; images go to VOC's JPEGImages."""
    import scipy.io

    base = root / folder
    (base / "cls").mkdir(parents=True, exist_ok=True)
    for image_id, label in labels.items():
        write_image(root / "VOCdevkit" / "VOC2012" / "JPEGImages" / f"{image_id}.jpg", *label.shape)
        gtcls = {
            "Segmentation": label.astype(np.uint8),
            "Boundaries": np.zeros((20, 1), dtype=object),
            "CategoriesPresent": np.unique(label[(label > 0) & (label < 255)]).astype(np.uint8),
        }
        scipy.io.savemat(base / "cls" / f"{image_id}.mat", {"GTcls": gtcls})
    (base / "train.txt").write_text("".join(f"{i}\n" for i in train))
    (base / "val.txt").write_text("".join(f"{i}\n" for i in val))


def write_cityscapes(root: Path, split: str, city: str, frame: str, label_ids: np.ndarray) -> None:
    """One leftImg8bit image and its gtFine labelIds PNG (8-bit grey)."""
    stem = f"{city}_{frame}"
    write_image(root / "leftImg8bit" / split / city / f"{stem}_leftImg8bit.png", *label_ids.shape)
    label_path = root / "gtFine" / split / city / f"{stem}_gtFine_labelIds.png"
    label_path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(label_ids.astype(np.uint8)).save(label_path)


def uncompressed_rle(mask: np.ndarray) -> dict:
    """COCO's uncompressed RLE: run lengths over the column-major pixels, zeros first."""
    flat = mask.astype(np.uint8).flatten(order="F")
    counts, current, run = [], 0, 0
    for value in flat:
        if value == current:
            run += 1
        else:
            counts.append(run)
            current, run = value, 1
    counts.append(run)
    return {"size": list(mask.shape), "counts": counts}


def write_coco(root: Path, split: str, images: list[dict], annotations: list[dict]) -> None:
    """<split>2017/*.jpg and annotations/instances_<split>2017.json.

    ``images``: dicts with id, file_name, height, width.
    """
    for image in images:
        write_image(root / f"{split}2017" / image["file_name"], image["height"], image["width"])
    categories = [
        {"id": 1, "name": "person"},
        {"id": 3, "name": "car"},
        {"id": 18, "name": "dog"},
        {"id": 90, "name": "toothbrush"},
    ]
    index = {"images": images, "annotations": annotations, "categories": categories}
    (root / "annotations").mkdir(parents=True, exist_ok=True)
    (root / "annotations" / f"instances_{split}2017.json").write_text(json.dumps(index))


def truncate(path: Path) -> None:
    """Keep the first half of a file: a download or copy cut short."""
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _square_label(height: int, width: int, value: int, ignore: int | None = None) -> np.ndarray:
    """Zeros with a ``value`` square in the top-left quarter; row 0 ``ignore`` if given."""
    label = np.zeros((height, width), dtype=np.uint8)
    label[height // 4: height // 2, width // 4: width // 2] = value
    if ignore is not None:
        label[0, :] = ignore
    return label


def _coco_polygon(image_id: int, ann_id: int, category: int) -> dict:
    return {"id": ann_id, "image_id": image_id, "category_id": category, "iscrowd": 0,
            "segmentation": [[4, 4, 30, 4, 30, 30, 4, 30]], "area": 1200.0,
            "bbox": [4, 4, 26, 26]}


# the classes in each tiny dataset's validation labels, by the dataset's own names
TINY_VAL_CLASSES = {
    "voc2012": {"background", "bicycle", "bird"},  # ids 2 and 3 on background, 255 ignored
    "cityscapes": {"road", "car"},  # label ids 7 and 26; id 0 is ignored
    "coco": {"background", "person", "car"},  # categories 1 and 3 mapped to VOC's classes
}


def write_tiny_dataset(name: str, root: Path, height: int = 40, width: int = 48) -> None:
    """4 training and 2 validation images of ``name`` ("voc2012", "cityscapes" or
    "coco") in its real layout under ``root``, labelled with TINY_VAL_CLASSES."""
    if name == "voc2012":
        ids = [f"2007_00000{i}" for i in range(6)]
        labels = {i: _square_label(height, width, 1 + n % 3, ignore=255)
                  for n, i in enumerate(ids)}
        write_voc(root, labels, {"train": ids[:4], "val": ids[4:]})
    elif name == "cityscapes":
        for split, frames in (("train", 4), ("val", 2)):
            for f in range(frames):
                label_ids = np.where(_square_label(height, width, 1) == 1, 26, 7)  # car, road
                label_ids[0, :] = 0  # unlabeled: no train id
                write_cityscapes(root, split, "aachen", f"00000{f}_000019", label_ids)
    elif name == "coco":
        for split, count in (("train", 4), ("val", 2)):
            images = [{"id": i + 1, "file_name": f"{i:012d}.jpg", "height": height,
                       "width": width} for i in range(count)]
            write_coco(root, split, images,
                       [_coco_polygon(i + 1, i + 1, [1, 3, 18][i % 3]) for i in range(count)])
    else:
        raise ValueError(f"no tiny {name!r} dataset")
