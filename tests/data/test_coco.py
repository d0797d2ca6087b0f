import json

import numpy as np
import pytest

from ablate.data import coco
from ablate.data.build import build_datasets
from ablate.data.coco import CATEGORY_IDS, VOC_CLASS_OF_CATEGORY
from ablate.errors import UserInputError
from ablate.recipes.schema import DataSpec

from .fixtures import truncate, uncompressed_rle, write_coco, write_image

pytest.importorskip("pycocotools")
# pycocotools' own decode trips a numpy 2 deprecation; not ours to fix
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")


def box(top, left, bottom, right) -> list[float]:
    """A rectangle polygon; pycocotools fills rows top..bottom-1, columns left..right-1."""
    return [left, top, right, top, right, bottom, left, bottom]


def rows_cols(shape, rows, cols) -> np.ndarray:
    mask = np.zeros(shape, dtype=bool)
    mask[rows[0] : rows[1], cols[0] : cols[1]] = True
    return mask


def annotation(ann_id, image_id, category, segmentation, area, iscrowd=0) -> dict:
    return {
        "id": ann_id, "image_id": image_id, "category_id": category, "segmentation": segmentation,
        "area": area, "iscrowd": iscrowd, "bbox": [0, 0, 1, 1],
    }  # fmt: skip


IMAGES = [
    {"id": 7, "file_name": "000000000007.jpg", "height": 6, "width": 8},
    {"id": 3, "file_name": "000000000003.jpg", "height": 4, "width": 4},
    {"id": 12, "file_name": "000000000012.jpg", "height": 4, "width": 5},
    {"id": 20, "file_name": "000000000020.jpg", "height": 5, "width": 6},
]
ANNOTATIONS = [
    # image 7: a person polygon, a crowd of cars as RLE overlapping it, a toothbrush
    annotation(1, 7, 1, [box(1, 1, 4, 5)], area=1200),
    annotation(2, 7, 3, uncompressed_rle(rows_cols((6, 8), (2, 5), (3, 7))), area=12, iscrowd=1),
    annotation(3, 7, 90, [box(3, 5, 6, 8)], area=9),
    # image 3: only a category outside VOC
    annotation(4, 3, 90, [box(0, 0, 4, 4)], area=5000),
    # image 12: a dog, but only 1000 px of annotated area (not above 1000)
    annotation(5, 12, 18, [box(1, 1, 3, 4)], area=1000),
    # image 20: a dog in two parts, a person as compressed RLE
    annotation(6, 20, 18, [box(0, 0, 2, 2), box(3, 4, 5, 6)], area=600),
    annotation(7, 20, 1, {"size": [5, 6], "counts": "0"}, area=401),  # filled in below
]
E = 255
EXPECTED = {
    7: np.array(
        [
            [0, 0, 0, 0, 0, 0, 0, 0],
            [0, 15, 15, 15, 15, 0, 0, 0],
            [0, 15, 15, E, E, 7, 7, 0],  # person and car overlap: ignored
            [0, 15, 15, E, E, 7, 7, 0],
            [0, 0, 0, 7, 7, 7, 7, 0],  # the toothbrush is background, not an overlap
            [0, 0, 0, 0, 0, 0, 0, 0],
        ]
    ),
    3: np.zeros((4, 4)),
    12: np.array([[0, 0, 0, 0, 0], [0, 12, 12, 12, 0], [0, 12, 12, 12, 0], [0, 0, 0, 0, 0]]),
    20: np.array(
        [
            [12, 12, 0, 0, 0, 0],
            [12, 12, 0, 0, 0, 0],
            [0, 0, 15, 15, 0, 0],
            [0, 0, 15, 15, 12, 12],
            [0, 0, 0, 0, 12, 12],
        ]
    ),
}


@pytest.fixture
def coco_root(tmp_path):
    from pycocotools import mask as coco_mask

    person = np.asfortranarray(rows_cols((5, 6), (2, 4), (2, 4)).astype(np.uint8))
    compressed = coco_mask.encode(person)
    ANNOTATIONS[-1]["segmentation"] = {"size": [5, 6], "counts": compressed["counts"].decode()}
    for split in ("train", "val"):
        write_coco(tmp_path, split, IMAGES, ANNOTATIONS)
    return tmp_path


