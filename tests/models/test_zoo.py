"""Exact parameter targets of the reproduced papers' tables and of torchvision."""

from __future__ import annotations

import pytest
import torch

from ablate.cost.params import count_parameters, params_by_module
from ablate.errors import UserInputError
from ablate.models.build import build_model
from ablate.recipes.schema import ModelSpec


def params(classes: int, **fields) -> int:
    with torch.device("meta"):  # shapes only: exact counts, no initialisation cost
        return count_parameters(build_model(ModelSpec(**fields), classes))


# Kim, Jeong, Kang, Jo and Moon, "A Lightweighting Method for the DeepLabv3+ Network", 2025,
# Table 1: DeepLabv3+ on MobileNetV3-Large, output stride 16.
def test_kim2025_conventional_91_classes_last_expansion_kept():
    assert params(91, keep_last_expansion=True) == 11_745_643


def test_kim2025_proposed_21_classes_last_expansion_dropped():
    assert params(21, keep_last_expansion=False) == 5_632_933


def test_kim2025_conventional_with_21_classes():
    assert params(21, keep_last_expansion=True) == 11_727_653


def test_kim2025_difference_is_features16_aspp_and_classifier():
    with torch.device("meta"):
        kept = params_by_module(build_model(ModelSpec(), 91))
        dropped = params_by_module(build_model(ModelSpec(keep_last_expansion=False), 21))
    changed = {k for k in kept.keys() | dropped.keys() if kept.get(k) != dropped.get(k)}
    assert changed == {"backbone.features.16", "head.aspp.convs", "head.classifier"}
    assert kept["backbone.features.16"] == 160 * 960 + 2 * 960
    assert kept["head.classifier"] - dropped["head.classifier"] == 70 * 257


# Jeon, Wang and Lee, "Image Segmentation Using SqueezeNet based on CUDA C", Table 1:
# SqueezeNet 1.0 FCN-8s.
SQUEEZENET_TABLE = {
    "backbone.features.0": 14_208,  # conv1 7x7/2
    "backbone.features.3": 11_920,  # fire2
    "backbone.features.4": 12_432,  # fire3
    "backbone.features.5": 45_344,  # fire4
    "backbone.features.7": 49_440,  # fire5
    "backbone.features.8": 104_880,  # fire6
    "backbone.features.9": 111_024,  # fire7
    "backbone.features.10": 188_992,  # fire8
    "backbone.features.12": 197_184,  # fire9
    "backbone.conv10": 513_000,
    "head.score": 21_021,
    "head.score_pool8": 10_773,
    "head.conv11": 3_969,
    "head.score_pool4": 5_397,
    "head.conv12": 3_969,
    "head.score_pool1": 2_037,
    "head.conv13": 53_361,
}


def test_squeezenet_fcn8s_every_layer_and_total():
    model = build_model(ModelSpec(backbone="squeezenet1_0", head="fcn8s"), 21)
    assert params_by_module(model, depth=3) == SQUEEZENET_TABLE
    assert count_parameters(model) == 1_348_951


@torch.no_grad()
def test_squeezenet_fcn8s_227_gives_227():
    model = build_model(ModelSpec(backbone="squeezenet1_0", head="fcn8s"), 21).eval()
    features = model.backbone(torch.zeros(1, 3, 227, 227))
    sizes = {name: tuple(t.shape[1:]) for name, t in features.items()}
    assert sizes["pool1"] == (96, 55, 55)
    assert sizes["pool4"] == (256, 27, 27)
    assert sizes["pool8"] == (512, 13, 13)
    assert sizes["out"] == (1000, 13, 13)
    assert tuple(model.head(features).shape) == (1, 21, 227, 227)  # no resize needed
    assert tuple(model(torch.zeros(1, 3, 227, 227))["out"].shape) == (1, 21, 227, 227)


def test_fcn8s_needs_squeezenet():
    with pytest.raises(UserInputError, match="fcn8s is defined on squeezenet1_0"):
        build_model(ModelSpec(backbone="resnet50", head="fcn8s"), 21)


def test_squeezenet_output_stride_it_cannot_give():
    with pytest.raises(UserInputError) as err:
        build_model(ModelSpec(backbone="squeezenet1_0", head="fcn8s", output_stride=8), 21)
    assert str(err.value) == (
        "model.output_stride: squeezenet1_0 cannot give output stride 8; allowed: 16"
    )


