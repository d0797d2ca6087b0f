"""``data.name = "folder"`` and ``data.builder``: user images and user dataset code."""

from __future__ import annotations

import importlib.metadata
import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from ablate.catalog import DATASETS
from ablate.cli import main
from ablate.data import folder
from ablate.data.build import build_datasets
from ablate.data.catalog import dataset_num_classes, default_eval_resolution
from ablate.data.custom import PairReader
from ablate.data.transforms import normalize
from ablate.errors import UserInputError
from ablate.recipes.schema import DataSpec, TrialSpec
from ablate.train.loop import train_and_evaluate
from ablate.trials.ids import trial_id
from ablate.trials.resolve import eval_resolution, num_classes

NAMES = ["background", "disc", "square"]


def write_folder(root: Path, train: int = 3, val: int = 2, size: tuple[int, int] = (6, 8),
                 suffix: str = ".png") -> dict[str, list[np.ndarray]]:
    """Images whose pixels encode (split, index); masks with class ids and 255."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "classes.txt").write_text("\n".join(NAMES) + "\n\n")
    masks: dict[str, list[np.ndarray]] = {}
    for split, count in (("train", train), ("val", val)):
        (root / "images" / split).mkdir(parents=True)
        (root / "masks" / split).mkdir(parents=True)
        masks[split] = []
        for i in range(count):
            h, w = size
            image = np.full((h, w, 3), 10 * i + (100 if split == "val" else 0), dtype=np.uint8)
            mask = (np.arange(h * w).reshape(h, w) % 3).astype(np.uint8)
            mask[0, 0] = 255
            Image.fromarray(image).save(root / "images" / split / f"s{i}{suffix}")
            Image.fromarray(mask, mode="L").save(root / "masks" / split / f"s{i}.png")
            masks[split].append(mask)
    return masks


def folder_spec(root: Path, **fields) -> DataSpec:
    return DataSpec(name="folder", root=str(root), scale_range=[1.0, 1.0], hflip=False, **fields)


def test_folder_pairs_by_stem_and_reads_classes(tmp_path):
    masks = write_folder(tmp_path)
    pair = build_datasets(folder_spec(tmp_path))
    assert len(pair.train) == 3 and len(pair.val) == 2
    assert pair.class_names == NAMES
    image, label = pair.val[1]
    assert label.dtype == torch.int64
    np.testing.assert_array_equal(label.numpy(), masks["val"][1])
    expected = normalize(torch.full((3, 6, 8), 110, dtype=torch.uint8))
    assert torch.allclose(image, expected)


def test_planning_reads_class_count_and_image_size_without_loading(tmp_path):
    write_folder(tmp_path, size=(6, 8), suffix=".jpg")
    data = folder_spec(tmp_path)
    assert dataset_num_classes(data) == 3
    assert default_eval_resolution(data) == (6, 8)
    assert num_classes(TrialSpec(data=data)) == 3


def test_unpaired_image_is_named(tmp_path):
    write_folder(tmp_path)
    (tmp_path / "masks" / "train" / "s1.png").unlink()
    with pytest.raises(UserInputError) as err:
        build_datasets(folder_spec(tmp_path))
    assert str(err.value) == f"{tmp_path / 'images/train/s1.png'}: no mask masks/train/s1.png"
    # saved as a JPEG: named, not left to look missing
    Image.new("L", (8, 6)).save(tmp_path / "masks" / "train" / "s1.jpg")
    with pytest.raises(UserInputError) as err:
        build_datasets(folder_spec(tmp_path))
    assert str(err.value) == (f"{tmp_path / 'images/train/s1.png'}: no mask masks/train/s1.png "
                              "(s1.jpg is there: masks are PNG files, which keep each pixel's "
                              "class index)")


def test_hidden_files_are_not_samples(tmp_path):
    """A folder copied from a Mac to another disk holds ._NAME beside every file (its
    metadata, not an image) and .DS_Store: they stopped the dataset as unpaired images."""
    write_folder(tmp_path)
    for split in ("train", "val"):
        for kind, suffix in (("images", ".png"), ("masks", ".png")):
            folder = tmp_path / kind / split
            (folder / f"._s0{suffix}").write_bytes(b"\x00\x05\x16\x07 Mac OS X")
            (folder / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1")
    (tmp_path / "images" / "train" / "._s9.jpg").write_bytes(b"\x00\x05\x16\x07")
    pair = build_datasets(folder_spec(tmp_path))
    assert len(pair.train) == 3 and len(pair.val) == 2


def test_unpaired_mask_is_named(tmp_path):
    write_folder(tmp_path)
    (tmp_path / "images" / "val" / "s0.png").unlink()
    with pytest.raises(UserInputError, match=r"masks/val/s0.png: no image images/val/s0"):
        build_datasets(folder_spec(tmp_path))


def test_a_link_whose_file_is_gone_is_named_as_such(tmp_path):
    """A git-annex or DVC dataset not fetched: every file a link to nothing. It read as
    'no mask masks/train/s1.png', or for a whole split 'no .jpg, .jpeg or .png images'."""
    write_folder(tmp_path)
    mask = tmp_path / "masks" / "train" / "s1.png"
    mask.unlink()
    mask.symlink_to(tmp_path / "annex" / "s1.png")
    with pytest.raises(UserInputError) as err:
        build_datasets(folder_spec(tmp_path))
    assert str(err.value) == (f"{mask} is a link to {tmp_path / 'annex' / 's1.png'}, which "
                              "does not exist (the mask not fetched, or moved?)")


def test_unreadable_image_is_named(tmp_path):
    write_folder(tmp_path)
    (tmp_path / "images" / "train" / "s2.png").write_bytes(b"not a png")
    train = build_datasets(folder_spec(tmp_path)).train
    train[0]
    with pytest.raises(UserInputError, match=r"images/train/s2.png: unreadable image"):
        train[2]


def test_out_of_range_class_is_named(tmp_path):
    write_folder(tmp_path)
    bad = np.zeros((6, 8), dtype=np.uint8)
    bad[2, 3] = 7
    Image.fromarray(bad, mode="L").save(tmp_path / "masks" / "val" / "s1.png")
    val = build_datasets(folder_spec(tmp_path)).val
    with pytest.raises(UserInputError) as err:
        val[1]
    assert str(err.value) == (f"{tmp_path / 'masks/val/s1.png'}: class index 7 out of range; "
                              "classes.txt lists 3 classes (0..2, 255 = ignore)")


def test_missing_classes_file_is_named(tmp_path):
    write_folder(tmp_path)
    (tmp_path / "classes.txt").unlink()
    with pytest.raises(UserInputError, match=r"classes.txt: not found"):
        dataset_num_classes(folder_spec(tmp_path))


def test_a_root_one_folder_off_names_the_root_that_holds_the_dataset(tmp_path, monkeypatch):
    """data.root = "data/images" (or the folder above the dataset) said only that
    classes.txt was not found there; the built-in datasets' roots say where they are."""
    write_folder(tmp_path / "data")
    note = "(one class name per line; line 1 is class 0)"
    for wrong in (tmp_path / "data" / "images", tmp_path / "data" / "masks" / "train", tmp_path):
        with pytest.raises(UserInputError) as err:
            dataset_num_classes(folder_spec(wrong))
        assert str(err.value) == (f"{wrong / 'classes.txt'}: not found {note}; did you mean "
                                  f'data.root = "{tmp_path / "data"}"?')
    monkeypatch.chdir(tmp_path)  # a relative root gets a relative answer
    with pytest.raises(UserInputError) as err:
        dataset_num_classes(folder_spec(Path("data/images")))
    assert str(err.value).endswith('; did you mean data.root = "data"?')
    (tmp_path / "elsewhere").mkdir()  # no dataset near it: no guess
    with pytest.raises(UserInputError) as err:
        dataset_num_classes(folder_spec(tmp_path / "elsewhere"))
    assert str(err.value) == f"{tmp_path / 'elsewhere' / 'classes.txt'}: not found {note}"
    spec = TrialSpec.model_validate({  # an evaluation set's root is its own key
        "data": folder_spec(tmp_path / "data").model_dump(),
        "eval_data": {"name": "folder", "root": str(tmp_path / "data" / "masks")}})
    with pytest.raises(UserInputError) as err:
        eval_resolution(spec)
    assert str(err.value) == (
        f"{tmp_path / 'data/masks/images/val'}: folder not found (eval_data.name = 'folder' "
        f'reads {folder.LAYOUT}); did you mean eval_data.root = "{tmp_path / "data"}"?')


