"""Runtimes as an ablation axis: keys, parity against eager, unsupported models, recipe keys."""

from __future__ import annotations

import itertools

import pytest
import torch
from pydantic import ValidationError
from torch import nn

from ablate import extras
from ablate.catalog import BACKBONES, HEADS
from ablate.errors import UserInputError
from ablate.evaluate.runtime_keys import (
    PARITY_MIOU_TOLERANCE,
    metric_key,
    parse_metric_key,
    runtime_problems,
)
from ablate.evaluate.runtimes import Parity, fit_to, measure_runtimes
from ablate.models.build import build_model
from ablate.recipes.schema import EvalSpec, ModelSpec
from tests.install.hiding import hidden

CPU = torch.device("cpu")
BUILTIN_BACKBONES = BACKBONES.builtin_names()
BUILTIN_HEADS = HEADS.builtin_names()


def test_metric_key_carries_runtime_and_batch_size():
    assert metric_key("latency_ms", "onnxruntime", 8) == "latency_ms@onnxruntime/bs8"
    assert metric_key("parity_ok", "compile") == "parity_ok@compile"
    assert parse_metric_key("latency_ms@onnxruntime/bs8") == ("latency_ms", "onnxruntime", 8)
    assert parse_metric_key("parity_agree@compile") == ("parity_agree", "compile", None)
    for other in ("latency_ms", "iou/road", "latency_ms@onnx/bs8", "latency_ms@eager/b8"):
        assert parse_metric_key(other) is None


def test_missing_package_names_the_extra():
    with hidden("onnxruntime"):
        problems = runtime_problems(["eager", "compile", "onnxruntime"])
    assert problems == [
        f"eval.runtimes: 'onnxruntime' needs onnxruntime: {extras.install_command('runtimes')}"]


def test_a_missing_runtime_package_stops_the_run_before_anything_is_recorded():
    from ablate.dispatch.preflight import require_inputs
    from ablate.recipes.schema import TrialSpec

    trial = type("T", (), {"name": "base/seed=0", "arch_id": "a",
                           "spec": TrialSpec.model_validate(
                               {"eval": {"runtimes": ["eager", "onnxruntime"]}})})()
    with pytest.raises(UserInputError) as err, hidden("onnx", "onnxruntime"):
        require_inputs([trial], "recipe.toml")
    assert str(err.value) == ("recipe.toml: trial base/seed=0: eval.runtimes: 'onnxruntime' "
                              f"needs onnx, onnxruntime: {extras.install_command('runtimes')}")


@pytest.mark.parametrize("bad, message", [
    ({"runtimes": ["onnx"]}, "Input should be 'eager', 'compile', 'onnxruntime' or 'tensorrt'"),
    ({"runtimes": []}, "must list at least one value"),
    ({"runtimes": ["eager", "eager"]}, "lists a value twice"),
    ({"runtimes": ["onnxruntime"]}, "must include 'eager'"),
    ({"latency_batch_sizes": [0]}, "greater than 0"),
    ({"latency_batch_sizes": [100_000]}, "less than or equal to 4096"),
    ({"latency": False, "latency_batch_sizes": [1, 8]}, "eval.latency_batch_sizes: not read"),
])
def test_bad_runtime_keys_are_refused(bad, message):
    with pytest.raises(ValidationError, match=message):
        EvalSpec.model_validate(bad)


def test_runtime_keys_defaults_leave_trial_ids_unchanged():
    from ablate.recipes.schema import TrialSpec
    from ablate.trials.ids import spec_dict, trial_id

    spec = EvalSpec()
    assert (spec.runtimes, spec.latency_batch_sizes, spec.latency_threads) == (["eager"], [1], None)
    plain = TrialSpec()
    spelled = TrialSpec.model_validate({"eval": {"runtimes": ["eager"], "latency_batch_sizes": [1],
                                                 "latency_threads": None}})
    assert "runtimes" not in spec_dict(plain)["eval"] and trial_id(spelled) == trial_id(plain)
    asked = TrialSpec.model_validate({"eval": {"latency_batch_sizes": [1, 8]}})
    assert spec_dict(asked)["eval"]["latency_batch_sizes"] == [1, 8]
    assert trial_id(asked) != trial_id(plain)
    # a stored spec validates back to the same trial
    assert TrialSpec.model_validate(spec_dict(asked)) == asked


