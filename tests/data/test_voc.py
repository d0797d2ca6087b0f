import numpy as np
import pytest
import torch

from ablate.data.build import build_datasets
from ablate.data.transforms import normalize
from ablate.errors import UserInputError
from ablate.recipes.schema import DataSpec

from .fixtures import COLOUR, truncate, write_image, write_palette_png, write_sbd, write_voc

B = 255  # VOC's object border / void
LABELS = {
    "2007_000032": np.array(
        [[B, B, B, B, B, B], [B, 0, 0, 15, 15, B], [B, 0, 15, 15, 15, B], [B, B, B, B, B, B]]
    ),
    "2007_000039": np.array(
        [[1, 1, 1, 1, 1, 1], [1, 20, 20, B, 0, 0], [0, 0, 0, 0, 0, 0], [7, 7, 7, 7, 7, 7]]
    ),
    "2007_000063": np.array([[0, 0, 8, 8, 8, 0], [0, B, 8, 8, 8, 0], [0, B, B, B, B, 0]]),
}
SPLITS = {"train": ["2007_000039", "2007_000032"], "val": ["2007_000063"]}


def spec(root, **overrides) -> DataSpec:
    exact = {"scale_range": [1.0, 1.0], "hflip": False, "crop_size": None}  # labels exact
    return DataSpec(name="voc2012", root=str(root), **{**exact, **overrides})


@pytest.fixture
def voc_root(tmp_path):
    write_voc(tmp_path, LABELS, SPLITS)
    return tmp_path


def test_labels_are_the_palette_indices_in_split_order(voc_root):
    pair = build_datasets(spec(voc_root))
    assert len(pair.train) == 2 and len(pair.val) == 1
    assert pair.class_names[0] == "background" and pair.class_names[20] == "tvmonitor"
    assert len(pair.class_names) == 21
    for dataset, ids in ((pair.train, SPLITS["train"]), (pair.val, SPLITS["val"])):
        for index, image_id in enumerate(ids):
            image, label = dataset[index]
            assert label.dtype == torch.int64
            np.testing.assert_array_equal(label.numpy(), LABELS[image_id])
            assert image.dtype == torch.float32 and image.shape == (3, *LABELS[image_id].shape)


def test_images_are_rgb_normalised_with_imagenet_statistics(voc_root):
    image, _ = build_datasets(spec(voc_root)).val[0]
    solid = torch.tensor(COLOUR, dtype=torch.uint8)[:, None, None].expand(3, 3, 6)
    torch.testing.assert_close(image, normalize(solid), atol=0.02, rtol=0)  # JPEG may be off by 1


def test_limits_take_the_first_samples(voc_root):
    pair = build_datasets(spec(voc_root, limit_train=1, limit_val=5))
    assert len(pair.train) == 1 and len(pair.val) == 1
    np.testing.assert_array_equal(pair.train[0][1].numpy(), LABELS["2007_000039"])


def test_crop_pads_voc_labels_with_255(voc_root):
    pair = build_datasets(spec(voc_root, crop_size=8))
    _, label = pair.train[0]
    assert label.shape == (8, 8)
    np.testing.assert_array_equal(label[:4, :6].numpy(), LABELS["2007_000039"])
    assert (label[4:] == 255).all() and (label[:, 6:] == 255).all()


def test_eval_size_resizes_val_labels_by_nearest(voc_root):
    pair = build_datasets(spec(voc_root, eval_size=[6, 12]))
    image, label = pair.val[0]
    assert image.shape == (3, 6, 12)
    expected = np.kron(LABELS["2007_000063"], np.ones((2, 2), dtype=np.int64))
    np.testing.assert_array_equal(label.numpy(), expected)


def test_cache_keeps_decoded_samples(voc_root):
    pair = build_datasets(spec(voc_root, cache=True, eval_size=[6, 12]))
    first = pair.val[0]
    (voc_root / "VOCdevkit/VOC2012/SegmentationClass/2007_000063.png").unlink()
    again = pair.val[0]
    assert torch.equal(first[0], again[0]) and torch.equal(first[1], again[1])


def test_trainaug_joins_sbd_and_holds_out_voc_val(voc_root):
    sbd_labels = {
        "2007_000032": np.full((4, 6), 3),  # also in VOC train: VOC's annotation wins
        "2008_000002": np.array([[0, 0, 0], [0, 9, 9]]),
        "2007_000063": np.full((3, 6), 4),  # VOC val: never trained on
        "2008_000005": np.array([[12, 12], [0, 0], [0, 0]]),
    }
    write_sbd(
        voc_root,
        sbd_labels,
        train=["2007_000032", "2008_000002"],
        val=["2007_000063", "2008_000005"],
    )
    train = build_datasets(spec(voc_root, sbd=True)).train
    assert len(train) == 4
    expected = [
        LABELS["2007_000039"],
        LABELS["2007_000032"],
        sbd_labels["2008_000002"],
        sbd_labels["2008_000005"],
    ]
    for index, label in enumerate(expected):
        np.testing.assert_array_equal(train[index][1].numpy(), label)


def test_sbd_may_live_in_an_SBD_folder(voc_root):
    write_sbd(
        voc_root,
        {"2008_000002": np.array([[0, 5], [5, 5]])},
        train=["2008_000002"],
        val=[],
        folder="SBD",
    )
    train = build_datasets(spec(voc_root, sbd=True)).train
    assert len(train) == 3
    np.testing.assert_array_equal(train[2][1].numpy(), [[0, 5], [5, 5]])


