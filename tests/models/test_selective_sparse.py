"""Sparse execution (ablate.models.sparse): equal to its dense emulation with either kernel, exact at
densities 0 and 1."""

from __future__ import annotations

import itertools

import pytest
import torch
from torch.nn import functional as F

from ablate.models import blocksparse, fused
from ablate.models.masking import pool_patches, upsample_mask
from ablate.models.selective import build_selective_deeplabv3
from ablate.models.sparse import SparseGrid, SparseSelective, forced_mask, forward_mixed
from ablate.recipes.schema import ModelSpec

CLASSES = 3
# 72 x 56 input: a 9 x 7 stride-8 map, a 5 x 4 mask grid whose border cells are cut
SIZE, GRID = (72, 56), (5, 4)
TOL = 1e-4  # relative to the largest logit: float summation order only


def _model(pooling: str = "fixed", execution: str = "sparse", seed: int = 0,
           rates: tuple[int, ...] = (12, 24, 36)):
    torch.manual_seed(seed)
    spec = ModelSpec.model_validate({
        "backbone": "resnet50", "head": "deeplabv3", "output_stride": 8, "aspp_rates": list(rates),
        "selective": {"enabled": True, "pooling": pooling, "execution": execution}})
    model = build_selective_deeplabv3(spec, CLASSES)
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():  # non-trivial statistics, different per path, and affines
        if isinstance(m, torch.nn.BatchNorm2d):  # (shared by the paths' tied norms)
            m.running_mean.copy_(torch.rand(m.num_features, generator=g) * 0.2 - 0.1)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            with torch.no_grad():
                m.weight.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.bias.copy_(torch.rand(m.num_features, generator=g) * 0.2 - 0.1)
    return model.eval()


@pytest.fixture(scope="module", params=["fixed", "avg", "max"])
def model(request):
    return _model(request.param)


@pytest.fixture(autouse=True)
def pinned_crossover(monkeypatch):
    """``kernels = "auto"`` and ``gemm`` without their first-use timing (tested in
    test_blocksparse)."""
    monkeypatch.setitem(blocksparse.CROSSOVER, "cpu", 0.75)
    monkeypatch.setitem(fused.GEMM, "cpu", "conv")


def _masks() -> dict[str, torch.Tensor]:
    hc, wc = GRID
    checker = ((torch.arange(hc)[:, None] + torch.arange(wc)[None]) % 2).float()
    return {
        "all-full": torch.zeros(2, 1, hc, wc),
        "all-down": torch.ones(2, 1, hc, wc),
        "checkerboard": torch.stack([checker, 1 - checker])[:, None],
        # one image all full-resolution, the other all down-sampled: each path's rows
        # come from one image only, and neither shortcut applies to the batch
        "full-and-down": torch.stack([torch.zeros(hc, wc), torch.ones(hc, wc)])[:, None],
        "blobs-0.25": forced_mask(GRID, 0.25, "blobs", seed=2, batch=2),
        "blobs-0.4": forced_mask(GRID, 0.4, "blobs", seed=3, batch=2),
        "random-0.6": forced_mask(GRID, 0.6, "random", seed=1, batch=2),
        "random-0.75": forced_mask(GRID, 0.75, "random", seed=4, batch=2),
    }


@pytest.mark.slow
@pytest.mark.parametrize("name", list(_masks()))
def test_sparse_equals_dense_emulation(model, name, monkeypatch):
    """Both kernels, both GEMM backends, every mask (two images with different masks):
    the dense emulation."""
    x = torch.randn(2, 3, *SIZE, generator=torch.Generator().manual_seed(7))
    mask = _masks()[name]
    with torch.no_grad():
        dense = forward_mixed(model, x, mask)["out"]
    for kernels, backend in itertools.product(("tiles", "rows"), fused.BACKENDS):
        monkeypatch.setitem(fused.GEMM, "cpu", backend)  # the sparse kernels, no shortcut
        run = SparseSelective(model, shortcuts=False, kernels=kernels)
        sparse = run(x, mask)["out"]
        assert run.chosen == {"high": kernels, "low": kernels}
        assert sparse.shape == dense.shape == (2, CLASSES, *SIZE)
        assert (sparse - dense).abs().max() <= TOL * dense.abs().max()
    shortcut = SparseSelective(model)(x, mask)["out"]  # plain networks at densities 0, 1
    assert (shortcut - dense).abs().max() <= TOL * dense.abs().max()