def test_parity_figures_by_hand():
    eager = torch.tensor([[[[1.0, -2.0]], [[0.0, 4.0]]]])  # 1 x 2 classes x 1 x 2: argmax 0, 1
    other = torch.tensor([[[[1.5, -2.0]], [[2.0, 3.0]]]])  # argmax 1, 1
    labels = torch.tensor([[[0, 1]]])
    p = Parity(2)
    p.update(eager, other, labels)
    figures = p.figures("onnxruntime", eager_miou=1.0)
    assert figures["parity_max_abs@onnxruntime"] == 2.0
    assert figures["parity_max_rel@onnxruntime"] == 0.5  # 2 over the largest eager logit, 4
    assert figures["parity_agree@onnxruntime"] == 0.5
    # predictions 1, 1 against truth 0, 1: IoU_0 = 0/1, IoU_1 = 1/2
    assert figures["miou@onnxruntime"] == 0.25
    assert figures["parity_miou_diff@onnxruntime"] == -0.75
    assert figures["parity_ok@onnxruntime"] == 0.0


def test_parity_with_another_output_shape_is_not_ok():
    p = Parity(2)
    p.update(torch.zeros(1, 2, 4, 4), torch.zeros(1, 2, 2, 2), torch.zeros(1, 4, 4))
    assert p.figures("onnxruntime", 0.5) == {"parity_ok@onnxruntime": 0.0}
    assert p.problem == "output shape (1, 2, 2, 2) differs from eager's (1, 2, 4, 4)"


def test_parity_images_are_cropped_or_padded_to_the_exported_size():
    images = torch.arange(2 * 3 * 3 * 5, dtype=torch.float32).view(2, 3, 3, 5)
    labels = torch.ones(2, 3, 5, dtype=torch.int64)
    fitted, fitted_labels = fit_to(images, labels, (4, 2))
    assert fitted.shape == (2, 3, 4, 2) and fitted_labels.shape == (2, 4, 2)
    assert torch.equal(fitted[:, :, :3, :], images[:, :, :, :2])  # right columns cropped
    assert fitted[:, :, 3].abs().sum() == 0  # a padded bottom row of zeros...
    assert fitted_labels[:, 3].eq(255).all() and fitted_labels[:, :3].eq(1).all()  # ...ignored
    same = fit_to(images, labels, (3, 5))
    assert same[0] is images and same[1] is labels


def _buildable() -> list[tuple[str, str]]:
    out = []
    for backbone, head in itertools.product(BUILTIN_BACKBONES, BUILTIN_HEADS):
        try:
            with torch.device("meta"):
                build_model(ModelSpec(backbone=backbone, head=head), 3)
        except UserInputError:  # e.g. fcn8s is defined on SqueezeNet only
            continue
        out.append((backbone, head))
    return out