USER_DATA = '''
import numpy as np
import torch


class Pairs:
    class_names = ["bg", "fg"]

    def __init__(self, count, size, as_tensor):
        self.count, self.size, self.as_tensor = count, size, as_tensor

    def __len__(self):
        return self.count

    def __getitem__(self, i):
        mask = np.zeros((self.size, self.size), dtype=np.int64)
        mask[: i + 1] = 1
        if self.as_tensor:
            return torch.full((3, self.size, self.size), 0.5), torch.from_numpy(mask)
        return np.full((self.size, self.size, 3), 200, dtype=np.uint8), mask


def build(count=4, size=8, root=None):
    return Pairs(count, size, as_tensor=False), Pairs(2, size, as_tensor=True)


def broken(root=None):
    return [1, 2, 3]


def rootless(count=4):
    return Pairs(count, 8, as_tensor=False), Pairs(2, 8, as_tensor=False)


class Quirky(Pairs):
    def __getitem__(self, i):
        image, mask = super().__getitem__(i)
        if i == 1:
            mask[0, 0] = 7  # a class index past num_classes
        if i == 2:
            image = image.astype(np.uint16) * 257  # a 16-bit image
        return image, mask


def quirky(root=None):
    return Quirky(4, 8, as_tensor=False), Pairs(2, 8, as_tensor=False)


def uneven(root=None):
    small, large = Pairs(1, 8, as_tensor=False), Pairs(1, 12, as_tensor=False)
    return [small[0], large[0]], Pairs(2, 8, as_tensor=False)
'''