@pytest.mark.slow
@pytest.mark.parametrize("kernels", ["tiles", "rows"])
def test_a_batch_is_its_images_run_one_by_one(kernels):
    """Masks differ per image; gathered across the batch, each image's output is its own."""
    model = _model("avg", seed=3)
    x = torch.randn(3, 3, *SIZE, generator=torch.Generator().manual_seed(9))
    mask = torch.cat([forced_mask(GRID, 0.3, "blobs", seed=1), forced_mask(GRID, 0.5, "random"),
                      forced_mask(GRID, 0.8, "random", seed=2)])
    run = SparseSelective(model, shortcuts=False, kernels=kernels)
    batch = run(x, mask)["out"]
    for i in range(3):
        alone = run(x[i:i + 1], mask[i:i + 1])["out"]
        assert (batch[i:i + 1] - alone).abs().max() <= TOL * alone.abs().max()
    # the tile plan holds each image's own tiles: tile (b, ty, tx) rows for all three images
    grid = SparseGrid(mask[:, 0] > 0.5, (9, 7), 2, "avg")
    plan = blocksparse.TilePlan(grid, "high", 2)
    assert set(plan.tiles[:, 0].tolist()) == {0, 1, 2}


@pytest.mark.slow
@pytest.mark.parametrize("kernels", ["tiles", "rows"])
def test_aspp_taps_partly_outside_the_map(kernels):
    """Rates 2, 3, 5 on the 9 x 7 map: the ASPP's outer taps are inside for some outputs."""
    model = _model("avg", rates=(2, 3, 5))
    x = torch.randn(2, 3, *SIZE, generator=torch.Generator().manual_seed(5))
    mask = forced_mask(GRID, 0.5, "blobs", seed=6, batch=2)
    grid = SparseGrid(mask[:, 0] > 0.5, (9, 7), 2, "avg")
    assert 0 < len(grid.pairs(grid.taps("high", 5))[0]) < 8 * grid.n_active
    assert 0 < len(grid.pairs(grid.taps("low", 2))[0]) < 8 * grid.n_low
    with torch.no_grad():
        dense = forward_mixed(model, x, mask)["out"]
    sparse = SparseSelective(model, kernels=kernels)(x, mask)["out"]
    assert (sparse - dense).abs().max() <= TOL * dense.abs().max()


@pytest.mark.slow
def test_density_0_is_the_plain_output_stride_8_network(model):
    x = torch.randn(1, 3, *SIZE)
    with torch.no_grad():
        layer2 = model.backbone.early(x)["layer2"]
        plain = model.head({"out": model.backbone.high(layer2)[1]})
        plain = F.interpolate(plain, size=SIZE, mode="bilinear", align_corners=False)
    sparse = SparseSelective(model, shortcuts=False)(x, torch.zeros(1, 1, *GRID))["out"]
    assert (sparse - plain).abs().max() <= TOL * plain.abs().max()


@pytest.mark.slow
def test_density_1_is_the_low_path_network(model):
    x = torch.randn(1, 3, *SIZE)
    with torch.no_grad():
        layer2 = model.backbone.early(x)["layer2"]
        low = model.low_head({"out": model.backbone.low(layer2)})  # stride 16, rates / 2
        low = upsample_mask(low, 2, layer2.shape[-2:])
        low = F.interpolate(low, size=SIZE, mode="bilinear", align_corners=False)
    sparse = SparseSelective(model, shortcuts=False)(x, torch.ones(1, 1, *GRID))["out"]
    assert (sparse - low).abs().max() <= TOL * low.abs().max()


