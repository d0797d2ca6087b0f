"""Sparse execution of selective down-sampling: every cell is computed once, at its resolution.

The dense emulation of ``ablate.models.selective`` (``execution = "dense"``) runs layer3,
layer4 and the ASPP head on the whole stride-8 map whatever the mask says, so a mask
saves nothing. With ``execution = "sparse"`` the layers after the mask run as a
*mixed-resolution network*: each mask cell holds either full-resolution features
(mask 0: ``d x d`` pixels of the stride-8 map, dilated path) or one down-sampled
feature (mask 1: one cell of the stride-``8d`` map, low path, each 3x3 dilation
divided by ``d``), and only those are computed.

Why the function changes. An exact sparse copy of the dense emulation is out of reach:
the dilated layer3 + layer4 of ResNet-50 see 21 stride-8 pixels to each side (sum of
the 3x3 dilations) and the ASPP 36 more, so a kept cell would need its neighbours'
full-resolution features almost everywhere. Instead the two paths exchange features
at every 3x3 convolution (the only layers that read neighbours; 1x1 convs, batch norm,
ReLU and the residual sums are per pixel): a full-resolution conv that reads a
down-sampled cell takes that cell's low-path feature (nearest up-sampling), and a
low-path conv that reads a full-resolution cell takes that cell's pooled features
(``pool_patches`` with the model's pooling). The blend points are the input of
``conv2`` in every layer3/layer4 bottleneck, the ASPP input, the head's 3x3 conv input
and the logits (``mix``). The global-pooling branch of the ASPP averages the blended
map of its own path. The head exists twice with tied weights (``low_head``: the ASPP
rates divided by ``d``, own batch-norm statistics), as layer3/layer4 do.

What is equal: ``forward_mixed`` (dense, differentiable: the training mode of
``execution = "sparse"``) and ``SparseSelective`` (gathers, evaluation) compute the same
function; they differ by float summation order only (tests: 1e-4 relative). At mask
density 0 both are the plain output-stride-8 DeepLabV3 (+ the mask net), at density 1
the model's low path, i.e. the "output-stride-16 path" of ``ablate.cost.selective``
with the ASPP at stride 16 too, up-sampled. What is not equal: the dense emulation's
function (one blend after layer4, the ASPP on the blended stride-8 map); a model
trained with ``execution = "dense"`` and run sparsely changes its output (README gives
the measured mIoU difference).

How the sparse execution runs (batch ``B``; rows = positions, channels last; both
paths' rows in one tensor, ``[high | low]``): batch norm is folded into every conv
(``ablate.models.fused``); 1x1 convs are GEMMs on rows, ReLU and residual sums one op
over all rows. The paths share every weight and batch-norm affine (``check_tied``) and
keep their own statistics, so each conv is one GEMM over both paths' rows with the high
path's norm folded in, and the low rows are turned to their own norm in one pass after
it (``fused.fold_pair``): half the GEMMs, and none of them on the low path's few rows
alone. Each 3x3 conv reads a table of rows in which a neighbour in the other
path's cells is that path's row (the blend above) and a neighbour outside the map the
zero row (``ablate.models.rowsparse.SparseGrid``). layer3/layer4 and the head's 3x3
convs run per path either as gathered tiles through the library's dense convolution
(``ablate.models.blocksparse``, after SBNet) or as a gather + GEMM per row (one GEMM for
both paths' rows where both take rows), chosen per mask and path by the device's
measured crossover. The ASPP's dilated 2048 -> 256 convs
run one GEMM per tap over the outputs whose neighbour is inside the map: their rates
reach across most of a stride-8 map, so a tile's halo would be most of the map, and
taps outside it are skipped as the dense convolution skips them. Compute is linear in
the share of down-sampled cells, apart from the positions a tile computes and drops.
"""

from __future__ import annotations

import copy
import weakref

import torch
from torch import nn
from torch.nn import functional as F

from ablate.models.blocksparse import KERNELS, Conv3x3
from ablate.models.fused import fold_batch_norm, fold_pair, gemm, pointwise
from ablate.models.masking import gumbel_mask, pool_patches, tie_parameters, upsample_mask
from ablate.models.rowsparse import CENTRE, SparseGrid, accumulate_taps, im2col_rows

