"""examples/custom_unet end to end: its dataset script, its recipe as shipped, the report.

The package is not pip-installed: a copy is put on PYTHONPATH, as a Slurm job's
environment would (the entry-point path is tested in tests/models/test_custom.py).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "custom_unet"
ABLATE = [sys.executable, "-m", "ablate"]


def _run(args: list[str], cwd: Path, env: dict[str, str]) -> str:
    done = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


@pytest.fixture
def study(tmp_path):
    pkg = tmp_path / "pkg"
    shutil.copytree(EXAMPLE, pkg, ignore=shutil.ignore_patterns("data", "__pycache__"))
    env = {**os.environ, "PYTHONPATH": str(pkg), "OMP_NUM_THREADS": "1",
           "ABLATE_DB": str(tmp_path / "ablate.db")}
    _run([sys.executable, str(pkg / "make_dataset.py"), "data", "--train", "8", "--val", "4",
          "--size", "32", "--classes", "4"], tmp_path, env)
    return tmp_path, pkg, env


@pytest.mark.slow
def test_example_recipe_runs_and_reports_every_configuration(study):
    cwd, pkg, env = study
    recipe = str(pkg / "recipe.toml")
    tiny = ["--set", "train.iterations=2", "--set", "train.batch_size=4",
            "--runs-dir", str(cwd / "runs")]
    _run([*ABLATE, "run", recipe, "--variant", "narrow", *tiny], cwd, env)
    rows = json.loads(_run([*ABLATE, "report", "--study", "custom_unet", "--format", "json"],
                           cwd, env))
    by_config = {r["config_name"]: r for r in rows}
    assert set(by_config) == {f"narrow[depth={d},skip={s}]" for d in (2, 3)
                              for s in ("concat", "none")}

    # the parameter counts in the report are those of the user's own module
    sys.path.insert(0, str(pkg))
    try:
        from custom_unet.model import build_unet

        from ablate.cost.params import count_parameters
        for (depth, skip) in [(2, "concat"), (2, "none"), (3, "concat"), (3, "none")]:
            row = by_config[f"narrow[depth={depth},skip={skip}]"]
            expected = count_parameters(build_unet(4, depth=depth, width=8, skip=skip))
            assert row["params"] == expected
            assert row["axis:model.args.depth"] == depth and row["axis:model.args.skip"] == skip
            assert 0 <= row["miou_mean"] <= 100 and row["latency_ms"] > 0
    finally:
        sys.path.remove(str(pkg))
        for name in [m for m in sys.modules if m.startswith("custom_unet")]:
            del sys.modules[name]
    # concatenated skips widen the decoder's first convolutions: more parameters
    assert by_config["narrow[depth=3,skip=concat]"]["params"] > \
        by_config["narrow[depth=3,skip=none]"]["params"]

    # ids are stable across processes: nothing left to run
    again = _run([*ABLATE, "run", recipe, "--variant", "narrow", *tiny], cwd, env)
    assert "0 run, 4 skipped" in again

    # editing the model makes new architectures: the old results are not reused
    model = pkg / "custom_unet" / "model.py"
    model.write_text(model.read_text() + "\n# a change to the model\n")
    edited = json.loads(_run([*ABLATE, "plan", recipe, "--json", *tiny[:4]], cwd, env))
    assert {r["status"] for r in edited} == {"pending"}


@pytest.mark.slow
def test_installed_example_registers_its_model_through_the_entry_point(study):
    """pip-installed (into a folder on PYTHONPATH, offline): `ablate models` lists the
    plugin from its real entry point, and `model.builder = "custom_unet"` costs it."""
    pytest.importorskip("setuptools")  # the example builds with the environment's setuptools
    cwd, pkg, env = study
    site = cwd / "site"
    _run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-index",
          "--no-build-isolation", "--target", str(site), str(pkg)], cwd, env)
    env = {**env, "PYTHONPATH": str(site)}  # the installed copy only
    listed = json.loads(_run([*ABLATE, "models", "--json"], cwd, env))
    assert [b for b in listed["builders"] if b["name"] == "custom_unet"] == [{
        "name": "custom_unet", "origin": "plugin custom-unet",
        "path": "custom_unet.model:build_unet", "error": None,
        "arguments": [{"name": "depth", "default": 3, "required": False},
                      {"name": "width", "default": 16, "required": False},
                      {"name": "skip", "default": "concat", "required": False}]}]
    narrow = [*ABLATE, "cost", str(pkg / "recipe.toml"), "--json", "--variant", "narrow"]
    by_name = json.loads(_run([*narrow, "--set", 'model.builder="custom_unet"'], cwd, env))
    by_path = json.loads(_run(narrow, cwd, env))
    assert [r["params"] for r in by_name] == [r["params"] for r in by_path]
    assert len(by_name) == 4 and by_name[0]["num_classes"] == 4
    # a name and an import path are two specs of the same code: two architecture ids
    assert {r["arch_id"] for r in by_name}.isdisjoint(r["arch_id"] for r in by_path)
