"""Pascal VOC 2012 segmentation, optionally with the SBD "trainaug" training set.

Layout under ``data.root``::

    VOCdevkit/VOC2012/JPEGImages/<id>.jpg
    VOCdevkit/VOC2012/SegmentationClass/<id>.png      palette PNG: index = class id, 255 = border
    VOCdevkit/VOC2012/ImageSets/Segmentation/<split>.txt
    SBD/ or benchmark_RELEASE/dataset/                 only for data.sbd = true
        cls/<id>.mat  (GTcls.Segmentation)   train.txt   val.txt

Readers here only find samples and decode them to numpy arrays; the registry adds
transforms, limits and caching.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from ablate.errors import UserInputError
from ablate.paths import not_found

CLASS_NAMES = [
    "background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat",
    "chair", "cow", "diningtable", "dog", "horse", "motorbike", "person", "pottedplant",
    "sheep", "sofa", "train", "tvmonitor",
]  # fmt: skip
VOC_EXPECTED = "Pascal VOC 2012 under data.root"
SBD_EXPECTED = "the SBD release under data.root for data.sbd = true"
SBD_DIRS = ("SBD", "benchmark_RELEASE/dataset")
VOID = 255  # object borders and hard regions: ignored by the loss and the metrics


@dataclass(frozen=True)
class VocSample:
    image: str
    label: str  # a SegmentationClass .png, or an SBD cls/.mat


def _require(path: Path, expected: str) -> Path:
    if not path.exists():
        raise UserInputError(f"data.root: {not_found(path)} (expected {expected})")
    return path


def _read_ids(path: Path, expected: str, *, allow_empty: bool = False) -> list[str]:
    """The ids of a split list, one a line; a file that is not text (a download saved as
    UTF-16, a binary) is named, and a UTF-8 byte-order mark is not part of the first id."""
    try:
        text = _require(path, expected).read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as err:
        raise UserInputError(f"data.root: {path}: not a list of image ids (byte {err.start} is "
                             f"not UTF-8 text; expected {expected})") from None
    except OSError as err:  # a folder in its place, unreadable
        raise UserInputError(f"data.root: {path}: cannot read it ({err.strerror or err})"
                             ) from None
    ids = [line.strip() for line in text.splitlines()]
    ids = [i for i in ids if i]
    if not ids and not allow_empty:
        raise UserInputError(f"data.root: {path} lists no images (expected {expected})")
    return ids


def voc_dir(root: Path) -> Path:
    return root / "VOCdevkit" / "VOC2012"


def split_ids(root: Path, split: str) -> list[str]:
    """Image ids of ``ImageSets/Segmentation/<split>.txt``, in file order."""
    return _read_ids(voc_dir(root) / "ImageSets" / "Segmentation" / f"{split}.txt", VOC_EXPECTED)


def _sample(root: Path, image_id: str) -> VocSample:
    base = voc_dir(root)
    return VocSample(str(base / "JPEGImages" / f"{image_id}.jpg"),
                     str(base / "SegmentationClass" / f"{image_id}.png"))


def _first_ids(root: Path, split: str) -> list[str]:
    """A split's ids, its first image and label required: checking every file would cost
    a stat each on a network file system; the first catches a wrong root or a split that
    is not a segmentation split."""
    ids = split_ids(root, split)
    first = _sample(root, ids[0])
    _require(Path(first.image), VOC_EXPECTED)
    _require(Path(first.label), VOC_EXPECTED)
    return ids


def find_samples(root: Path, split: str) -> list[VocSample]:
    """The samples of one VOC split, in the split file's order."""
    return [_sample(root, i) for i in _first_ids(root, split)]


def sbd_dir(root: Path) -> Path:
    for name in SBD_DIRS:
        if (root / name / "train.txt").exists():
            return root / name
    return _require(
        root / SBD_DIRS[-1] / "train.txt", f"{SBD_EXPECTED}: SBD/ or benchmark_RELEASE/dataset/"
    )


def _trainaug_ids(root: Path, split: str, val_split: str) -> tuple[list[str], list[str], Path]:
    """(VOC ids kept, SBD ids added, the SBD folder) of ``find_trainaug``, in its order."""
    try:
        import scipy.io  # noqa: F401  (fail here, not in a DataLoader worker)
    except ImportError:
        raise UserInputError(
            "data.sbd = true needs scipy to read SBD .mat files: pip install scipy"
        ) from None
    voc_ids = _first_ids(root, split)
    sbd = sbd_dir(root)
    sbd_ids = [
        image_id
        for name in ("train.txt", "val.txt")
        for image_id in _read_ids(sbd / name, SBD_EXPECTED, allow_empty=True)
    ]
    held_out = set(split_ids(root, val_split))
    seen = set(voc_ids)
    kept = [i for i in voc_ids if i not in held_out]
    added = []
    for i in sbd_ids:
        if i in seen or i in held_out:
            continue
        seen.add(i)
        added.append(i)
    if not kept and not added:
        raise UserInputError(f"data.root: trainaug is empty: every {split} image is in {val_split}")
    return kept, added, sbd


