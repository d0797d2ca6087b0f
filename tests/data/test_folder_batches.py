"""A ``folder`` dataset without a crop: equal sizes train, unequal sizes are refused up front.

Without ``data.crop_size`` there is no random rescale unless the recipe asks for one, and
``ablate run`` reads the training images' headers before anything is recorded.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from ablate.cli import main
from ablate.recipes.schema import DataSpec, TrialSpec
from ablate.store import Store
from ablate.trials.ids import trial_id

RECIPE = """
name = "folder_batches"
seeds = [0]

[base.model]
backbone = "mobilenet_v3_small"
head = "lraspp"

[base.data]
name = "folder"
root = "{root}"
workers = 0

[base.train]
iterations = 2
batch_size = 4

[base.eval]
latency = false
flops = false

[grid]
"train.lr" = [0.01, 0.02]
"""


def write_images(root: Path, sizes: list[tuple[int, int]], val: int = 2) -> None:
    """Training images of the given (width, height), ``val`` 32x32 validation images."""
    root.mkdir(parents=True)
    (root / "classes.txt").write_text("background\nthing\n")
    for split, split_sizes in (("train", sizes), ("val", [(32, 32)] * val)):
        (root / "images" / split).mkdir(parents=True)
        (root / "masks" / split).mkdir(parents=True)
        for i, (w, h) in enumerate(split_sizes):
            image = np.full((h, w, 3), 40 * i % 256, dtype=np.uint8)
            mask = np.zeros((h, w), dtype=np.uint8)
            mask[h // 4: h // 2, w // 4: w // 2] = 1
            Image.fromarray(image).save(root / "images" / split / f"s{i}.png")
            Image.fromarray(mask, mode="L").save(root / "masks" / split / f"s{i}.png")


def run(tmp_path: Path, *extra: str):
    recipe = tmp_path / "recipe.toml"
    recipe.write_text(RECIPE.format(root=tmp_path / "data"))
    return CliRunner().invoke(main, ["run", str(recipe), "--db", str(tmp_path / "r.db"), *extra])


def refused(result) -> str:
    assert result.exit_code == 2, result.output
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and "Traceback" not in result.output, result.output
    return lines[0]


def test_no_random_rescale_without_a_crop():
    for name in ("folder", "my_plugin"):  # every dataset read through the transforms
        spec = DataSpec.model_validate({"name": "folder"} if name == "folder" else
                                       {"builder": "pkg.data:build"})
        assert (spec.crop_size, spec.scale_range) == (None, [1.0, 1.0])
    # a crop (given or conventional) keeps the DeepLab rescale; shapes reads neither key
    assert DataSpec.model_validate({"name": "folder", "crop_size": 24}).scale_range == [0.5, 2.0]
    assert DataSpec.model_validate({"name": "voc2012"}).scale_range == [0.5, 2.0]
    assert DataSpec.model_validate({"name": "shapes"}).scale_range == [0.5, 2.0]
    asked = DataSpec.model_validate({"name": "folder", "scale_range": [0.5, 2.0]})
    assert asked.scale_range == [0.5, 2.0]
    # the embedded data keeps its trial ids (quickstart's are pinned elsewhere)
    assert trial_id(TrialSpec()) == trial_id(TrialSpec.model_validate(
        {"data": {"name": "shapes", "scale_range": [0.5, 2.0]}}))


@pytest.mark.slow
def test_equal_size_images_train_without_a_crop(tmp_path):
    write_images(tmp_path / "data", [(32, 32)] * 8)
    result = run(tmp_path)
    assert result.exit_code == 0, result.output
    records = Store(str(tmp_path / "r.db")).trials("folder_batches")
    assert [r.status for r in records] == ["done", "done"]
    assert all(r.spec["data"]["scale_range"] == [1.0, 1.0] for r in records)
    assert all(0.0 <= r.metrics["miou"] <= 1.0 for r in records)


def test_unequal_sizes_are_refused_before_anything_is_recorded(tmp_path):
    write_images(tmp_path / "data", [(40, 40), (32, 32), (32, 32), (41, 54)])
    line = refused(run(tmp_path))
    # the recipe and trial go first where the line would be too long (preflight.MAX_MESSAGE)
    assert line.startswith("Error: ") and line.endswith(
        "data.crop_size: not set, and training images differ in size (images/train/s0.png "
        "40x40, images/train/s1.png 32x32), so a batch of 4 cannot be formed; set "
        "data.crop_size to at most 32 (the smallest training image side) or "
        "train.batch_size = 1")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data", "recipe.toml"]


@pytest.mark.slow
def test_unequal_sizes_train_with_a_crop_or_one_image_a_batch(tmp_path):
    write_images(tmp_path / "data", [(40, 40), (32, 36), (32, 32), (41, 54)])
    assert run(tmp_path, "--set", "data.crop_size=32").exit_code == 0
    assert run(tmp_path, "--set", "train.batch_size=1").exit_code == 0
    records = Store(str(tmp_path / "r.db")).trials("folder_batches")
    assert [r.status for r in records] == ["done"] * 4


def test_a_random_rescale_without_a_crop_is_refused(tmp_path):
    write_images(tmp_path / "data", [(32, 32)] * 4)
    line = refused(run(tmp_path, "--set", "data.scale_range=[0.5, 2.0]"))
    assert line.startswith("Error: ") and line.endswith(
        "data.scale_range: [0.5, 2.0] rescales each training "
        "image by a random factor, so without data.crop_size a batch of 4 cannot be formed; "
        "set data.crop_size to at most 32 (the smallest training image side) or "
        "data.scale_range = [1.0, 1.0]")
    assert not (tmp_path / "r.db").exists()


def test_a_mask_of_another_size_is_named_up_front(tmp_path):
    write_images(tmp_path / "data", [(32, 32)] * 4)
    Image.fromarray(np.zeros((30, 32), dtype=np.uint8), mode="L").save(
        tmp_path / "data" / "masks" / "train" / "s2.png")
    line = refused(run(tmp_path))
    assert line.endswith(f"{tmp_path / 'data/images/train/s2.png'}: image is 32x32 but its "
                         "mask is 32x30 (width x height)")
    assert not (tmp_path / "r.db").exists()


@pytest.mark.slow
@pytest.mark.parametrize("limit,ok", [(2, True), (None, False)])
def test_only_the_images_a_trial_reads_are_checked(tmp_path, limit, ok):
    write_images(tmp_path / "data", [(32, 32), (32, 32), (48, 48)])
    args = ["--set", "train.batch_size=2", "--set", "train.iterations=1"]
    if limit is not None:
        args += ["--set", f"data.limit_train={limit}"]
    result = run(tmp_path, *args)
    if ok:
        assert result.exit_code == 0, result.output
    else:
        assert "data.crop_size: not set" in refused(result)