def spec(root, **overrides) -> DataSpec:
    exact = {"scale_range": [1.0, 1.0], "hflip": False, "crop_size": None}  # None: no crop
    return DataSpec(name="coco", root=str(root), **{**exact, **overrides})


def test_category_ids_map_to_voc_classes_in_order():
    assert VOC_CLASS_OF_CATEGORY[5] == 1  # airplane -> aeroplane
    assert VOC_CLASS_OF_CATEGORY[1] == 15  # person
    assert VOC_CLASS_OF_CATEGORY[72] == 20  # tv -> tvmonitor
    assert len(CATEGORY_IDS) == len(set(CATEGORY_IDS)) == 20


def test_val_keeps_every_image_sorted_by_id_with_exact_labels(coco_root):
    pair = build_datasets(spec(coco_root))
    assert len(pair.class_names) == 21 and pair.class_names[15] == "person"
    assert len(pair.val) == 4
    for index, image_id in enumerate([3, 7, 12, 20]):
        image, label = pair.val[index]
        assert image.shape == (3, *EXPECTED[image_id].shape)
        np.testing.assert_array_equal(label.numpy(), EXPECTED[image_id])


def test_train_drops_images_without_more_than_1000_px_of_voc_annotation(coco_root):
    train = build_datasets(spec(coco_root)).train
    assert len(train) == 2  # 3 (no VOC category) and 12 (exactly 1000 px) are dropped
    np.testing.assert_array_equal(train[0][1].numpy(), EXPECTED[7])
    np.testing.assert_array_equal(train[1][1].numpy(), EXPECTED[20])


def test_limit_applies_after_the_training_filter(coco_root):
    train = build_datasets(spec(coco_root, limit_train=1)).train
    assert len(train) == 1
    np.testing.assert_array_equal(train[0][1].numpy(), EXPECTED[7])


def test_missing_annotations_name_the_expected_file(tmp_path):
    (tmp_path / "train2017").mkdir()
    with pytest.raises(UserInputError) as error:
        build_datasets(spec(tmp_path))
    expected = tmp_path / "annotations" / "instances_train2017.json"
    assert str(error.value).startswith(f"data.root: {expected} not found (expected COCO 2017")


def test_malformed_annotation_file_is_a_user_error(coco_root):
    (coco_root / "annotations" / "instances_val2017.json").write_text('{"images": []}')
    with pytest.raises(UserInputError, match="instances_val2017.json is not a COCO instances file"):
        build_datasets(spec(coco_root))


def _pop(entry: dict, key: str) -> None:
    del entry[key]


# (change to the fixture's index, the problem named): each read as a Python error before,
# e.g. "(TypeError: list indices must be integers or slices, not str)"
MALFORMED = [
    (lambda d: [d], 'it holds [{"images": [{"id": 7, "file_name": "..., not an object '
                    "with 'images' and 'annotations'"),
    (lambda d: _pop(d, "annotations"), "it has no 'annotations' list"),
    (lambda d: d.update(images=None), "'images' is null, not a list"),
    (lambda d: d["annotations"].__setitem__(0, "x"), 'annotations[0] is "x", not an object'),
    (lambda d: d["annotations"][0].update(category_id=[1]),
     "annotations[0].category_id is [1], not an integer"),
    (lambda d: d["annotations"][0].update(image_id="7"),
     'annotations[0].image_id is "7", not an integer'),
    (lambda d: _pop(d["annotations"][0], "segmentation"), "annotations[0] has no 'segmentation'"),
    (lambda d: d["annotations"][0].update(area="big"), 'annotations[0].area is "big", not a number'),
    (lambda d: _pop(d["images"][1], "id"), "images[1] has no 'id'"),
    (lambda d: d["images"][0].update(file_name=5), "images[0].file_name is 5, not a file name"),
]


