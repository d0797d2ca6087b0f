"""examples/custom_unet on the single-node Slurm cluster: the user's package reaches the
jobs through PYTHONPATH exported in the submitting environment (README: "On Slurm")."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from ablate.cli import main
from ablate.store import Store
from tests.dispatch.conftest import cancel_after, slurm_cluster  # noqa: F401

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "custom_unet"


@pytest.mark.slow
def test_user_model_trials_run_as_slurm_jobs(cancel_after, tmp_path, monkeypatch):  # noqa: F811
    cancel_after("custom_unet")
    pkg = tmp_path / "pkg"
    shutil.copytree(EXAMPLE, pkg, ignore=shutil.ignore_patterns("data", "__pycache__"))
    data = tmp_path / "data"
    subprocess.run([sys.executable, str(pkg / "make_dataset.py"), str(data), "--train", "8",
                    "--val", "4", "--size", "32", "--classes", "4"], check=True,
                   capture_output=True)
    monkeypatch.setenv("PYTHONPATH", str(pkg))  # the jobs inherit it
    monkeypatch.syspath_prepend(str(pkg))  # planning here imports it too
    db = str(tmp_path / "slurm.db")
    out = CliRunner().invoke(main, [
        "run", str(pkg / "recipe.toml"), "--db", db, "--runs-dir", str(tmp_path / "runs"),
        "--executor", "slurm", "--cpus-per-trial", "1", "--time", "10",
        "--variant", "narrow", "--set", f'data.root="{data}"',
        "--set", "train.iterations=2", "--set", "train.batch_size=4"])
    assert out.exit_code == 0, out.output
    records = Store(db).trials("custom_unet")
    assert len(records) == 4 and {r.status for r in records} == {"done"}
    for record in records:
        assert record.environment["slurm_job_id"] and 0 <= record.metrics["miou"] <= 1
    for name in [m for m in sys.modules if m.startswith("custom_unet")]:
        del sys.modules[name]
