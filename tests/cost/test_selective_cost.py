"""Conditional cost of selective down-sampling against independently counted models."""

from __future__ import annotations

import pytest
import torch
import torchvision
from fvcore.nn import FlopCountAnalysis
from torch import nn
from torch.nn import functional as F
from torchvision.models.segmentation.deeplabv3 import DeepLabHead

from ablate.cost.flops import count_flops
from ablate.cost.selective import (
    _stage_flops,
    mask_density_stats,
    mask_net_flops,
    resnet_tap_size,
    selective_cost,
)
from ablate.recipes.schema import ModelSpec, SelectiveSpec

CLASSES = 3
RES = (64, 64)  # stride-8 map 8 x 8, mask grid 4 x 4


def _fvcore(module: nn.Module, x: torch.Tensor) -> int:
    analysis = FlopCountAnalysis(module.eval(), x)
    analysis.unsupported_ops_warnings(False).uncalled_modules_warnings(False)
    analysis.tracer_warnings("none")
    return int(analysis.total())


def _conv_macs(cin: int, cout: int, side: int, k: int = 3, groups: int = 1) -> int:
    return cin // groups * cout * k * k * side * side


# -- the mask net alone -----------------------------------------------------------------


def test_conv_mask_net_is_689m_multiply_adds_at_256():
    # layer2 at 256 x 256 is 32 x 32; the max-pool halves it before conv3
    closed_form = (_conv_macs(512, 128, 32) + _conv_macs(128, 64, 32)
                   + _conv_macs(64, 64, 16) + _conv_macs(64, 2, 16))
    measured = mask_net_flops(SelectiveSpec(mask_net="conv"), (256, 256))
    assert measured == closed_form == 689_209_344
    assert abs(measured - 689e6) / 689e6 < 0.01


def test_dwsep_mask_net_multiply_adds_at_256():
    def sep(cin: int, cout: int, side: int) -> int:
        return _conv_macs(cin, cin, side, groups=cin) + _conv_macs(cin, cout, side, k=1)

    closed_form = sep(512, 128, 32) + sep(128, 64, 32) + sep(64, 64, 16) + sep(64, 2, 16)
    assert mask_net_flops(SelectiveSpec(mask_net="dwsep"), (256, 256)) == closed_form == 82_771_968


def test_layer1_mask_net_reads_the_stride_4_map():
    closed_form = (_conv_macs(256, 128, 64) + _conv_macs(128, 64, 64)
                   + _conv_macs(64, 64, 16) + _conv_macs(64, 2, 16))
    assert mask_net_flops(SelectiveSpec(mask_source="layer1"), (256, 256)) == closed_form


@pytest.mark.slow
@pytest.mark.parametrize("side", [64, 65, 97])
def test_resnet_tap_size_matches_torchvision(side):
    r = torchvision.models.resnet50(weights=None).eval()
    with torch.no_grad():
        x = r.layer1(r.maxpool(r.relu(r.bn1(r.conv1(torch.zeros(1, 3, side, side))))))
        assert x.shape[-1] == resnet_tap_size(side, 4)
        assert r.layer2(x).shape[-1] == resnet_tap_size(side, 8)


# -- independently built reference models ------------------------------------------------


def _independent_mask_net() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(512, 128, 3, padding=1), nn.ReLU(), nn.Conv2d(128, 64, 3, padding=1), nn.ReLU(),
        nn.MaxPool2d(2), nn.Conv2d(64, 64, 3, padding=1), nn.ReLU(), nn.Conv2d(64, 2, 3, padding=1))


class _OS16Path(nn.Module):
    """What density 1 runs: stem..layer2 at stride 8, the top-left pixel of each 2 x 2
    patch through torchvision's OS-16 layer3/layer4 (layer3's stride moved before it),
    repeated back to stride 8, DeepLabHead at stride 8, bilinear logits."""

    def __init__(self) -> None:
        super().__init__()
        r = torchvision.models.resnet50(weights=None, replace_stride_with_dilation=[False, False, True])
        r.layer3[0].conv2.stride = (1, 1)
        r.layer3[0].downsample[0].stride = (1, 1)
        self.early = nn.Sequential(r.conv1, r.bn1, r.relu, r.maxpool, r.layer1, r.layer2)
        self.late = nn.Sequential(r.layer3, r.layer4)
        self.head = DeepLabHead(2048, CLASSES)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = self.late(self.early(x)[:, :, ::2, ::2])
        features = features.repeat_interleave(2, dim=2).repeat_interleave(2, dim=3)
        return F.interpolate(self.head(features), size=x.shape[-2:], mode="bilinear")


