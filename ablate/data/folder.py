"""``data.name = "folder"``: any folder of labelled images.

Layout under ``data.root``::

    classes.txt              one class name per line (line 1 is class 0)
    images/train/*.png|jpg|jpeg
    images/val/...
    masks/train/*.png        one class index per pixel, 255 = ignore
    masks/val/...

Images and masks are paired by file stem (``images/train/a.jpg`` with
``masks/train/a.png``). Errors name the first unpaired, unreadable or out-of-range
file. Pairing is checked when the dataset is built (and before anything is recorded,
with each split's first mask); decoding and the range of class ids when each sample is
first read. No torch here: planning reads the class count
and image size.
"""

from __future__ import annotations

import glob
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ablate.errors import UserInputError
from ablate.paths import expand_user, not_found

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
IGNORE = 255
MAX_SUBFOLDERS = 200  # of a wrong root, searched for the layout one folder down
LAYOUT = ("classes.txt, images/{train,val}/*.{jpg,jpeg,png} and masks/{train,val}/*.png")


@dataclass(frozen=True)
class FolderSample:
    image: str
    label: str
    num_classes: int


def check_root(root: str | None) -> Path:
    if root is None:
        raise UserInputError(f"data.root: not set (data.name = 'folder' reads {LAYOUT})")
    path = expand_user(root, "data.root")
    if not path.is_dir():
        what = f"{path} is a file; expected a folder" if path.exists() else not_found(path)
        raise UserInputError(f"data.root: {what} (data.name = 'folder' reads {LAYOUT})")
    return path


def read_classes(root: str | None) -> list[str]:
    """Class names from ``classes.txt``: one per non-empty line."""
    path = check_root(root) / "classes.txt"
    if not path.is_file():
        raise UserInputError(f"{path}: not found (one class name per line; line 1 is class "
                             f"0){_did_you_mean(path.parent)}")
    try:
        names = [line.strip() for line in path.read_text(encoding="utf-8").splitlines()]
    except (OSError, UnicodeDecodeError) as err:
        raise UserInputError(f"{path}: cannot read: {err}") from None
    names = [n for n in names if n]
    if len(names) < 2:
        raise UserInputError(f"{path}: lists {len(names)} class(es); a segmentation needs at least 2")
    if len(names) > IGNORE:
        raise UserInputError(f"{path}: lists {len(names)} classes; at most {IGNORE} fit in a PNG "
                             f"mask beside the ignore value {IGNORE}")
    return names


def _did_you_mean(root: Path) -> str:
    """'; did you mean data.root = "..."?' where the layout lies one or two folders up (a
    root given as data/images or data/images/train) or one folder down (the folder
    holding the dataset), else "". Only read when the root is wrong."""
    candidates = [root.resolve().parent, root.resolve().parent.parent]
    if root.is_dir():
        candidates += sorted(p for p in root.iterdir()
                             if p.is_dir() and not p.name.startswith("."))[:MAX_SUBFOLDERS]
    for candidate in candidates:
        if (candidate / "classes.txt").is_file() and all(
                (candidate / part).is_dir() for part in ("images", "masks")):
            shown = candidate if root.is_absolute() else os.path.relpath(candidate)
            return f'; did you mean data.root = "{shown}"?'
    return ""


def _files(folder: Path, suffixes: tuple[str, ...], what: str) -> dict[str, Path]:
    if not folder.is_dir():  # folder is ROOT/images/SPLIT or ROOT/masks/SPLIT
        raise UserInputError(f"{folder}: folder not found (data.name = 'folder' reads {LAYOUT})"
                             f"{_did_you_mean(folder.parent.parent)}")
    found: dict[str, Path] = {}
    with os.scandir(folder) as entries:  # the file type comes with the listing: no stat each
        # hidden files are not samples: macOS writes ._a.jpg beside a.jpg on other disks
        listed = [e for e in entries if not e.name.startswith(".")]
    for entry in listed:  # a link whose file is gone would read as an unpaired file
        if entry.is_symlink() and not entry.is_file() and not entry.is_dir() \
                and Path(entry.name).suffix.lower() in suffixes:
            raise UserInputError(f"{not_found(entry.path)} (the {what} not fetched, or moved?)")
    names = sorted(e.name for e in listed if e.is_file())
    for name in names:
        path = folder / name
        if path.suffix.lower() not in suffixes:
            continue
        if path.stem in found:
            raise UserInputError(f"{path}: a second {what} with stem {path.stem!r} "
                                 f"(first: {found[path.stem].name})")
        found[path.stem] = path
    return found


def _other_format(folder: Path, stem: str) -> str:
    """A mask saved under another suffix (a JPEG, whose compression changes the class
    indices at the edges of every region) is named, not left to look missing."""
    others = sorted(p.name for p in folder.glob(f"{glob.escape(stem)}.*") if p.is_file())
    return (f" ({others[0]} is there: masks are PNG files, which keep each pixel's class "
            "index)") if others else ""