# -- tied low-resolution head --------------------------------------------------------


def low_head_copy(head: nn.Module, d: int) -> nn.Module:
    """The ASPP head for the stride-``8d`` map: rates ``max(1, r // d)``, weights tied."""
    low = copy.deepcopy(head)
    for branch in low.aspp.convs[1:-1]:
        k = max(1, branch[0].dilation[0] // d)
        branch[0].dilation, branch[0].padding = (k, k), (k, k)
    tie_parameters(head, low)
    return low


# -- dense emulation of the mixed-resolution network (training) ----------------------


class Mixer:
    """Exchange of features between the paths at a blend point, on dense maps."""

    def __init__(self, mask: torch.Tensor, size: tuple[int, int], d: int, pooling: str) -> None:
        self.mask, self.d, self.size, self.pooling = mask, d, size, pooling
        self.pixel_mask = upsample_mask(mask, d, size)

    def __call__(self, high: torch.Tensor, low: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        m8, m = self.pixel_mask, self.mask
        up = upsample_mask(low, self.d, self.size)
        return (m8 * up + (1 - m8) * high,
                m * low + (1 - m) * pool_patches(high, self.d, self.pooling))

    def logits(self, high: torch.Tensor, low: torch.Tensor) -> torch.Tensor:
        m8 = self.pixel_mask
        return m8 * upsample_mask(low, self.d, self.size) + (1 - m8) * high


def _mixed_bottleneck(hb: nn.Module, lb: nn.Module, h: torch.Tensor, lo: torch.Tensor,
                      mix: Mixer) -> tuple[torch.Tensor, torch.Tensor]:
    h1, l1 = mix(hb.relu(hb.bn1(hb.conv1(h))), lb.relu(lb.bn1(lb.conv1(lo))))
    outs = []
    for block, x, x1 in ((hb, h, h1), (lb, lo, l1)):
        y = block.bn3(block.conv3(block.relu(block.bn2(block.conv2(x1)))))
        shortcut = block.downsample(x) if block.downsample is not None else x
        outs.append(F.relu(y + shortcut))
    return outs[0], outs[1]


def forward_mixed(model: nn.Module, x: torch.Tensor, mask: torch.Tensor | None = None
                  ) -> dict[str, torch.Tensor]:
    """The mixed-resolution network on dense maps (``SelectiveDeepLabV3`` with a ``low_head``).

    ``mask`` (B x 1 x Hc x Wc, 1 = down-sample) overrides the mask net's. Returns
    ``out``, ``aux`` (high path's layer3, when the model has the head), ``mask``,
    ``mask_logits``, as ``SelectiveDeepLabV3.forward``.
    """
    sel, bb = model.selective, model.backbone
    taps = bb.early(x)
    logits = model.mask_net(taps[sel.mask_source])
    if mask is None:
        mask = gumbel_mask(logits, model.tau, hard=True, training=model.training)
    h = taps["layer2"]
    lo = pool_patches(h, sel.patch, sel.pooling)
    mix = Mixer(mask, h.shape[-2:], sel.patch, sel.pooling)
    for hb, lb in zip(bb.layer3, bb.low_layer3):
        h, lo = _mixed_bottleneck(hb, lb, h, lo, mix)
    layer3 = h
    for hb, lb in zip(bb.layer4, bb.low_layer4):
        h, lo = _mixed_bottleneck(hb, lb, h, lo, mix)
    head, low_head = model.head, model.low_head
    h, lo = mix(h, lo)
    h, lo = mix(head.aspp(h), low_head.aspp(lo))
    out8 = mix.logits(head.classifier(head.conv(h)), low_head.classifier(low_head.conv(lo)))
    out = {"out": F.interpolate(out8, size=x.shape[-2:], mode="bilinear", align_corners=False)}
    if model.aux_head is not None:
        aux = model.aux_head({"aux": layer3})
        out["aux"] = F.interpolate(aux, size=x.shape[-2:], mode="bilinear", align_corners=False)
    out["mask"], out["mask_logits"] = mask, logits
    return out


# -- sparse execution (evaluation) -----------------------------------------------------


def _pair(conv: nn.Conv2d, bn: nn.BatchNorm2d, twin: nn.BatchNorm2d, layout: str = "matrix"
          ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """``fused.fold_pair``: the paths' norms share their affine (``check_tied``; a
    parameter replaced after the executor was made is refused here)."""
    pair = fold_pair(conv, bn, twin, layout)
    if pair is None:
        raise ValueError("sparse execution needs the low path's batch norm to share the high "
                         "path's weight and bias (tied), as SelectiveDeepLabV3 makes it")
    return pair


def _correct(rows: torch.Tensor, n_high: int, ratio: torch.Tensor, shift: torch.Tensor
             ) -> torch.Tensor:
    """The low path's rows of a GEMM over both paths, from the high path's batch norm to
    its own (``fused.fold_pair``): one pass over the low rows."""
    rows[n_high:].mul_(ratio).add_(shift)
    return rows


def _pointwise_both(grid: SparseGrid, rows: torch.Tensor, conv: nn.Conv2d, bn: nn.BatchNorm2d,
                    twin: nn.BatchNorm2d, out: torch.Tensor | None = None) -> torch.Tensor:
    """A 1x1 conv + batch norm of both paths on ``[high | low]`` rows, no ReLU: one GEMM."""
    weight, bias, ratio, shift = _pair(conv, bn, twin)
    return _correct(gemm(rows, weight, bias, out=out), grid.n_active, ratio, shift)


def _conv3x3_both(grid: SparseGrid, convs: dict[str, Conv3x3], table: torch.Tensor,
                  high: tuple[nn.Conv2d, nn.BatchNorm2d], low: tuple[nn.Conv2d, nn.BatchNorm2d]
                  ) -> torch.Tensor:
    """A 3x3 conv + batch norm of both paths (no ReLU) into new ``[high | low]`` rows: one
    im2col GEMM over both paths' taps where both run on rows, else each path's kernel
    (``Conv3x3``: gathered tiles for one of them)."""
    (hc, hn), (lc, ln) = high, low
    if convs["high"].kind == convs["low"].kind == "rows":
        weight, bias, ratio, shift = _pair(hc, hn, ln, "im2col")
        taps = grid.taps_both(hc.dilation[0], lc.dilation[0])
        return _correct(im2col_rows(table, taps, weight, bias), grid.n_active, ratio, shift)
    n_a, n = grid.n_active, grid.n_active + grid.n_low
    mid = table.new_empty(n, hc.out_channels)
    convs["high"](table, hc, hn, out=mid[:n_a])
    convs["low"](table, lc, ln, out=mid[n_a:])
    return mid


def _bottleneck(grid: SparseGrid, convs: dict[str, Conv3x3], hb: nn.Module, lb: nn.Module,
                rows: torch.Tensor) -> torch.Tensor:
    """One layer3/layer4 bottleneck of both paths on ``[high | low]`` rows (BN folded).

    The paths share every weight and batch-norm affine (their statistics are their own),
    so each conv is one GEMM over both paths' rows, the high path's norm folded in and the
    low rows corrected after it (``fused.fold_pair``); each ReLU and sum is one op over
    all rows (fewer, larger ops: on a busy CPU every op waits for all of its threads, on
    a GPU each is a launch).
    """
    n, width = len(rows), hb.conv1.out_channels
    table = rows.new_empty(grid.n_rows, width)  # [high | low | pooled | zero], as conv2 reads
    _pointwise_both(grid, rows, hb.conv1, hb.bn1, lb.bn1, out=table[:n])
    table[:n].relu_()
    table[-1] = 0
    if grid.pooled and grid.n_low:
        table[n:-1] = grid.pool(table[:grid.n_active])
    mid = _conv3x3_both(grid, convs, table, (hb.conv2, hb.bn2), (lb.conv2, lb.bn2)).relu_()
    if hb.downsample is not None:
        out = _pointwise_both(grid, rows, hb.downsample[0], hb.downsample[1], lb.downsample[1])
    else:  # the identity shortcut: the block's input rows, dead after it
        out = rows
    out += _pointwise_both(grid, mid, hb.conv3, hb.bn3, lb.bn3)
    return out.relu_()


def _aspp(grid: SparseGrid, table: torch.Tensor, aspp: nn.Module, low_aspp: nn.Module,
          rows: torch.Tensor, means: tuple[torch.Tensor, torch.Tensor], out: torch.Tensor
          ) -> torch.Tensor:
    """torchvision's ASPP of both paths on ``[high | low]`` rows: its projection, before
    ReLU, into ``out``.

    Each branch is one GEMM per tap over both paths' rows (the high path's norm folded,
    the low rows corrected after the branch's sum) and accumulates in its own contiguous
    rows (a scatter into a column slice is ten times slower). The 1x1 branch and the
    dilated branches' centre taps read each output's own row: no gather. The other taps
    run one GEMM each over the outputs whose neighbour is inside the map (both paths'
    pairs, ``SparseGrid.tap_pairs``), added in one scatter (``accumulate_taps``).
    The pooling branch is constant per image and path, so its share of the projection is
    one row per image and path.
    """
    n_a = grid.n_active
    branches, low_branches = aspp.convs, low_aspp.convs
    dilated = list(zip(branches[1:-1], low_branches[1:-1]))
    width = branches[0][0].out_channels
    acc = rows.new_empty(len(dilated) + 1, len(rows), width)
    _pointwise_both(grid, rows, branches[0][0], branches[0][1], low_branches[0][1], out=acc[0])
    for j, (branch, low) in enumerate(dilated, start=1):
        weight, bias, ratio, shift = _pair(branch[0], branch[1], low[1], "taps")
        gemm(rows, weight[CENTRE], bias, out=acc[j])
        pairs = grid.tap_pairs(branch[0].dilation[0], low[0].dilation[0])
        _correct(accumulate_taps(acc[j], table, pairs, weight), n_a, ratio, shift)
    acc.relu_()
    # the pooling branch (AdaptiveAvgPool2d, 1x1 conv, BN, ReLU) per image and path
    pooling, low_pooling = branches[-1], low_branches[-1]
    pooled = torch.cat([pointwise(means[0], pooling[1], pooling[2]),
                        pointwise(means[1], low_pooling[1], low_pooling[2])])
    project, project_b, ratio, shift = _pair(aspp.project[0], aspp.project[1],
                                             low_aspp.project[1])
    pooled = pooled @ project[len(acc) * width:]  # 2B rows: the high path's, the low's
    gemm(acc[0], project[:width], project_b, out=out)
    out += pooled[grid.batch_both]
    for j in range(1, len(acc)):
        out += gemm(acc[j], project[j * width:(j + 1) * width])
    return _correct(out, n_a, ratio, shift)


def _head(grid: SparseGrid, convs: dict[str, Conv3x3], head: nn.Module, low_head: nn.Module,
          rows: torch.Tensor) -> torch.Tensor:
    """The ASPP head of both paths: ``[high | low]`` rows of logits."""
    n, n_a = len(rows), grid.n_active
    table = grid.table(rows[:n_a], rows[n_a:])
    means = grid.means(rows[:n_a], rows[n_a:])  # the ASPP's global pooling, per path
    projected = rows.new_empty(grid.n_rows, head.aspp.project[0].out_channels)
    _aspp(grid, table, head.aspp, low_head.aspp, rows, means, out=projected[:n]).relu_()
    projected[-1] = 0
    if grid.pooled and grid.n_low:
        projected[n:-1] = grid.pool(projected[:n_a])
    mid = _conv3x3_both(grid, convs, projected, (head.conv[0], head.conv[1]),
                        (low_head.conv[0], low_head.conv[1])).relu_()
    return pointwise(mid, head.classifier, relu=False)  # tied weight and bias, no norm


def check_tied(model: nn.Module, low_head: nn.Module) -> None:
    """Refuse a model whose low path does not share the high path's parameters (every
    weight and batch-norm affine; the statistics are each path's own), which the sparse
    kernels rely on to run both paths in one GEMM. ``SelectiveDeepLabV3`` and
    ``low_head_copy`` tie them (``masking.tie_parameters``)."""
    bb = model.backbone
    for high, low in ((bb.layer3, bb.low_layer3), (bb.layer4, bb.low_layer4),
                      (model.head, low_head)):
        a_params = list(high.named_parameters(remove_duplicate=False))
        b_params = list(low.named_parameters(remove_duplicate=False))
        if len(a_params) != len(b_params):
            raise ValueError(f"sparse execution needs the low path to be the high path with "
                             f"its parameters tied, as SelectiveDeepLabV3 makes it; it has "
                             f"{len(b_params)} parameters, the high path {len(a_params)}")
        for (name, a), (_, b) in zip(a_params, b_params):
            if a is not b:
                raise ValueError(f"sparse execution needs the low path's {name} to be the "
                                 "high path's parameter (tied), as SelectiveDeepLabV3 makes it")


# model -> (its tensors' versions, folded copy, folded low head): SparseSelective.plain
_plain: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


class SparseSelective:
    """Evaluation-only sparse execution of a ``SelectiveDeepLabV3`` (its weights, read per call).

    ``kernels`` picks the 3x3 convs of each path: ``tiles`` (gathered tiles through the
    library's dense convolution, ``ablate.models.blocksparse``), ``rows`` (gather + GEMM
    per row, ``ablate.models.rowsparse``) or ``auto``: per mask and path, whichever the
    device's measured crossover says is faster (``chosen`` holds the last call's). A
    model trained with ``execution = "dense"`` has no ``low_head``; one is made here
    (weights tied, batch-norm statistics copied from ``head``) so that its mask's latency
    can be measured. A mask with no down-sampled cell (or only such cells) runs the plain
    dilated network (or the plain low path) with the library's dense convs: the same
    function, and faster; ``shortcuts=False`` always runs the sparse kernels. On CPU the
    input goes channels-last, oneDNN's faster layout for the layers before the mask.

    Batch norm is folded throughout: the sparse kernels fold it per conv
    (``ablate.models.fused.fold``), and the layers they do not run (stem to layer2, the
    mask net, the shortcuts' plain networks) run on a copy of the model with every batch
    norm folded (``plain``), as a deployment runs it; ``ablate.cost.selective`` times
    the plain OS-8 reference with batch norm folded too, so that a ratio of the two is
    what the mask saves, not what folding does.
    """

    def __init__(self, model: nn.Module, shortcuts: bool = True, kernels: str = "auto") -> None:
        if kernels not in KERNELS:
            raise ValueError(f"unknown kernels {kernels!r}; allowed: {', '.join(KERNELS)}")
        self.model, self.shortcuts, self.kernels = model, shortcuts, kernels
        self.low_head = getattr(model, "low_head", None)
        if self.low_head is None:  # not the model's submodule: its eval() does not reach it
            self.low_head = low_head_copy(model.head, model.selective.patch).eval()
        check_tied(model, self.low_head)
        self.chosen: dict[str, str] = {}

    def plain(self) -> tuple[nn.Module, nn.Module]:
        """The model and its low head with batch norm folded (``fold_batch_norm``), in
        evaluation mode, channels-last on CPU. Kept per model and made again when any of
        its weights or statistics changes (an optimiser step, ``load_state_dict``, ``.to``);
        a model without a ``low_head`` gets one as in ``__init__``."""
        tensors = [*self.model.parameters(), *self.model.buffers()]
        key = tuple((id(t), t._version, t.data_ptr()) for t in tensors)
        kept = _plain.get(self.model)
        if kept is None or kept[0] != key:
            model = copy.deepcopy(self.model).eval()
            low_head = getattr(model, "low_head", None)
            if low_head is None:
                low_head = low_head_copy(model.head, model.selective.patch).eval()
                fold_batch_norm(low_head)
            fold_batch_norm(model)
            if tensors and tensors[0].device.type == "cpu":
                model.to(memory_format=torch.channels_last)
                low_head.to(memory_format=torch.channels_last)
            kept = _plain[self.model] = (key, model, low_head)
        return kept[1], kept[2]

    @torch.no_grad()
    def __call__(self, x: torch.Tensor, mask: torch.Tensor | None = None
                 ) -> dict[str, torch.Tensor]:
        """``out`` (logits at input size), ``mask`` and ``mask_logits``; ``mask`` overrides the net's."""
        model = self.model
        sel, bb, d = model.selective, model.backbone, model.selective.patch
        plain, plain_low_head = self.plain()
        if x.device.type == "cpu":
            x = x.contiguous(memory_format=torch.channels_last)
        taps = plain.backbone.early(x)
        logits = plain.mask_net(taps[sel.mask_source])
        if mask is None:
            mask = gumbel_mask(logits, model.tau, hard=True, training=False)
        down = mask[:, 0] > 0.5
        if self.shortcuts and not down.any():
            self.chosen = {"high": "dense"}
            out8 = plain.head({"out": plain.backbone.high(taps["layer2"])[1]})
            return _outputs(out8, x, mask, logits)
        if self.shortcuts and down.all():
            self.chosen = {"low": "dense"}
            out8 = plain_low_head({"out": plain.backbone.low(taps["layer2"])})
            return _outputs(upsample_mask(out8, d, taps["layer2"].shape[-2:]), x, mask, logits)
        # the kernels write into preallocated tensors (out=): one dtype, no autocast
        layer2 = taps["layer2"].to(model.head.classifier.weight.dtype)
        B, C, H, W = layer2.shape
        grid = SparseGrid(down, (H, W), d, sel.pooling)
        convs = {path: Conv3x3(grid, path, self.kernels) for path in ("high", "low")}
        self.chosen = {path: conv.kind for path, conv in convs.items()}
        with torch.autocast(x.device.type, enabled=False):
            pooled = pool_patches(layer2, d, sel.pooling)
            rows = torch.cat([layer2.permute(0, 2, 3, 1).reshape(-1, C)[grid.active],
                              pooled.permute(0, 2, 3, 1).reshape(-1, C)[grid.low]])
            for hb, lb in zip([*bb.layer3, *bb.layer4], [*bb.low_layer3, *bb.low_layer4]):
                rows = _bottleneck(grid, convs, hb, lb, rows)
            logits = _head(grid, convs, model.head, self.low_head, rows)
        out8 = logits[grid.row_high].view(B, H, W, -1).permute(0, 3, 1, 2)
        return _outputs(out8, x, mask, logits)


def _outputs(out8: torch.Tensor, x: torch.Tensor, mask: torch.Tensor, logits: torch.Tensor
             ) -> dict[str, torch.Tensor]:
    out = F.interpolate(out8, size=x.shape[-2:], mode="bilinear", align_corners=False)
    return {"out": out, "mask": mask, "mask_logits": logits}


# -- forced masks (benchmarks, latency at a measured density) -------------------------


def forced_mask(grid: tuple[int, int], density: float, layout: str = "random",
                seed: int = 0, batch: int = 1) -> torch.Tensor:
    """A B x 1 x Hc x Wc 0/1 mask with ``round(density * cells)`` down-sampled cells.

    ``random``: cells drawn uniformly. ``blobs``: the cells of largest value in a
    smoothed noise field, i.e. a few compact regions (closer to a learned mask).
    """
    if not 0.0 <= density <= 1.0:
        raise ValueError(f"density must be in [0, 1], got {density}")
    g = torch.Generator().manual_seed(seed)
    hc, wc = grid
    n = round(density * hc * wc)
    masks = []
    for _ in range(batch):
        if layout == "random":
            score = torch.rand(hc * wc, generator=g)
        elif layout == "blobs":
            noise = torch.rand(1, 1, max(2, hc // 8), max(2, wc // 8), generator=g)
            score = F.interpolate(noise, size=(hc, wc), mode="bicubic",
                                  align_corners=False).flatten()
        else:
            raise ValueError(f"unknown layout {layout!r}; allowed: random, blobs")
        mask = torch.zeros(hc * wc)
        mask[score.argsort(descending=True)[:n]] = 1.0
        masks.append(mask.view(1, hc, wc))
    return torch.stack(masks)


def mask_grid(spec_patch: int, size: tuple[int, int]) -> tuple[int, int]:
    """Mask grid (Hc, Wc) of a stride-8 map of ``size``: ``ceil(side / patch)``."""
    return tuple(-(-n // spec_patch) for n in size)  # type: ignore[return-value]
