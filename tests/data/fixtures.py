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