def _sbd_label(sbd: Path, image_id: str) -> str:
    return str(_require(sbd / "cls" / f"{image_id}.mat",
                        f"{SBD_EXPECTED}: SBD/ or benchmark_RELEASE/dataset/"))


def find_trainaug(root: Path, split: str, val_split: str) -> list[VocSample]:
    """The usual "trainaug": VOC ``split`` + SBD train + SBD val, minus VOC ``val_split``.

    Order: the VOC ids first, then the SBD ids not already present (train.txt, then
    val.txt). An image with a VOC annotation keeps it (it marks object borders 255);
    the others take SBD's ``cls/<id>.mat``. Images always come from JPEGImages, which
    holds every SBD image.
    """
    kept, added, sbd = _trainaug_ids(root, split, val_split)
    images = voc_dir(root) / "JPEGImages"
    samples = [_sample(root, i) for i in kept]
    samples += [VocSample(str(images / f"{i}.jpg"), str(sbd / "cls" / f"{i}.mat")) for i in added]
    _require(Path(samples[-1].label), f"{SBD_EXPECTED}: SBD/ or benchmark_RELEASE/dataset/")
    return samples


def first_labels(root: Path, splits: list[str], *, sbd: bool = False,
                 val_split: str = "val") -> list[str]:
    """The labels a pre-run check reads, found without listing a split's samples: each
    split's first, and with ``sbd`` the trainaug set's (of ``splits[0]``) first VOC label
    and first SBD .mat. Raises what ``find_samples`` and ``find_trainaug`` raise."""
    paths = []
    for n, split in enumerate(splits):
        if sbd and n == 0:
            kept, added, sbd_folder = _trainaug_ids(root, split, val_split)
            paths += [_sample(root, kept[0]).label] if kept else []
            paths += [_sbd_label(sbd_folder, added[0])] if added else []
        else:
            paths.append(_sample(root, _first_ids(root, split)[0]).label)
    return list(dict.fromkeys(paths))


def read_rgb(path: str) -> np.ndarray:
    """An image file as uint8 (H, W, 3); one that cannot be decoded is named."""
    try:
        with Image.open(path) as image:
            return np.asarray(image.convert("RGB"))
    except OSError as err:  # missing, truncated or not an image (PIL's errors are OSErrors)
        raise UserInputError(f"{path}: unreadable image: {err}") from None


def read_palette_label(path: str) -> np.ndarray:
    """A palette PNG's indices (not its colours) as uint8 (H, W)."""
    try:
        with Image.open(path) as image:
            if image.mode not in ("P", "L"):
                raise UserInputError(
                    f"{path}: label image is mode {image.mode!r}; expected a palette ('P') PNG of class ids"
                )
            return np.array(image, dtype=np.uint8)
    except OSError as err:
        raise UserInputError(f"{path}: unreadable label: {err}") from None


def read_sbd_label(path: str) -> np.ndarray:
    import scipy.io  # lazy: loads scipy
    from scipy.io.matlab import MatReadError

    try:
        mat = scipy.io.loadmat(path)
        return np.asarray(mat["GTcls"][0]["Segmentation"][0], dtype=np.uint8)
    except (OSError, ValueError, LookupError, MatReadError) as err:
        raise UserInputError(
            f"{path}: unreadable SBD label, expected a .mat holding GTcls.Segmentation "
            f"({type(err).__name__}: {err})"
        ) from None


def read_label(path: str) -> np.ndarray:
    """A SegmentationClass PNG or an SBD .mat as uint8 (H, W); a class id past tvmonitor
    is refused with the file's name (the loss would fail on it without one)."""
    label = read_sbd_label(path) if path.endswith(".mat") else read_palette_label(path)
    bad = (label >= len(CLASS_NAMES)) & (label != VOID)
    if bad.any():
        raise UserInputError(
            f"{path}: class id {int(label[bad].max())} out of range; VOC labels are "
            f"0..{len(CLASS_NAMES) - 1} ({VOID} = void)")
    return label


def load(sample: VocSample) -> tuple[np.ndarray, np.ndarray]:
    """(image uint8 (H, W, 3), label uint8 (H, W)); see ``read_label``."""
    label = read_label(sample.label)
    return read_rgb(sample.image), label
