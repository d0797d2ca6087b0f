"""FLOPs on meta tensors equal fvcore's on real tensors; each handle has a closed form."""

from __future__ import annotations

from collections import Counter

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from ablate.cost.flops import FVCORE_CONVENTION, count_flops, fvcore_flops
from ablate.models.build import build_model
from ablate.recipes.schema import ModelSpec


class Call(nn.Module):
    """One call of ``fn`` on a fixed-shape input derived from the image."""

    def __init__(self, fn, *params: torch.Tensor) -> None:
        super().__init__()
        self.fn = fn
        self.params = nn.ParameterList([nn.Parameter(p) for p in params])

    def forward(self, x):
        return self.fn(x, *self.params)


CASES = {
    # name: (module, resolution, closed form)
    "conv": (nn.Conv2d(3, 8, 3, stride=2, padding=1), (16, 16), 1 * (8 * 3 * 3 * 3) * (8 * 8)),
    "grouped conv": (nn.Conv2d(3, 6, 3, padding=1, groups=3), (8, 8), 6 * 1 * 9 * 64),
    "transposed conv": (nn.ConvTranspose2d(3, 2, 3, stride=2), (5, 5), (3 * 2 * 9) * 25),
    "batch norm": (nn.BatchNorm2d(3), (4, 5), 2 * 3 * 20),
    "batch norm, no affine": (nn.BatchNorm2d(3, affine=False), (4, 5), 1 * 3 * 20),
    "group norm": (nn.GroupNorm(1, 3), (4, 5), 5 * 3 * 20),
    "bilinear": (nn.Upsample(scale_factor=2, mode="bilinear"), (4, 5), 4 * 3 * 8 * 10),
    "nearest": (nn.Upsample(size=(7, 9), mode="nearest"), (4, 5), 3 * 7 * 9),
    "area": (Call(lambda x: F.interpolate(x, size=(2, 2), mode="area")), (4, 6), 3 * 24),
    "bicubic (no fvcore handle)": (nn.Upsample(scale_factor=2, mode="bicubic"), (4, 4), 0),
    "adaptive avg pool": (nn.AdaptiveAvgPool2d(1), (4, 5), 3 * 20),
    "linear": (nn.Linear(5, 7), (4, 5), 3 * 4 * 5 * 7),
    "matmul": (Call(lambda x, w: x @ w, torch.zeros(5, 6)), (4, 5), 3 * 4 * 5 * 6),
    "bmm": (Call(lambda x, w: torch.bmm(x[0], w), torch.zeros(3, 5, 2)), (4, 5), 3 * 4 * 5 * 2),
    "einsum": (Call(lambda x, w: torch.einsum("nchw,kc->nkhw", x, w), torch.zeros(4, 3)),
               (2, 3), 1 * 4 * 3 * 6),
    "relu (not counted)": (nn.ReLU(), (4, 5), 0),
}


@pytest.mark.parametrize("name", list(CASES))
def test_handle_closed_form_and_fvcore(name):
    module, resolution, expected = CASES[name]
    assert count_flops(module, resolution).total == expected
    assert fvcore_flops(module, resolution).total() == expected


def test_count_on_cpu_model_leaves_it_untouched():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4)).train()
    before = model[0].weight.detach().clone()
    count = count_flops(model, (10, 10))
    assert count.total == 4 * 27 * 64 + 2 * 4 * 64
    assert model.training and model[0].weight.device.type == "cpu"
    assert torch.equal(model[0].weight, before)
    assert count.convention == FVCORE_CONVENTION and count.resolution == (10, 10)


MODELS = [
    (dict(), (64, 96)),
    (dict(keep_last_expansion=False, expansion=[1, 2, 3]), (64, 64)),
    (dict(backbone="mobilenet_v3_large", head="lraspp"), (64, 80)),
    (dict(backbone="mobilenet_v3_small", head="fcn", output_stride=32), (64, 64)),
    (dict(backbone="resnet50", head="deeplabv3", output_stride=8, aux_head=True), (48, 64)),
    (dict(backbone="squeezenet1_0", head="fcn8s"), (227, 227)),
    (dict(backbone="squeezenet1_0", head="fcn8s"), (100, 120)),  # skips need resizing
]