@pytest.mark.slow
def test_low_head_rates_are_divided_by_the_patch():
    model = _model()
    rates = [b[0].dilation[0] for b in model.low_head.aspp.convs[1:-1]]
    assert rates == [6, 12, 18]
    assert model.low_head.aspp.convs[1][0].weight is model.head.aspp.convs[1][0].weight


@pytest.mark.slow
def test_evaluation_runs_sparse_and_training_the_differentiable_emulation():
    model = _model()
    x = torch.randn(2, 3, *SIZE)
    out = model(x)  # eval: sparse kernels, the mask net's own mask
    with torch.no_grad():
        ref = forward_mixed(model, x)["out"]
    assert (out["out"] - ref).abs().max() <= TOL * ref.abs().max()
    model.train()
    train_out = model(x)
    loss = train_out["out"].square().mean() + model.extra_losses(train_out)["mask_target"]
    loss.backward()
    grads = [p.grad for p in model.mask_net.parameters()]
    assert all(g is not None for g in grads) and any(g.abs().sum() > 0 for g in grads)


@pytest.mark.slow
def test_dense_execution_checkpoint_fills_the_low_head():
    dense = _model(execution="dense", seed=1)
    sparse = _model(execution="sparse", seed=2)
    sparse.load_state_dict(dense.state_dict())
    assert torch.equal(sparse.low_head.conv[1].running_var, dense.head.conv[1].running_var)
    assert torch.equal(sparse.head.classifier.weight, dense.head.classifier.weight)
    # and the sparse executor runs a dense-execution model (a tied low head is made)
    out = SparseSelective(dense)(torch.randn(1, 3, *SIZE), torch.ones(1, 1, *GRID))["out"]
    assert out.shape == (1, CLASSES, *SIZE) and torch.isfinite(out).all()
    # made from a model in training mode (as a trial's latency timing does), the copy
    # evaluates: at batch 1 the ASPP's pooled 1x1 map has no training statistics
    assert not SparseSelective(dense.train()).low_head.training


def test_a_low_path_with_its_own_weights_is_refused():
    """Both paths run in one GEMM per conv, so their parameters must be one (tied)."""
    model = _model()
    run = SparseSelective(model)  # as built: tied
    bn = model.backbone.low_layer3[0].bn1  # untied after the executor was made: refused
    bn.weight = torch.nn.Parameter(bn.weight.detach().clone())
    mask = forced_mask(GRID, 0.5, "blobs")
    with pytest.raises(ValueError, match="low path's batch norm to share the high path's"):
        run(torch.randn(1, 3, *SIZE), mask)
    conv2 = model.backbone.low_layer4[1].conv2
    conv2.weight = torch.nn.Parameter(conv2.weight.detach().clone())
    with pytest.raises(ValueError, match=r"low path's 0\.bn1\.weight to be the high path's"):
        SparseSelective(model)
    # a low path with a parameter the high path lacks is refused too, not read on a prefix
    model = _model()
    model.backbone.low_layer4.register_parameter("extra", torch.nn.Parameter(torch.ones(1)))
    with pytest.raises(ValueError, match="it has 31 parameters, the high path 30"):
        SparseSelective(model)


def test_grid_rows_on_a_hand_made_mask():
    # 3 x 3 map, patch 2: cells [[down, full], [full, full]]; the down cell holds 4 pixels
    down = torch.tensor([[[True, False], [False, False]]])
    grid = SparseGrid(down, (3, 3), 2, "fixed")
    assert grid.active.tolist() == [2, 5, 6, 7, 8]
    assert grid.low.tolist() == [0]
    assert grid.row_high.tolist() == [5, 5, 0, 5, 5, 1, 2, 3, 4]
    # low cell 0's neighbours on the 2 x 2 grid read the top-left pixel of each full cell
    assert grid.row_low.tolist() == [5, 0, 2, 4]
    assert grid.low_pixels.tolist() == [4.0]
    assert grid.taps("low", 1).tolist() == [[6, 6, 6, 6, 5, 0, 6, 2, 4]]  # 6 = the zero row


