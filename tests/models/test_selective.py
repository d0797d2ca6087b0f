"""Selective down-sampling: helpers on hand-made tensors, the model on tiny inputs."""

from __future__ import annotations

import pytest
import torch
import torchvision
from torch import nn
from torch.nn import functional as F

from ablate.errors import UserInputError
from ablate.models.masking import gumbel_mask, pool_patches, upsample_mask
from ablate.models.selective import (
    SelectiveDeepLabV3,
    annealed_tau,
    build_mask_net,
    build_selective_deeplabv3,
    selective_losses,
)
from ablate.recipes.schema import ModelSpec, SelectiveSpec

CLASSES = 3


def _raw(aux_head: bool = False, **selective) -> dict:
    return {"backbone": "resnet50", "head": "deeplabv3", "output_stride": 8,
            "aux_head": aux_head, "selective": {"enabled": True, **selective}}


def _spec(aux_head: bool = False, **selective) -> ModelSpec:
    return ModelSpec.model_validate(_raw(aux_head, **selective))


# 4 x 4 map:  0  1  2  3 /  4  5  6  7 /  8  9 10 11 / 12 13 14 15
GRID = torch.arange(16.0).view(1, 1, 4, 4)


# -- pool_patches -----------------------------------------------------------------------


def test_pool_fixed_keeps_top_left_pixel():
    assert pool_patches(GRID, 2, "fixed").tolist() == [[[[0.0, 2.0], [8.0, 10.0]]]]


def test_pool_avg_averages_each_patch():
    assert pool_patches(GRID, 2, "avg").tolist() == [[[[2.5, 4.5], [10.5, 12.5]]]]


def test_pool_max_takes_each_patch_maximum():
    assert pool_patches(GRID, 2, "max").tolist() == [[[[5.0, 7.0], [13.0, 15.0]]]]


def test_pool_border_patch_uses_pixels_inside_the_map():
    x = torch.arange(9.0).view(1, 1, 3, 3)  # 0 1 2 / 3 4 5 / 6 7 8
    assert pool_patches(x, 2, "fixed").tolist() == [[[[0.0, 2.0], [6.0, 8.0]]]]
    assert pool_patches(x, 2, "avg").tolist() == [[[[2.0, 3.5], [6.5, 8.0]]]]
    assert pool_patches(x, 2, "max").tolist() == [[[[4.0, 5.0], [7.0, 8.0]]]]


def test_pool_unknown_mode_is_an_error():
    with pytest.raises(ValueError, match="fixed, avg, max"):
        pool_patches(GRID, 2, "median")


# -- upsample_mask ----------------------------------------------------------------------


def test_upsample_mask_repeats_each_cell_over_its_patch():
    mask = torch.tensor([[[[1.0, 0.0], [0.0, 1.0]]]])
    assert upsample_mask(mask, 2).tolist() == [[[
        [1.0, 1.0, 0.0, 0.0],
        [1.0, 1.0, 0.0, 0.0],
        [0.0, 0.0, 1.0, 1.0],
        [0.0, 0.0, 1.0, 1.0],
    ]]]