@pytest.fixture
def user_data(tmp_path, monkeypatch):
    (tmp_path / "userdata.py").write_text(USER_DATA)
    monkeypatch.syspath_prepend(str(tmp_path))
    yield
    sys.modules.pop("userdata", None)


def test_data_builder_pairs_go_through_the_shared_transforms(user_data, tmp_path):
    data = DataSpec(builder="userdata:build", args={"count": 3}, scale_range=[1.0, 1.0],
                    hflip=False)
    pair = build_datasets(data)
    assert len(pair.train) == 3 and len(pair.val) == 2 and pair.class_names == ["bg", "fg"]
    image, label = pair.train[1]
    assert torch.allclose(image, normalize(torch.full((3, 8, 8), 200, dtype=torch.uint8)))
    assert label.dtype == torch.int64 and int(label.sum()) == 2 * 8
    val_image, _ = pair.val[0]  # float 0.5 in 0..1 -> 128 of 255
    assert torch.allclose(val_image, normalize(torch.full((3, 8, 8), 128, dtype=torch.uint8)))


def test_data_builder_items_are_checked_and_named_by_builder_split_and_index(user_data):
    data = DataSpec(builder="userdata:quirky", scale_range=[1.0, 1.0], hflip=False)
    train = build_datasets(data, num_classes=2).train
    train[0]  # mask 0/1 and 255 are fine
    with pytest.raises(UserInputError) as err:  # before: IndexError: Target 7 is out of bounds
        train[1]
    assert str(err.value) == ("data.builder userdata:quirky: train[1] mask: class index 7 out "
                              "of range; model.num_classes = 2 (0..1, 255 = ignore)")
    with pytest.raises(UserInputError) as err:  # before: wrapped modulo 256 without a word
        train[2]
    assert str(err.value) == ("data.builder userdata:quirky: train[2] image: uint16 values "
                              "51400..51400 outside 0..255; give uint8 0..255 or float 0..1 "
                              "(scale it first)")


def test_data_builder_arrays_with_alpha_or_grey_read_as_their_pil_images():
    rng = np.random.default_rng(0)
    rgba = rng.integers(0, 256, (5, 7, 4), dtype=np.uint8)
    rgba[0, :, 3] = 0  # fully transparent pixels keep their colour, as in PIL
    grey = rng.integers(0, 256, (5, 7), dtype=np.uint8)
    grey_alpha = np.stack([grey, rng.integers(0, 256, (5, 7), dtype=np.uint8)], axis=2)
    cases = [(rgba, Image.fromarray(rgba)), (grey_alpha, Image.fromarray(grey_alpha)),
             (grey, Image.fromarray(grey)), (grey[..., None], Image.fromarray(grey))]
    assert [pil.mode for _, pil in cases] == ["RGBA", "LA", "L", "L"]
    mask = np.zeros((5, 7), dtype=np.uint8)
    items = [(image, mask) for pair in cases for image in pair]
    items.append((torch.from_numpy(rgba).permute(2, 0, 1).contiguous(), mask))  # [4, H, W]
    read = PairReader(items, "data.builder userdata:build: train")
    for i, (_, pil) in enumerate(cases):  # before: shape [5, 7, 4]; expected (H, W, 3)
        from_array, from_pil = read(2 * i)[0], read(2 * i + 1)[0]
        assert from_array.dtype == from_pil.dtype == np.uint8
        assert np.array_equal(from_array, from_pil), pil.mode
    assert np.array_equal(read(2 * len(cases))[0], rgba[..., :3])
    assert np.array_equal(read(4)[0], np.repeat(grey[..., None], 3, axis=2))