@pytest.mark.parametrize("seed", range(4))
def test_tap_tables_read_each_neighbours_row_or_the_zero_row(seed):
    """``taps`` (all nine taps in one pass) against a loop over outputs and taps, and
    ``pairs`` against ``taps``: every non-centre tap inside the map, tap after tap."""
    g = torch.Generator().manual_seed(seed)
    down = torch.rand(2, 4, 3, generator=g) < 0.5
    grid = SparseGrid(down, (7, 6), 2, ("fixed", "avg")[seed % 2])
    for path, k in itertools.product(("high", "low"), (1, 2, 5)):
        row_map, own = grid.row_map(path), grid.own(path)
        _, h, w = row_map.shape
        expected = [[int(row_map[b, y + k * ty, x + k * tx])
                     if 0 <= y + k * ty < h and 0 <= x + k * tx < w else grid.zero
                     for ty, tx in itertools.product((-1, 0, 1), repeat=2)]
                    for b, y, x in own.nonzero().tolist()]  # raster order = row order
        taps = grid.taps(path, k)
        assert taps.tolist() == expected
        outputs, rows, bounds = grid.pairs(taps)
        pairs = [(t, i, r) for t in range(9) if t != 4
                 for i, r in enumerate(taps[:, t].tolist()) if r != grid.zero]
        assert list(zip(bounds, bounds[1:])) == [
            (sum(p[0] < t for p in pairs), sum(p[0] <= t for p in pairs)) for t in range(9)]
        assert list(zip(outputs.tolist(), rows.tolist())) == [(i, r) for _, i, r in pairs]


def test_grid_avg_pooling_matches_pool_patches():
    down = torch.tensor([[[True, False], [False, False]]])
    grid = SparseGrid(down, (3, 3), 2, "avg")
    fmap = torch.arange(18.0).view(1, 2, 3, 3)
    rows = fmap.permute(0, 2, 3, 1).reshape(-1, 2)[grid.active]
    expected = pool_patches(fmap, 2, "avg").permute(0, 2, 3, 1).reshape(-1, 2)[1:]
    assert torch.allclose(grid.pool(rows), expected)


@pytest.mark.parametrize("layout", ["random", "blobs"])
def test_forced_mask_has_the_exact_share_of_down_sampled_cells(layout):
    for density in (0.0, 0.25, 0.5, 0.75, 1.0):
        mask = forced_mask((8, 16), density, layout, batch=2)
        assert mask.shape == (2, 1, 8, 16)
        assert mask.flatten(1).sum(1).tolist() == [round(density * 128)] * 2


def test_blob_masks_are_compact():
    blobs, scattered = forced_mask((16, 32), 0.5, "blobs"), forced_mask((16, 32), 0.5, "random")

    def boundary(m):  # horizontally and vertically adjacent cells that differ
        return int((m[..., 1:, :] != m[..., :-1, :]).sum() + (m[..., 1:] != m[..., :-1]).sum())

    assert boundary(blobs) < boundary(scattered) / 3


@pytest.mark.slow
def test_sparse_runs_under_autocast_in_float32():
    model = _model()
    x, mask = torch.randn(1, 3, *SIZE), forced_mask(GRID, 0.5)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = SparseSelective(model)(x, mask)["out"]  # early layers bf16, rows fp32
    with torch.no_grad():
        ref = forward_mixed(model, x, mask)["out"]
    assert out.dtype == torch.float32
    assert (out - ref).abs().max() <= 0.05 * ref.abs().max()
