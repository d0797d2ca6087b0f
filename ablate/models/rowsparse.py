"""Rows of the mixed-resolution network: index tables of one mask and the row kernels.

``ablate.models.sparse`` runs layer3, layer4 and the ASPP head of the selective model on
rows: the pixels of full-resolution cells (high path) and one row per down-sampled cell
(low path), channels last. 1x1 convs, batch norm, ReLU and residual sums act on rows. A
3x3 conv reads a *table* ``[high rows | low rows | pooled rows | zero row]``: a
full-resolution output reads a neighbour in a down-sampled cell as that cell's low row
(nearest up-sampling), a low output reads a full-resolution cell as its pooled row (or,
with ``fixed`` pooling, its top-left pixel's high row), and a neighbour outside the map
reads the zero row (zero padding). ``SparseGrid`` holds those indices; the kernels here
compute a 3x3 conv from them:

* ``im2col_conv``: each output gathers its nine rows and one GEMM per block of outputs.
* ``accumulate_taps``: one GEMM per tap over the outputs whose neighbour is inside the
  map. The ASPP's rates (12, 24, 36 at stride 8) put a fifth to a half of its taps
  outside a 64 x 128 map; the library's dense convolution skips them, and so does this
  (computing every tap of every row, as an earlier version did, cost the ASPP ~60 %
  more).

The block kernel (gathered tiles, the library's dense convolution) is
``ablate.models.blocksparse``; it reads the same tables.
"""

from __future__ import annotations

import threading

import torch
from torch import nn

from ablate.models.fused import fold, gemm

TAPS = [(ty, tx) for ty in (-1, 0, 1) for tx in (-1, 0, 1)]
CENTRE = 4  # TAPS.index((0, 0))
# Elements per gathered block, per device type. On CPU 2^23 (32 MiB in float32): each
# gather is copied into a buffer kept between calls (``scratch``) and read at once by the
# GEMM that follows. The earlier limit, 2^26 (256 MiB, in effect one block per conv),
# allocated every gather afresh: glibc maps a block that large from the OS on each call
# and the copy spent most of its time in page faults (2-core AMD EPYC, 2 threads: a
# 27,476 x 2,048 gather took 78 ms, 12 ms into a kept buffer). Into the kept buffer, by
# block size (best of 5-7 calls, 2 threads, density 0.5 blobs at 512x1024): layer4's
# 3x3 conv by rows 128 / 110 / 106 / 102 / 104 ms at 2^20 / 2^21 / 2^22 / 2^23 / 2^24,
# layer3's 30.6 / 31.0 / 28.0 / 26.8 / 25.5 ms, the ASPP's three dilated branches
# 407 / 430 / 398 / 392 / 396 ms. CUDA keeps 2^26: its caching allocator reuses memory,
# and a GPU needs large GEMMs to fill.
GATHER_LIMIT = {"cpu": 1 << 23, "cuda": 1 << 26}
_buffers = threading.local()


def gather_limit(device: torch.device) -> int:
    """Elements per gathered block on ``device`` (``GATHER_LIMIT``; 2^26 if unlisted)."""
    return GATHER_LIMIT.get(device.type, 1 << 26)