def test_upsample_mask_pixel_maps_to_cell_y_div_d_x_div_d():
    mask = torch.tensor([[[[0.0, 1.0, 0.0], [1.0, 1.0, 0.0]]]])
    up = upsample_mask(mask, 3)
    assert up.shape == (1, 1, 6, 9)
    for y in range(6):
        for x in range(9):
            assert up[0, 0, y, x] == mask[0, 0, y // 3, x // 3]


def test_upsample_mask_crops_to_an_odd_map():
    mask = torch.tensor([[[[1.0, 0.0], [0.0, 1.0]]]])
    assert upsample_mask(mask, 2, (3, 3)).tolist() == [[[
        [1.0, 1.0, 0.0], [1.0, 1.0, 0.0], [0.0, 0.0, 1.0]]]]


# -- gumbel_mask, temperature, losses ---------------------------------------------------


def test_gumbel_mask_eval_is_argmax_and_a_tie_keeps_full_resolution():
    logits = torch.tensor([[[[0.0, 2.0, 1.0]], [[1.0, 1.0, 3.0]]]])  # B=1, 2 x 1 x 3
    mask = gumbel_mask(logits, tau=1.0, hard=True, training=False)
    assert mask.tolist() == [[[[1.0, 0.0, 1.0]]]]


def test_gumbel_mask_eval_soft_is_the_tempered_softmax():
    logits = torch.tensor([[[[0.0]], [[1.0]]]])
    mask = gumbel_mask(logits, tau=0.5, hard=False, training=False)
    assert mask.item() == pytest.approx(1 / (1 + torch.exp(torch.tensor(-2.0)).item()))


def test_gumbel_mask_training_is_hard_with_a_straight_through_gradient():
    torch.manual_seed(0)
    logits = torch.zeros(2, 2, 8, 8, requires_grad=True)
    mask = gumbel_mask(logits, tau=1.0, hard=True, training=True)
    assert mask.shape == (2, 1, 8, 8)
    assert set(mask.unique().tolist()) == {0.0, 1.0}  # noise at logits 0 gives both
    (mask * torch.arange(128.0).view(2, 1, 8, 8)).sum().backward()
    assert logits.grad.abs().sum() > 0


def test_gumbel_mask_training_follows_confident_logits():
    logits = torch.tensor([-20.0, 20.0]).view(1, 2, 1, 1).expand(1, 2, 4, 4)
    assert gumbel_mask(logits, 1.0, True, True).sum().item() == 16.0


def test_annealed_tau_is_geometric_from_tau_to_tau_final():
    assert annealed_tau(1.0, None, 0.7) == 1.0
    assert annealed_tau(1.0, 0.1, 0.0) == 1.0
    assert annealed_tau(1.0, 0.1, 1.0) == pytest.approx(0.1)
    assert annealed_tau(1.0, 0.1, 0.5) == pytest.approx(0.1**0.5)
    assert annealed_tau(1.0, 0.1, 3.0) == pytest.approx(0.1)  # clamped


def _quarter_mask() -> torch.Tensor:
    """Batch of 2 images, 2 x 2 cells each, 2 of the 8 cells down-sampled: r = 0.25."""
    return torch.tensor([[[[1.0, 0.0], [0.0, 0.0]]], [[[0.0, 0.0], [0.0, 1.0]]]])


def test_target_loss_is_squared_distance_of_the_batch_share():
    losses = selective_losses(_quarter_mask(), SelectiveSpec(loss="target", target=0.5))
    assert list(losses) == ["mask_target"]
    assert losses["mask_target"].item() == pytest.approx((0.25 - 0.5) ** 2)  # 0.0625


def test_weight_loss_is_lambda_times_full_resolution_share():
    spec = SelectiveSpec.model_validate({"loss": "weight", "lambda": 0.2})
    mask = _quarter_mask().requires_grad_()
    losses = selective_losses(mask, spec)
    assert list(losses) == ["mask_sparsity"]
    assert losses["mask_sparsity"].item() == pytest.approx(0.2 * 0.75)  # 0.15
    losses["mask_sparsity"].backward()
    assert torch.allclose(mask.grad, torch.full_like(mask, -0.2 / 8))


# -- mask net ---------------------------------------------------------------------------


def _params(net: nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())


def test_conv_mask_net_is_the_baselines():
    net = build_mask_net(SelectiveSpec(mask_net="conv"))
    convs = [m for m in net.modules() if isinstance(m, nn.Conv2d)]
    assert [(c.in_channels, c.out_channels, c.kernel_size) for c in convs] == [
        (512, 128, (3, 3)), (128, 64, (3, 3)), (64, 64, (3, 3)), (64, 2, (3, 3))]
    assert all(c.bias is not None for c in convs)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in net.modules())
    assert _params(net) == (512 * 9 + 1) * 128 + (128 * 9 + 1) * 64 + (64 * 9 + 1) * 64 + (
        64 * 9 + 1) * 2  # 701,826


def test_dwsep_mask_net_is_depthwise_then_pointwise():
    net = build_mask_net(SelectiveSpec(mask_net="dwsep"))
    widths = [(512, 128), (128, 64), (64, 64), (64, 2)]
    expected = sum((9 + 1) * cin + (cin + 1) * cout for cin, cout in widths)  # 85,890
    assert _params(net) == expected
    assert net.conv1.depthwise.groups == 512 and net.conv1.pointwise.kernel_size == (1, 1)


