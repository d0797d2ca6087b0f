"""Block gather-scatter 3x3 convolutions for the sparse selective network (after SBNet).

SBNet (Ren, Pokrovsky, Yang, Urtasun, *SBNet: Sparse Blocks Network for Fast Inference*,
CVPR 2018) runs a convolution on a sparse map by gathering the active blocks, each with
the halo the kernel reads, into one dense batch, running the library's own dense
convolution on it (``padding = 0``) and scattering the outputs back. The convolution is
then oneDNN's on CPU and cuDNN's on CUDA, with all of their threads and cores, instead of
a gather + GEMM per row (``ablate.models.rowsparse.im2col_conv``).

Here a *tile* is a ``T x T`` square of one path's map (the stride-8 pixels for the high
path, the mask cells for the low path); it is active when it holds a position the path
computes. ``TilePlan`` gathers, for a conv of dilation ``k``, each active tile with a
halo of ``k`` on every side from the mixed table of ``SparseGrid`` (so a full-resolution
tile's halo reads down-sampled neighbours as their low rows, exactly as the row kernels
do; outside the map it reads the zero row), runs ``F.conv2d`` on the ``(T + 2k)``-sided
tiles, and scatters back (picks) the outputs of the positions the path owns, in row
order. Outputs at tile positions the path does not own are computed and dropped: that is
the price of dense tiles, and why a path whose tiles are mostly empty (a random mask)
is faster on rows.

**Choosing the kernel, per device, by measurement.** For each mask and path,
``Conv3x3`` compares the path's *occupancy* (owned positions over tile positions) with
the device's *crossover*: tiles compute ``1 / occupancy`` outputs per needed one, so
they win when ``occupancy >= t_tiles / t_rows``, the time per output of the tile kernel
over the row kernel at full occupancy. ``measure_crossover`` times both kernels on
layer3's and layer4's 3x3 convs (real widths and dilations) on the device the model
runs on, at its first sparse call in a process, once per device, dtype and thread
count. Nothing is assumed for a device: on this project's 2-core AMD EPYC, idle, the
figure was 0.97-1.00 with both threads and 0.89-0.92 with one (it was 0.54-0.74 before
the row kernels gathered into a kept buffer, ``rowsparse.scratch``, and ran their GEMMs
through oneDNN, ``fused.gemm``), so tiles pay there only on nearly full tiles, and the
same mask can take tiles on one device and rows on another.
``CROSSOVER`` pins a figure per device type instead (the same kernels in every process,
e.g. for bit-identical evaluations).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from ablate.models.fused import best_times, fold, measured_once
from ablate.models.rowsparse import SparseGrid, gather_limit, im2col_conv, scratch

KERNELS = ("auto", "tiles", "rows")
TILE = {"high": 8, "low": 8}  # tile side in positions of each path's map

# Pinned crossovers per device type ("cpu", "cuda"); empty: measured at first use
CROSSOVER: dict[str, float] = {}
_measured: dict[tuple, float] = {}


class TilePlan:
    """The active tiles of one path and, per dilation, the table rows of their halos."""

    def __init__(self, grid: SparseGrid, path: str, tile: int) -> None:
        own, self.row_map, self.zero = grid.own(path), grid.row_map(path), grid.zero
        B, h, w = own.shape
        T = self.T = tile
        nty, ntx = -(-h // T), -(-w // T)
        padded = F.pad(own, (0, ntx * T - w, 0, nty * T - h))
        active = padded.view(B, nty, T, ntx, T).any(4).any(2)        # B x nty x ntx
        self.tiles = active.nonzero()                                 # n x (b, ty, tx)
        self.n = len(self.tiles)
        rank = torch.zeros_like(active, dtype=torch.long)
        rank[active] = torch.arange(self.n, device=own.device)
        ob, oy, ox = own.nonzero(as_tuple=True)                       # raster = row order
        self.pick = (rank[ob, oy // T, ox // T] * T + oy % T) * T + ox % T
        self.occupancy = len(ob) / (self.n * T * T) if self.n else 1.0
        self._halo: dict[int, torch.Tensor] = {}

    def halo(self, k: int) -> torch.Tensor:
        """n x (T + 2k) x (T + 2k) table rows: each tile and ``k`` positions around it."""
        if k not in self._halo:
            T, pad = self.T, self.T + k
            rows = F.pad(self.row_map, (pad, pad, pad, pad), value=self.zero)
            b, ty, tx = self.tiles.unbind(1)
            offsets = torch.arange(T + 2 * k, device=rows.device) - k + pad
            ys, xs = ty[:, None] * T + offsets, tx[:, None] * T + offsets
            self._halo[k] = rows[b[:, None, None], ys[:, :, None], xs[:, None, :]]
        return self._halo[k]


def tile_conv(plan: TilePlan, table: torch.Tensor, conv: nn.Conv2d,
              bn: nn.BatchNorm2d | None, out: torch.Tensor | None = None) -> torch.Tensor:
    """A 3x3 conv (+ folded batch norm) of a path's rows by gathered tiles.

    Gathers the tiles with their halo from ``table`` (channels last), runs ``F.conv2d``
    without padding, and picks the owned positions' outputs, in row order, into ``out``
    (else a new tensor). Tiles go in batches of at most ``gather_limit`` gathered
    elements.
    """
    k, T = conv.dilation[0], plan.T
    weight, bias = fold(conv, bn, "conv")
    c_in, c_out = table.shape[1], weight.shape[0]
    side = T + 2 * k
    halo = plan.halo(k)
    step = max(1, gather_limit(table.device) // (side * side * c_in))
    outs = []
    for i in range(0, plan.n, step):
        index = halo[i:i + step].reshape(-1)
        block = torch.index_select(table, 0, index, out=scratch((len(index), c_in), table))
        block = block.view(-1, side, side, c_in).permute(0, 3, 1, 2)  # channels-last NCHW view
        y = F.conv2d(block, weight, bias, dilation=k)
        outs.append(y.permute(0, 2, 3, 1).reshape(-1, c_out))  # a view when channels-last
    tiles = outs[0] if len(outs) == 1 else torch.cat(outs)
    if out is None:
        return tiles.index_select(0, plan.pick)
    return out.copy_(tiles.index_select(0, plan.pick))


class Conv3x3:
    """The 3x3 convs of one path for one mask: gathered tiles or rows (module docstring)."""

    def __init__(self, grid: SparseGrid, path: str, kernels: str = "auto") -> None:
        if kernels not in KERNELS:
            raise ValueError(f"unknown kernels {kernels!r}; allowed: {', '.join(KERNELS)}")
        self.grid, self.path = grid, path
        self.plan = TilePlan(grid, path, TILE[path]) if kernels != "rows" else None
        if kernels == "auto":
            device = grid.row_high.device
            kernels = "tiles" if self.plan.occupancy >= crossover(device) else "rows"
        self.kind = kernels

    def __call__(self, table: torch.Tensor, conv: nn.Conv2d, bn: nn.BatchNorm2d | None,
                 out: torch.Tensor) -> torch.Tensor:
        """``conv`` + folded ``bn`` of the path's rows (no ReLU), written into ``out``."""
        if self.grid.count(self.path) == 0:
            return out
        if self.kind == "tiles":
            return tile_conv(self.plan, table, conv, bn, out)
        return im2col_conv(table, self.grid.taps(self.path, conv.dilation[0]), conv, bn, out)


