import numpy as np
import pytest
from PIL import Image

from ablate.data import cityscapes
from ablate.data.build import build_datasets
from ablate.data.cityscapes import LOOKUP, TRAIN_ID_OF_LABEL_ID
from ablate.errors import UserInputError
from ablate.recipes.schema import DataSpec

from .fixtures import truncate, write_cityscapes

# label ids: 0 unlabeled, 1 ego vehicle, 4 static, 6 ground, 9 parking, 29 caravan,
# 30 trailer, 5 dynamic and 255 (void) have no train id
LABEL_IDS = np.array(
    [
        [0, 1, 4, 7, 8, 11],
        [12, 13, 17, 19, 20, 21],
        [22, 23, 24, 25, 26, 27],
        [28, 31, 32, 33, 6, 9],
        [29, 30, 5, 255, 26, 7],
    ]
)
TRAIN_IDS = np.array(
    [
        [255, 255, 255, 0, 1, 2],
        [3, 4, 5, 6, 7, 8],
        [9, 10, 11, 12, 13, 14],
        [15, 16, 17, 18, 255, 255],
        [255, 255, 255, 255, 13, 0],
    ]
)
SECOND = np.array([[26, 26, 0], [7, 7, 1]])


def spec(root, **overrides) -> DataSpec:
    exact = {"scale_range": [1.0, 1.0], "hflip": False, "crop_size": None}  # None: no crop
    return DataSpec(name="cityscapes", root=str(root), **{**exact, **overrides})


@pytest.fixture
def city_root(tmp_path):
    write_cityscapes(tmp_path, "train", "zurich", "000000_000019", SECOND)
    write_cityscapes(tmp_path, "train", "aachen", "000000_000019", LABEL_IDS)
    write_cityscapes(tmp_path, "val", "frankfurt", "000000_000294", LABEL_IDS)
    return tmp_path


def test_label_ids_become_the_19_train_ids(city_root):
    pair = build_datasets(spec(city_root))
    assert len(pair.train) == 2 and len(pair.val) == 1
    assert len(pair.class_names) == 19
    assert pair.class_names[0] == "road" and pair.class_names[18] == "bicycle"
    image, label = pair.val[0]
    assert image.shape == (3, 5, 6)
    np.testing.assert_array_equal(label.numpy(), TRAIN_IDS)


def test_samples_are_sorted_by_city(city_root):
    train = build_datasets(spec(city_root)).train
    np.testing.assert_array_equal(train[0][1].numpy(), TRAIN_IDS)  # aachen
    np.testing.assert_array_equal(train[1][1].numpy(), [[13, 13, 255], [0, 0, 255]])  # zurich


def test_lookup_table_has_train_ids_only_for_the_official_19():
    assert sorted(TRAIN_ID_OF_LABEL_ID.values()) == list(range(19))
    without = [i for i in range(256) if i not in TRAIN_ID_OF_LABEL_ID]
    assert (LOOKUP[without] == 255).all()


def test_limit_train(city_root):
    pair = build_datasets(spec(city_root, limit_train=1))
    assert len(pair.train) == 1


def test_missing_labels_name_the_expected_folder(city_root):
    (city_root / "leftImg8bit" / "test" / "berlin").mkdir(parents=True)
    with pytest.raises(
        UserInputError, match=f"data.root: {city_root / 'gtFine' / 'test'} not found"
    ):
        build_datasets(spec(city_root, val_split="test"))


def test_missing_images_name_the_expected_folder(tmp_path):
    with pytest.raises(UserInputError) as error:
        build_datasets(spec(tmp_path))
    assert str(error.value) == (
        f"data.root: {tmp_path / 'leftImg8bit' / 'train'} not found "
        "(expected Cityscapes under data.root: leftImg8bit/ and gtFine/)"
    )


def test_truncated_image_is_named(city_root):
    image = city_root / "leftImg8bit/val/frankfurt/frankfurt_000000_000294_leftImg8bit.png"
    truncate(image)
    with pytest.raises(UserInputError, match=f"^{image}: unreadable image: "):
        build_datasets(spec(city_root)).val[0]


def _val_label_error(city_root, pixels: np.ndarray) -> tuple:
    """(the validation label's path, the error reading it as ``pixels`` raises)."""
    label = city_root / "gtFine/val/frankfurt/frankfurt_000000_000294_gtFine_labelIds.png"
    Image.fromarray(pixels).save(label)
    with pytest.raises(UserInputError) as error:
        build_datasets(spec(city_root)).val[0]
    return label, str(error.value)


@pytest.mark.parametrize("pixels, mode", [
    (LABEL_IDS.astype(np.uint16) + 256, "I;16"),  # 16-bit ids: uint8 would wrap 263 to 7
    (np.stack([LABEL_IDS.astype(np.uint8)] * 3, axis=-1), "RGB"),  # a colour image
])
def test_label_ids_not_8_bit_are_refused_naming_the_file(city_root, pixels, mode):
    label, message = _val_label_error(city_root, pixels)
    assert message == (
        f"{label}: label image is mode {mode!r}; expected 8-bit label ids (mode 'L', as "
        "cityscapesScripts writes *_gtFine_labelIds.png)")


@pytest.mark.parametrize("ids, shown", [([34], "34"),
                                        ([40, 34, 254, 100, 50, 60], "34, 40, 50, 60, 100, ...")])
def test_label_ids_cityscapes_does_not_have_are_refused_naming_the_file(city_root, ids, shown):
    """They read as ignored pixels: a map of other ids (another dataset's, instance ids
    cut to 8 bits) trained on little or nothing without a word."""
    pixels = LABEL_IDS.astype(np.uint8)
    pixels.flat[: len(ids)] = ids
    label, message = _val_label_error(city_root, pixels)
    assert message == (
        f"{label}: label ids {shown} are not Cityscapes label ids (0 to 33, or 255 for void); "
        "expected the label ids cityscapesScripts writes")


def test_first_sample_is_the_first_of_find_samples_from_one_listing(city_root):
    (city_root / "leftImg8bit" / "train" / "aa_empty").mkdir()  # sorts first, no images
    write_cityscapes(city_root, "train", "aachen", "000000_000001", SECOND)
    first = cityscapes.first_sample(city_root, "train")
    assert first == cityscapes.find_samples(city_root, "train")[0]
    assert first.label == str(city_root / "gtFine/train/aachen/aachen_000000_000001_gtFine_labelIds.png")


def test_only_colour_renderings_in_gtfine_are_named(city_root):
    label = city_root / "gtFine/val/frankfurt/frankfurt_000000_000294_gtFine_labelIds.png"
    label.rename(label.with_name("frankfurt_000000_000294_gtFine_color.png"))
    expected = (f"data.root: {label} not found, only its colour rendering *_gtFine_color.png; "
                "ablate reads the label ids (*_gtFine_labelIds.png of gtFine_trainvaltest.zip)")
    for find in (cityscapes.find_samples, cityscapes.first_sample):
        with pytest.raises(UserInputError) as error:
            find(city_root, "val")
        assert str(error.value) == expected
