import os

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from ablate.data import build, shapes
from ablate.data.build import build_datasets, collate_eval, loader_options
from ablate.errors import UserInputError
from ablate.recipes.schema import DataSpec

from .fixtures import write_voc

SMALL = {"train_images": 6, "val_images": 3, "image_size": 16, "classes": 4}


def test_shapes_pair_matches_the_generator():
    pair = build_datasets(DataSpec(**SMALL, hflip=False))
    assert len(pair.train) == 6 and len(pair.val) == 3
    assert pair.class_names == shapes.class_names(4)
    images, labels = shapes.generate(3, 16, 4, 0, "val")
    for index in range(3):
        image, label = pair.val[index]
        assert image.dtype == torch.float32 and label.dtype == torch.int64
        assert torch.equal(image, torch.from_numpy(images[index]))
        assert torch.equal(label, torch.from_numpy(labels[index]))


def test_shapes_training_flips_image_and_label_together_reproducibly():
    images, labels = shapes.generate(6, 16, 4, 0, "train")
    first = build_datasets(DataSpec(**SMALL), seed=5).train
    again = build_datasets(DataSpec(**SMALL), seed=5).train
    flipped = []
    for index in range(6):
        image, label = first[index]
        assert torch.equal(image, again[index][0])
        flip = not torch.equal(label, torch.from_numpy(labels[index]))
        expected_image, expected_label = images[index], labels[index]
        if flip:
            expected_image, expected_label = expected_image[..., ::-1], expected_label[..., ::-1]
        np.testing.assert_array_equal(image.numpy(), expected_image)
        np.testing.assert_array_equal(label.numpy(), expected_label)
        flipped.append(flip)
    assert any(flipped) and not all(flipped)


def test_shapes_limits():
    pair = build_datasets(DataSpec(**SMALL, limit_train=2, limit_val=10))
    assert len(pair.train) == 2 and len(pair.val) == 3


def test_real_dataset_without_root_is_a_user_error():
    with pytest.raises(UserInputError, match=r"^data.root: not set \(data.name = 'cityscapes'"):
        build_datasets(DataSpec(name="cityscapes"))


def test_missing_root_names_the_path(tmp_path):
    missing = tmp_path / "coco"
    with pytest.raises(UserInputError) as error:
        build_datasets(DataSpec(name="coco", root=str(missing)))
    assert str(error.value).startswith(
        f"data.root: {missing} not found (expected a folder holding COCO 2017"
    )


def test_loader_options_for_in_memory_shapes():
    assert loader_options(DataSpec(), "cuda") == {
        "num_workers": 0, "pin_memory": True, "persistent_workers": False,
    }  # fmt: skip
    assert loader_options(DataSpec(), "cpu")["pin_memory"] is False


@pytest.mark.parametrize(("cpus", "workers"), [(32, 8), (16, 8), (5, 4), (2, 1), (1, 1)])
def test_loader_options_auto_workers_for_real_data(monkeypatch, cpus, workers):
    monkeypatch.setattr(build, "_cpu_count", lambda: cpus)
    options = loader_options(DataSpec(name="voc2012", root="/data"), "cuda")
    assert options == {"num_workers": workers, "pin_memory": True, "persistent_workers": True}


def test_auto_workers_count_the_cpus_the_local_runner_gives_the_trial(monkeypatch):
    from ablate.dispatch.local import TRIAL_CPUS_ENV

    assert TRIAL_CPUS_ENV == build.TRIAL_CPUS_ENV  # the runner sets what the loader reads
    monkeypatch.setenv(build.TRIAL_CPUS_ENV, "3")  # e.g. 12 CPUs, 4 trials at once
    assert build._cpu_count() == 3
    assert loader_options(DataSpec(name="voc2012", root="/data"), "cuda")["num_workers"] == 2
    monkeypatch.setenv(build.TRIAL_CPUS_ENV, "")
    assert build._cpu_count() == len(os.sched_getaffinity(0))


def test_loader_options_explicit_values():
    data = DataSpec(name="voc2012", workers=0, pin_memory=False, persistent_workers=True)
    assert loader_options(data, "cuda") == {
        "num_workers": 0, "pin_memory": False, "persistent_workers": False,
    }  # fmt: skip
    assert loader_options(DataSpec(workers=3, pin_memory=True), "cpu") == {
        "num_workers": 3, "pin_memory": False, "persistent_workers": True,
    }  # fmt: skip


@pytest.fixture
def voc_spec(tmp_path):
    rng = np.random.default_rng(0)
    labels = {f"2007_{i:06d}": rng.integers(0, 21, size=(6 + i, 9 - i)) for i in range(4)}
    write_voc(tmp_path, labels, {"train": list(labels)[:2], "val": list(labels)[2:]})
    return DataSpec(name="voc2012", root=str(tmp_path), crop_size=5, workers=2)


def test_val_loader_batches_variable_sizes(voc_spec):
    val = build_datasets(voc_spec).val
    images, labels = next(iter(DataLoader(val, batch_size=2, collate_fn=collate_eval)))
    assert images.shape == (2, 3, 9, 7) and labels.shape == (2, 9, 7)
    assert (labels[0, 8:] == 255).all() and (labels[1, :, 6:] == 255).all()


@pytest.mark.slow
def test_worker_augmentation_is_reproducible_from_the_loader_seed(voc_spec):
    train = build_datasets(voc_spec).train
    options = {"batch_size": 1, **loader_options(voc_spec, "cpu"), "persistent_workers": False}

    def epoch(seed):
        loader = DataLoader(train, generator=torch.Generator().manual_seed(seed), **options)
        return [label for _, label in loader]

    first, again, other = epoch(1), epoch(1), epoch(2)
    assert all(torch.equal(a, b) for a, b in zip(first, again))
    assert not all(torch.equal(a, b) for a, b in zip(first, other))
