"""Each optional extra is named once (``ablate.extras``, the same as pyproject.toml's), and
a feature whose extra is missing says so in one line naming the extra: tested here with
the extra's packages hidden, as on a machine with the core install only."""

from __future__ import annotations

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
            "eval.runtimes needs onnxruntime: pip install 'ablate[runtimes]'")
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
        f"Error: --tracking {sink} needs {modules}: pip install 'ablate[{extra}]'")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["valid.toml"]


def test_parquet_without_pyarrow(tmp_path):
    db = make_database(tmp_path)
    before = snapshot(tmp_path)
    with hidden("pyarrow"):
        result = invoke(["export", "existing", "--db", str(db), "--parquet",
                         str(tmp_path / "t.parquet")])
    assert assert_refused(result) == (
        "Error: --parquet needs pyarrow: pip install 'ablate[parquet]'")
    assert snapshot(tmp_path) == before


def test_postgresql_without_its_driver(tmp_path):
    with hidden("psycopg"):
        result = invoke(["status", "--db", "postgresql+psycopg://ablate@127.0.0.1:1/x"])
    line = assert_refused(result, "its driver is not installed")
    assert line.endswith("; pip install 'ablate[postgres]'"), line


def test_onnxruntime_without_the_runtimes_extra(tmp_path):
    recipe = tmp_path / "valid.toml"
    recipe.write_text(VALID.replace("[base.train]", '[base.eval]\nruntimes = ["eager", "onnxruntime"]\n\n'
                                                    "[base.train]"))
    with hidden("onnx", "onnxruntime"):
        result = invoke(["run", str(recipe), "--db", str(tmp_path / "r.db")])
    line = assert_refused(result, "eval.runtimes: 'onnxruntime' needs onnx, onnxruntime: "
                                  "pip install 'ablate[runtimes]'")
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
    assert_refused(result, "data.name = 'coco' needs pycocotools: pip install 'ablate[coco]'")
    assert not (tmp_path / "r.db").exists()
