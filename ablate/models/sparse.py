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

How the sparse kernels work (batch ``B``, rows = pixels in channels-last order):
1x1 convs, batch norm and sums act on rows. A 3x3 conv with ``C_out >= C_in`` gathers
each output row's nine neighbour rows (im2col, in blocks) for one GEMM per block; the
ASPP's 2048 -> 256 convs instead run one GEMM of every row with the nine taps' weights
side by side (``rows x 9 C_out``) and gather each output's nine partial sums, 8x less
data to move. A neighbour outside the image reads a zero row (zero padding). The low
path's rows serve both paths' convs (tied weights), so compute is linear in the share
of down-sampled cells.
"""

from __future__ import annotations

import copy

import torch
from torch import nn
from torch.nn import functional as F

from ablate.models.masking import gumbel_mask, pool_patches, tie_parameters, upsample_mask

TAPS = [(ty, tx) for ty in (-1, 0, 1) for tx in (-1, 0, 1)]


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


class SparseGrid:
    """Index tables of one mask: which rows each path computes and where neighbours live.

    Rows of a layer's table: ``[high rows (active pixels) | low rows (down-sampled cells)
    | pooled rows (full-resolution cells, avg/max pooling only) | zero row]``.
    ``down`` is B x Hc x Wc, True = down-sampled; ``size`` the stride-8 map's (H, W).
    """

    def __init__(self, down: torch.Tensor, size: tuple[int, int], d: int, pooling: str) -> None:
        dev = down.device
        B, Hc, Wc = down.shape
        H, W = size
        self.B, self.H, self.W, self.Hc, self.Wc, self.d, self.pooling = B, H, W, Hc, Wc, d, pooling
        ys, xs = torch.arange(H, device=dev), torch.arange(W, device=dev)
        b = torch.arange(B, device=dev)
        pix_cell = (b[:, None, None] * Hc * Wc + (ys // d)[None, :, None] * Wc
                    + (xs // d)[None, None, :]).reshape(-1)              # B*H*W
        flat_down = down.reshape(-1)
        self.active = (~flat_down[pix_cell]).nonzero().squeeze(1)      # pixels, high path
        self.low = flat_down.nonzero().squeeze(1)                      # cells, low path
        self.full_cells = (~flat_down).nonzero().squeeze(1)            # cells, pooled
        n_a, n_l, n_f = len(self.active), len(self.low), len(self.full_cells)
        self.n_active, self.n_low = n_a, n_l
        cell_rank = torch.zeros(B * Hc * Wc, dtype=torch.long, device=dev)
        cell_rank[self.low] = torch.arange(n_l, device=dev) + n_a
        row_high = cell_rank[pix_cell]
        row_high[self.active] = torch.arange(n_a, device=dev)
        self.row_high = row_high                                        # per pixel
        # pixels of each full-resolution cell (d*d, outside the map: the top-left one)
        cb, cyx = self.full_cells // (Hc * Wc), self.full_cells % (Hc * Wc)
        py = (cyx // Wc)[:, None] * d + torch.arange(d, device=dev).repeat_interleave(d)[None]
        px = (cyx % Wc)[:, None] * d + torch.arange(d, device=dev).repeat(d)[None]
        inside = (py < H) & (px < W)
        member = row_high[(cb[:, None] * H + py.clamp(max=H - 1)) * W + px.clamp(max=W - 1)]
        self.member = torch.where(inside, member, member[:, :1])       # n_f x d*d
        self.inside = inside
        self.pooled = pooling != "fixed"
        self.n_rows = n_a + n_l + (n_f if self.pooled else 0) + 1
        self.zero = self.n_rows - 1
        row_low = torch.zeros(B * Hc * Wc, dtype=torch.long, device=dev)
        row_low[self.low] = torch.arange(n_l, device=dev) + n_a
        row_low[self.full_cells] = (torch.arange(n_f, device=dev) + n_a + n_l if self.pooled
                                    else self.member[:, 0])
        self.row_low = row_low                                          # per cell
        # image of each row; pixels per down-sampled cell (border cells hold fewer)
        self.batch_high, self.batch_low = self.active // (H * W), self.low // (Hc * Wc)
        ly, lx = (self.low % (Hc * Wc)) // Wc, self.low % Wc
        self.low_pixels = ((H - ly * d).clamp(max=d) * (W - lx * d).clamp(max=d)).float()
        self._taps: dict[tuple[str, int], torch.Tensor] = {}

    def taps(self, path: str, k: int) -> torch.Tensor:
        """Flat indices ``row * 9 + tap`` into a ``rows x 9 x C`` table, 9 per output row."""
        key = (path, k)
        if key not in self._taps:
            if path == "high":
                idx, (h, w), rows = self.active, (self.H, self.W), self.row_high
            else:
                idx, (h, w), rows = self.low, (self.Hc, self.Wc), self.row_low
            b, y, x = idx // (h * w), (idx % (h * w)) // w, idx % w
            cols = []
            for t, (ty, tx) in enumerate(TAPS):
                yy, xx = y + k * ty, x + k * tx
                ok = (yy >= 0) & (yy < h) & (xx >= 0) & (xx < w)
                r = rows[(b * h + yy.clamp(0, h - 1)) * w + xx.clamp(0, w - 1)]
                cols.append(torch.where(ok, r, self.zero) * 9 + t)
            self._taps[key] = torch.stack(cols, 1).reshape(-1)
        return self._taps[key]

    def pool(self, high: torch.Tensor) -> torch.Tensor:
        """Pooled high rows, one per full-resolution cell (``pool_patches`` on rows)."""
        if self.pooling == "fixed":
            return high[self.member[:, 0]]
        gathered = high[self.member]                                   # n_f x d*d x C
        if self.pooling == "max":  # outside pixels repeat the top-left one: max unchanged
            return gathered.amax(1)
        inside = self.inside[..., None].to(high.dtype)
        return (gathered * inside).sum(1) / inside.sum(1)

    def means(self, high: torch.Tensor, low: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-image mean of the blended stride-8 map and of the blended cell map (B x C)."""
        c = high.shape[1]
        m8 = high.new_zeros(self.B, c).index_add_(0, self.batch_high, high)
        m8.index_add_(0, self.batch_low, low * self.low_pixels[:, None])
        cells = high.new_zeros(self.B, c).index_add_(0, self.batch_low, low)
        cells.index_add_(0, self.full_cells // (self.Hc * self.Wc), self.pool(high))
        return m8 / (self.H * self.W), cells / (self.Hc * self.Wc)



def _bn(x: torch.Tensor, bn: nn.BatchNorm2d, relu: bool = True) -> torch.Tensor:
    """Evaluation batch norm on rows (N x C), in place on a fresh tensor."""
    scale = bn.weight * torch.rsqrt(bn.running_var + bn.eps)
    x = x.mul_(scale).add_(bn.bias - bn.running_mean * scale)
    return x.relu_() if relu else x


def _pointwise(conv: nn.Conv2d, x: torch.Tensor) -> torch.Tensor:
    return F.linear(x, conv.weight.flatten(1), conv.bias)


def _cached(conv: nn.Conv2d, layout: str) -> torch.Tensor:
    """The conv's 3x3 weight as a GEMM operand, kept until the weight changes.

    ``taps-out``: C_in x 9 C_out (the nine taps' outputs side by side); ``taps-in``:
    9 C_in x C_out (the nine taps' inputs stacked, im2col order).
    """
    weight = conv.weight
    key = (id(weight), weight._version, layout)
    cached = conv.__dict__.get("_sparse_" + layout)
    if cached is None or cached[0] != key:
        w = weight.detach()
        w = (w.permute(1, 2, 3, 0).reshape(w.shape[1], -1) if layout == "taps-out"
             else w.permute(2, 3, 1, 0).reshape(-1, w.shape[0]))
        cached = conv.__dict__["_sparse_" + layout] = (key, w.contiguous())
    return cached[1]


CHUNK = 1024  # output rows per im2col block: keeps the gathered block small


def _conv3x3(grid: SparseGrid, conv_high: nn.Conv2d, conv_low: nn.Conv2d, high: torch.Tensor,
             low: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """One tied-weight 3x3 conv (no bias) of both paths on rows.

    Wide outputs (C_out >= C_in): im2col, gathering each output row's nine input rows in
    blocks of ``CHUNK`` and one GEMM per block. Narrow outputs (the ASPP's 2048 -> 256):
    one GEMM of every row with the nine taps' weights side by side, then a gather of the
    nine ``C_out``-wide partial sums, 8x less data to move than the inputs.
    """
    cin, cout = conv_high.weight.shape[1], conv_high.weight.shape[0]
    n_a, n_l = grid.n_active, grid.n_low
    taps_high = grid.taps("high", conv_high.dilation[0])
    taps_low = grid.taps("low", conv_low.dilation[0])
    if cout >= cin:
        weight = _cached(conv_high, "taps-in")
        table = high.new_empty(grid.n_rows, cin)
        table[:n_a], table[n_a:n_a + n_l], table[-1] = high, low, 0
        if grid.pooled and n_l:
            table[n_a + n_l:-1] = grid.pool(high)
        outs = []
        for taps, n in ((taps_high, n_a), (taps_low, n_l)):
            rows = taps.view(n, 9) // 9
            out = high.new_empty(n, cout)
            for i in range(0, n, CHUNK):
                block = table.index_select(0, rows[i:i + CHUNK].reshape(-1))
                torch.mm(block.view(-1, 9 * cin), weight, out=out[i:i + CHUNK])
            outs.append(out)
        return outs[0], outs[1]
    stacked = _cached(conv_high, "taps-out")
    table = high.new_empty(grid.n_rows, 9 * cout)
    torch.mm(high, stacked, out=table[:n_a])
    torch.mm(low, stacked, out=table[n_a:n_a + n_l])
    if grid.pooled and n_l:  # pooled rows are read by the low path only
        if grid.pooling == "avg":  # linear: pooling the partial sums equals pooling the input
            table[n_a + n_l:-1] = grid.pool(table[:n_a])
        else:
            torch.mm(grid.pool(high), stacked, out=table[n_a + n_l:-1])
    table[-1] = 0
    flat = table.view(-1, cout)
    out_high = flat.index_select(0, taps_high).view(n_a, 9, cout).sum(1)
    out_low = flat.index_select(0, taps_low).view(n_l, 9, cout).sum(1)
    return out_high, out_low


def _sparse_bottleneck(grid: SparseGrid, hb: nn.Module, lb: nn.Module, high: torch.Tensor,
                       low: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    h, lo = _conv3x3(grid, hb.conv2, lb.conv2, _bn(_pointwise(hb.conv1, high), hb.bn1),
                    _bn(_pointwise(lb.conv1, low), lb.bn1))
    outs = []
    for block, x, y in ((hb, high, h), (lb, low, lo)):
        y = _bn(_pointwise(block.conv3, _bn(y, block.bn2)), block.bn3, relu=False)
        if block.downsample is not None:
            x = _bn(_pointwise(block.downsample[0], x), block.downsample[1], relu=False)
        outs.append(y.add_(x).relu_())
    return outs[0], outs[1]


def _sparse_head(grid: SparseGrid, head: nn.Module, low_head: nn.Module, high: torch.Tensor,
                 low: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    aspp, low_aspp = head.aspp, low_head.aspp
    hs = [_bn(_pointwise(aspp.convs[0][0], high), aspp.convs[0][1])]
    ls = [_bn(_pointwise(low_aspp.convs[0][0], low), low_aspp.convs[0][1])]
    for hb, lb in zip(aspp.convs[1:-1], low_aspp.convs[1:-1]):
        h, lo = _conv3x3(grid, hb[0], lb[0], high, low)
        hs.append(_bn(h, hb[1]))
        ls.append(_bn(lo, lb[1]))
    mean_high, mean_low = grid.means(high, low)  # the pooling branch: AdaptiveAvgPool, 1x1, BN
    hp, lp = aspp.convs[-1], low_aspp.convs[-1]
    hs.append(_bn(_pointwise(hp[1], mean_high), hp[2])[grid.batch_high])
    ls.append(_bn(_pointwise(lp[1], mean_low), lp[2])[grid.batch_low])
    h = _bn(_pointwise(aspp.project[0], torch.cat(hs, 1)), aspp.project[1])
    lo = _bn(_pointwise(low_aspp.project[0], torch.cat(ls, 1)), low_aspp.project[1])
    h, lo = _conv3x3(grid, head.conv[0], low_head.conv[0], h, lo)
    h, lo = _bn(h, head.conv[1]), _bn(lo, low_head.conv[1])
    return _pointwise(head.classifier, h), _pointwise(low_head.classifier, lo)


class SparseSelective:
    """Evaluation-only sparse execution of a ``SelectiveDeepLabV3`` (its weights, read per call).

    A model trained with ``execution = "dense"`` has no ``low_head``; one is made here
    (weights tied, batch-norm statistics copied from ``head``) so that its mask's
    latency can be measured. A mask with no down-sampled cell (or only such cells) runs
    the plain dilated network (or the plain low path) with the library's dense convs:
    the same function, and faster than rows; ``shortcuts=False`` always runs the rows.
    """

    def __init__(self, model: nn.Module, shortcuts: bool = True) -> None:
        self.model, self.shortcuts = model, shortcuts
        self.low_head = getattr(model, "low_head", None)
        if self.low_head is None:
            self.low_head = low_head_copy(model.head, model.selective.patch)

    @torch.no_grad()
    def __call__(self, x: torch.Tensor, mask: torch.Tensor | None = None
                 ) -> dict[str, torch.Tensor]:
        """``out`` (logits at input size), ``mask`` and ``mask_logits``; ``mask`` overrides the net's."""
        model = self.model
        sel, bb, d = model.selective, model.backbone, model.selective.patch
        taps = bb.early(x)
        logits = model.mask_net(taps[sel.mask_source])
        if mask is None:
            mask = gumbel_mask(logits, model.tau, hard=True, training=False)
        down = mask[:, 0] > 0.5
        if self.shortcuts and not down.any():
            out8 = model.head({"out": bb.high(taps["layer2"])[1]})
            return _outputs(out8, x, mask, logits)
        if self.shortcuts and down.all():
            out8 = self.low_head({"out": bb.low(taps["layer2"])})
            return _outputs(upsample_mask(out8, d, taps["layer2"].shape[-2:]), x, mask, logits)
        # the row kernels write into preallocated tensors (out=): one dtype, no autocast
        layer2 = taps["layer2"].to(model.head.classifier.weight.dtype)
        B, C, H, W = layer2.shape
        grid = SparseGrid(down, (H, W), d, sel.pooling)
        with torch.autocast(x.device.type, enabled=False):
            high = layer2.permute(0, 2, 3, 1).reshape(-1, C)[grid.active]
            pooled = pool_patches(layer2, d, sel.pooling)
            low = pooled.permute(0, 2, 3, 1).reshape(-1, C)[grid.low]
            for hb, lb in zip([*bb.layer3, *bb.layer4], [*bb.low_layer3, *bb.low_layer4]):
                high, low = _sparse_bottleneck(grid, hb, lb, high, low)
            high, low = _sparse_head(grid, model.head, self.low_head, high, low)
        out8 = torch.cat([high, low])[grid.row_high].view(B, H, W, -1).permute(0, 3, 1, 2)
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