@pytest.mark.parametrize(("source", "channels", "side", "patch", "cells"), [
    ("layer2", 512, 8, 2, 4),   # stride 8 -> stride 16
    ("layer2", 512, 8, 4, 2),   # stride 8 -> stride 32
    ("layer1", 256, 16, 2, 4),  # stride 4 -> stride 16
    ("layer2", 512, 9, 2, 5),   # odd map: ceil
])
def test_mask_net_output_is_on_the_mask_grid(source, channels, side, patch, cells):
    net = build_mask_net(SelectiveSpec(mask_source=source, patch=patch, mask_net="dwsep"))
    assert net(torch.zeros(1, channels, side, side)).shape == (1, 2, cells, cells)


# -- the model --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def model() -> SelectiveDeepLabV3:
    torch.manual_seed(0)
    return build_selective_deeplabv3(_spec(aux_head=True), CLASSES)


def test_forward_shapes(model):
    model.train()
    out = model(torch.randn(2, 3, 64, 64))
    assert out["out"].shape == (2, CLASSES, 64, 64)
    assert out["aux"].shape == (2, CLASSES, 64, 64)
    assert out["mask"].shape == (2, 1, 4, 4)  # stride-8 map 8 x 8, patch 2
    assert out["mask_logits"].shape == (2, 2, 4, 4)
    assert set(out["mask"].unique().tolist()) <= {0.0, 1.0}


def test_parameters_are_torchvisions_deeplabv3_plus_the_mask_net(model):
    reference = torchvision.models.segmentation.deeplabv3_resnet50(
        weights=None, weights_backbone=None, num_classes=CLASSES, aux_loss=True)
    assert _params(model) == _params(reference) + _params(model.mask_net)


def test_low_path_shares_parameters_but_not_running_stats(model):
    b = model.backbone
    assert b.low_layer3[0].conv1.weight is b.layer3[0].conv1.weight
    assert b.low_layer4[2].bn3.bias is b.layer4[2].bn3.bias
    assert b.low_layer4[0].downsample[0].weight is b.layer4[0].downsample[0].weight
    assert b.low_layer3[0].bn1.running_mean is not b.layer3[0].bn1.running_mean


def test_a_plain_resnet_state_dict_fills_the_low_paths_running_stats(model):
    b = model.backbone
    saved = {k: v.clone() for k, v in b.state_dict().items()}
    plain = torchvision.models.resnet50(weights=None).state_dict()
    plain["layer4.1.bn2.running_var"].fill_(3.0)
    try:
        b.load_state_dict(plain, strict=False)  # no low_layer* keys, no fc.* in the model
        assert torch.equal(b.low_layer4[1].bn2.running_var, plain["layer4.1.bn2.running_var"])
        own = dict(saved, **{"low_layer4.1.bn2.running_var": torch.full((512,), 5.0)})
        b.load_state_dict(own)  # this model's own checkpoint keeps its low path values
        assert b.low_layer4[1].bn2.running_var.tolist() == [5.0] * 512
        assert torch.equal(b.layer4[1].bn2.running_var, saved["layer4.1.bn2.running_var"])
    finally:
        b.load_state_dict(saved)


def test_tied_parameters_survive_a_dtype_conversion(model):
    b = model.backbone
    try:
        model.double()
        assert b.low_layer3[1].conv2.weight is b.layer3[1].conv2.weight
        assert b.low_layer3[1].conv2.weight.dtype == torch.float64
    finally:
        model.float()


def test_low_path_has_the_output_stride_16_dilations(model):
    os16 = torchvision.models.resnet50(weights=None, replace_stride_with_dilation=[False, False, True])
    for low, ref in ((model.backbone.low_layer3, os16.layer3), (model.backbone.low_layer4, os16.layer4)):
        assert [blk.conv2.dilation for blk in low] == [blk.conv2.dilation for blk in ref]
        assert all(blk.conv2.stride == (1, 1) for blk in low)
    assert [blk.conv2.dilation[0] for blk in model.backbone.layer4] == [2, 4, 4]  # OS 8