def test_missing_sbd_names_the_expected_path(voc_root):
    with pytest.raises(UserInputError, match="benchmark_RELEASE/dataset/train.txt not found"):
        build_datasets(spec(voc_root, sbd=True))


def test_missing_voc_names_the_expected_split_file(tmp_path):
    expected = tmp_path / "VOCdevkit/VOC2012/ImageSets/Segmentation/train.txt"
    with pytest.raises(UserInputError) as error:
        build_datasets(spec(tmp_path))
    assert (
        str(error.value)
        == f"data.root: {expected} not found (expected Pascal VOC 2012 under data.root)"
    )


@pytest.mark.parametrize("content", [b"\xff\xfe\x81garbage\n", "2007_000039\n".encode("utf-16")])
def test_a_split_list_that_is_not_text_is_named(voc_root, content):
    split = voc_root / "VOCdevkit/VOC2012/ImageSets/Segmentation/train.txt"
    split.write_bytes(content)
    with pytest.raises(UserInputError, match=f"^data.root: {split}: not a list of image ids "
                       r"\(byte 0 is not UTF-8 text"):
        build_datasets(spec(voc_root))


def test_a_byte_order_mark_is_not_part_of_the_first_id(voc_root):
    split = voc_root / "VOCdevkit/VOC2012/ImageSets/Segmentation/train.txt"
    split.write_bytes(b"\xef\xbb\xbf2007_000039\r\n2007_000032\r\n")  # Notepad's UTF-8
    assert len(build_datasets(spec(voc_root)).train) == 2


def test_a_link_whose_file_is_gone_is_named_as_such(voc_root, tmp_path):
    label = voc_root / "VOCdevkit/VOC2012/SegmentationClass/2007_000039.png"  # train's first
    label.unlink()
    label.symlink_to("../../.git/annex/objects/xx")
    with pytest.raises(UserInputError) as error:
        build_datasets(spec(voc_root))
    assert str(error.value) == (f"data.root: {label} is a link to ../../.git/annex/objects/xx, "
                                "which does not exist (expected Pascal VOC 2012 under data.root)")
    root = tmp_path / "moved"
    root.symlink_to(tmp_path / "gone")  # a root moved: the link on its path is named
    with pytest.raises(UserInputError) as error:
        build_datasets(spec(root / "sub"))
    assert str(error.value).startswith(f"data.root: {root / 'sub'} not found ({root} is a link "
                                       f"to {tmp_path / 'gone'}, which does not exist) (expected")


def test_missing_root_names_it(tmp_path):
    with pytest.raises(UserInputError, match=f"data.root: {tmp_path / 'nowhere'} not found"):
        build_datasets(spec(tmp_path / "nowhere"))


def test_colour_label_png_is_refused(voc_root):
    write_image(voc_root / "VOCdevkit/VOC2012/SegmentationClass/2007_000063.png", 3, 6)
    with pytest.raises(UserInputError, match="expected a palette"):
        build_datasets(spec(voc_root)).val[0]


def test_truncated_image_is_named(voc_root):
    image = voc_root / "VOCdevkit/VOC2012/JPEGImages/2007_000063.jpg"
    write_image(image, 30, 40)  # large enough that half the file lacks pixel data
    truncate(image)
    with pytest.raises(UserInputError, match=f"^{image}: unreadable image: "):
        build_datasets(spec(voc_root)).val[0]


def test_truncated_label_is_named(voc_root):
    label = voc_root / "VOCdevkit/VOC2012/SegmentationClass/2007_000063.png"
    truncate(label)
    with pytest.raises(UserInputError, match=f"^{label}: unreadable label: "):
        build_datasets(spec(voc_root)).val[0]


def test_label_of_another_size_names_image_and_label(voc_root):
    base = voc_root / "VOCdevkit/VOC2012"
    write_palette_png(base / "SegmentationClass/2007_000063.png", np.zeros((2, 6)))
    with pytest.raises(UserInputError) as error:
        build_datasets(spec(voc_root)).val[0]
    assert str(error.value) == (
        f"{base / 'JPEGImages/2007_000063.jpg'}: image is 6x3 but its label "
        f"{base / 'SegmentationClass/2007_000063.png'} is 6x2 (width x height)")


def test_class_id_past_tvmonitor_is_named(voc_root):
    label = voc_root / "VOCdevkit/VOC2012/SegmentationClass/2007_000063.png"
    write_palette_png(label, np.array([[0, 21, 255], [30, 20, 0]]))
    with pytest.raises(UserInputError) as error:
        build_datasets(spec(voc_root)).val[0]
    assert str(error.value) == (
        f"{label}: class id 30 out of range; VOC labels are 0..20 (255 = void)")


def test_broken_sbd_file_is_named(voc_root):
    write_sbd(voc_root, {"2008_000002": np.array([[0, 5], [5, 5]])}, train=["2008_000002"],
              val=[])
    mat = voc_root / "benchmark_RELEASE/dataset/cls/2008_000002.mat"
    truncate(mat)
    with pytest.raises(UserInputError, match=f"^{mat}: unreadable SBD label, expected a .mat "
                       "holding GTcls.Segmentation"):
        build_datasets(spec(voc_root, sbd=True)).train[2]
