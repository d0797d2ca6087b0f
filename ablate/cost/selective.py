"""Conditional cost of selective down-sampling (the selective down-sampling letter), fvcore convention.

FLOPs are reported three ways: the mask net alone, dense (everything at full
resolution) and effective (conditional on the measured mask density). All figures
use fvcore's convention (one multiply-add = one flop; convolutions, batch norm,
upsampling; pooling and element-wise ops are free) at batch 1 and the given (H, W).

The model of ``ablate.models.selective`` is counted once, densely, with fvcore, and
split by module into

* ``pre``:  stem, layer1, layer2 (always at full resolution),
* ``high``: layer3 + layer4 of the dilated output-stride-8 path,
* ``low``:  layer3 + layer4 of the down-sampled path (on the pooled stride-``8d`` map),
* ``mask``: the mask net,
* ``rest``: everything else, i.e. the ASPP head on the stride-8 map and the final
  bilinear up-sampling of the logits (the blend and the nearest repeats are free).

With ``density`` = share of down-sampled cells (mask 1) the effective cost is::

    effective = pre + (1 - density) * high + density * low + rest + mask

It assumes a sparse implementation that runs each path only on its own cells, so a
stage's cost is linear in the share of cells it runs on. With
``execution = "sparse"`` (``ablate.models.sparse``) the ASPP head splits too: it runs
at stride 8 on full-resolution cells and at stride ``8d`` on down-sampled ones, so
``head`` (its part of ``rest``) is paid as ``(1 - density) * head + density * head_low``
with ``head_low = head * cells / pixels`` (convs cost per output position). Hence ``density = 0`` gives
the plain output-stride-8 DeepLabV3 plus the mask net, and ``density = 1`` gives the
"output-stride-16 path" plus the mask net: stem..layer2 at stride 8, the pooled map
through layer3/layer4 at stride ``8d`` with the OS-16 dilations, repeated back to
stride 8, and the ASPP head at stride 8. That is *not* the plain OS-16 DeepLabV3
(``gflops_os16``, whose layer3 first block and ASPP run on stride-16 maps), which is
reported beside it for reference.
"""

from __future__ import annotations

import copy
import functools
import json
import math

import torch
from torch import nn

from ablate.cost.flops import FVCORE_CONVENTION, count_flops
from ablate.cost.latency import measure_latency
from ablate.models.build import build_model
from ablate.models.fused import fold_batch_norm
from ablate.models.sparse import SparseSelective, forced_mask, forward_mixed, mask_grid
from ablate.recipes.schema import ModelSpec, SelectiveSpec

PRE_MODULES = ("backbone.conv1", "backbone.bn1", "backbone.layer1", "backbone.layer2")
HIGH_MODULES = ("backbone.layer3", "backbone.layer4")
LOW_MODULES = ("backbone.low_layer3", "backbone.low_layer4")
MASK_MODULE = "mask_net"


