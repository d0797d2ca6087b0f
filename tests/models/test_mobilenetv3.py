"""MobileNetV3 backbones: expansion control and output strides."""

from __future__ import annotations

import pytest
import torch

from ablate.cost.params import count_parameters
from ablate.errors import UserInputError
from ablate.models.build import build_model
from ablate.models.mobilenetv3 import LARGE, SMALL, expandable_blocks
from ablate.recipes.schema import ModelSpec


def build(**fields):
    with torch.device("meta"):
        return build_model(ModelSpec(**fields), 21)


def test_expandable_blocks():
    assert expandable_blocks(LARGE) == list(range(1, 15))
    assert expandable_blocks(SMALL) == list(range(1, 11))


def test_dropping_expansion_on_ratio_one_block_names_it():
    with pytest.raises(UserInputError) as err:
        build(expansion=[0, 3])
    assert str(err.value) == (
        "model.expansion: block 0 of mobilenet_v3_large has expand ratio 1 and no expansion "
        "layer to keep; blocks with one: [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14]"
    )


def test_expansion_index_out_of_range():
    with pytest.raises(UserInputError, match=r"block 11 out of range for mobilenet_v3_small"):
        build(backbone="mobilenet_v3_small", expansion=[1, 11])


def test_dropping_one_expansion_removes_exactly_its_conv_and_bn():
    # Block 3 of Large: 24 -> 72 expansion (1x1 conv 24*72 + BN 2*72); the depthwise
    # conv and squeeze-excite then work on 24 channels instead of 72.
    full = count_parameters(build())
    keep = [i for i in range(1, 15) if i != 3]
    dropped = build(expansion=keep)
    block = dropped.backbone.features[4].block
    assert block[0][0].groups == 24 and block[0][0].in_channels == 24
    assert count_parameters(dropped) < full
    assert len(build().backbone.features[4].block) == len(block) + 1


def test_expansion_none_equals_empty_list():
    assert count_parameters(build(expansion="none")) == count_parameters(build(expansion=[]))


@pytest.mark.parametrize("backbone", ["mobilenet_v3_large", "mobilenet_v3_small"])
@pytest.mark.parametrize("output_stride", [8, 16, 32])
@pytest.mark.parametrize("expansion", ["all", "none", [2, 5]])
def test_taps_and_output_strides(backbone, output_stride, expansion):
    model = build(backbone=backbone, output_stride=output_stride, expansion=expansion,
                  aux_head=True)
    with torch.device("meta"):
        out = model.backbone(torch.zeros(1, 3, 64, 64))
    assert tuple(out["low"].shape[-2:]) == (16, 16)
    assert tuple(out["aux"].shape[-2:]) == (8, 8)
    assert tuple(out["out"].shape[-2:]) == (64 // output_stride,) * 2
    assert model.backbone.strides == {"low": 4, "aux": 8, "out": output_stride}
    for name, tensor in out.items():
        assert tensor.shape[1] == model.backbone.channels[name]


def test_small_keeps_last_expansion_96_to_576():
    kept, dropped = build(backbone="mobilenet_v3_small"), build(
        backbone="mobilenet_v3_small", keep_last_expansion=False
    )
    assert kept.backbone.channels["out"] == 576
    assert dropped.backbone.channels["out"] == 96
    assert len(kept.backbone.features) == 13 and len(dropped.backbone.features) == 12


def test_large_matches_torchvision_features():
    from torchvision.models import mobilenet_v3_large

    with torch.device("meta"):
        reference = mobilenet_v3_large(dilated=True).features
    ours = build().backbone.features
    assert [tuple(p.shape) for p in ours.parameters()] == [
        tuple(p.shape) for p in reference.parameters()
    ]