class Items(list):
    """A user dataset as a list of pairs; ``image_layout`` as the dataset declares it."""

    def __init__(self, items, image_layout=None):
        super().__init__(items)
        if image_layout is not None:
            self.image_layout = image_layout


def test_a_tensor_at_most_4_px_tall_is_read_the_way_its_mask_fits():
    rng = np.random.default_rng(0)
    hwc = [rng.integers(0, 256, shape, dtype=np.uint8) for shape in ((3, 4, 3), (4, 4, 3))]
    chw = rng.integers(0, 256, (3, 4, 4), dtype=np.uint8)
    read = PairReader(Items([(torch.from_numpy(hwc[0]), np.zeros((3, 4))),
                             (torch.from_numpy(hwc[1]), np.zeros((4, 4))),
                             (torch.from_numpy(chw), np.zeros((4, 4)))]), "data.builder u:b: train")
    # before: both HWC tensors were read as [C, H, W] (a 3x4 image as 4x3 of 3 rows)
    assert np.array_equal(read(0)[0], hwc[0]) and np.array_equal(read(1)[0], hwc[1])
    assert np.array_equal(read(2)[0], chw.transpose(1, 2, 0))  # the documented [3, H, W]


def test_a_tensor_both_layouts_fit_is_refused_unless_the_dataset_says_which():
    cube = np.arange(27, dtype=np.uint8).reshape(3, 3, 3)
    items = [(torch.from_numpy(cube), np.zeros((3, 3)))]
    with pytest.raises(UserInputError) as err:
        PairReader(Items(items), "data.builder u:b: train")(0)
    assert str(err.value) == (
        'data.builder u:b: train[0] image: tensor [3, 3, 3] reads as [C, H, W] and as '
        '(H, W, C) beside its 3x3 mask; say which with image_layout = "CHW" (or "HWC") on '
        'the dataset')
    as_hwc = PairReader(Items(items, "HWC"), "data.builder u:b: train")(0)[0]
    as_chw = PairReader(Items(items, "CHW"), "data.builder u:b: train")(0)[0]
    assert np.array_equal(as_hwc, cube) and np.array_equal(as_chw, cube.transpose(1, 2, 0))


def test_a_declared_layout_holds_for_arrays_too_and_a_wrong_one_is_one_line():
    chw = np.arange(105, dtype=np.uint8).reshape(3, 5, 7)
    read = PairReader(Items([(chw, np.zeros((5, 7)))], "CHW"), "data.builder u:b: val")
    assert np.array_equal(read(0)[0], chw.transpose(1, 2, 0))
    read = PairReader(Items([(chw, np.zeros((5, 7)))], "HWC"), "data.builder u:b: val")
    with pytest.raises(UserInputError) as err:
        read(0)
    assert str(err.value) == (
        "data.builder u:b: val[0] image: shape [3, 5, 7]; expected (H, W, 3) RGB, (H, W, 4) "
        "RGBA, (H, W) or (H, W, 1) grey, or [3, H, W] (the dataset's image_layout = 'HWC')")
    with pytest.raises(UserInputError) as err:
        PairReader(Items([], "NCHW"), "data.builder u:b: val")
    assert str(err.value) == ("data.builder u:b: val: image_layout = 'NCHW'; expected 'CHW' "
                              "or 'HWC' (or no attribute)")


def test_an_item_whose_image_and_mask_differ_in_size_is_named():
    cases = [np.zeros((5, 7, 3), dtype=np.uint8), torch.zeros(3, 4, 3)]  # the tensor fits
    read = PairReader(Items([(image, np.zeros((5, 6))) for image in cases]),  # neither way
                      "data.builder u:b: val")
    messages = []
    for i in range(2):
        with pytest.raises(UserInputError) as err:  # before: "0: image is 7x5 but its ..."
            read(i)
        messages.append(str(err.value))
    assert messages == [
        "data.builder u:b: val[0]: image is 7x5 but its mask is 6x5 (width x height)",
        "data.builder u:b: val[1]: image is 3x4 but its mask is 6x5 (width x height)"]