def selective_cost(spec: ModelSpec, num_classes: int, resolution: tuple[int, int],
                   density: float, device: str | None = None,
                   convention: str = FVCORE_CONVENTION) -> dict[str, float]:
    """GFLOPs (fvcore) of a selective model at ``resolution`` (H, W) for a mask density.

    ``density`` is the share of down-sampled cells (mask 1), e.g. the ``mean`` of
    ``mask_density_stats`` over the evaluation set. Returns ``gflops_mask_net``,
    ``gflops_dense`` (OS-8 model + mask net), ``gflops_os8``, ``gflops_os16`` (plain
    models without mask net), ``gflops_low_path`` (the effective cost at density 1)
    and ``gflops_effective`` (formula in the module docstring).
    """
    if not 0.0 <= density <= 1.0:
        raise ValueError(f"density must be in [0, 1], got {density}")
    parts = stage_flops(spec, num_classes, resolution, device, convention)
    fixed = parts["pre"] + parts["rest"] + parts["mask"]
    effective = fixed + (1.0 - density) * parts["high"] + density * parts["low"]
    if spec.selective.execution == "sparse":
        side8 = [resnet_tap_size(n, 8) for n in resolution]
        cells = math.prod(-(-n // spec.selective.patch) for n in side8)
        effective -= density * parts["head"] * (1.0 - cells / math.prod(side8))
    return {
        "gflops_mask_net": parts["mask"] / 1e9,
        "gflops_dense": (fixed + parts["high"]) / 1e9,
        "gflops_os8": (fixed - parts["mask"] + parts["high"]) / 1e9,
        "gflops_os16": plain_os16_flops(spec, num_classes, resolution, device,
                                        convention) / 1e9,
        "gflops_low_path": (fixed + parts["low"]) / 1e9,
        "gflops_effective": effective / 1e9,
        "density": float(density),
    }


def stage_flops(spec: ModelSpec, num_classes: int, resolution: tuple[int, int],
                device: str | None = None,
                convention: str = FVCORE_CONVENTION) -> dict[str, int]:
    """fvcore flops of ``pre``, ``high``, ``low``, ``mask`` and ``rest`` (cached per arch),
    knock-outs (``model.remove``/``replace``) applied as in every other count."""
    sel = spec.selective
    knockouts = json.dumps({"remove": spec.remove,
                            "replace": [r.model_dump() for r in spec.replace]}, sort_keys=True)
    key = (spec.backbone, sel.mask_net, sel.mask_source, sel.patch, sel.pooling,
           tuple(spec.aspp_rates), spec.aspp_channels, knockouts, num_classes,
           tuple(resolution), _device(device), convention)
    return dict(_stage_flops(key))


@functools.lru_cache(maxsize=32)
def _stage_flops(key: tuple) -> tuple[tuple[str, int], ...]:
    (backbone, mask_net, mask_source, patch, pooling, rates, aspp_channels, knockouts, classes,
     resolution, device, convention) = key
    spec = ModelSpec.model_validate({
        "backbone": backbone, "head": "deeplabv3", "output_stride": 8,
        "aspp_rates": list(rates), "aspp_channels": aspp_channels,
        "selective": {"enabled": True, "mask_net": mask_net, "mask_source": mask_source,
                      "patch": patch, "pooling": pooling},
        **json.loads(knockouts),
    })
    model = build_model(spec, classes).to(device)
    # by_module holds "backbone.layer3" etc.
    count = count_flops(model, resolution, convention=convention)
    by = count.by_module
    parts = {
        "pre": sum(by.get(m, 0) for m in PRE_MODULES),
        "high": sum(by.get(m, 0) for m in HIGH_MODULES),
        "low": sum(by.get(m, 0) for m in LOW_MODULES),
        "mask": by.get(MASK_MODULE, 0),
    }
    parts["rest"] = count.total - sum(parts.values())
    parts["head"] = by.get("head", 0)  # part of rest: the ASPP head on the stride-8 map
    return tuple(parts.items())


def plain_os16_flops(spec: ModelSpec, num_classes: int, resolution: tuple[int, int],
                     device: str | None = None, convention: str = FVCORE_CONVENTION) -> int:
    """fvcore flops of ablate's plain DeepLabV3 at output stride 16 (no mask net, no
    knock-out: a selective model's paths need not exist in it)."""
    return _plain_os16_flops(spec.backbone, tuple(spec.aspp_rates), spec.aspp_channels,
                             num_classes, tuple(resolution), _device(device), convention)


@functools.lru_cache(maxsize=32)
def _plain_os16_flops(backbone: str, rates: tuple[int, ...], aspp_channels: int, classes: int,
                      resolution: tuple[int, int], device: str, convention: str) -> int:
    spec = ModelSpec.model_validate({
        "backbone": backbone, "head": "deeplabv3", "output_stride": 16,
        "aspp_rates": list(rates), "aspp_channels": aspp_channels,
    })
    return count_flops(build_model(spec, classes).to(device), resolution,
                       convention=convention).total


def mask_net_flops(selective: SelectiveSpec, resolution: tuple[int, int]) -> int:
    """fvcore flops of the mask net alone, on the ResNet tap it reads at ``resolution``."""
    from fvcore.nn import FlopCountAnalysis  # lazy: loads fvcore

    from ablate.models.selective import MASK_SOURCES, build_mask_net  # lazy: loads torchvision

    channels, stride = MASK_SOURCES[selective.mask_source]
    net = build_mask_net(selective).eval()
    tap = torch.zeros(1, channels, *(resnet_tap_size(n, stride) for n in resolution))
    analysis = FlopCountAnalysis(net, tap)
    analysis.unsupported_ops_warnings(False).uncalled_modules_warnings(False)
    return int(analysis.total())


def resnet_tap_size(n: int, stride: int) -> int:
    """Side of a torchvision ResNet feature map at ``stride`` (4 or 8) for input side ``n``.

    conv1, the max-pool and each strided stage round up: ``ceil`` at every halving.
    """
    for _ in range(int(math.log2(stride))):
        n = math.ceil(n / 2)
    return n


def mask_density_stats(masks: list[torch.Tensor]) -> dict[str, float]:
    """Mean and (population) standard deviation over images of the down-sampled share.

    Each tensor is one image's mask (H x W or 1 x H x W) or a batch (B x 1 x H x W);
    an image's density is the mean of its cells.
    """
    per_image = []
    for mask in masks:
        mask = mask.detach().float()
        if mask.dim() == 4:
            per_image.append(mask.flatten(1).mean(1))
        else:
            per_image.append(mask.mean().reshape(1))
    if not per_image:
        raise ValueError("mask_density_stats: no masks given")
    densities = torch.cat(per_image)
    return {"mean": float(densities.mean()), "std": float(densities.std(unbiased=False))}


def _device(device: str | None) -> str:
    if device is not None:
        return device
    return "cuda" if torch.cuda.is_available() else "cpu"


class _Call(nn.Module):
    """A module whose forward is ``fn(x)``; ``model`` is held so that eval()/train() reach it."""

    def __init__(self, model: nn.Module, fn) -> None:
        super().__init__()
        self.model, self.fn = model, fn

    def forward(self, x: torch.Tensor):
        return self.fn(x)


def selective_latency(model: nn.Module, resolution: tuple[int, int], device: torch.device,
                      density: float, warmup: int = 3, runs: int = 10) -> dict[str, float]:
    """Latency of a selective model at batch 1 on ``device``: sparse, dense-emulated, plain.

    ``latency_ms`` (and ``_p90``): the sparse execution (``ablate.models.sparse``, mask net
    included, kernels chosen for ``device``) with a forced random mask of
    ``round(density * cells)`` down-sampled cells, the time the trial's mask buys.
    ``latency_ms_dense``: the model's dense emulation (both paths everywhere). A model
    trained with ``execution = "dense"`` is timed sparsely too: the time depends on the
    density only (its outputs would differ, see ``ablate.models.sparse``).
    ``latency_ms_os8``: the plain output-stride-8 DeepLabV3 the model extends (its stem to
    layer4 on the dilated path and its head, no mask net), the fastest of NCHW,
    channels-last and channels-last with batch norm folded (the sparse execution folds it
    too, so the ratio is what the mask saves), and ``latency_ratio_os8`` =
    ``latency_ms / latency_ms_os8``. A saving
    is only ever this ratio of two times measured on the trial's own device: effective
    GFLOPs count operations, not time, and the sparse execution loses on some devices
    and densities (docs/models.md).
    """
    sel = model.selective
    grid = mask_grid(sel.patch, tuple(resnet_tap_size(n, 8) for n in resolution))
    mask = forced_mask(grid, density).to(device)
    sparse = SparseSelective(model)
    if sel.execution == "sparse":
        dense = _Call(model, lambda x: forward_mixed(model, x))
    else:
        dense = model
    fast = measure_latency(_Call(model, lambda x: sparse(x, mask)), resolution, device,
                           warmup, runs)
    slow = measure_latency(dense, resolution, device, warmup, runs)
    plain = min((measure_latency(_Call(net, lambda x, n=net, f=fmt: _plain_os8(
                    n, x.contiguous(memory_format=f))), resolution, device, warmup, runs)
                 for net, fmt in _layouts(model)), key=lambda figures: figures["latency_ms"])
    return {"latency_ms": fast["latency_ms"], "latency_ms_p90": fast["latency_ms_p90"],
            "latency_ms_dense": slow["latency_ms"], "latency_ms_dense_p90": slow["latency_ms_p90"],
            "latency_ms_os8": plain["latency_ms"],
            "latency_ratio_os8": fast["latency_ms"] / plain["latency_ms"],
            "latency_density": float(density)}


def _plain_os8(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The selective model's dilated path alone: the plain OS-8 DeepLabV3 (no mask net)."""
    backbone = model.backbone
    out8 = model.head({"out": backbone.high(backbone.early(x)["layer2"])[1]})
    return torch.nn.functional.interpolate(out8, size=x.shape[-2:], mode="bilinear",
                                           align_corners=False)


def _layouts(model: nn.Module) -> list[tuple[nn.Module, torch.memory_format]]:
    """The model in NCHW, a channels-last copy and a channels-last copy with batch norm
    folded (``fold_batch_norm``), each with its input's layout."""
    channels_last = copy.deepcopy(model).to(memory_format=torch.channels_last)
    folded = copy.deepcopy(model).eval()
    fold_batch_norm(folded)
    folded.to(memory_format=torch.channels_last)
    return [(model, torch.contiguous_format), (channels_last, torch.channels_last),
            (folded, torch.channels_last)]