class _FixedLogits(nn.Module):
    """Stands in for the mask net: the same logits whatever the input."""

    def __init__(self, logits: torch.Tensor) -> None:
        super().__init__()
        self.logits = logits

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.logits.expand(x.shape[0], -1, -1, -1)


def test_mask_one_takes_the_low_path_and_zero_the_high_path(model):
    checker = torch.tensor([[1.0, 0.0, 1.0, 0.0], [0.0, 1.0, 0.0, 1.0]] * 2)  # 4 x 4 cells
    logits = torch.stack([1 - checker, checker]).unsqueeze(0)  # channel 1 wins where 1
    mask_net, model.mask_net = model.mask_net, _FixedLogits(logits)
    try:
        model.eval()
        x = torch.randn(1, 3, 64, 64)
        with torch.no_grad():
            feats = model.forward_features(x)
            layer2 = model.backbone.early(x)["layer2"]
            _, high = model.backbone.high(layer2)
            low = model.backbone.low(layer2)
    finally:
        model.mask_net = mask_net
    assert feats["mask"][0, 0].tolist() == checker.tolist()
    assert low.shape[-2:] == (4, 4) and high.shape[-2:] == (8, 8)
    blended = feats["features"]
    for y in range(8):
        for x_ in range(8):
            source = low[..., y // 2, x_ // 2] if checker[y // 2, x_ // 2] else high[..., y, x_]
            assert torch.equal(blended[..., y, x_], source)


@pytest.mark.slow
def test_gradients_reach_the_mask_net_through_the_straight_through_mask(model):
    torch.manual_seed(1)
    model.train()
    model.zero_grad()
    out = model(torch.randn(2, 3, 32, 32))
    F.cross_entropy(out["out"], torch.randint(0, CLASSES, (2, 32, 32))).backward()
    for name, param in model.mask_net.named_parameters():
        assert param.grad is not None and param.grad.abs().sum() > 0, name
    model.zero_grad()


def test_eval_is_deterministic(model):
    model.eval()
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        first, second = model(x), model(x)
    assert torch.equal(first["out"], second["out"])
    assert torch.equal(first["mask"], second["mask"])


def test_extra_losses_use_the_models_spec():
    spec = _spec(loss="weight", **{"lambda": 0.2})
    model = SelectiveDeepLabV3.__new__(SelectiveDeepLabV3)  # no need for the network
    nn.Module.__init__(model)
    model.selective = spec.selective
    assert model.extra_losses({"mask": _quarter_mask()})["mask_sparsity"].item() == (
        pytest.approx(0.15))


def test_set_progress_anneals_tau(model):
    model.selective = SelectiveSpec(tau=1.0, tau_final=0.25)
    try:
        model.set_progress(0.5)
        assert model.tau == pytest.approx(0.5)
        model.set_progress(1.0)
        assert model.tau == pytest.approx(0.25)
    finally:
        model.selective = _spec(aux_head=True).selective
        model.set_progress(0.0)


@pytest.mark.parametrize(("override", "key"), [
    ({"backbone": "mobilenet_v3_large"}, "model.backbone"),
    ({"output_stride": 16}, "model.output_stride"),
    ({"head": "fcn"}, "model.head"),
    ({"selective": {"enabled": True, "patch": 1}}, "model.selective.patch"),
])
def test_unsupported_specs_are_one_line_user_errors(override, key):
    spec = ModelSpec.model_validate({**_raw(), **override})
    with pytest.raises(UserInputError) as err:
        build_selective_deeplabv3(spec, CLASSES)
    assert str(err.value).startswith(key + ":") and "\n" not in str(err.value)


@pytest.mark.parametrize("head", ["deeplabv3plus", "fcn", "lraspp", "fcn8s"])
def test_every_other_builtin_head_refuses_it(head):
    """They built the plain network, and training ignored the mask-net settings."""
    from ablate.cost.analyse import build_on_meta

    spec = ModelSpec.model_validate({**_raw(), "head": head})
    with pytest.raises(UserInputError, match=f"^model.head: .*needs 'deeplabv3', got '{head}'"):
        build_on_meta(spec, CLASSES)


def test_zoo_deeplabv3_builds_the_selective_model():
    from ablate.models import zoo

    model = zoo.deeplabv3(nn.Identity(), CLASSES, _spec())
    assert isinstance(model, SelectiveDeepLabV3)