def find_samples(root: str | Path, split: str) -> list[FolderSample]:
    """The (image, mask) pairs of one split, sorted by stem; every file must be paired."""
    base = check_root(str(root))
    classes = len(read_classes(str(root)))
    images = _files(base / "images" / split, IMAGE_SUFFIXES, "image")
    masks = _files(base / "masks" / split, (".png",), "mask")
    for stem in sorted(images.keys() | masks.keys()):
        if stem not in masks:
            raise UserInputError(f"{images[stem]}: no mask masks/{split}/{stem}.png"
                                 f"{_other_format(base / 'masks' / split, stem)}")
        if stem not in images:
            raise UserInputError(f"{masks[stem]}: no image images/{split}/{stem}.(jpg|jpeg|png)")
    if not images:
        raise UserInputError(f"{base / 'images' / split}: no .jpg, .jpeg or .png images")
    return [FolderSample(str(images[s]), str(masks[s]), classes) for s in sorted(images)]


def first_image_size(root: str | None, split: str = "val") -> tuple[int, int]:
    """(H, W) of the split's first image, read from its header: the default cost size."""
    from PIL import Image  # lazy: loads PIL

    samples = _files(check_root(root) / "images" / split, IMAGE_SUFFIXES, "image")
    if not samples:
        raise UserInputError(f"{Path(str(root)) / 'images' / split}: no .jpg, .jpeg or .png images")
    path = samples[min(samples)]
    try:
        with Image.open(path) as image:
            width, height = image.size
    except OSError as err:
        raise UserInputError(f"{path}: unreadable image: {err}") from None
    return height, width


def training_sizes(root: str | None, split: str, limit: int | None = None
                   ) -> list[tuple[str, tuple[int, int]]]:
    """(image path, (width, height)) of the split's first ``limit`` samples, from the
    image and mask headers (nothing decoded): whether a training batch can be formed is
    known before anything is recorded. A mask of another size than its image is named."""
    samples = find_samples(check_root(root), split)
    return [(sample.image, pair_size(sample))
            for sample in (samples if limit is None else samples[:limit])]


def pair_size(sample: FolderSample) -> tuple[int, int]:
    """(width, height) of a sample, read from its image and mask headers; a mask of another
    size than its image is named."""
    from PIL import Image  # lazy: loads PIL

    def size(path: str, what: str) -> tuple[int, int]:
        try:
            with Image.open(path) as image:
                if what == "image":
                    check_image_mode(path, image.mode)
                return image.size
        except OSError as err:
            raise UserInputError(f"{path}: unreadable {what}: {err}") from None

    image, mask = size(sample.image, "image"), size(sample.label, "mask")
    if image != mask:
        raise UserInputError(f"{sample.image}: image is {image[0]}x{image[1]} but its mask "
                             f"is {mask[0]}x{mask[1]} (width x height)")
    return image


MASK_MODES = ("L", "P")
WIDE_MODES = ("I", "I;16", "I;16B", "I;16L", "I;16N", "F")  # PIL modes past 8 bits


def check_image_mode(path: str | Path, mode: str) -> None:
    """An image of more than 8 bits per channel is refused: ``convert("RGB")`` would clip
    every value past 255 to white without a word."""
    if mode in WIDE_MODES:
        raise UserInputError(f"{path}: image is mode {mode!r}, more than 8 bits per channel, "
                             "which converting to RGB would clip at 255; save 8-bit images "
                             "(scaled to 0..255), or read them with data.builder")


def mask_mode_error(path: str | Path, mode: str) -> str:
    return (f"{path}: mask is mode {mode!r}; expected a single-channel ('L' or 'P') PNG of "
            "class indices" + (" (a colour-coded mask: map each colour to its class index)"
                               if mode in ("RGB", "RGBA") else ""))


def split_problem(root: str | None, split: str) -> str | None:
    """What would fail every trial on a split, named before anything is recorded: a
    missing masks folder, an unpaired file or an empty split (a listing, nothing
    decoded), and the first pair (by stem): its mask read as training reads it (a
    colour-coded or 16-bit mask, a class index past classes.txt) and of its image's size.
    The others are checked as they load. None when it is fine or the root is missing
    (other checks name that)."""
    try:
        if root is None or not expand_user(str(root), "data.root").is_dir():
            return None
        samples = find_samples(root, split)
        pair_size(samples[0])
        read_mask(samples[0].label, samples[0].num_classes)
    except UserInputError as err:
        return str(err)
    return None


def read_mask(path: str, num_classes: int) -> np.ndarray:
    """A mask (uint8 (H, W)) of class indices below ``num_classes`` or 255; one line
    naming the file otherwise."""
    from PIL import Image  # lazy: loads PIL

    try:
        with Image.open(path) as mask:
            if mask.mode not in MASK_MODES:
                raise UserInputError(mask_mode_error(path, mask.mode))
            label = np.array(mask, dtype=np.uint8)
    except OSError as err:
        raise UserInputError(f"{path}: unreadable mask: {err}") from None
    bad = (label >= num_classes) & (label != IGNORE)
    if bad.any():
        value = int(label[bad].max())
        raise UserInputError(
            f"{path}: class index {value} out of range; classes.txt lists "
            f"{num_classes} classes (0..{num_classes - 1}, {IGNORE} = ignore)"
        )
    return label


def load(sample: FolderSample) -> tuple[np.ndarray, np.ndarray]:
    """(image uint8 (H, W, 3), mask uint8 (H, W)); names the file that is wrong."""
    from PIL import Image  # lazy: loads PIL

    try:
        with Image.open(sample.image) as image:
            check_image_mode(sample.image, image.mode)
            rgb = np.asarray(image.convert("RGB"))
    except OSError as err:
        raise UserInputError(f"{sample.image}: unreadable image: {err}") from None
    return rgb, read_mask(sample.label, sample.num_classes)
