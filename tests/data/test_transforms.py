import numpy as np
import pytest
import torch

from ablate.data.collate import collate_eval
from ablate.data.transforms import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    EvalTransform,
    TrainTransform,
    normalize,
)

STEP = 40  # image channel 0 = label * STEP, so alignment can be read back from the image


def blocks(size: int = 8) -> np.ndarray:
    """Four quadrants of classes 1..4 (left/right and top/bottom all differ)."""
    half = size // 2
    label = np.empty((size, size), dtype=np.uint8)
    label[:half, :half], label[:half, half:] = 1, 2
    label[half:, :half], label[half:, half:] = 3, 4
    return label


def pair(label: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    image = np.zeros((3, *label.shape), dtype=np.uint8)
    image[0] = label * STEP
    return torch.from_numpy(image), torch.from_numpy(label)


def channel0(image: torch.Tensor) -> np.ndarray:
    """Undo normalisation of channel 0, back to 0..255."""
    return (image[0] * IMAGENET_STD[0] + IMAGENET_MEAN[0]).numpy() * 255.0


def interior(label: np.ndarray) -> np.ndarray:
    """Pixels whose 3x3 neighbourhood holds one class: free of interpolation blending."""
    padded = np.pad(label.astype(np.int64), 1, mode="edge")
    same = np.ones(label.shape, dtype=bool)
    for dy in range(3):
        for dx in range(3):
            same &= padded[dy : dy + label.shape[0], dx : dx + label.shape[1]] == label
    return same


def test_normalize_uses_imagenet_statistics():
    image = torch.full((3, 1, 1), 255, dtype=torch.uint8)
    expected = [(1 - m) / s for m, s in zip(IMAGENET_MEAN, IMAGENET_STD)]
    assert normalize(image).flatten().tolist() == pytest.approx(expected)


def test_crop_larger_than_image_pads_label_with_255_and_image_with_0():
    image, label = pair(blocks(8))
    out_image, out_label = TrainTransform(crop_size=12, scale_range=(1.0, 1.0), hflip=False).finish(
        image, label, torch.Generator().manual_seed(0)
    )
    assert out_image.shape == (3, 12, 12) and out_label.shape == (12, 12)
    assert out_image.dtype == torch.float32 and out_label.dtype == torch.int64
    np.testing.assert_array_equal(out_label[:8, :8].numpy(), blocks(8))
    assert (out_label[8:, :] == 255).all() and (out_label[:, 8:] == 255).all()
    assert (out_image[:, 8:, :] == 0).all() and (out_image[:, :, 8:] == 0).all()


@pytest.mark.parametrize("seed", range(6))
def test_crop_and_flip_keep_image_and_label_aligned(seed):
    image, label = pair(blocks(8))
    transform = TrainTransform(crop_size=5, scale_range=(1.0, 1.0), hflip=True)
    out_image, out_label = transform.finish(image, label, torch.Generator().manual_seed(seed))
    assert out_label.shape == (5, 5)
    np.testing.assert_allclose(channel0(out_image), out_label.numpy() * STEP, atol=1e-3)
    # the label is a 5x5 window of the original, flipped or not
    original = blocks(8)
    windows = [original[t : t + 5, s : s + 5] for t in range(4) for s in range(4)]
    crop = out_label.numpy()
    assert any((w == crop).all() or (w[:, ::-1] == crop).all() for w in windows)


def test_flip_happens_for_some_seeds_and_not_others():
    image, label = pair(blocks(8))
    transform = TrainTransform(crop_size=None, scale_range=(1.0, 1.0), hflip=True)
    flipped = []
    for seed in range(8):
        out_image, out_label = transform.finish(image, label, torch.Generator().manual_seed(seed))
        np.testing.assert_allclose(channel0(out_image), out_label.numpy() * STEP, atol=1e-3)
        flipped.append(bool((out_label.numpy() == blocks(8)[:, ::-1]).all()))
        assert flipped[-1] or (out_label.numpy() == blocks(8)).all()
    assert any(flipped) and not all(flipped)


def test_scale_up_uses_nearest_labels_aligned_with_bilinear_image():
    image, label = pair(blocks(8))
    transform = TrainTransform(crop_size=None, scale_range=(2.0, 2.0), hflip=False)
    out_image, out_label = transform.finish(image, label, torch.Generator().manual_seed(0))
    expected = np.kron(blocks(8), np.ones((2, 2), dtype=np.uint8))
    np.testing.assert_array_equal(out_label.numpy(), expected)
    inside = interior(expected)
    np.testing.assert_allclose(channel0(out_image)[inside], expected[inside] * STEP, atol=1e-3)


def test_scale_down_keeps_alignment():
    image, label = pair(blocks(16))
    transform = TrainTransform(crop_size=None, scale_range=(0.5, 0.5), hflip=False)
    out_image, out_label = transform.finish(image, label, torch.Generator().manual_seed(0))
    np.testing.assert_array_equal(out_label.numpy(), blocks(8))
    inside = interior(blocks(8))
    np.testing.assert_allclose(channel0(out_image)[inside], blocks(8)[inside] * STEP, atol=1.0)


def test_random_scale_stays_in_range_and_is_reproducible():
    image, label = pair(blocks(8))
    transform = TrainTransform(crop_size=None, scale_range=(0.5, 2.0), hflip=True)
    sizes = set()
    for seed in range(6):
        first = transform.finish(image, label, torch.Generator().manual_seed(seed))
        again = transform.finish(image, label, torch.Generator().manual_seed(seed))
        assert torch.equal(first[0], again[0]) and torch.equal(first[1], again[1])
        assert 4 <= first[1].shape[0] <= 16
        sizes.add(first[1].shape[0])
    assert len(sizes) > 1


def test_no_generator_draws_from_the_global_rng():
    image, label = pair(blocks(8))
    transform = TrainTransform(crop_size=5, scale_range=(0.5, 2.0), hflip=True)
    torch.manual_seed(3)
    first = transform.finish(image, label)
    torch.manual_seed(3)
    again = transform.finish(image, label)
    assert torch.equal(first[0], again[0]) and torch.equal(first[1], again[1])


def test_eval_full_size_is_only_normalised():
    image, label = pair(blocks(8))
    out_image, out_label = EvalTransform().finish(*EvalTransform().prepare(image, label))
    np.testing.assert_array_equal(out_label.numpy(), blocks(8))
    assert torch.equal(out_image, normalize(image))


def test_eval_resize_to_fixed_size_uses_nearest_labels():
    image, label = pair(blocks(8))
    transform = EvalTransform(size=(4, 16))
    out_image, out_label = transform.finish(*transform.prepare(image, label))
    assert out_image.shape == (3, 4, 16)
    expected = np.kron(blocks(8)[1::2], np.ones((1, 2), dtype=np.uint8))
    np.testing.assert_array_equal(out_label.numpy(), expected)


def test_collate_eval_pads_images_with_0_and_labels_with_255():
    small = (torch.ones(3, 2, 3), torch.full((2, 3), 7, dtype=torch.int64))
    tall = (torch.ones(3, 4, 2), torch.full((4, 2), 5, dtype=torch.int64))
    images, labels = collate_eval([small, tall])
    assert images.shape == (2, 3, 4, 3) and labels.shape == (2, 4, 3)
    assert labels.dtype == torch.int64
    np.testing.assert_array_equal(
        labels[0].numpy(), [[7, 7, 7], [7, 7, 7], [255, 255, 255], [255, 255, 255]]
    )
    np.testing.assert_array_equal(labels[1].numpy(), [[5, 5, 255]] * 4)
    np.testing.assert_array_equal(
        images[0, 0].numpy(), [[1, 1, 1], [1, 1, 1], [0, 0, 0], [0, 0, 0]]
    )
    np.testing.assert_array_equal(images[1, 2].numpy(), [[1, 1, 0]] * 4)


def _step_by_step(transform: TrainTransform, image, label, generator):
    """The training transform as separate steps: scale, crop, normalise (written out),
    pad, flip; ``finish`` fuses them and must give the same bits."""
    from ablate.data.transforms import pad_to, random_crop, random_scale

    image, label = random_scale(image, label, transform.scale_range, generator)
    if transform.crop_size is not None:
        image, label = random_crop(image, label, transform.crop_size, generator)
    mean = torch.tensor(IMAGENET_MEAN, dtype=torch.float32)[:, None, None]
    std = torch.tensor(IMAGENET_STD, dtype=torch.float32)[:, None, None]
    image = (image.to(torch.float32) / 255.0 - mean) / std
    if transform.crop_size is not None:
        image, label = pad_to(image, label, (transform.crop_size, transform.crop_size))
    if transform.hflip and float(torch.rand((), generator=generator)) < 0.5:
        image, label = image.flip(-1), label.flip(-1)
    return image.contiguous(), label.to(torch.int64)


@pytest.mark.parametrize("crop", [None, 24, 96])
def test_the_fused_transform_gives_the_step_by_step_bits(crop):
    rng = np.random.default_rng(crop or 0)
    transform = TrainTransform(crop_size=crop, scale_range=(0.5, 2.0) if crop else (1.0, 1.0))
    for seed in range(12):
        height, width = (int(v) for v in rng.integers(10, 90, 2))
        pixels = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
        label = torch.from_numpy(rng.integers(0, 21, (height, width), dtype=np.uint8))
        expected = _step_by_step(transform, torch.from_numpy(pixels).permute(2, 0, 1)
                                 .contiguous(), label, torch.Generator().manual_seed(seed))
        # a contiguous image, and the channels-last view of the decoder's array the
        # datasets pass (the fast resize)
        for image in (torch.from_numpy(pixels).permute(2, 0, 1).contiguous(),
                      torch.from_numpy(pixels).permute(2, 0, 1)):
            out = transform.finish(image, label, torch.Generator().manual_seed(seed))
            assert torch.equal(out[0], expected[0]) and torch.equal(out[1], expected[1])
            assert out[0].is_contiguous() and out[0].dtype == torch.float32


def test_eval_normalises_a_channels_last_view_to_a_contiguous_image():
    pixels = np.random.default_rng(0).integers(0, 256, (5, 7, 3), dtype=np.uint8)
    view = torch.from_numpy(pixels).permute(2, 0, 1)
    out, _ = EvalTransform().finish(view, torch.zeros(5, 7, dtype=torch.uint8))
    assert out.is_contiguous() and torch.equal(out, normalize(view.contiguous()))