@pytest.mark.parametrize("change, problem", MALFORMED, ids=[p for _, p in MALFORMED])
def test_a_malformed_entry_is_named_by_its_index(coco_root, change, problem):
    index = coco_root / "annotations" / "instances_train2017.json"
    data = json.loads(index.read_text())
    data = change(data) or data
    index.write_text(json.dumps(data))
    with pytest.raises(UserInputError) as error:
        coco.find_samples(coco_root, "train", drop_unannotated=True)  # reads area too
    assert str(error.value) == f"data.root: {index} is not a COCO instances file ({problem})"


def test_an_area_is_read_only_by_the_training_filter(coco_root):
    index = coco_root / "annotations" / "instances_val2017.json"
    data = json.loads(index.read_text())
    for annotation in data["annotations"]:
        del annotation["area"]
    index.write_text(json.dumps(data))
    assert len(coco.find_samples(coco_root, "val", drop_unannotated=False)) == len(IMAGES)


@pytest.mark.parametrize("text, why", [
    ("", "it is empty"),
    ("\n<!DOCTYPE html><html>", "it starts with '<!DOCTYPE ht', not '{'"),
    ('{"images": [{"id": 1', "it does not end with '}': cut short?"),
])
def test_an_annotation_file_that_cannot_be_json_is_named_from_its_ends(coco_root, text, why):
    path = coco_root / "annotations" / "instances_val2017.json"
    assert coco.annotation_shape_problem(path) is None  # the fixture's own file
    path.write_text(text)
    assert coco.annotation_shape_problem(path) == (
        f"data.root: {path} is not a COCO instances file (a JSON object; {why})")


def test_truncated_image_is_named(coco_root):
    image = coco_root / "val2017" / "000000000003.jpg"
    write_image(image, 40, 40)  # large enough that half the file lacks pixel data
    truncate(image)
    with pytest.raises(UserInputError, match=f"^{image}: unreadable image: "):
        build_datasets(spec(coco_root)).val[0]


def test_rle_of_another_size_than_its_image_is_named(coco_root):
    # image 7 is 8x6; its car is an RLE: give it a 6x5 size (the person is a polygon)
    index = coco_root / "annotations" / "instances_val2017.json"
    data = json.loads(index.read_text())
    data["annotations"][1]["segmentation"] = uncompressed_rle(rows_cols((5, 6), (2, 4), (2, 4)))
    index.write_text(json.dumps(data))
    with pytest.raises(UserInputError) as error:
        build_datasets(spec(coco_root)).val[1]
    assert str(error.value) == (f"{coco_root / 'val2017' / '000000000007.jpg'}: image is 8x6 "
                                "but an annotation's RLE mask is 6x5 (width x height)")


@pytest.mark.parametrize("segmentation, problem", [
    ("zzz", "a segmentation is str zzz, not polygons or an RLE"),
    ([[1, 2, 3, 4]], "a polygon is not a list of 3 or more x, y pairs of finite numbers "
                     "(got [1, 2, 3, 4])"),
    # NaN, infinite and far-off vertices made pycocotools allocate until the process died
    ([[None, 1, 2, 3, 4, 5]], "a polygon is not a list of 3 or more x, y pairs of finite "
                              "numbers (got [None, 1, 2, 3, 4, 5])"),
    ([[1e30, 0, 0, 1e30, 5, 5]], "a polygon vertex lies far outside the 8x6 image (x 0..1e+30, "
                                 "y 0..1e+30)"),
    ({"size": "a", "counts": [48]}, "an RLE's size is not [height, width] (got a)"),
    ({"size": [6, 8], "counts": [-1, 49]}, "an RLE's counts are not run lengths summing to "
                                           "6 x 8 (got [-1, 49])"),
    ({"size": [6, 8], "counts": "!!!"}, "an annotation's segmentation cannot be decoded "
                                        "(Invalid RLE mask representation)"),
])
def test_a_segmentation_pycocotools_cannot_take_is_named(coco_root, segmentation, problem):
    index = coco_root / "annotations" / "instances_val2017.json"
    data = json.loads(index.read_text())
    data["annotations"][0]["segmentation"] = segmentation  # image 7's person
    index.write_text(json.dumps(data))
    with pytest.raises(UserInputError) as error:
        build_datasets(spec(coco_root)).val[1]
    assert str(error.value) == (f"{coco_root / 'val2017' / '000000000007.jpg'}: {problem} "
                                f"(annotation 1 of {index})")
