"""Content-adaptive (mask-based selective) down-sampling for DeepLabV3-ResNet (after Hesse et al., CVPR-W 2023).

A small mask net reads a ResNet feature map and decides, per ``d x d`` patch of the
stride-8 map, whether layer3/layer4 run at full resolution (mask 0: the dilated
output-stride-8 path) or down-sampled (mask 1: the output-stride-``8d`` path). The
output keeps the dilated network's spatial size; the compute saved grows with the
share of down-sampled cells.

Training emulates the conditional network densely, as the baseline (Hesse et al.,
CVPR-W 2023, visinf/cad) does: layer3 and layer4 run twice with shared weights,

* high path: layer3/layer4 of the output-stride-8 network (dilation 1/2 and 2/4),
* low path: the layer2 output is first down-sampled by ``pool_patches`` (``fixed``
  keeps the top-left pixel of each patch, ``avg``/``max`` pool it), then the same
  layer3/layer4 weights run on that stride-``8d`` map with every stride 1 and each
  3x3 dilation divided by ``d`` (floor, at least 1). For ``d = 2`` these are exactly
  the output-stride-16 network's dilations (layer3 all 1; layer4 1, 2, 2), so each
  conv sees the same neighbourhood in image pixels as in that network. The one
  difference from torchvision's OS-16 ResNet is layer3's first block: there the
  stride-2 sits inside the block (3x3 conv and 1x1 shortcut); here the block input
  is already pooled. For ``fixed`` the shortcut is identical (a strided 1x1 conv
  samples the top-left pixel), the 1x1 conv1 is identical, and the 3x3 taps are
  spaced one low-res cell (2 full-res pixels) apart instead of one full-res pixel,

and blends once, after layer4 (the baseline's blend point):
``features = mask * low + (1 - mask) * high`` with the mask and the low-path output
repeated ``d`` times along each axis (nearest) to the stride-8 size. The ASPP head
(torchvision ``DeepLabHead``) runs on the blended stride-8 map. The auxiliary FCN
head, when enabled, reads the high path's layer3 output. ``ablate.cost.selective``
counts the conditional cost with exactly this decomposition.

Weight sharing: the low path's modules are copies of layer3/layer4 whose parameters
(conv weights, BN scale and shift) are the very same ``nn.Parameter`` objects, so
``parameters()`` yields each once and one optimiser step updates both paths. BN
running statistics stay separate per path (as in the baseline): pooled features have
other statistics, and shared running averages would mix the two.

Mask sampling: Gumbel-softmax over two logits per cell (index 1 = down-sample) with
temperature ``tau``, hard with a straight-through gradient while training; ``tau`` is
annealed geometrically to ``tau_final`` when that is set (the trainer calls
``set_progress``). At evaluation the mask is the deterministic argmax of the logits,
with no noise. The baseline's public code samples Gumbel noise at test time too; we
do not, so repeated evaluations of one checkpoint give one answer.

All of the above is ``execution = "dense"``. With ``execution = "sparse"`` the model
gets a tied ``low_head`` and runs the mixed-resolution network of
``ablate.models.sparse``: its dense emulation while training, its sparse kernels in
evaluation, where compute falls with the share of down-sampled cells.
"""

from __future__ import annotations

import copy
from collections import OrderedDict

import torch
import torchvision
from torch import nn
from torch.nn import functional as F

from ablate.errors import UserInputError
from ablate.models.heads import AuxHead, DeepLabV3Head
from ablate.models.masking import (
    gumbel_mask,
    low_twin_filler,
    pool_patches,
    tie_parameters,
    upsample_mask,
)
from ablate.models.sparse import SparseSelective, forward_mixed, low_head_copy
from ablate.recipes.schema import ModelSpec, SelectiveSpec

RESNETS = ("resnet50", "resnet101")
# ResNet feature taps the mask net may read: (channels, stride)
MASK_SOURCES = {"layer1": (256, 4), "layer2": (512, 8)}
MASK_WIDTHS = (128, 64, 64)  # the baseline's mask net: 512->128->64 (pool) 64->2


# -- helpers (pure tensor functions) -----------------------------------------------------


def annealed_tau(tau: float, tau_final: float | None, fraction: float) -> float:
    """Geometric interpolation from ``tau`` (fraction 0) to ``tau_final`` (fraction 1)."""
    if tau_final is None:
        return tau
    fraction = min(max(fraction, 0.0), 1.0)
    return tau * (tau_final / tau) ** fraction


