"""Run-time inputs are checked before anything is recorded: `run` refuses, `plan`/`cost` warn."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from ablate.cli import main
from ablate.dispatch import preflight
from ablate.dispatch.prepare import load_trials
from ablate.errors import one_line
from ablate.store import Store
from tests.data.fixtures import write_voc

REPO = Path(__file__).resolve().parents[2]

VOC_RECIPE = """
name = "vocfirst"
seeds = [0]

[base.model]
backbone = "mobilenet_v3_small"
head = "lraspp"

[base.data]
name = "voc2012"
root = "{root}"

[base.train]
epochs = 1
batch_size = 2

[grid]
"model.keep_last_expansion" = [true, false]
"train.lr" = [0.01, 0.02]
"""


def _run(args: list[str]):
    return CliRunner().invoke(main, args)


def _one_line_error(result, limit: int = 300) -> str:
    """The whole stderr: one line, at most ``limit`` characters, no traceback."""
    assert result.exit_code == 2, result.output
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert len(lines[0]) <= limit, len(lines[0])
    assert "Traceback" not in result.output
    return lines[0]


def _voc_root(tmp_path: Path) -> Path:
    root = tmp_path / "voc"
    ids = ["a", "b", "c"]
    label = np.zeros((20, 24), dtype=np.uint8)
    label[5:10, 5:10] = 1
    write_voc(root, {i: label for i in ids}, {"train": ids[:2], "val": ids[2:]})
    return root


def test_first_run_without_data_records_nothing(tmp_path, write_recipe):
    recipe = write_recipe(VOC_RECIPE.format(root=tmp_path / "nowhere"))
    db = tmp_path / "first.db"
    result = _run(["run", str(recipe), "--db", str(db)])
    line = _one_line_error(result)
    assert f"data.root: {tmp_path / 'nowhere'} not found" in line
    assert "--set data.name=shapes" in line
    assert not db.exists()  # not even an empty database
    # once the data is in place the same command gets past the check
    assert preflight.find_problems(load_trials(str(recipe))[1]) != []
    _voc_root(tmp_path).rename(tmp_path / "nowhere")
    assert preflight.find_problems(load_trials(str(recipe))[1]) == []


def test_the_seed_recipe_as_a_new_user_runs_it(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no data/coco, no data/voc here
    db = tmp_path / "new.db"
    result = _run(["run", str(REPO / "recipes/mnv3_expansion.toml"), "--db", str(db)])
    line = _one_line_error(result)
    assert "data.root: data/coco not found" in line
    assert "--set data.name=shapes --set eval_data.name=shapes" in line
    assert not db.exists()
    Store(str(db))  # an existing database stays without the study too
    again = _run(["run", str(REPO / "recipes/mnv3_expansion.toml"), "--db", str(db)])
    assert again.exit_code == 2
    assert Store(str(db)).studies() == []


def test_data_root_that_is_a_file(tmp_path, write_recipe):
    afile = tmp_path / "voc.tar"
    afile.write_bytes(b"not a folder")
    recipe = write_recipe(VOC_RECIPE.format(root=afile))
    line = _one_line_error(_run(["run", str(recipe), "--db", str(tmp_path / "x.db")]))
    assert f"data.root: {afile} is a file; expected a folder holding Pascal VOC 2012" in line


def test_missing_piece_of_the_layout_is_named_exactly(tmp_path, write_recipe):
    root = _voc_root(tmp_path)
    (root / "VOCdevkit/VOC2012/ImageSets/Segmentation/val.txt").unlink()
    recipe = write_recipe(VOC_RECIPE.format(root=root))
    line = _one_line_error(_run(["run", str(recipe), "--db", str(tmp_path / "x.db")]))
    assert f"data.root: {root / 'VOCdevkit/VOC2012/ImageSets/Segmentation/val.txt'} not found" in line


def test_num_classes_below_the_datasets(tmp_path, write_recipe):
    recipe = write_recipe(VOC_RECIPE.format(root=_voc_root(tmp_path)))
    db = tmp_path / "x.db"
    line = _one_line_error(_run(["run", str(recipe), "--db", str(db),
                                 "--set", "model.num_classes=2"]))
    assert "model.num_classes: 2 is fewer than the 21 classes of voc2012" in line
    assert not db.exists()


def test_weights_file_that_is_not_a_state_dict(tmp_path, write_recipe):
    recipe = write_recipe(VOC_RECIPE.format(root=_voc_root(tmp_path)))
    pickled = tmp_path / "namespace.pt"  # torch refuses it with a ~500-character advice
    torch.save(argparse.Namespace(a=1), pickled)
    listed = tmp_path / "list.pt"
    torch.save([torch.zeros(1)], listed)
    folder = tmp_path / "weights_dir"
    folder.mkdir()
    for path, expected in ((pickled, f"{pickled} holds pickled Python objects"),
                           (listed, f"{listed}: not a state dict"),
                           (folder, f"model.weights_path: {folder} is a folder")):
        line = _one_line_error(_run(["run", str(recipe), "--db", str(tmp_path / "x.db"),
                                     "--set", f"model.weights_path='{path}'"]))
        assert expected in line
    assert not (tmp_path / "x.db").exists()


def test_plan_and_cost_warn_and_exit_0(tmp_path, write_recipe):
    recipe = write_recipe(VOC_RECIPE.format(root=tmp_path / "nowhere"))
    plan = _run(["plan", str(recipe), "--db", str(tmp_path / "p.db"), "--no-cost"])
    assert plan.exit_code == 0, plan.output
    assert plan.stdout.count("pending") == 4  # the whole table
    warnings = plan.stderr.splitlines()
    assert len(warnings) == 1  # four trials, one data spec: one warning
    assert warnings[0].startswith("Warning: ")
    assert f"data.root: {tmp_path / 'nowhere'} not found" in warnings[0]
    cost = _run(["cost", str(recipe)])
    assert cost.exit_code == 0, cost.output
    assert "params" in cost.stdout
    assert cost.stderr.splitlines() == warnings


def test_cost_warns_only_about_the_trials_it_counts(tmp_path, write_recipe):
    """``--variant``, ``--trial`` and ``--diff`` cost a part of the recipe: the inputs of
    the variants left out (here another variant's missing weights file) are not its
    warnings; they were, naming a trial it never counted."""
    missing = tmp_path / "missing.pt"
    recipe = write_recipe(f"""
        [base.model]
        backbone = "mobilenet_v3_small"
        head = "lraspp"
        [base.eval]
        resolution = [32, 32]
        [variants.plain]
        model.num_classes = 6
        [variants.other]
        model.num_classes = 7
        [variants.loaded]
        model.num_classes = 8
        model.weights_path = "{missing}"
        """)
    everything = _run(["cost", str(recipe)])
    assert everything.exit_code == 0, everything.output
    (warning,) = everything.stderr.splitlines()
    assert f"trial loaded/seed=0: model.weights_path: {missing} not found" in warning
    for args in (["--variant", "plain"], ["--diff", "plain", "other"],
                 ["--trial", trial_ids(recipe)["other"]]):
        result = _run(["cost", str(recipe), *args])
        assert result.exit_code == 0, result.output
        assert "params" in result.stdout
        assert result.stderr == "", args
    for args in (["--variant", "loaded"], ["--diff", "plain", "loaded"]):
        result = _run(["cost", str(recipe), *args])
        assert result.exit_code == 0, result.output
        assert result.stderr.splitlines() == [warning], args


def trial_ids(recipe: Path) -> dict[str, str]:
    """Each variant's trial id, as ``ablate cost --json`` lists them."""
    result = _run(["cost", str(recipe), "--json"])
    return {arch["variant"]: arch["trial_ids"][0] for arch in json.loads(result.stdout)}


USER_DATA_RECIPE = """
name = "userdata"
[base.model]
backbone = "mobilenet_v3_small"
head = "lraspp"
num_classes = 3
[base.data]
builder = "{builder}"
[base.eval]
resolution = [32, 32]
"""


def test_a_user_dataset_function_that_cannot_be_imported(tmp_path, write_recipe):
    """``data.builder`` names a module or function that is not there: ``plan`` warns,
    ``run`` refuses before recording, and the line names data.builder."""
    db = tmp_path / "u.db"
    for builder, expected in (
            ("os.path:nonexistent", "data.builder: module 'os.path' has no attribute "
                                    "'nonexistent'"),
            ("os:sep", "data.builder: os:sep is a str, not a function")):
        recipe = write_recipe(USER_DATA_RECIPE.format(builder=builder))
        plan = _run(["plan", str(recipe), "--db", str(db), "--no-cost"])
        assert plan.exit_code == 0, plan.output
        assert [w for w in plan.stderr.splitlines() if expected in w], plan.stderr
        line = _one_line_error(_run(["run", str(recipe), "--db", str(db)]))
        assert expected in line and "trial base/seed=0" in line
    assert Store(str(db)).studies() == []  # plan made the database; run recorded nothing
    # a missing module or one without a source file: no trial id, so plan refuses too
    for builder, expected in (
            ("no_such_package.data:build", "data.builder: cannot import 'no_such_package.data'"),
            ("builtins:int", "data.builder: 'builtins:int' has no source file to hash")):
        recipe = write_recipe(USER_DATA_RECIPE.format(builder=builder))
        assert expected in _one_line_error(_run(["plan", str(recipe), "--db", str(db)]))


def test_a_misspelt_data_argument_is_refused_before_anything_is_recorded(
        tmp_path, write_recipe, monkeypatch):
    """A ``data.args`` key the function does not take: ``run`` refuses in one line (it
    failed every trial, one by one, with the builder's TypeError), ``plan`` warns."""
    (tmp_path / "typods.py").write_text("def build(count=4, size=8):\n    return [], []\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    db = tmp_path / "t.db"
    recipe = write_recipe(USER_DATA_RECIPE.format(builder="typods:build")
                          + "[base.data.args]\ncout = 3\n")
    expected = "data.args.cout: typods:build has no argument 'cout'; allowed: count, size"
    plan = _run(["plan", str(recipe), "--db", str(db), "--no-cost"])
    assert plan.exit_code == 0, plan.output
    assert [w for w in plan.stderr.splitlines() if expected in w], plan.stderr
    line = _one_line_error(_run(["run", str(recipe), "--db", str(db)]))
    assert expected in line and "trial base/seed=0" in line
    assert Store(str(db)).studies() == []


def test_plan_without_the_imagenet_file(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    result = _run(["plan", str(REPO / "recipes/selective_downsampling.toml"), "--no-cost",
                   "--db", str(tmp_path / "p.db")])
    assert result.exit_code == 0, result.output
    expected = tmp_path / "hub/checkpoints/resnet101-cd907fc2.pth"
    weights = [w for w in result.stderr.splitlines() if "model.weights = 'imagenet'" in w]
    assert len(weights) == 1 and f"{expected} not found" in weights[0]


def test_each_distinct_spec_is_checked_once(tmp_path, write_recipe, monkeypatch):
    calls = []
    real = preflight._layout_problem
    monkeypatch.setattr(preflight, "_layout_problem",
                        lambda *args: calls.append(args[:3]) or real(*args))
    recipe = write_recipe(VOC_RECIPE.format(root=_voc_root(tmp_path)))
    _, trials = load_trials(str(recipe))
    assert len(trials) == 4
    assert preflight.find_problems(trials) == []
    assert len(calls) == 1


@pytest.mark.parametrize("text", ["short", "x" * 1000])
def test_clip_keeps_one_short_line(text):
    line = one_line(text + "\nsecond line", preflight.MAX_MESSAGE)
    assert "\n" not in line and len(line) <= preflight.MAX_MESSAGE
    assert line.startswith(text[:100])