def test_data_builder_16_bit_pil_image_is_refused_like_its_array():
    wide = np.full((5, 7), 51400, dtype=np.uint16)
    mask = np.zeros((5, 7), dtype=np.uint8)
    read = PairReader([(wide, mask), (Image.fromarray(wide), mask),
                       (Image.fromarray(wide.astype(np.int32)), mask)],
                      "data.builder userdata:build: train")
    for i in range(3):  # before: the PIL images were clipped to 255 by convert("RGB")
        with pytest.raises(UserInputError, match=r"values 51400\.\.51400 outside 0\.\.255"):
            read(i)
    low = np.arange(35, dtype=np.uint16).reshape(5, 7)
    read = PairReader([(low, mask), (Image.fromarray(low), mask)], "data.builder u:b: train")
    assert np.array_equal(read(0)[0], read(1)[0])


def test_data_builder_image_with_other_channel_counts_is_one_line():
    read = PairReader([(np.zeros((5, 7, 5), dtype=np.uint8), np.zeros((5, 7)))],
                      "data.builder userdata:build: train")
    with pytest.raises(UserInputError) as err:
        read(0)
    assert str(err.value) == ("data.builder userdata:build: train[0] image: shape [5, 7, 5]; "
                              "expected (H, W, 3) RGB, (H, W, 4) RGBA, (H, W) or (H, W, 1) "
                              "grey, or [3, H, W]")


def test_data_builder_needs_class_count_and_resolution_from_the_recipe(user_data):
    data = DataSpec(builder="userdata:build")
    with pytest.raises(UserInputError, match=r"^model.num_classes: required with data.builder"):
        num_classes(TrialSpec(data=data))
    with pytest.raises(UserInputError, match=r"^eval.resolution: required with data.builder"):
        default_eval_resolution(data)


def test_an_uneven_batch_names_the_data_builder(user_data, tmp_path):
    """It named data.name, which a data.builder leaves at its default: "shapes training
    images differ in size"."""
    spec = TrialSpec.model_validate({
        "model": {"backbone": "mobilenet_v3_small", "head": "lraspp", "num_classes": 2},
        "data": {"builder": "userdata:uneven", "workers": 0, "scale_range": [1.0, 1.0]},
        "train": {"iterations": 1, "batch_size": 2},
        "eval": {"latency": False, "flops": False, "resolution": [8, 8]},
    })
    with pytest.raises(UserInputError) as err:
        train_and_evaluate(spec, tmp_path / "run")
    assert str(err.value).startswith("data.crop_size: not set, and userdata:uneven training "
                                     "images differ in size (8x8, 12x12, height x width)")


def test_data_builder_returning_the_wrong_thing_is_one_line(user_data):
    with pytest.raises(UserInputError) as err:
        build_datasets(DataSpec(builder="userdata:broken"))
    assert str(err.value) == ("data.builder: userdata:broken returned a list; expected "
                              "(train, val) datasets of (image, mask) pairs")


def test_data_builder_misspelt_argument_is_named_before_the_call(user_data):
    with pytest.raises(UserInputError) as err:  # before: "raised TypeError: build() got ..."
        build_datasets(DataSpec(builder="userdata:build", args={"cout": 3}))
    assert str(err.value) == ("data.args.cout: userdata:build has no argument 'cout'; "
                              "allowed: count, size")
    with pytest.raises(UserInputError) as err:
        build_datasets(DataSpec(builder="userdata:rootless", root="data"))
    assert str(err.value) == ("data.root: userdata:rootless has no argument 'root' (data.root "
                              "is passed as root=); its arguments: count")
    with pytest.raises(UserInputError) as err:  # before: data.root won without a word
        build_datasets(DataSpec(builder="userdata:build", root="data", args={"root": "other"}))
    assert str(err.value) == ("data.args.root: given with data.root, which is passed as root=; "
                              "set one of them")


@pytest.mark.parametrize("item, what", [(("x", np.zeros((5, 7))), "image: a str"),
                                        ((np.zeros((5, 7, 3)), None), "mask: a NoneType")])
def test_data_builder_item_that_is_no_array_names_its_type(item, what):
    read = PairReader([item], "data.builder userdata:build: train")
    with pytest.raises(UserInputError) as err:  # before: "image: shape []; expected ..."
        read(0)
    assert str(err.value).startswith(f"data.builder userdata:build: train[0] {what}; expected")


def test_data_builder_source_is_in_the_trial_id(user_data, tmp_path):
    spec = TrialSpec(data=DataSpec(builder="userdata:build"))
    before = trial_id(spec)
    (tmp_path / "userdata.py").write_text(USER_DATA + "\n# edited\n")
    assert trial_id(spec) != before


