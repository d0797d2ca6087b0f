"""From a recipe's ``data`` section to train and validation datasets.

The readers (``voc``, ``cityscapes``, ``coco``) find samples and decode them; this
module adds what every dataset shares: transforms, ``limit_*``, the in-memory cache
and the source of augmentation randomness. The trainer calls ``build_datasets``,
``loader_options`` and ``collate_eval``.

Reproducibility: with ``num_workers = 0`` a training dataset draws its augmentation
from its own generator, seeded by ``build_datasets(seed=...)``. Inside DataLoader
workers it draws from torch's global RNG instead, which DataLoader seeds per worker
from its base seed (pass ``generator=torch.Generator().manual_seed(seed)`` to the
DataLoader): copies of one generator in every worker would repeat the same crops.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from ablate.cpus import usable_cpus
from ablate.data import cityscapes, coco, folder, shapes, voc
from ablate.data.catalog import user_dataset
from ablate.data.collate import collate_eval
from ablate.data.custom import PairReader, call_builder, reader_label
from ablate.data.transforms import EvalTransform, TrainTransform
from ablate.errors import UserInputError
from ablate.paths import expand_user, not_found
from ablate.recipes.schema import DataSpec

__all__ = ["DatasetPair", "build_datasets", "collate_eval", "holdout_split", "loader_options"]

DESCRIPTIONS = {
    "voc2012": "Pascal VOC 2012 (VOCdevkit/VOC2012/...)",
    "cityscapes": "Cityscapes (leftImg8bit/ and gtFine/)",
    "coco": "COCO 2017 (train2017/, val2017/ and annotations/)",
    "folder": "classes.txt, images/{train,val}/ and masks/{train,val}/",
}
# data.workers = "auto": one CPU left to the training process, at most this many workers
# (bench/bench_pipeline.py: 165-198 VOC samples per CPU second at crop 513 on an AMD EPYC
# core, so 8 workers feed about 1,300-1,600 images/s; bench/gpu_check.py's data_pipeline
# check compares that with a GPU's training step rate)
MAX_AUTO_WORKERS = 8
# set by the local runner in a worker process: the CPUs its trial may use (all of them
# divided by the trials it runs at once); the process's CPU affinity otherwise
TRIAL_CPUS_ENV = "ABLATE_TRIAL_CPUS"


@dataclass(frozen=True)
class DatasetPair:
    """Items are (image float32 [3, H, W] normalised, label int64 [H, W], 255 = ignore)."""

    train: Dataset
    val: Dataset
    class_names: list[str]


class RandomSource:
    """Where a dataset draws augmentation from (see the module docstring)."""

    def __init__(self, seed: int) -> None:
        self.seed = seed
        self._generator: torch.Generator | None = None

    def generator(self) -> torch.Generator | None:
        if torch.utils.data.get_worker_info() is not None:
            return None  # the worker-seeded global RNG
        if self._generator is None:
            self._generator = torch.Generator().manual_seed(self.seed)
        return self._generator

    def __getstate__(self) -> dict[str, Any]:
        return {"seed": self.seed, "_generator": None}

    def state(self) -> Tensor | None:
        """The main-process generator's state, for checkpoints (None before first use)."""
        return None if self._generator is None else self._generator.get_state()

    def set_state(self, state: Tensor | None) -> None:
        if state is not None:
            self._generator = torch.Generator()
            self._generator.set_state(state)


class SegmentationDataset(Dataset):
    """Samples decoded by ``load``, then ``transform.prepare`` (cached when ``cache``),
    then ``transform.finish``.

    With DataLoader workers each worker fills its own cache; persistent workers keep
    it across epochs.
    """

    def __init__(
        self,
        samples: Sequence[Any],
        load: Callable[[Any], tuple[np.ndarray, np.ndarray]],
        transform: TrainTransform | EvalTransform,
        *,
        cache: bool = False,
        seed: int = 0,
    ) -> None:
        self.samples = list(samples)
        self.load = load
        self.transform = transform
        self.cache: dict[int, tuple[Tensor, Tensor]] | None = {} if cache else None
        self.random = RandomSource(seed)

    def __len__(self) -> int:
        return len(self.samples)

    def _prepared(self, index: int) -> tuple[Tensor, Tensor]:
        if self.cache is not None and index in self.cache:
            return self.cache[index]
        sample = self.samples[index]
        image, label = self.load(sample)
        if image.shape[:2] != label.shape:
            label_file = getattr(sample, "label", None)  # COCO's labels come from the JSON
            its_label = f"its label {label_file}" if isinstance(label_file, str) else "its label"
            raise UserInputError(
                f"{getattr(sample, 'image', sample)}: image is {image.shape[1]}x{image.shape[0]} "
                f"but {its_label} is {label.shape[1]}x{label.shape[0]} (width x height)"
            )
        # torch wants writable arrays; PIL hands out read-only ones. [3, H, W] as a view of
        # the (H, W, 3) array: channels-last memory, which resizes ~3x faster (transforms)
        image_t = torch.from_numpy(np.require(image, requirements="CW")).permute(2, 0, 1)
        label_t = torch.from_numpy(np.require(label, requirements="CW"))
        prepared = self.transform.prepare(image_t, label_t)
        if self.cache is not None:
            self.cache[index] = prepared
        return prepared

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor]:
        image, label = self._prepared(index)
        return self.transform.finish(image, label, generator=self.random.generator())