def selective_losses(mask: torch.Tensor, spec: SelectiveSpec) -> dict[str, torch.Tensor]:
    """The mask's extra loss. ``r`` = share of down-sampled cells over the whole batch.

    ``target``: ``(r - t)^2`` (the baseline). ``weight``: ``lambda * (1 - r)``, lambda
    times the share of full-resolution cells (the letter's sparsity loss).
    """
    r = mask.float().mean()
    if spec.loss == "target":
        return {"mask_target": (r - spec.target) ** 2}
    return {"mask_sparsity": spec.sparsity_weight * (1.0 - r)}


# -- modules ----------------------------------------------------------------------------


class SeparableConv2d(nn.Sequential):
    """Depthwise 3x3 then pointwise 1x1, both with bias: the light mask net's conv."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__(OrderedDict(
            depthwise=nn.Conv2d(in_channels, in_channels, 3, padding=1, groups=in_channels),
            pointwise=nn.Conv2d(in_channels, out_channels, 1),
        ))


def _conv3x3(in_channels: int, out_channels: int, kind: str) -> nn.Module:
    if kind == "dwsep":
        return SeparableConv2d(in_channels, out_channels)
    return nn.Conv2d(in_channels, out_channels, 3, padding=1)


class MaskNet(nn.Sequential):
    """Two logits per cell of the mask grid; convs with biases, no batch norm.

    ``conv`` (baseline): 3x3 C->128, ReLU, 3x3 128->64, ReLU, max-pool, 3x3 64->64,
    ReLU, 3x3 64->2. ``dwsep`` (the letter's light net): each 3x3 is depthwise 3x3 +
    pointwise 1x1. ``pool`` takes the input's stride to the mask grid's (2 for layer2
    and patch 2, the stride-16 grid).
    """

    def __init__(self, in_channels: int, kind: str, pool: int) -> None:
        wide, mid, narrow = MASK_WIDTHS
        super().__init__(OrderedDict(
            conv1=_conv3x3(in_channels, wide, kind), relu1=nn.ReLU(inplace=True),
            conv2=_conv3x3(wide, mid, kind), relu2=nn.ReLU(inplace=True),
            pool=nn.MaxPool2d(pool, ceil_mode=True),
            conv3=_conv3x3(mid, narrow, kind), relu3=nn.ReLU(inplace=True),
            conv4=_conv3x3(narrow, 2, kind),
        ))


def build_mask_net(spec: SelectiveSpec) -> MaskNet:
    """The mask net for ``spec``: its input tap, kind and pooling to the mask grid."""
    channels, stride = MASK_SOURCES[spec.mask_source]
    return MaskNet(channels, spec.mask_net, pool=8 * spec.patch // stride)


def _low_path_copy(stage: nn.Sequential, d: int) -> nn.Sequential:
    """A copy of an output-stride-8 stage for the stride-``8d`` map, parameters tied.

    Every stride is already 1 in the dilated stage; each 3x3 dilation ``k`` becomes
    ``max(1, k // d)``. Parameters are shared objects; buffers (BN running stats) are
    the copy's own.
    """
    low = copy.deepcopy(stage)
    for block in low:
        k = max(1, block.conv2.dilation[0] // d)
        block.conv2.dilation, block.conv2.padding = (k, k), (k, k)
    tie_parameters(stage, low)
    return low


# a plain ResNet's state dict (ImageNet weights, an OS-8 checkpoint) fills the low path too
_fill_low_path = low_twin_filler("layer3.", "layer4.")


class DualPathResNet(nn.Module):
    """A ResNet whose layer3/layer4 exist twice: dilated (stride 8) and down-sampled.

    Module names follow torchvision's ResNet (``conv1`` ... ``layer4``), so ImageNet
    weights load by name; ``low_layer3``/``low_layer4`` share those parameters, and
    loading a state dict without them fills their BN statistics (``_fill_low_path``).
    """

    def __init__(self, arch: str, patch: int, pooling: str) -> None:
        super().__init__()
        resnet = getattr(torchvision.models, arch)(
            weights=None, replace_stride_with_dilation=[False, True, True])
        self.conv1, self.bn1, self.relu, self.maxpool = (
            resnet.conv1, resnet.bn1, resnet.relu, resnet.maxpool)
        self.layer1, self.layer2 = resnet.layer1, resnet.layer2
        self.layer3, self.layer4 = resnet.layer3, resnet.layer4
        self.low_layer3 = _low_path_copy(resnet.layer3, patch)
        self.low_layer4 = _low_path_copy(resnet.layer4, patch)
        self.patch, self.pooling = patch, pooling
        self.register_load_state_dict_pre_hook(_fill_low_path)

    def early(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        layer1 = self.layer1(x)
        return {"layer1": layer1, "layer2": self.layer2(layer1)}

    def high(self, layer2: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(layer3, layer4) outputs of the dilated path, both at stride 8."""
        layer3 = self.layer3(layer2)
        return layer3, self.layer4(layer3)

    def low(self, layer2: torch.Tensor) -> torch.Tensor:
        """layer4 output of the down-sampled path, at stride ``8 * patch``."""
        pooled = pool_patches(layer2, self.patch, self.pooling)
        return self.low_layer4(self.low_layer3(pooled))


class SelectiveDeepLabV3(nn.Module):
    """DeepLabV3 at output stride 8 with a learned per-patch down-sampling mask.

    ``forward`` returns ``out`` (logits at input size), ``aux`` (with the auxiliary
    head), ``mask`` (B x 1 x Hc x Wc, float, 1 = down-sampled) and ``mask_logits``
    (B x 2 x Hc x Wc) on the mask grid, ``Hc = ceil(H / 8 / patch)``.
    """

    def __init__(self, spec: ModelSpec, num_classes: int) -> None:
        super().__init__()
        sel = spec.selective
        self.selective = sel
        self.backbone = DualPathResNet(spec.backbone, sel.patch, sel.pooling)
        self.mask_net = build_mask_net(sel)
        self.head = DeepLabV3Head({"out": 2048}, num_classes, spec.aspp_rates,
                                  spec.aspp_channels)
        self.aux_head = AuxHead({"aux": 1024}, num_classes) if spec.aux_head else None
        self.tau = sel.tau
        if sel.execution == "sparse":  # the mixed-resolution network (ablate.models.sparse)
            self.low_head = low_head_copy(self.head, sel.patch)
            self.register_load_state_dict_pre_hook(low_twin_filler("head."))

    def set_progress(self, fraction: float) -> None:
        """Training progress in [0, 1]; anneals the Gumbel temperature when configured."""
        self.tau = annealed_tau(self.selective.tau, self.selective.tau_final, fraction)

    def forward_features(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Blended stride-8 ``features``, the ``layer3`` aux tap, ``mask`` and ``mask_logits``."""
        taps = self.backbone.early(x)
        logits = self.mask_net(taps[self.selective.mask_source])
        mask = gumbel_mask(logits, self.tau, hard=True, training=self.training)
        layer3, high = self.backbone.high(taps["layer2"])
        d, size = self.selective.patch, high.shape[-2:]
        low = upsample_mask(self.backbone.low(taps["layer2"]), d, size)
        pixel_mask = upsample_mask(mask, d, size)
        features = pixel_mask * low + (1 - pixel_mask) * high
        return {"features": features, "layer3": layer3, "mask": mask, "mask_logits": logits}

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        if self.selective.execution == "sparse":
            # training: the mixed network's dense emulation; evaluation: its sparse kernels
            return forward_mixed(self, x) if self.training else SparseSelective(self)(x)
        size = x.shape[-2:]
        feats = self.forward_features(x)
        out = {"out": _resize(self.head({"out": feats["features"]}), size)}
        if self.aux_head is not None:
            out["aux"] = _resize(self.aux_head({"aux": feats["layer3"]}), size)
        out["mask"], out["mask_logits"] = feats["mask"], feats["mask_logits"]
        return out

    def extra_losses(self, outputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The mask loss the trainer adds to the cross-entropy (``selective_losses``)."""
        return selective_losses(outputs["mask"], self.selective)


def _resize(logits: torch.Tensor, size) -> torch.Tensor:
    return F.interpolate(logits, size=size, mode="bilinear", align_corners=False)


def check_selective_spec(spec: ModelSpec) -> None:
    """Raise ``UserInputError`` (one line, naming the key) for an unsupported spec."""
    if spec.backbone not in RESNETS:
        raise UserInputError(
            f"model.backbone: selective down-sampling needs {' or '.join(RESNETS)}, "
            f"got {spec.backbone!r}")
    if spec.head != "deeplabv3":
        raise UserInputError(
            f"model.head: selective down-sampling needs 'deeplabv3', got {spec.head!r}")
    if spec.output_stride != 8:
        raise UserInputError(
            f"model.output_stride: selective down-sampling needs 8, got {spec.output_stride}")
    patch = spec.selective.patch
    if patch < 2:
        raise UserInputError(f"model.selective.patch: must be at least 2, got {patch}")
    if spec.selective.execution == "sparse" and (spec.remove or spec.replace):
        # its kernels read the modules' weights, so a knock-out's stand-in is never called
        raise UserInputError("model.selective.execution: 'sparse' cannot run knocked-out "
                             "modules (model.remove/model.replace); set it to 'dense'")


def build_selective_deeplabv3(spec: ModelSpec, num_classes: int) -> SelectiveDeepLabV3:
    """DeepLabV3-ResNet50/101 at output stride 8 with mask-based selective down-sampling."""
    check_selective_spec(spec)
    return SelectiveDeepLabV3(spec, num_classes)