class _PlainOS16(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        r = torchvision.models.resnet50(weights=None, replace_stride_with_dilation=[False, False, True])
        self.body = nn.Sequential(*list(r.children())[:-2])
        self.head = DeepLabHead(2048, CLASSES)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.interpolate(self.head(self.body(x)), size=x.shape[-2:], mode="bilinear")


@pytest.fixture(scope="module")
def reference() -> dict[str, int]:
    torch.manual_seed(0)
    os8 = torchvision.models.segmentation.deeplabv3_resnet50(
        weights=None, weights_backbone=None, num_classes=CLASSES, aux_loss=False)
    image = torch.zeros(1, 3, *RES)
    return {
        "mask": _fvcore(_independent_mask_net(), torch.zeros(1, 512, 8, 8)),
        "os8": count_flops(os8, RES).total,
        "os16_path": _fvcore(_OS16Path(), image),
        "os16": _fvcore(_PlainOS16(), image),
    }


@pytest.fixture(scope="module")
def spec() -> ModelSpec:
    return ModelSpec.model_validate({
        "backbone": "resnet50", "head": "deeplabv3", "output_stride": 8,
        "selective": {"enabled": True, "mask_net": "conv", "pooling": "fixed"},
    })


# -- hand-set masks -> density -> effective FLOPs ----------------------------------------


def _checkerboard() -> torch.Tensor:
    row = torch.tensor([1.0, 0.0, 1.0, 0.0])
    return torch.stack([row, 1 - row, row, 1 - row]).view(1, 1, 4, 4)


@pytest.mark.slow
def test_all_zero_mask_costs_the_os8_model_plus_the_mask_net(spec, reference):
    density = mask_density_stats([torch.zeros(2, 1, 4, 4)])["mean"]
    cost = selective_cost(spec, CLASSES, RES, density, device="cpu")
    assert density == 0.0
    assert cost["gflops_mask_net"] * 1e9 == reference["mask"]
    assert cost["gflops_os8"] * 1e9 == reference["os8"]
    assert cost["gflops_effective"] * 1e9 == reference["os8"] + reference["mask"]
    assert cost["gflops_dense"] == cost["gflops_effective"]


@pytest.mark.slow
def test_all_one_mask_costs_the_os16_path_plus_the_mask_net(spec, reference):
    density = mask_density_stats([torch.ones(1, 4, 4)])["mean"]
    cost = selective_cost(spec, CLASSES, RES, density, device="cpu")
    assert density == 1.0
    assert cost["gflops_effective"] * 1e9 == pytest.approx(
        reference["os16_path"] + reference["mask"], abs=0.5)
    assert cost["gflops_low_path"] == cost["gflops_effective"]
    # the plain OS-16 DeepLabV3 is a different, cheaper network (ASPP at stride 16)
    assert cost["gflops_os16"] * 1e9 == reference["os16"]
    assert reference["os16"] < reference["os16_path"]


@pytest.mark.slow
def test_checkerboard_mask_costs_halfway(spec, reference):
    density = mask_density_stats([_checkerboard()])["mean"]
    cost = selective_cost(spec, CLASSES, RES, density, device="cpu")
    low = reference["os16_path"] + reference["mask"]
    high = reference["os8"] + reference["mask"]
    assert density == 0.5
    assert cost["gflops_effective"] * 1e9 == pytest.approx((low + high) / 2, abs=0.5)


def test_effective_cost_is_linear_in_density(spec):
    at = {d: selective_cost(spec, CLASSES, RES, d, device="cpu")["gflops_effective"]
          for d in (0.0, 0.3, 1.0)}
    assert at[0.3] == pytest.approx(0.7 * at[0.0] + 0.3 * at[1.0], rel=1e-12)
    assert at[1.0] < at[0.3] < at[0.0]


def test_counts_are_cached_per_architecture_and_resolution(spec):
    selective_cost(spec, CLASSES, RES, 0.0, device="cpu")
    hits = _stage_flops.cache_info().hits
    selective_cost(spec, CLASSES, RES, 0.7, device="cpu")
    assert _stage_flops.cache_info().hits == hits + 1


def test_a_knocked_out_module_leaves_every_figure_that_counts_it(spec):
    """``model.remove`` on a selective model: its FLOPs are gone from the dense figure (the
    GFLOPs of ``plan`` and ``cost``) and the effective one, exactly; they stayed before."""
    branch = "head.aspp.convs.1"  # the rate-12 3x3 branch: 2048 -> 256 on the stride-8 map
    full = selective_cost(spec, CLASSES, RES, 0.5, device="cpu")
    removed = selective_cost(spec.model_copy(update={"remove": [branch]}), CLASSES, RES, 0.5,
                             device="cpu")
    branch_flops = _fvcore_branch(spec, branch)
    assert branch_flops > 0
    for key in ("gflops_dense", "gflops_os8", "gflops_low_path", "gflops_effective"):
        assert (full[key] - removed[key]) * 1e9 == pytest.approx(branch_flops, abs=1), key
    assert removed["gflops_mask_net"] == full["gflops_mask_net"]
    assert removed["gflops_os16"] == full["gflops_os16"]  # the plain reference, as it was


def _fvcore_branch(spec: ModelSpec, path: str) -> int:
    """fvcore's count of one module of the full selective model, by its own forward."""
    from ablate.models.build import build_model

    model = build_model(spec, CLASSES).eval()
    analysis = FlopCountAnalysis(model, torch.zeros(1, 3, *RES))
    analysis.unsupported_ops_warnings(False).uncalled_modules_warnings(False)
    analysis.tracer_warnings("none")
    return int(analysis.by_module()[path])


def test_torchvision_convention_counts_the_dense_network_not_both_paths(spec, reference):
    """``ablate cost --convention torchvision-mac`` on a selective model: the dense figure
    (plain OS-8 + mask net) in that convention, as fvcore-mac gives it in its own; it
    gave the emulation's both paths added up (71.464 against 60.978 GFLOPs for the
    letter's baseline at 256x256)."""
    from ablate.cost.analyse import analyse_spec
    from ablate.recipes.schema import TrialSpec

    torch.manual_seed(0)
    os8 = torchvision.models.segmentation.deeplabv3_resnet50(
        weights=None, weights_backbone=None, num_classes=CLASSES, aux_loss=False)
    os8_tv = count_flops(os8, RES, convention="torchvision-mac").total
    assert os8_tv < reference["os8"]  # no batch norm or upsampling
    trial = TrialSpec.model_validate({"model": {**spec.model_dump(), "num_classes": CLASSES},
                                      "eval": {"resolution": list(RES), "latency": False}})
    report = analyse_spec(trial, convention="torchvision-mac")
    assert report.flops_convention == "torchvision-mac"
    assert report.flops == os8_tv + reference["mask"]
    cost = selective_cost(spec, CLASSES, RES, 0.0, device="cpu", convention="torchvision-mac")
    assert cost["gflops_os8"] * 1e9 == os8_tv
    assert cost["gflops_mask_net"] * 1e9 == reference["mask"]  # convs only: the same
    assert report.extra["gflops_dense"] == cost["gflops_dense"]


def test_density_outside_zero_one_is_an_error(spec):
    with pytest.raises(ValueError, match="density"):
        selective_cost(spec, CLASSES, RES, 1.5, device="cpu")


# -- mask density over images -----------------------------------------------------------


def test_mask_density_stats_are_over_images():
    batch = torch.stack([torch.zeros(1, 2, 2), torch.ones(1, 2, 2)])  # densities 0 and 1
    single = torch.tensor([[1.0, 0.0], [0.0, 0.0]])  # density 0.25
    stats = mask_density_stats([batch, single, _checkerboard()[0]])  # 0, 1, 0.25, 0.5
    assert stats["mean"] == pytest.approx(1.75 / 4)
    values = torch.tensor([0.0, 1.0, 0.25, 0.5])
    assert stats["std"] == pytest.approx(values.std(unbiased=False).item())


def test_mask_density_stats_needs_masks():
    with pytest.raises(ValueError, match="no masks"):
        mask_density_stats([])


# -- sparse execution: the head splits too ------------------------------------------------


class _LowPathNetwork(_OS16Path):
    """What density 1 runs with execution = "sparse": the ASPP head at stride 16 too."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.head(self.late(self.early(x)[:, :, ::2, ::2]))
        logits = logits.repeat_interleave(2, dim=2).repeat_interleave(2, dim=3)
        return F.interpolate(logits, size=x.shape[-2:], mode="bilinear")


@pytest.mark.slow
def test_sparse_execution_at_density_1_costs_the_low_path_network(reference):
    sparse = ModelSpec.model_validate({
        "backbone": "resnet50", "head": "deeplabv3", "output_stride": 8,
        "selective": {"enabled": True, "pooling": "fixed", "execution": "sparse"}})
    low = _fvcore(_LowPathNetwork(), torch.zeros(1, 3, *RES)) + reference["mask"]
    at = {d: selective_cost(sparse, CLASSES, RES, d, device="cpu")["gflops_effective"] * 1e9
          for d in (0.0, 0.5, 1.0)}
    assert at[0.0] == reference["os8"] + reference["mask"]
    # the ASPP's pooled 1x1 conv does not scale with the map: off by under 0.1 %
    assert at[1.0] == pytest.approx(low, rel=1e-3)
    assert at[0.5] == pytest.approx((at[0.0] + at[1.0]) / 2, rel=1e-12)


@pytest.mark.slow
def test_selective_latency_times_sparse_dense_emulation_and_plain_os8():
    from ablate.cost.selective import selective_latency
    from ablate.models.selective import build_selective_deeplabv3

    for execution in ("dense", "sparse"):
        spec = ModelSpec.model_validate({
            "backbone": "resnet50", "head": "deeplabv3", "output_stride": 8,
            "selective": {"enabled": True, "execution": execution}})
        model = build_selective_deeplabv3(spec, CLASSES).train()
        figures = selective_latency(model, (48, 48), torch.device("cpu"), 0.5, warmup=1, runs=2)
        assert set(figures) == {"latency_ms", "latency_ms_p90", "latency_ms_dense",
                                "latency_ms_dense_p90", "latency_ms_os8", "latency_ratio_os8",
                                "latency_density"}
        assert figures["latency_density"] == 0.5
        assert 0 < figures["latency_ms"] <= figures["latency_ms_p90"]
        assert 0 < figures["latency_ms_dense"] <= figures["latency_ms_dense_p90"]
        # the saving is the ratio of two times measured here, never a FLOP count
        assert figures["latency_ratio_os8"] == figures["latency_ms"] / figures["latency_ms_os8"]
        assert model.training  # measured in eval mode, restored


@pytest.mark.slow
def test_the_plain_os8_reference_is_the_models_dilated_path():
    """What latency_ms_os8 times: the model at mask density 0 without its mask net."""
    from ablate.cost.selective import _plain_os8
    from ablate.models.selective import build_selective_deeplabv3
    from ablate.models.sparse import SparseSelective

    spec = ModelSpec.model_validate({
        "backbone": "resnet50", "head": "deeplabv3", "output_stride": 8,
        "selective": {"enabled": True, "execution": "sparse"}})
    model = build_selective_deeplabv3(spec, CLASSES).eval()
    x = torch.randn(1, 3, 48, 48)
    with torch.no_grad():
        plain = _plain_os8(model, x)
    full_resolution = SparseSelective(model)(x, torch.zeros(1, 1, 3, 3))["out"]
    assert plain.shape == full_resolution.shape == (1, CLASSES, 48, 48)
    # the executor runs channels-last on CPU: the same function, other summation order
    assert (plain - full_resolution).abs().max() <= 1e-5 * plain.abs().max()