class ShapesDataset(Dataset):
    """The embedded ``shapes`` split, in memory; training flips images at random."""

    def __init__(
        self, images: np.ndarray, labels: np.ndarray, *, hflip: bool, seed: int = 0
    ) -> None:
        self.images = torch.from_numpy(images)
        self.labels = torch.from_numpy(labels)
        self.hflip = hflip
        self.random = RandomSource(seed)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor]:
        image, label = self.images[index], self.labels[index]
        if self.hflip and float(torch.rand((), generator=self.random.generator())) < 0.5:
            image, label = image.flip(-1), label.flip(-1)
        return image, label


def _limited(samples: list[Any], limit: int | None) -> list[Any]:
    return samples if limit is None else samples[:limit]


HOLDOUT_SEED = 0  # which samples data.holdout holds out: fixed, the same for every trial


def holdout_split(count: int, fraction: float) -> tuple[list[int], list[int]]:
    """(training indices, held-out indices) of a training set of ``count`` samples:
    ``round(fraction * count)`` samples (at least one) picked by a fixed pseudo-random
    permutation, so every trial with the same data holds out the same ones. A random
    pick, not the last files: a folder sorted by name is often sorted by city or scene."""
    held = max(1, round(fraction * count))
    if count - held < 1:
        raise UserInputError(f"data.holdout: {fraction:g} of {count} training sample(s) "
                             "leaves none to train on")
    order = np.random.default_rng(HOLDOUT_SEED).permutation(count)
    return sorted(order[held:].tolist()), sorted(order[:held].tolist())


def _shapes(data: DataSpec, seed: int) -> DatasetPair:
    def split(count: int, limit: int | None, name: str) -> tuple[np.ndarray, np.ndarray]:
        count = count if limit is None else min(count, limit)
        return shapes.generate(count, data.image_size, data.classes, data.data_seed, name)

    images, labels = split(data.train_images, data.limit_train, "train")
    if data.holdout:  # the held-out training images are the evaluation set
        kept, held = holdout_split(len(labels), data.holdout)
        val = ShapesDataset(images[held], labels[held], hflip=False)
        images, labels = images[kept], labels[kept]
    else:
        val = ShapesDataset(*split(data.val_images, data.limit_val, "val"), hflip=False)
    train = ShapesDataset(images, labels, hflip=data.hflip, seed=seed)
    return DatasetPair(train, val, shapes.class_names(data.classes))


def _root(data: DataSpec) -> Path:
    if data.root is None:
        raise UserInputError(
            f"data.root: not set (data.name = {data.name!r} reads {DESCRIPTIONS[data.name]} from a folder)"
        )
    root = expand_user(data.root, "data.root")
    if not root.is_dir():
        raise UserInputError(
            f"data.root: {not_found(root)} (expected a folder holding {DESCRIPTIONS[data.name]})"
        )
    return root


def _samples(data: DataSpec, root: Path, val: bool = True, train: bool = True
             ) -> tuple[list, list, Callable, list[str]]:
    """(train samples, val samples, load function, class names) of a real dataset;
    ``val=False`` / ``train=False``: none of that split, the split not read."""
    def val_samples(find, **options) -> list:
        return find(root, data.val_split, **options) if val else []

    def train_samples(find, *args, **options) -> list:
        return find(root, data.train_split, *args, **options) if train else []

    if data.name == "voc2012":
        if data.sbd:  # trainaug leaves out the val split's ids, whoever validates
            samples = train_samples(voc.find_trainaug, data.val_split)
        else:
            samples = train_samples(voc.find_samples)
        return samples, val_samples(voc.find_samples), voc.load, voc.CLASS_NAMES
    if data.name == "cityscapes":
        return (train_samples(cityscapes.find_samples), val_samples(cityscapes.find_samples),
                cityscapes.load, cityscapes.CLASS_NAMES)
    if data.name == "coco":
        coco.require_pycocotools()
        return (train_samples(coco.find_samples, drop_unannotated=True),
                val_samples(coco.find_samples, drop_unannotated=False), coco.load,
                coco.CLASS_NAMES)
    if data.name == "folder":
        return (train_samples(folder.find_samples), val_samples(folder.find_samples),
                folder.load, folder.read_classes(str(root)))
    raise UserInputError(f"data.name: unknown dataset {data.name!r}")


