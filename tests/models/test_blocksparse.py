"""Block gather-scatter kernels (ablate.models.blocksparse), row kernels and folded weights."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from ablate.models import blocksparse, fused, rowsparse
from ablate.models.blocksparse import Conv3x3, TilePlan, crossover, tile_conv
from ablate.models.fused import fold, pointwise
from ablate.models.rowsparse import SparseGrid, accumulate_taps, im2col_conv, scratch


def _grid(hc: int, wc: int, density: float, seed: int = 0, batch: int = 2) -> SparseGrid:
    g = torch.Generator().manual_seed(seed)
    down = torch.rand(batch, hc, wc, generator=g) < density
    return SparseGrid(down, (2 * hc - 1, 2 * wc), 2, "fixed")  # odd height: a cut border cell


def _mixed_map(grid: SparseGrid, table: torch.Tensor, path: str) -> torch.Tensor:
    """The map a conv of ``path`` reads, dense (B x C x h x w): its table rows by position."""
    rows = grid.row_map(path)
    return table[rows].permute(0, 3, 1, 2)


def _dense_reference(grid, table, conv, path):
    """F.conv2d on the whole mixed map, read at the positions the path owns (row order)."""
    k = conv.dilation[0]
    full = F.conv2d(_mixed_map(grid, table, path), conv.weight, conv.bias, padding=k, dilation=k)
    own = grid.own(path)
    return full.permute(0, 2, 3, 1)[own]


def _conv(c_in: int, c_out: int, k: int, seed: int = 0) -> nn.Conv2d:
    torch.manual_seed(seed)
    return nn.Conv2d(c_in, c_out, 3, padding=k, dilation=k, bias=True).eval()


def test_tile_plan_on_a_hand_made_mask():
    # one image, 4 x 4 cells (8 x 8 pixels), tiles of 4 pixels: only the top-left cell is full
    down = torch.ones(1, 4, 4, dtype=torch.bool)
    down[0, 0, 0] = False
    grid = SparseGrid(down, (8, 8), 2, "fixed")
    plan = TilePlan(grid, "high", 4)
    assert plan.tiles.tolist() == [[0, 0, 0]]
    assert plan.pick.tolist() == [0, 1, 4, 5]  # the 2 x 2 pixels of the cell, in the tile
    assert plan.occupancy == 4 / 16
    halo = plan.halo(1)
    assert halo.shape == (1, 6, 6)  # exactly T + 2k on each side
    assert (halo[0, 0] == grid.zero).all() and (halo[0, :, 0] == grid.zero).all()
    # inside the map the halo reads the mixed table: own pixels their row, the rest low rows
    assert halo[0, 1:, 1:].tolist() == grid.row_map("high")[0, :5, :5].tolist()


@pytest.mark.parametrize("k", [1, 2, 4])
@pytest.mark.parametrize("tile", [2, 4])
@pytest.mark.parametrize("path", ["high", "low"])
def test_tile_conv_equals_the_dense_conv_of_the_mixed_map(k, tile, path):
    grid = _grid(6, 5, 0.5, seed=k + tile)
    table = torch.randn(grid.n_rows, 8)
    table[-1] = 0
    conv = _conv(8, 12, k)
    plan = TilePlan(grid, path, tile)
    out = tile_conv(plan, table, conv, None)
    ref = _dense_reference(grid, table, conv, path)
    assert out.shape == ref.shape == (grid.count(path), 12)
    assert (out - ref).abs().max() <= 1e-5 * ref.abs().max()


@pytest.mark.parametrize("k", [1, 2, 4])
def test_the_halo_is_exactly_the_receptive_field(k):
    """No output at a tile border differs from the dense conv; one ring less and they do."""
    grid = _grid(8, 8, 0.3, seed=k)
    table = torch.randn(grid.n_rows, 4)
    table[-1] = 0
    conv = _conv(4, 4, k)
    plan = TilePlan(grid, "high", 4)
    ref = _dense_reference(grid, table, conv, "high")
    own = grid.own("high")
    ys, xs = own.nonzero(as_tuple=True)[1:]
    border = (ys % 4 == 0) | (ys % 4 == 3) | (xs % 4 == 0) | (xs % 4 == 3)
    assert border.sum() > len(border) // 2  # most owned pixels sit on a tile border
    out = tile_conv(plan, table, conv, None)
    assert (out - ref)[border].abs().max() <= 1e-5 * ref.abs().max()
    # zero the outermost ring of every halo, k away from its tile: only the border outputs
    # read it (their outward taps), and they change
    halo = plan.halo(k).clone()
    for ring in (halo[:, 0], halo[:, -1], halo[:, :, 0], halo[:, :, -1]):
        ring.fill_(grid.zero)
    plan._halo[k] = halo
    short = tile_conv(plan, table, conv, None)
    assert (short - ref)[border].abs().amax(1).gt(1e-3).float().mean() > 0.5
    assert (short - ref)[~border].abs().max() <= 1e-5 * ref.abs().max()


@pytest.mark.parametrize("limit", [None, 7 * 6])  # 7 rows of 6 channels: many chunks
@pytest.mark.parametrize("path", ["high", "low"])
def test_im2col_and_tap_kernels_equal_the_dense_conv(path, limit, monkeypatch):
    if limit is not None:  # every gather in blocks through the kept scratch buffer
        monkeypatch.setitem(rowsparse.GATHER_LIMIT, "cpu", limit)
    grid = _grid(5, 6, 0.5, seed=3)
    table = torch.randn(grid.n_rows, 6)
    table[-1] = 0
    conv = _conv(6, 5, 2)
    ref = _dense_reference(grid, table, conv, path)
    rows = im2col_conv(table, grid.taps(path, 2), conv, None)
    assert (rows - ref).abs().max() <= 1e-5 * ref.abs().max()
    weight, bias = fold(conv, None, "taps")
    outputs, _, bounds = grid.pairs(grid.taps(path, 2))
    assert bounds[4] == bounds[5]  # no pair for the centre tap: the caller adds it
    assert 0 < len(outputs) < 8 * grid.count(path)  # some neighbours are outside the map
    centre = table[grid.taps(path, 2)[:, 4]]
    out = torch.addmm(bias, centre, weight[4])
    accumulate_taps(out, table, grid.pairs(grid.taps(path, 2)), weight)
    assert (out - ref).abs().max() <= 1e-5 * ref.abs().max()
    tiles = tile_conv(TilePlan(grid, path, 4), table, conv, None)
    assert (tiles - ref).abs().max() <= 1e-5 * ref.abs().max()


def test_scratch_is_kept_and_grows():
    like = torch.zeros(1)
    small = scratch((3, 4), like)
    assert small.shape == (3, 4)
    again = scratch((2, 2), like)
    assert again.data_ptr() == small.data_ptr()  # the same kept buffer
    big = scratch((rowsparse.GATHER_LIMIT["cpu"] + 1,), like)
    assert big.numel() == rowsparse.GATHER_LIMIT["cpu"] + 1
    assert scratch((5,), like).data_ptr() == big.data_ptr()
    assert scratch((5,), like.double()).dtype == torch.float64  # one buffer per dtype


@pytest.mark.parametrize("layout", ["matrix", "conv", "taps", "im2col"])
def test_folded_batch_norm_equals_conv_then_bn(layout, monkeypatch):
    conv = _conv(3, 4, 1)
    bn = nn.BatchNorm2d(4).eval()
    bn.running_mean.copy_(torch.tensor([0.1, -0.2, 0.3, 0.0]))
    bn.running_var.copy_(torch.tensor([0.5, 2.0, 1.0, 0.25]))
    bn.weight.data.copy_(torch.tensor([1.5, 0.5, -1.0, 2.0]))
    x = torch.randn(1, 3, 5, 5)
    ref = bn(conv(x))
    if layout == "matrix":  # a 1x1 conv's: the centre tap only
        conv1 = nn.Conv2d(3, 4, 1).eval()
        conv1.weight.data.copy_(conv.weight.data[:, :, 1:2, 1:2])
        conv1.bias.data.copy_(conv.bias.data)
        rows = x.permute(0, 2, 3, 1).reshape(-1, 3)
        ref1 = bn(conv1(x)).permute(0, 2, 3, 1).reshape(-1, 4)
        for name in fused.BACKENDS:  # MKL/OpenBLAS and the library's 1x1 convolution
            monkeypatch.setitem(fused.GEMM, "cpu", name)
            assert torch.allclose(pointwise(rows, conv1, bn, relu=False), ref1, atol=1e-5)
        with pytest.raises(ValueError, match="1x1"):
            fold(conv, bn, layout)
        return
    weight, bias = fold(conv, bn, layout)
    w = {"conv": weight,
         "taps": weight.reshape(3, 3, 3, 4).permute(3, 2, 0, 1),
         "im2col": weight.reshape(3, 3, 3, 4).permute(3, 2, 0, 1)}[layout]
    assert torch.allclose(F.conv2d(x, w, bias, padding=1), ref, atol=1e-5)


def test_fold_pair_turns_one_norm_into_its_twin_a_zero_gamma_included():
    """One GEMM with ``bn`` folded, then ``ratio * y + shift``, is conv + ``twin``: tied
    affine (as the selective model's paths share it), own statistics; a zero gamma needs
    no special case (no division by it); norms that do not share their affine get None."""
    conv = nn.Conv2d(3, 4, 1).eval()
    bn, twin = nn.BatchNorm2d(4).eval(), nn.BatchNorm2d(4).eval()
    with torch.no_grad():
        bn.weight.copy_(torch.tensor([1.5, 0.0, -1.0, 2.0]))
        bn.bias.copy_(torch.tensor([0.1, 0.7, -0.3, 0.0]))
    twin.weight, twin.bias = bn.weight, bn.bias  # tied, as masking.tie_parameters does
    bn.running_mean.copy_(torch.tensor([0.1, -0.2, 0.3, 0.0]))
    bn.running_var.copy_(torch.tensor([0.5, 2.0, 1.0, 0.25]))
    twin.running_mean.copy_(torch.tensor([-0.4, 0.2, 0.0, 0.5]))
    twin.running_var.copy_(torch.tensor([2.0, 0.1, 4.0, 1.0]))
    rows = torch.randn(6, 3)
    weight, bias, ratio, shift = fused.fold_pair(conv, bn, twin)
    y = torch.addmm(bias, rows, weight)
    x = rows[:, :, None, None]
    assert torch.allclose(y, bn(conv(x))[:, :, 0, 0], atol=1e-5)
    assert torch.allclose(ratio * y + shift, twin(conv(x))[:, :, 0, 0], atol=1e-5)
    # gamma 0: the twin's output is its beta, up to rounding
    assert torch.allclose((ratio * y + shift)[:, 1], torch.full((6,), 0.7), rtol=0, atol=1e-6)
    other = nn.BatchNorm2d(4).eval()  # its own affine
    assert fused.fold_pair(conv, bn, other) is None


def test_fold_follows_new_running_statistics():
    conv, bn = _conv(3, 4, 1), nn.BatchNorm2d(4).eval()
    first = fold(conv, bn, "conv")[1].clone()
    assert fold(conv, bn, "conv")[1] is fold(conv, bn, "conv")[1]  # cached
    bn.running_mean.add_(1.0)  # in place, as a training step does
    moved = fold(conv, bn, "conv")[1]
    assert torch.allclose(moved, first - 1.0 / torch.sqrt(torch.tensor(1.0 + 1e-5)))


def test_auto_picks_tiles_above_the_crossover(monkeypatch):
    grid = _grid(8, 8, 0.5, seed=1)
    occupancy = TilePlan(grid, "high", blocksparse.TILE["high"]).occupancy
    assert 0.3 < occupancy < 0.9
    monkeypatch.setitem(blocksparse.CROSSOVER, "cpu", occupancy - 0.01)
    assert Conv3x3(grid, "high").kind == "tiles"
    monkeypatch.setitem(blocksparse.CROSSOVER, "cpu", occupancy + 0.01)
    assert Conv3x3(grid, "high").kind == "rows"
    assert Conv3x3(grid, "high", "tiles").kind == "tiles"
    assert Conv3x3(grid, "high", "rows").plan is None


def test_an_unlisted_device_type_is_measured_once(monkeypatch):
    calls = []
    monkeypatch.delitem(blocksparse.CROSSOVER, "cpu", raising=False)
    monkeypatch.setattr(blocksparse, "_measured", {})
    monkeypatch.setattr(blocksparse, "measure_crossover",
                        lambda device, dtype: calls.append(device) or 0.42)
    assert crossover(torch.device("cpu")) == 0.42
    assert crossover(torch.device("cpu")) == 0.42
    assert len(calls) == 1


def test_measure_crossover_times_both_kernels():
    ratio = blocksparse.measure_crossover(torch.device("cpu"), size=(8, 8), runs=1)
    assert 0.0 < ratio < 100.0


def test_unknown_kernels_are_refused():
    with pytest.raises(ValueError, match="allowed: auto, tiles, rows"):
        Conv3x3(_grid(2, 2, 0.5), "high", "blocks")


def test_measure_gemm_picks_one_backend_and_pins_override(monkeypatch):
    assert fused.measure_gemm(torch.device("cpu"), runs=1) in fused.BACKENDS
    monkeypatch.setitem(fused.GEMM, "cpu", "mm")
    assert fused.backend(torch.device("cpu")) == "mm"


@pytest.mark.parametrize("name", fused.BACKENDS)
def test_gemm_backends_agree_with_a_matmul(name, monkeypatch):
    monkeypatch.setitem(fused.GEMM, "cpu", name)
    rows, weight, bias = torch.randn(7, 5), torch.randn(3, 5).t(), torch.randn(3)
    ref = rows @ weight + bias
    assert torch.allclose(fused.gemm(rows, weight, bias), ref, atol=1e-5)
    assert torch.allclose(fused.gemm(rows, weight), rows @ weight, atol=1e-5)
    out = torch.zeros(7, 4)
    fused.gemm(rows[:, :5], weight, bias, out=out[:, :3])  # into a column slice
    assert torch.allclose(out[:, :3], ref, atol=1e-5) and (out[:, 3] == 0).all()
    assert torch.allclose(fused.gemm(rows.t().contiguous().t(), weight, bias), ref, atol=1e-5)


def test_fold_batch_norm_keeps_the_function_and_leaves_no_batch_norm():
    from torchvision.models import resnet18

    torch.manual_seed(0)
    model = nn.Sequential(resnet18(num_classes=5), nn.Unflatten(1, (5, 1, 1)),
                          nn.Conv2d(5, 3, 1), nn.BatchNorm2d(3)).eval()
    for m in model.modules():  # non-trivial statistics
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.2, 0.2)
            m.running_var.uniform_(0.5, 1.5)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        before = model(x)
        n = sum(isinstance(m, nn.BatchNorm2d) for m in model.modules())
        assert fused.fold_batch_norm(model) == n == 21  # stem, 16 in blocks, 3 shortcuts, head
        assert not any(isinstance(m, nn.BatchNorm2d) for m in model.modules())
        assert torch.allclose(model(x), before, rtol=1e-4, atol=1e-4)
    with pytest.raises(ValueError, match="evaluation mode"):
        fused.fold_batch_norm(model.train())
