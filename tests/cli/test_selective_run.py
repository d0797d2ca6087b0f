"""The selective down-sampling recipe plans and runs end to end on tiny inputs."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from ablate.cli import main
from ablate.store import Store

# trains a selective network: the slow tier (`pytest -m "not slow"` leaves it out)
pytestmark = pytest.mark.slow

TINY = ["--set", "data.image_size=32", "--set", "data.train_images=8",
        "--set", "data.val_images=4", "--set", "train.epochs=1"]


def test_selective_recipe_plans_with_dense_cost():
    result = CliRunner().invoke(main, ["plan", "recipes/selective_shapes.toml", "--json", *TINY])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.output)
    assert len(rows) == 3
    assert len({r["params"] for r in rows}) == 1  # lambda is not architecture
    assert all(r["gflops"] > 0 and r["resolution"] == [32, 32] for r in rows)


def test_selective_recipe_runs_and_records_density_and_effective_flops(tmp_path):
    db = str(tmp_path / "sel.db")
    result = CliRunner().invoke(main, [
        "run", "recipes/selective_shapes.toml", "--db", db, "--runs-dir", str(tmp_path / "runs"),
        "--trial", "lambda=0.3/seed=0", *TINY])
    assert result.exit_code == 0, result.output
    (trial,) = Store(db).trials("selective_shapes")
    m = trial.metrics
    assert trial.status == "done"
    assert 0.0 <= m["mask_density"] <= 1.0 and m["mask_density_std"] >= 0.0
    # effective cost lies between the all-down-sampled path and the dense model
    assert m["gflops_low_path"] - 1e-9 <= m["gflops_effective"] <= m["gflops_dense"] + 1e-9
    expected = m["gflops_dense"] + m["mask_density"] * (m["gflops_low_path"] - m["gflops_dense"])
    assert abs(m["gflops_effective"] - expected) < 1e-6
    assert m["gflops_mask_net"] > 0
    # the recipe does not time (eval.latency = false): FLOPs never stand in for time
    assert not [key for key in m if key.startswith("latency")]


def test_a_latency_saving_is_two_times_measured_on_the_trials_device(tmp_path):
    db = str(tmp_path / "sel.db")
    result = CliRunner().invoke(main, [
        "run", "recipes/selective_shapes.toml", "--db", db, "--runs-dir", str(tmp_path / "runs"),
        "--trial", "lambda=0.3/seed=0", "--set", "eval.latency=true",
        "--set", "eval.latency_warmup=1", "--set", "eval.latency_runs=2", *TINY])
    assert result.exit_code == 0, result.output
    (trial,) = Store(db).trials("selective_shapes")
    m = trial.metrics
    assert m["latency_ratio_os8"] == m["latency_ms"] / m["latency_ms_os8"]
    assert m["latency_density"] == m["mask_density"]
    assert trial.environment["device"] == "cpu"  # the device all three were timed on