def crossover(device: torch.device, dtype: torch.dtype = torch.float32) -> float:
    """Occupancy above which tiles beat rows on ``device`` (``CROSSOVER`` or measured)."""
    return measured_once(CROSSOVER, _measured, measure_crossover, device, dtype)


# layer3's and layer4's 3x3 convs: (width, dilation, blocks) at output stride 8
_CALIBRATION = ((256, 2, 6), (512, 4, 3))


@torch.no_grad()
def measure_crossover(device: torch.device, dtype: torch.dtype = torch.float32,
                      size: tuple[int, int] = (32, 64), runs: int = 2) -> float:
    """``t_tiles / t_rows``: time per output of the tile kernel over the row kernel.

    Both run every output of a ``size`` map (full occupancy) through layer3's and
    layer4's 3x3 convs (widths 256 and 512, dilations 2 and 4, weighted by their block
    counts). The two kernels are timed in turn (``fused.best_times``), each keeping its
    fastest time.
    """
    down = torch.zeros(1, -(-size[0] // 2), -(-size[1] // 2), dtype=torch.bool, device=device)
    grid = SparseGrid(down, size, 2, "fixed")
    plan = TilePlan(grid, "high", TILE["high"])
    totals = {"tiles": 0.0, "rows": 0.0}
    for width, k, blocks in _CALIBRATION:
        conv = nn.Conv2d(width, width, 3, padding=k, dilation=k, bias=False).to(device, dtype)
        table = torch.randn(grid.n_rows, width, device=device, dtype=dtype)
        taps = grid.taps("high", k)
        kernels = {"tiles": lambda t=table, c=conv: tile_conv(plan, t, c, None),
                   "rows": lambda t=table, c=conv, i=taps: im2col_conv(t, i, c, None)}
        for name, seconds in best_times(kernels, device, runs).items():
            totals[name] += blocks * seconds
    return totals["tiles"] / totals["rows"]
