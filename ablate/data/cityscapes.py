"""Cityscapes fine annotations, mapped from label ids to the 19 train ids.

Layout under ``data.root``::

    leftImg8bit/<split>/<city>/<city>_<seq>_<frame>_leftImg8bit.png
    gtFine/<split>/<city>/<city>_<seq>_<frame>_gtFine_labelIds.png

The mapping is the official cityscapesScripts table; every label id without a train
id (unlabeled, ego vehicle, ground, parking, caravan, license plate, ...) becomes 255.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from ablate.data.voc import read_rgb
from ablate.errors import UserInputError
from ablate.paths import not_found

CLASS_NAMES = [
    "road", "sidewalk", "building", "wall", "fence", "pole", "traffic light", "traffic sign",
    "vegetation", "terrain", "sky", "person", "rider", "car", "truck", "bus", "train",
    "motorcycle", "bicycle",
]  # fmt: skip
# label id -> train id, in train-id order
TRAIN_ID_OF_LABEL_ID = {
    7: 0, 8: 1, 11: 2, 12: 3, 13: 4, 17: 5, 19: 6, 20: 7, 21: 8, 22: 9,
    23: 10, 24: 11, 25: 12, 26: 13, 27: 14, 28: 15, 31: 16, 32: 17, 33: 18,
}  # fmt: skip
EXPECTED = "Cityscapes under data.root: leftImg8bit/ and gtFine/"
IMAGE_SUFFIX = "_leftImg8bit.png"
LABEL_SUFFIX = "_gtFine_labelIds.png"
COLOUR_SUFFIX = "_gtFine_color.png"  # a rendering for people, not label ids
LABEL_MODES = ("L", "P")  # one 8-bit channel of label ids
MAX_LABEL_ID = 33  # bicycle; cityscapesScripts writes no id above it (license plate, -1, not at all)


def _lookup_table() -> np.ndarray:
    table = np.full(256, 255, dtype=np.uint8)
    for label_id, train_id in TRAIN_ID_OF_LABEL_ID.items():
        table[label_id] = train_id
    return table


LOOKUP = _lookup_table()


@dataclass(frozen=True)
class CityscapesSample:
    image: str
    label: str


def _require(path: Path) -> Path:
    if not path.exists():
        raise UserInputError(f"data.root: {not_found(path)} (expected {EXPECTED})")
    return path


def _require_label(label: Path) -> Path:
    """A labelIds file; where gtFine holds only the colour renderings, says so."""
    colour = label.with_name(label.name[: -len(LABEL_SUFFIX)] + COLOUR_SUFFIX)
    if not label.exists() and colour.exists():
        raise UserInputError(
            f"data.root: {label} not found, only its colour rendering *{COLOUR_SUFFIX}; "
            f"ablate reads the label ids (*{LABEL_SUFFIX} of gtFine_trainvaltest.zip)")
    return _require(label)


def _sample(image: Path, label_dir: Path) -> CityscapesSample:
    stem = image.name[: -len(IMAGE_SUFFIX)]
    return CityscapesSample(str(image), str(label_dir / image.parent.name / f"{stem}{LABEL_SUFFIX}"))


def _split_dirs(root: Path, split: str) -> tuple[Path, Path]:
    return _require(root / "leftImg8bit" / split), _require(root / "gtFine" / split)


def _no_images(image_dir: Path) -> UserInputError:
    return UserInputError(
        f"data.root: {image_dir} holds no <city>/*{IMAGE_SUFFIX} files (expected {EXPECTED})")


def find_samples(root: Path, split: str) -> list[CityscapesSample]:
    """Every image of ``split``, sorted by city then file name."""
    image_dir, label_dir = _split_dirs(root, split)
    images = sorted(image_dir.glob(f"*/*{IMAGE_SUFFIX}"))
    if not images:
        raise _no_images(image_dir)
    samples = [_sample(image, label_dir) for image in images]
    _require_label(Path(samples[0].label))
    return samples


def first_sample(root: Path, split: str) -> CityscapesSample:
    """``find_samples(root, split)[0]`` from one city's listing, not the whole split's."""
    image_dir, label_dir = _split_dirs(root, split)
    for city in sorted(p for p in image_dir.iterdir() if p.is_dir()):
        images = sorted(city.glob(f"*{IMAGE_SUFFIX}"))
        if images:
            sample = _sample(images[0], label_dir)
            _require_label(Path(sample.label))
            return sample
    raise _no_images(image_dir)


def to_train_ids(label_ids: np.ndarray) -> np.ndarray:
    """Label ids -> train ids 0..18 as uint8, 255 elsewhere."""
    return LOOKUP[label_ids.astype(np.uint8, copy=False)]


def read_label_ids(path: str) -> np.ndarray:
    """A ``*_gtFine_labelIds.png`` as its label ids; a colour or 16-bit file is refused
    with its name (uint8 would wrap 16-bit ids)."""
    try:
        with Image.open(path) as label:
            mode = label.mode
            label_ids = np.asarray(label)
    except OSError as err:
        raise UserInputError(f"{path}: unreadable label: {err}") from None
    if mode not in LABEL_MODES:
        raise UserInputError(
            f"{path}: label image is mode {mode!r}; expected 8-bit label ids "
            "(mode 'L', as cityscapesScripts writes *_gtFine_labelIds.png)")
    if label_ids.size and int(label_ids.max()) > MAX_LABEL_ID:
        unknown = np.unique(label_ids[(label_ids > MAX_LABEL_ID) & (label_ids != 255)])
        if unknown.size:  # 255 is a common void: read as ignore like every id without a class
            shown = ", ".join(map(str, unknown[:5].tolist())) + (", ..." if unknown.size > 5
                                                                else "")
            raise UserInputError(
                f"{path}: label ids {shown} are not Cityscapes label ids (0 to {MAX_LABEL_ID}, "
                "or 255 for void); expected the label ids cityscapesScripts writes")
    return label_ids


def load(sample: CityscapesSample) -> tuple[np.ndarray, np.ndarray]:
    """(image uint8 (H, W, 3), train-id label uint8 (H, W))."""
    label_ids = read_label_ids(sample.label)
    return read_rgb(sample.image), to_train_ids(label_ids)
