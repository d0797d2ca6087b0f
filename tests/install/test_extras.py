"""Each optional extra is named once (``ablate.extras``, the same as pyproject.toml's), and
a feature whose extra is missing says so in one line naming the extra: tested here with
the extra's packages hidden, as on a machine with the core install only."""

from __future__ import annotations

import importlib.metadata
import json
import tomllib
from pathlib import Path

import pytest

from ablate import extras
from tests.data.fixtures import write_coco
from tests.install.hiding import hidden
from tests.validation.harness import VALID, assert_refused, invoke, make_database, snapshot

ROOT = Path(__file__).resolve().parents[2]


def test_the_extras_are_those_of_pyproject_and_all_holds_every_one():
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
        "optional-dependencies"]
    assert set(declared) - {"dev", "all"} == set(extras.EXTRAS)
    assert declared["all"] == [f"ablate[{','.join(extras.EXTRAS)}]"]


def test_the_line_names_what_is_missing_and_the_extra():
    with hidden("onnxruntime"):
        assert extras.missing("runtimes") == ["onnxruntime"]
        assert extras.needs("eval.runtimes", "runtimes") == (
            f"eval.runtimes needs onnxruntime: {extras.install_command('runtimes')}")
    assert extras.missing("runtimes") == []


def _sinks() -> list[tuple[str, str]]:
    from ablate.track.sinks import SINKS

    return [(name, extra) for name, (_, extra) in SINKS.items()]


@pytest.mark.parametrize("sink,extra", _sinks())
def test_a_tracker_without_its_extra_is_refused_before_anything_runs(tmp_path, sink, extra):
    recipe = tmp_path / "valid.toml"
    recipe.write_text(VALID)
    with hidden(*extras.EXTRAS[extra]):
        result = invoke(["run", str(recipe), "--db", str(tmp_path / "r.db"),
                         "--tracking", sink])
    modules = ", ".join(extras.EXTRAS[extra])
    assert assert_refused(result) == (
        f"Error: --tracking {sink} needs {modules}: {extras.install_command(extra)}")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["valid.toml"]


def test_parquet_without_pyarrow(tmp_path):
    db = make_database(tmp_path)
    before = snapshot(tmp_path)
    with hidden("pyarrow"):
        result = invoke(["export", "existing", "--db", str(db), "--parquet",
                         str(tmp_path / "t.parquet")])
    assert assert_refused(result) == (
        f"Error: --parquet needs pyarrow: {extras.install_command('parquet')}")
    assert snapshot(tmp_path) == before


def test_postgresql_without_its_driver(tmp_path):
    with hidden("psycopg"):
        result = invoke(["status", "--db", "postgresql+psycopg://ablate@127.0.0.1:1/x"])
    line = assert_refused(result, "its driver is not installed")
    assert line.endswith(f"; {extras.install_command('postgres')}"), line


def test_onnxruntime_without_the_runtimes_extra(tmp_path):
    recipe = tmp_path / "valid.toml"
    recipe.write_text(VALID.replace("[base.train]", '[base.eval]\nruntimes = ["eager", "onnxruntime"]\n\n'
                                                    "[base.train]"))
    with hidden("onnx", "onnxruntime"):
        result = invoke(["run", str(recipe), "--db", str(tmp_path / "r.db")])
    line = assert_refused(result, "eval.runtimes: 'onnxruntime' needs onnx, onnxruntime: "
                                  f"{extras.install_command('runtimes')}")
    assert str(recipe) in line
    assert not (tmp_path / "r.db").exists()


def test_coco_without_pycocotools(tmp_path):
    root = tmp_path / "coco"
    for split in ("train", "val"):
        write_coco(root, split, [{"id": 1, "file_name": "1.jpg", "height": 8, "width": 8}], [])
    recipe = tmp_path / "valid.toml"
    recipe.write_text(VALID.replace('name = "shapes"', f'name = "coco"\nroot = "{root}"'))
    with hidden("pycocotools"):
        result = invoke(["run", str(recipe), "--db", str(tmp_path / "r.db")])
    assert_refused(result, "data.name = 'coco' needs pycocotools: "
                           f"{extras.install_command('coco')}")
    assert not (tmp_path / "r.db").exists()


def test_the_install_command_is_that_of_this_installation(monkeypatch, tmp_path):
    """PyPI's ``ablate`` is another project: ``pip install 'ablate[mlflow]'`` in a fresh
    environment installed it. From the checkout ablate runs from, the command installs
    this checkout's extra; a direct install pip recorded is named as pip recorded it."""
    monkeypatch.chdir(ROOT)
    assert extras.install_command("mlflow") == "pip install -e '.[mlflow]'"
    monkeypatch.chdir(tmp_path)
    assert extras.install_command("mlflow") == f"pip install -e '{ROOT}[mlflow]'"

    class Installed:  # an ablate installed by pip, not imported from a checkout
        def __init__(self, direct):
            self.direct = direct

        def read_text(self, name):
            return json.dumps(self.direct) if self.direct is not None else None

    monkeypatch.setattr(extras, "__file__", str(tmp_path / "site-packages/ablate/extras.py"))
    for direct, command in [
        ({"url": "file:///src/ablate", "dir_info": {}}, "pip install '/src/ablate[wandb]'"),
        ({"url": "https://github.com/o/ablate", "vcs_info": {"vcs": "git", "commit_id": "ab"}},
         "pip install 'ablate[wandb] @ git+https://github.com/o/ablate'"),
        (None, "pip install 'ablate[wandb]'"),  # from an index: the name is all there is
    ]:
        monkeypatch.setattr(importlib.metadata, "distribution", lambda name, d=direct: Installed(d))
        assert extras.install_command("wandb") == command