def scratch(shape: tuple[int, ...], like: torch.Tensor) -> torch.Tensor:
    """An uninitialised ``shape`` tensor of ``like``'s dtype and device for a gather.

    On CPU it lies in a buffer kept between calls (one per thread and dtype; it grows to
    the largest request) and is valid until the thread's next ``scratch`` call: hold no
    result in it. Elsewhere it is a new tensor (the caching allocator reuses memory).
    """
    if like.device.type != "cpu":
        return like.new_empty(shape)
    n = 1
    for side in shape:
        n *= side
    kept = _buffers.__dict__.setdefault("kept", {})
    if like.dtype not in kept or kept[like.dtype].numel() < n:
        kept[like.dtype] = like.new_empty(max(n, gather_limit(like.device)))
    return kept[like.dtype][:n].view(shape)


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
        self.pixel_down = flat_down[pix_cell]                           # per pixel
        self.active = (~self.pixel_down).nonzero().squeeze(1)          # pixels, high path
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
        self.batch_both = torch.cat([self.batch_high, self.batch_low + B])  # [high | low]
        ly, lx = (self.low % (Hc * Wc)) // Wc, self.low % Wc
        self.low_pixels = ((H - ly * d).clamp(max=d) * (W - lx * d).clamp(max=d)).float()
        self._taps: dict[tuple, torch.Tensor] = {}  # (path, k) or ("both", k_high, k_low)
        self._position_cache: dict[str, tuple] = {}
        self._pairs: dict[tuple, tuple[torch.Tensor, torch.Tensor, list[int]]] = {}

    def count(self, path: str) -> int:
        """Rows the path computes: active pixels (``high``) or down-sampled cells (``low``)."""
        return self.n_active if path == "high" else self.n_low

    def row_map(self, path: str) -> torch.Tensor:
        """B x h x w: the table row a conv of ``path`` reads at each position of its map."""
        if path == "high":
            return self.row_high.view(self.B, self.H, self.W)
        return self.row_low.view(self.B, self.Hc, self.Wc)

    def own(self, path: str) -> torch.Tensor:
        """B x h x w, True where ``path`` computes the position (its rows, raster order)."""
        if path == "high":
            return ~self.pixel_down.view(self.B, self.H, self.W)
        down = torch.zeros(self.B * self.Hc * self.Wc, dtype=torch.bool, device=self.low.device)
        down[self.low] = True
        return down.view(self.B, self.Hc, self.Wc)

    def taps(self, path: str, k: int) -> torch.Tensor:
        """n x 9 table rows that each output row of ``path`` reads, for dilation ``k``.

        All nine taps in one pass of a few tensor ops (no loop over taps), from positions
        kept per path: on CUDA each op is a kernel launch, and a sparse call builds these
        tables afresh for its mask."""
        key = (path, k)
        if key not in self._taps:
            rows, base, y, x, (h, w) = self._positions(path)
            ty, tx = _tap_offsets(y.device)
            yy, xx = y[:, None] + k * ty, x[:, None] + k * tx            # n x 9
            cy, cx = yy.clamp(0, h - 1), xx.clamp(0, w - 1)
            r = rows[(base[:, None] + cy) * w + cx]
            self._taps[key] = r.masked_fill_((cy != yy) | (cx != xx), self.zero)
        return self._taps[key]

    def taps_both(self, k_high: int, k_low: int) -> torch.Tensor:
        """``taps`` of the high path at dilation ``k_high`` over the low path's at ``k_low``:
        the (n_active + n_low) x 9 rows that one conv of both paths reads, in row order."""
        key = ("both", k_high, k_low)
        if key not in self._taps:
            self._taps[key] = torch.cat([self.taps("high", k_high), self.taps("low", k_low)])
        return self._taps[key]

    def _positions(self, path: str) -> tuple:
        """``path``'s row map (flat), and per output row its image's first map row, y, x
        and the map's (h, w)."""
        if path not in self._position_cache:
            if path == "high":
                idx, (h, w), rows = self.active, (self.H, self.W), self.row_high
            else:
                idx, (h, w), rows = self.low, (self.Hc, self.Wc), self.row_low
            yx = idx % (h * w)
            self._position_cache[path] = (rows, (idx - yx) // w, yx // w, yx % w, (h, w))
        return self._position_cache[path]

    def tap_pairs(self, k_high: int, k_low: int) -> tuple[torch.Tensor, torch.Tensor, list[int]]:
        """``pairs`` of one conv of both paths (``taps_both``): outputs are rows of
        ``[high | low]``."""
        key = ("both", k_high, k_low)
        if key not in self._pairs:
            self._pairs[key] = self.pairs(self.taps_both(k_high, k_low))
        return self._pairs[key]

    def pairs(self, taps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, list[int]]:
        """``(outputs, rows, bounds)``: every (output, table row) pair of a non-centre tap of
        ``taps`` (n x 9, ``taps``/``taps_both``) whose neighbour is inside the map, tap after
        tap; tap ``TAPS[t]``'s pairs are ``bounds[t]:bounds[t + 1]`` (the centre tap's range
        is empty).

        One ``nonzero`` over all taps and one read of the counts: two host syncs on CUDA
        whatever the number of taps."""
        inside = taps != self.zero
        inside[:, CENTRE] = False
        tap, outputs = inside.t().nonzero(as_tuple=True)               # tap-major
        counts = inside.sum(0).cumsum(0).tolist()
        return outputs, taps[outputs, tap], [0, *counts]

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

    def table(self, high: torch.Tensor, low: torch.Tensor) -> torch.Tensor:
        """The rows a 3x3 conv reads: ``[high | low | pooled high | zero]``."""
        n_a, n_l = self.n_active, self.n_low
        table = high.new_empty(self.n_rows, high.shape[1])
        table[:n_a], table[n_a:n_a + n_l], table[-1] = high, low, 0
        if self.pooled and n_l:
            table[n_a + n_l:-1] = self.pool(high)
        return table


_offsets: dict[torch.device, tuple[torch.Tensor, torch.Tensor]] = {}


def _tap_offsets(device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """``TAPS`` as two 9-long tensors (dy, dx) on ``device``, made once per device (on
    CUDA a tensor from a list is a copy from the host)."""
    if device not in _offsets:
        offsets = torch.tensor(TAPS, dtype=torch.long, device=device)
        _offsets[device] = (offsets[:, 0].contiguous(), offsets[:, 1].contiguous())
    return _offsets[device]


def im2col_conv(table: torch.Tensor, taps: torch.Tensor, conv: nn.Conv2d,
                bn: nn.BatchNorm2d | None, out: torch.Tensor | None = None) -> torch.Tensor:
    """A 3x3 conv (+ folded batch norm) of the outputs whose nine rows are ``taps``.

    The outputs gather their nine input rows side by side and run one GEMM (K = 9 C_in,
    ``ablate.models.fused.gemm``), in blocks of at most ``gather_limit`` gathered
    elements; neighbours outside the map read the table's zero row. ``out``: where to
    write (n x C_out), else a new tensor.
    """
    return im2col_rows(table, taps, *fold(conv, bn, "im2col"), out=out)


def im2col_rows(table: torch.Tensor, taps: torch.Tensor, weight: torch.Tensor,
                bias: torch.Tensor | None, out: torch.Tensor | None = None) -> torch.Tensor:
    """``im2col_conv`` with its weight (9 C_in x C_out, ``fold``'s ``im2col`` layout) and
    bias given."""
    n, c_in = len(taps), table.shape[1]
    out = table.new_empty(n, weight.shape[1]) if out is None else out
    step = max(1, gather_limit(table.device) // (9 * c_in))
    for i in range(0, n, step):
        index = taps[i:i + step].reshape(-1)
        block = torch.index_select(table, 0, index, out=scratch((len(index), c_in), table))
        gemm(block.view(-1, 9 * c_in), weight, bias, out=out[i:i + step])
    return out


def accumulate_taps(out: torch.Tensor, table: torch.Tensor,
                    pairs: tuple[torch.Tensor, torch.Tensor, list[int]],
                    weight: torch.Tensor) -> torch.Tensor:
    """``out += conv(table) - centre tap``: each non-centre tap as GEMMs over the outputs
    whose neighbour is inside the map, their partial sums scattered into ``out``.

    ``weight`` is 9 x C_in x C_out (``fold(..., "taps")``), ``pairs`` the grid's
    ``pairs``. The caller adds the centre tap (it reads each output's own row, no
    gather). Each tap's pairs go in equal chunks of at most ``gather_limit`` gathered
    elements: one gather into the scratch buffer, one GEMM, one scatter per chunk.
    """
    outputs, rows, bounds = pairs
    c_in = table.shape[1]
    limit = max(1, gather_limit(table.device) // c_in)
    for t in range(len(bounds) - 1):
        n = bounds[t + 1] - bounds[t]
        if n == 0:
            continue
        step = -(-n // -(-n // limit))  # equal chunks, none above the limit
        for first in range(bounds[t], bounds[t + 1], step):
            last = min(first + step, bounds[t + 1])
            block = torch.index_select(table, 0, rows[first:last],
                                       out=scratch((last - first, c_in), table))
            out.index_add_(0, outputs[first:last], gemm(block, weight[t]))
    return out