# torchvision's documentation (semantic segmentation weights table): its stock models,
# built with torchvision's options.
TORCHVISION = {
    "deeplabv3_resnet50": dict(backbone="resnet50", head="deeplabv3", output_stride=8),
    "deeplabv3_resnet101": dict(backbone="resnet101", head="deeplabv3", output_stride=8),
    "deeplabv3_mobilenet_v3_large": dict(backbone="mobilenet_v3_large", head="deeplabv3"),
    "fcn_resnet50": dict(backbone="resnet50", head="fcn", output_stride=8),
    "fcn_resnet101": dict(backbone="resnet101", head="fcn", output_stride=8),
    "lraspp_mobilenet_v3_large": dict(backbone="mobilenet_v3_large", head="lraspp"),
}
AUX = [(name, aux) for name in TORCHVISION for aux in (None, True) if not name.startswith("lraspp")]


def torchvision_params(builder: str, aux_loss: bool | None) -> int:
    from torchvision.models import segmentation

    kwargs = {} if builder.startswith("lraspp") else {"aux_loss": aux_loss}
    with torch.device("meta"):
        model = getattr(segmentation, builder)(
            weights=None, weights_backbone=None, num_classes=21, **kwargs
        )
    return count_parameters(model)


@pytest.mark.parametrize("builder, aux_loss", AUX + [("lraspp_mobilenet_v3_large", None)])
def test_torchvision_parity(builder, aux_loss):
    ours = params(21, **TORCHVISION[builder], aux_head=bool(aux_loss))
    assert ours == torchvision_params(builder, aux_loss)


def test_torchvision_published_counts_with_aux():
    # torchvision's COCO weights were trained with the auxiliary head: its meta counts it.
    assert params(21, **TORCHVISION["deeplabv3_resnet50"], aux_head=True) == 42_004_074
    assert params(21, **TORCHVISION["deeplabv3_mobilenet_v3_large"], aux_head=True) == 11_029_328
    assert params(21, **TORCHVISION["lraspp_mobilenet_v3_large"]) == 3_221_538


def test_lraspp_has_no_aux_head():
    with pytest.raises(UserInputError, match="lraspp head has no auxiliary head"):
        params(21, **TORCHVISION["lraspp_mobilenet_v3_large"], aux_head=True)


def test_resnet_module_names_follow_torchvision():
    with torch.device("meta"):
        model = build_model(ModelSpec(backbone="resnet50", head="deeplabv3", output_stride=8), 21)
    names = {name for name, _ in model.named_parameters()}
    assert "backbone.conv1.weight" in names
    assert "backbone.layer4.2.conv3.weight" in names
    assert model.backbone.channels == {"low": 256, "aux": 1024, "out": 2048}


@pytest.mark.parametrize("output_stride, dilations", [
    (8, (1, 2, 4)), (16, (1, 1, 2)), (32, (1, 1, 1)),
])
def test_resnet_output_strides(output_stride, dilations):
    with torch.device("meta"):
        model = build_model(
            ModelSpec(backbone="resnet50", head="fcn", output_stride=output_stride), 21
        )
        features = model.backbone(torch.zeros(1, 3, 64, 64))
    backbone = model.backbone
    got = tuple(getattr(backbone, f"layer{i}")[-1].conv2.dilation[0] for i in (2, 3, 4))
    assert got == dilations
    assert tuple(features["low"].shape[-2:]) == (16, 16)
    assert tuple(features["out"].shape[-2:]) == (64 // output_stride,) * 2
    assert backbone.strides["out"] == output_stride


@torch.no_grad()
@pytest.mark.parametrize("fields", [
    dict(backbone="mobilenet_v3_large", head="lraspp"),
    dict(backbone="mobilenet_v3_small", head="deeplabv3", aux_head=True),
    dict(backbone="squeezenet1_0", head="deeplabv3plus"),
    dict(backbone="resnet50", head="deeplabv3plus", output_stride=16),
])
def test_heads_return_logits_at_input_size(fields):
    with torch.device("meta"):
        model = build_model(ModelSpec(**fields), 5).eval()
        out = model(torch.zeros(1, 3, 64, 80))
    assert tuple(out["out"].shape) == (1, 5, 64, 80)
    if fields.get("aux_head"):
        assert tuple(out["aux"].shape) == (1, 5, 64, 80)