def _images(n_classes: int, size: int = 64, batch: int = 2
            ) -> list[tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(0)
    return [(torch.randn(batch, 3, size, size, generator=g),
             torch.randint(0, n_classes, (batch, size, size), generator=g))]


def _check_parity(model: nn.Module, runtime: str, size: int = 32,
                  batch_sizes: tuple[int, ...] = (1, 2)) -> dict[str, float]:
    report = measure_runtimes(model, (size, size), CPU, runtimes=["eager", runtime],
                              batch_sizes=batch_sizes, warmup=1, runs=2, threads=1,
                              images=_images(3, size, batch_sizes[-1]), n_classes=3)
    m = report.metrics
    assert report.details[runtime]["status"] == "ok", report.details[runtime]
    assert m[f"supported@{runtime}"] == 1.0 and m["latency_threads"] == 1.0
    assert all(m[f"latency_ms@{runtime}/bs{bs}"] > 0 for bs in batch_sizes)
    # untrained deep nets (ResNet-101) reach logits of 1e2..1e3: compare relative to them
    assert 0 <= m[f"parity_max_abs@{runtime}"] < 1e-2
    assert m[f"parity_max_rel@{runtime}"] < 1e-5
    assert m[f"parity_agree@{runtime}"] > 0.999
    assert abs(m[f"miou@{runtime}"] - m["miou@eager"]) <= PARITY_MIOU_TOLERANCE
    assert m[f"parity_ok@{runtime}"] == 1.0
    return m


@pytest.mark.slow
def test_every_builtin_backbone_and_head_pair_is_covered():
    pairs = _buildable()
    # fcn8s reads SqueezeNet's pool taps only; LR-ASPP needs a stride-8 tap SqueezeNet lacks
    assert ("squeezenet1_0", "fcn8s") in pairs and ("resnet50", "fcn8s") not in pairs
    assert ("squeezenet1_0", "lraspp") not in pairs
    assert len(pairs) == 4 * 4 + 4 == 20


@pytest.mark.slow
@pytest.mark.parametrize("backbone, head", _buildable())
def test_onnxruntime_parity_for_every_builtin_model(backbone, head):
    pytest.importorskip("onnxruntime")
    torch.manual_seed(0)
    model = build_model(ModelSpec(backbone=backbone, head=head), 3)
    model.train()
    _check_parity(model, "onnxruntime")
    assert model.training  # measuring leaves the model's mode as it found it


@pytest.mark.slow
def test_onnxruntime_parity_for_selective_downsampling():
    pytest.importorskip("onnxruntime")
    torch.manual_seed(0)
    spec = ModelSpec.model_validate({"backbone": "resnet50", "head": "deeplabv3",
                                     "output_stride": 8, "selective": {"enabled": True}})
    _check_parity(build_model(spec, 3), "onnxruntime")


class SpectralHead(nn.Module):
    """A model ONNX cannot express (no FFT in opset 17): unsupported, not a crash."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 1)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"out": torch.fft.fft2(self.conv(x)).real}


def test_a_model_that_does_not_export_is_recorded_unsupported_and_eager_still_timed():
    pytest.importorskip("onnxruntime")
    report = measure_runtimes(SpectralHead(), (16, 16), CPU, runtimes=["eager", "onnxruntime"],
                              batch_sizes=[1], warmup=1, runs=2, threads=1,
                              images=_images(3, 16), n_classes=3)
    detail = report.details["onnxruntime"]
    assert detail["status"] == "unsupported"
    assert detail["reason"] == ("UnsupportedOperatorError: Exporting the operator "
                                "'aten::fft_fft2' to ONNX opset version 17 is not supported")
    assert report.metrics["supported@onnxruntime"] == 0.0
    assert "latency_ms@onnxruntime/bs1" not in report.metrics
    assert report.metrics["latency_ms@eager/bs1"] > 0


def test_tensorrt_without_cuda_is_unsupported_with_its_reason(monkeypatch):
    monkeypatch.setattr("ablate.evaluate.runtimes.missing_packages", lambda runtime: [])
    report = measure_runtimes(SpectralHead(), (8, 8), CPU, runtimes=["eager", "tensorrt"],
                              warmup=1, runs=1, threads=1)
    assert report.details["tensorrt"] == {
        "threads": 1, "status": "unsupported",
        "reason": "needs a CUDA device (the trial ran on cpu)"}


@pytest.mark.slow
def test_compile_parity_on_a_tiny_squeezenet_fcn():
    torch.manual_seed(0)
    model = build_model(ModelSpec(backbone="squeezenet1_0", head="fcn8s"), 3)
    m = _check_parity(model, "compile", batch_sizes=(1,))  # one shape: one compilation
    assert m["prepare_seconds@compile"] > 0


RUNTIME_RECIPE = """
name = "rt"
description = "two configurations, eager and ONNX Runtime at batch 1 and 2"
seeds = [0]

[base.model]
backbone = "mobilenet_v3_small"
head = "lraspp"

[base.data]
name = "shapes"
classes = 3
image_size = 32
train_images = 8
val_images = 4

[base.train]
epochs = 1
batch_size = 4

[base.eval]
batch_size = 4
latency_runs = 2
latency_warmup = 1
runtimes = ["eager", "onnxruntime"]
latency_batch_sizes = [1, 2]
latency_threads = 1

[grid]
"model.head" = ["lraspp", "fcn"]
"""


@pytest.mark.slow
def test_a_study_records_runtime_figures_and_the_report_shows_them(write_recipe, tmp_path):
    pytest.importorskip("onnxruntime")
    import json

    from click.testing import CliRunner

    from ablate.cli import main
    from ablate.store import Store

    db = tmp_path / "rt.db"
    recipe = write_recipe(RUNTIME_RECIPE)
    run = CliRunner().invoke(main, ["run", str(recipe), "--db", str(db),
                                    "--runs-dir", str(tmp_path / "runs")])
    assert run.exit_code == 0, run.output
    trials = Store(str(db)).trials("rt")
    assert {t.status for t in trials} == {"done"} and len(trials) == 2
    for t in trials:
        m = t.metrics
        assert m["latency_threads"] == 1.0
        assert m["latency_ms"] == m["latency_ms@eager/bs1"] > 0
        assert m["latency_ms@onnxruntime/bs2"] > 0
        assert m["parity_ok@onnxruntime"] == 1.0 and m["parity_agree@onnxruntime"] == 1.0
        # the eager pass of the parity check scores what the evaluation scored
        assert m["miou@eager"] == pytest.approx(m["miou"], abs=1e-12)
        onnx = t.environment["runtimes"]["onnxruntime"]
        assert (onnx["status"], onnx["device"], onnx["threads"]) == ("ok", "cpu", 1)

    rows = json.loads(CliRunner().invoke(main, ["report", "--db", str(db), "--json"]).output)
    for row in rows:
        assert row["x_eager@onnxruntime/bs2"] == pytest.approx(
            row["latency_ms@onnxruntime/bs2"] / row["latency_ms@eager/bs2"])
        assert row["parity_agree@onnxruntime"] == 100.0 and row["parity_ok@onnxruntime"] == 1.0
    table = CliRunner().invoke(main, ["report", "--db", str(db), "--format", "markdown"])
    assert table.exit_code == 0, table.output
    assert "rt: runtimes and batch sizes" in table.output
    assert "| head=fcn | onnxruntime |" in table.output and "| ok |" in table.output

    out = tmp_path / "plots"
    plots = CliRunner().invoke(main, ["report", "--db", str(db), "--out", str(out),
                                      "--x", "latency_ms@onnxruntime/bs2"])
    assert plots.exit_code == 0, plots.output
    assert (out / "pareto_latency_ms_onnxruntime_bs2.png").stat().st_size > 1000
    assert (out / "latency_by_batch.svg").read_text().startswith("<?xml")


def test_parity_on_evaluation_images_of_another_size_than_the_export():
    pytest.importorskip("onnxruntime")
    torch.manual_seed(0)
    model = build_model(ModelSpec(backbone="squeezenet1_0", head="fcn8s"), 3)
    g = torch.Generator().manual_seed(0)
    images = [(torch.randn(2, 3, 40, 28, generator=g), torch.randint(0, 3, (2, 40, 28)))]
    report = measure_runtimes(model, (32, 32), CPU, runtimes=["eager", "onnxruntime"],
                              warmup=1, runs=1, threads=1, images=images, n_classes=3)
    assert report.metrics["parity_ok@onnxruntime"] == 1.0
    assert report.metrics["parity_agree@onnxruntime"] == 1.0