def test_name_and_builder_together_are_refused():
    with pytest.raises(ValueError, match=r"builder\n.*not read together with data.name 'voc2012'"):
        DataSpec(name="voc2012", builder="userdata:build")


def test_a_built_in_dataset_as_data_builder_is_refused_before_anything_runs(tmp_path,
                                                                           write_recipe):
    """``data.builder = "shapes"`` passed the recipe check and failed the trial (recorded)
    with ``shapes raised TypeError: generate() missing 3 required positional arguments``;
    and an unknown data.builder listed the built-in datasets as allowed."""
    with pytest.raises(ValueError, match=r"builder\n.*'folder' is a built-in dataset: set "
                                         r"data.name = 'folder' instead \(data.builder names"):
        DataSpec(builder="folder")
    with pytest.raises(ValueError) as err:
        DataSpec(builder="shape")
    assert "allowed: an import path 'package.module:function' (no ablate.datasets plugin is " \
        "installed)" in str(err.value)
    recipe = write_recipe("""
        name = "b"
        [base.model]
        backbone = "mobilenet_v3_small"
        head = "lraspp"
        num_classes = 6
        [base.data]
        builder = "shapes"
        [base.eval]
        resolution = [16, 16]
    """)
    result = CliRunner().invoke(main, ["run", str(recipe), "--db", str(tmp_path / "s.db")])
    assert result.exit_code == 2, result.output
    assert result.stderr.splitlines() == [
        f"Error: {recipe}: base.data.builder: 'shapes' is a built-in dataset: set data.name = "
        "'shapes' instead (data.builder names your own dataset code: an import path "
        "'package.module:function' or an ablate.datasets plugin's name) (got 'shapes')"]
    assert not (tmp_path / "s.db").exists()


def test_dataset_plugin_is_a_data_name_and_listed(user_data, monkeypatch):
    real = importlib.metadata.entry_points

    def fake(**kwargs):
        if kwargs.get("group") == "ablate.datasets":
            return importlib.metadata.EntryPoints([importlib.metadata.EntryPoint(
                "toy", "userdata:build", "ablate.datasets")])
        return real(**kwargs)

    monkeypatch.setattr(importlib.metadata, "entry_points", fake)
    DATASETS.refresh()
    try:
        pair = build_datasets(DataSpec(name="toy", args={"count": 2}))
        assert len(pair.train) == 2
        result = CliRunner().invoke(main, ["datasets", "--json"])
        assert result.exit_code == 0, result.output
        listed = json.loads(result.output)
        assert "folder" in [d["name"] for d in listed["builtin"]]
        assert listed["plugins"][0]["name"] == "toy"
        assert [a["name"] for a in listed["plugins"][0]["arguments"]] == ["count", "size"]
        with pytest.raises(ValueError, match="unknown dataset 'nope'; allowed: 'shapes', .*'folder', 'toy' or an import"):
            DataSpec(name="nope")
    finally:
        DATASETS.refresh()


def test_data_builder_datasets_load_in_worker_processes(user_data):
    from torch.utils.data import DataLoader

    from ablate.data.build import loader_options

    data = DataSpec(builder="userdata:build", scale_range=[1.0, 1.0], hflip=False)
    assert loader_options(data, "cpu")["num_workers"] >= 1  # user data is not in memory
    pair = build_datasets(data)
    labels = [label for _, label in DataLoader(pair.train, batch_size=2, num_workers=1)]
    assert [int(batch.sum()) for batch in labels] == [(1 + 2) * 8, (3 + 4) * 8]


MASK_RECIPE = """
name = "masks"
seeds = [0]
[base.model]
backbone = "mobilenet_v3_small"
head = "lraspp"
[base.data]
name = "folder"
root = "{root}"
workers = 1
hflip = false
[base.train]
iterations = 1
batch_size = 3
[base.eval]
latency = false
"""