@pytest.mark.slow
@pytest.mark.parametrize("fields, resolution", MODELS)
def test_equals_fvcore_on_real_tensors(fields, resolution):
    model = build_model(ModelSpec(**fields), 21)
    ours = count_flops(model, resolution, depth=99)
    reference = fvcore_flops(model, resolution)
    assert ours.total == reference.total()
    expected = {
        name[len("model."):]: count for name, count in reference.by_module().items()
        if name.startswith("model.") and count
    }
    assert ours.by_module == expected
    assert ours.by_operator == {k: v for k, v in reference.by_operator().items() if v}
    assert sum(ours.breakdown.values()) == ours.total
    assert set(ours.uncalled) == {name[len("model."):] for name in reference.uncalled_modules()}
    # same uncounted calls, named by function here and by aten op in fvcore
    assert _stripped(ours.unsupported) == _stripped(
        {name[len("aten::"):]: n for name, n in reference.unsupported_ops().items()}
    )


def _stripped(counts: dict[str, int]) -> Counter:
    out: Counter = Counter()
    for name, n in counts.items():
        out[name.rstrip("_")] += n
    return out


def test_aux_head_is_not_counted():
    # fvcore's trace drops what ``out`` does not need; so does count_flops.
    fields = dict(backbone="mobilenet_v3_large", head="deeplabv3")
    with torch.device("meta"):
        plain = build_model(ModelSpec(**fields), 21)
        with_aux = build_model(ModelSpec(**fields, aux_head=True), 21)
    count = count_flops(with_aux, (64, 64))
    assert count.total == count_flops(plain, (64, 64)).total
    assert "aux_head" in count.uncalled and "aux_head" not in count.breakdown


def test_breakdown_is_a_partition_keyed_like_params():
    from ablate.cost.params import params_by_module

    with torch.device("meta"):
        model = build_model(ModelSpec(), 21)
    count = count_flops(model, (64, 64), depth=3)
    assert sum(count.breakdown.values()) == count.total
    assert count.breakdown["<root>"] == 4 * 21 * 64 * 64  # the final bilinear resize
    params = params_by_module(model, 3)
    # every module with FLOPs has parameters, but for ASPP's parameter-free upsampling
    assert set(count.breakdown) - set(params) == {"<root>", "head"}
    assert count.breakdown["head"] == 4 * 256 * 16 * 16  # ASPP output -> stride 4
    assert count.by_module["backbone"] + count.by_module["head"] + count.breakdown["<root>"] \
        == count.total


TORCHVISION_BUILDERS = {
    "DeepLabV3_ResNet50_Weights": dict(backbone="resnet50", head="deeplabv3", output_stride=8,
                                       aux_head=True),
    "DeepLabV3_ResNet101_Weights": dict(backbone="resnet101", head="deeplabv3", output_stride=8,
                                        aux_head=True),
    "DeepLabV3_MobileNet_V3_Large_Weights": dict(backbone="mobilenet_v3_large", head="deeplabv3",
                                                 aux_head=True),
    "FCN_ResNet50_Weights": dict(backbone="resnet50", head="fcn", output_stride=8, aux_head=True),
    "FCN_ResNet101_Weights": dict(backbone="resnet101", head="fcn", output_stride=8,
                                  aux_head=True),
    "LRASPP_MobileNet_V3_Large_Weights": dict(backbone="mobilenet_v3_large", head="lraspp"),
}


@pytest.mark.slow
@pytest.mark.parametrize("weights", list(TORCHVISION_BUILDERS))
def test_torchvision_convention_reproduces_published_gflops(weights):
    from torchvision.models import segmentation

    from ablate.cost.flops import TORCHVISION_CONVENTION

    meta = getattr(segmentation, weights).COCO_WITH_VOC_LABELS_V1.meta  # no download
    with torch.device("meta"):
        model = build_model(ModelSpec(**TORCHVISION_BUILDERS[weights]), 21)
    count = count_flops(model, (520, 520), convention=TORCHVISION_CONVENTION)
    assert round(count.total / 1e9, 3) == meta["_ops"]


class _ValueDependent(nn.Module):
    """Reads a value: impossible on meta tensors, so the count runs on the CPU."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 2, 1)

    def forward(self, x):
        y = self.conv(x)
        return y * 2 if float(y.sum()) >= 0 else y


def test_value_dependent_model_is_counted_on_its_device():
    assert count_flops(_ValueDependent(), (4, 4)).total == 2 * 3 * 16