def _user_samples(data: DataSpec, num_classes: int | None
                  ) -> tuple[list, list, Callable, Callable, list[str]]:
    """A user dataset (data.builder or a plugin) read through ``PairReader``.

    Without ``class_names`` on the train dataset, metrics name classes by index.
    """
    train, val, names = call_builder(data)
    label = reader_label(data)
    return (list(range(len(train))), list(range(len(val))),
            PairReader(train, f"{label}: train", num_classes),
            PairReader(val, f"{label}: val", num_classes), names or [])


def build_datasets(data: DataSpec, *, seed: int = 0, num_classes: int | None = None,
                   val: bool = True, train: bool = True) -> DatasetPair:
    """The train and validation datasets a recipe's ``data`` section describes.

    ``seed`` seeds the training augmentation drawn in the main process (see the module
    docstring); ``data.data_seed`` alone decides the content of ``shapes``. A user
    dataset's masks are checked against ``num_classes`` when given (the built-in readers
    know their own classes). ``val=False``: a built-in reader leaves the validation
    split unread (empty), for a trial validated on ``eval_data``: its training root need
    not hold one (COCO's train2017 alone, for VOC validation). ``train=False`` likewise
    leaves the training split unread: an evaluation set (``data.evaluation``) is read once.
    """
    if user_dataset(data) is not None:
        train_samples, val_samples, load, val_load, names = _user_samples(data, num_classes)
    elif data.name == "shapes":
        return _shapes(data, seed)
    else:
        train_samples, val_samples, load, names = _samples(data, _root(data), val, train)
        val_load = load
    train_transform = TrainTransform(
        crop_size=data.crop_size,
        scale_range=(data.scale_range[0], data.scale_range[1]),
        hflip=data.hflip,
    )
    eval_transform = EvalTransform(size=None if data.eval_size is None else tuple(data.eval_size))
    train_samples = _limited(train_samples, data.limit_train)
    val_samples = _limited(val_samples, data.limit_val)
    if data.holdout:  # held-out training samples, read as evaluation samples
        kept, held = holdout_split(len(train_samples), data.holdout)
        val_samples, val_load = [train_samples[i] for i in held], load
        train_samples = [train_samples[i] for i in kept]
    train = SegmentationDataset(
        train_samples,
        load,
        train_transform,
        cache=data.cache,
        seed=seed,
    )
    val = SegmentationDataset(val_samples, val_load, eval_transform, cache=data.cache)
    return DatasetPair(train, val, list(names))


def _cpu_count() -> int:
    """CPUs this trial may use: the local runner's share, else the process's affinity."""
    share = os.environ.get(TRIAL_CPUS_ENV, "")
    if share.isdigit() and int(share) > 0:
        return int(share)
    return usable_cpus()  # the CPUs this job may use, e.g. under SLURM


def auto_workers(cpus: int) -> int:
    """``data.workers = "auto"`` for a trial with ``cpus`` CPUs: all but one (the training
    process's), at least 1, at most ``MAX_AUTO_WORKERS``."""
    return max(1, min(MAX_AUTO_WORKERS, cpus - 1))


def loader_options(data: DataSpec, device_type: str) -> dict[str, Any]:
    """DataLoader keyword arguments, with ``"auto"`` resolved.

    workers: 0 for the in-memory ``shapes`` (a worker would only add start-up time),
    else ``auto_workers`` of the trial's CPUs. pin_memory: only on CUDA, where it speeds
    host-to-device copies; elsewhere it does nothing. persistent_workers: only with workers.
    """
    if data.workers == "auto":
        in_memory = data.name == "shapes" and data.builder is None
        workers = 0 if in_memory else auto_workers(_cpu_count())
    else:
        workers = data.workers
    pin_memory = device_type == "cuda" and data.pin_memory is not False
    return {
        "num_workers": workers,
        "pin_memory": pin_memory,
        "persistent_workers": data.persistent_workers and workers > 0,
    }