def test_a_colour_coded_first_mask_is_refused_before_anything_is_recorded(tmp_path,
                                                                         write_recipe):
    write_folder(tmp_path / "data", size=(8, 8))
    colours = np.zeros((8, 8, 3), dtype=np.uint8)
    mask = tmp_path / "data" / "masks" / "val" / "s0.png"
    Image.fromarray(colours).save(mask)
    path = write_recipe(MASK_RECIPE.format(root=tmp_path / "data"))
    db = tmp_path / "s.db"
    result = CliRunner().invoke(main, ["run", str(path), "--db", str(db),
                                       "--runs-dir", str(tmp_path / "runs")])
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    # one line, the recipe and trial first where the line has room for them (a long
    # tmp_path, as under pytest-xdist, leaves the mask's own path and message alone)
    assert len(lines) == 1 and lines[0].startswith("Error: ")
    assert lines[0].endswith(
        f"{mask}: mask is mode 'RGB'; expected a single-channel ('L' or 'P') PNG of class "
        "indices (a colour-coded mask: map each colour to its class index)")
    assert not (tmp_path / "runs").exists()


def _unpaired_val_mask(root: Path) -> str:
    (root / "images" / "val" / "s1.png").unlink()
    return f"{root / 'masks/val/s1.png'}: no image images/val/s1.(jpg|jpeg|png)"


def _no_val_masks(root: Path) -> str:
    shutil.rmtree(root / "masks" / "val")
    return f"{root / 'masks/val'}: folder not found (data.name = 'folder' reads {folder.LAYOUT})"


def _first_val_mask_out_of_range(root: Path) -> str:
    Image.fromarray(np.full((8, 8), 7, dtype=np.uint8), mode="L").save(root / "masks/val/s0.png")
    return (f"{root / 'masks/val/s0.png'}: class index 7 out of range; classes.txt lists 3 "
            "classes (0..2, 255 = ignore)")


def _unpaired_train_image_with_a_crop(root: Path) -> str:
    (root / "masks" / "train" / "s2.png").unlink()
    return f"{root / 'images/train/s2.png'}: no mask masks/train/s2.png"


def _first_val_mask_of_another_size(root: Path) -> str:
    Image.fromarray(np.zeros((8, 6), dtype=np.uint8), mode="L").save(root / "masks/val/s0.png")
    return f"{root / 'images/val/s0.png'}: image is 8x8 but its mask is 6x8 (width x height)"


def _first_train_mask_of_another_size_with_a_crop(root: Path) -> str:
    """With a crop the training sizes were not read: the trial failed, recorded."""
    Image.fromarray(np.zeros((6, 8), dtype=np.uint8), mode="L").save(root / "masks/train/s0.png")
    return f"{root / 'images/train/s0.png'}: image is 8x8 but its mask is 8x6 (width x height)"


def _first_train_image_16_bit_with_a_crop(root: Path) -> str:
    """convert("RGB") clipped its values past 255 to white, without a word."""
    Image.fromarray(np.full((8, 8), 300, dtype=np.uint16)).save(root / "images/train/s0.png")
    return (f"{root / 'images/train/s0.png'}: image is mode 'I;16', more than 8 bits per "
            "channel, which converting to RGB would clip at 255; save 8-bit images (scaled "
            "to 0..255), or read them with data.builder")


@pytest.mark.parametrize("spoil", [_unpaired_val_mask, _no_val_masks, _first_val_mask_out_of_range,
                                   _unpaired_train_image_with_a_crop,
                                   _first_val_mask_of_another_size,
                                   _first_train_mask_of_another_size_with_a_crop,
                                   _first_train_image_16_bit_with_a_crop])
def test_a_split_every_trial_would_fail_on_is_refused_before_anything_is_recorded(
        tmp_path, write_recipe, spoil):
    """They failed each trial, recorded, after the run had started (the training split's
    pairing was read only for the batch-size check, without a crop)."""
    write_folder(tmp_path / "data", size=(8, 8))
    expected = spoil(tmp_path / "data")
    text = MASK_RECIPE.format(root=tmp_path / "data").replace("hflip = false",
                                                             "hflip = false\ncrop_size = 8")
    db = tmp_path / "s.db"
    result = CliRunner().invoke(main, ["run", str(write_recipe(text)), "--db", str(db),
                                       "--runs-dir", str(tmp_path / "runs")])
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: ") and lines[0].endswith(expected)
    assert not db.exists() and not (tmp_path / "runs").exists()


def test_a_16_bit_image_past_the_first_is_refused_as_it_loads_not_clipped(tmp_path):
    write_folder(tmp_path / "data", size=(8, 8))
    path = tmp_path / "data" / "images" / "train" / "s2.png"
    Image.fromarray(np.full((8, 8), 300, dtype=np.uint16)).save(path)
    pair = build_datasets(folder_spec(tmp_path / "data"))
    pair.train[1]  # an 8-bit image beside it still loads
    with pytest.raises(UserInputError, match=r"s2.png: image is mode 'I;16', more than 8 bits"):
        pair.train[2]


def _two_folders(tmp_path) -> None:
    """A training folder ``data`` and a folder evaluation set ``other`` beside it."""
    write_folder(tmp_path / "data", size=(8, 8))
    write_folder(tmp_path / "other", size=(8, 8))


def _run_with_folder_eval(tmp_path, write_recipe):
    """``ablate run`` of MASK_RECIPE on ``data`` with ``other`` as its evaluation set."""
    text = MASK_RECIPE.format(root=tmp_path / "data") + (
        f'[base.eval_data]\nname = "folder"\nroot = "{tmp_path / "other"}"\n')
    db = tmp_path / "s.db"
    result = CliRunner().invoke(main, ["run", str(write_recipe(text)), "--db", str(db),
                                       "--runs-dir", str(tmp_path / "runs")])
    assert result.exit_code == 2, result.output
    return result, db


def test_a_folder_evaluation_set_is_checked_the_same_way(tmp_path, write_recipe):
    _two_folders(tmp_path)
    expected = _unpaired_val_mask(tmp_path / "other")
    result, db = _run_with_folder_eval(tmp_path, write_recipe)
    assert result.output.strip().endswith(expected) and not db.exists()


@pytest.mark.parametrize("names", [NAMES + ["bird"], [NAMES[0], NAMES[2], NAMES[1]]])
def test_a_folder_evaluation_set_with_other_classes_is_refused_before_anything_is_recorded(
        tmp_path, write_recipe, names):
    """Compared for the built-in datasets only: the trial failed as it loaded, recorded."""
    _two_folders(tmp_path)
    (tmp_path / "other" / "classes.txt").write_text("\n".join(names) + "\n")
    result, db = _run_with_folder_eval(tmp_path, write_recipe)
    assert result.output.strip().endswith(
        f"eval_data.name: 'folder' has {len(names)} classes ({', '.join(names[:3])}, ...) but "
        f"data.name 'folder' trains 3 ({', '.join(NAMES)}, ...); the evaluation set must use "
        "the training classes in the same order")
    assert not db.exists() and not (tmp_path / "runs").exists()


def test_a_missing_folder_evaluation_root_is_named_as_eval_data_root(tmp_path):
    """The cost resolution read from it said "data.root: ... not found (data.name = ...",
    the training data's keys, which were fine."""
    write_folder(tmp_path / "data")
    spec = TrialSpec.model_validate({
        "data": folder_spec(tmp_path / "data").model_dump(),
        "eval_data": {"name": "folder", "root": str(tmp_path / "nowhere")}})
    with pytest.raises(UserInputError) as err:
        eval_resolution(spec)
    assert str(err.value) == (f"eval_data.root: {tmp_path / 'nowhere'} not found (eval_data.name "
                              f"= 'folder' reads {folder.LAYOUT})")


def test_a_root_that_is_a_file_is_named_as_a_file(tmp_path):
    """It read "data.root: PATH not found" for a file that is there, as the built-in
    datasets' roots do not."""
    (tmp_path / "data.zip").write_bytes(b"PK")
    with pytest.raises(UserInputError) as err:
        folder.read_classes(str(tmp_path / "data.zip"))
    assert str(err.value) == (f"data.root: {tmp_path / 'data.zip'} is a file; expected a folder "
                              f"(data.name = 'folder' reads {folder.LAYOUT})")


def test_a_bad_mask_read_in_a_worker_fails_the_trial_with_its_own_line(tmp_path, write_recipe):
    write_folder(tmp_path / "data", size=(8, 8))
    colours = np.zeros((8, 8, 3), dtype=np.uint8)  # a colour-coded mask, not class indices
    Image.fromarray(colours).save(tmp_path / "data" / "masks" / "train" / "s1.png")
    path = write_recipe(MASK_RECIPE.format(root=tmp_path / "data"))
    result = CliRunner().invoke(main, ["run", str(path), "--db", str(tmp_path / "s.db"),
                                       "--runs-dir", str(tmp_path / "runs")])
    assert result.exit_code == 1
    mask = tmp_path / "data" / "masks" / "train" / "s1.png"
    # before: "UserInputError: Caught UserInputError in DataLoader worker process 0."
    assert (f"failed base/seed=0: UserInputError: {mask}: mask is mode 'RGB'; expected a "
            "single-channel ('L' or 'P') PNG of class indices (a colour-coded mask: map each "
            "colour to its class index)") in " ".join(result.output.split())
