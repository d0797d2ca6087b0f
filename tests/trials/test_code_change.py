"""Editing any module of a user model's package makes its trials pending, and `plan` says
which files changed; a file outside the package changes nothing."""

from __future__ import annotations

import json
import sqlite3
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from ablate.cli import main
from ablate.store import Store

# every test's fixture trains a study: the slow tier (`pytest -m "not slow"` leaves it out)
pytestmark = pytest.mark.slow

MODEL = '''
from torch import nn

from mypkg.blocks import block


def build(num_classes, width=4):
    return nn.Sequential(block(3, width), nn.Conv2d(width, num_classes, 1))
'''
BLOCKS = '''
from torch import nn


def block(channels_in, channels_out):
    return nn.Sequential(nn.Conv2d(channels_in, channels_out, 3, padding=1), nn.ReLU())
'''
RECIPE = """
name = "mine"
seeds = [0, 1]

[base.model]
builder = "mypkg.model:build"

[base.data]
name = "shapes"
classes = 3
image_size = 16
train_images = 4
val_images = 2

[base.train]
iterations = 1
batch_size = 2

[base.eval]
latency = false
flops = false
"""
PACKAGE_FILES = ["mypkg/__init__.py", "mypkg/blocks.py", "mypkg/model.py"]


@pytest.fixture
def study(tmp_path, monkeypatch):
    """``mypkg`` (model.py builds with blocks.py) beside an unrelated ``other.py``; the
    study's two trials already ran. Yields (recipe, database, source folder)."""
    src = tmp_path / "src"
    (src / "mypkg").mkdir(parents=True)
    (src / "mypkg" / "__init__.py").write_text("")
    (src / "mypkg" / "model.py").write_text(MODEL)
    (src / "mypkg" / "blocks.py").write_text(BLOCKS)
    (src / "other.py").write_text("VALUE = 1\n")
    monkeypatch.syspath_prepend(str(src))
    monkeypatch.setenv("PYTHONPATH", str(src))  # for worker processes
    recipe, db = tmp_path / "mine.toml", tmp_path / "mine.db"
    recipe.write_text(RECIPE)
    result = CliRunner().invoke(main, ["run", str(recipe), "--db", str(db)])
    assert result.exit_code == 0, result.output
    yield recipe, db, src
    for name in [m for m in sys.modules if m == "other" or m.startswith("mypkg")]:
        del sys.modules[name]


def plan(recipe: Path, db: Path):
    result = CliRunner().invoke(main, ["plan", str(recipe), "--db", str(db), "--json"])
    assert result.exit_code == 0, result.output
    return {row["name"]: (row["trial_id"], row["status"]) for row in json.loads(result.stdout)}, \
        result.stderr


def test_trials_record_the_files_they_ran(study):
    _, db, _ = study
    records = Store(str(db)).trials("mine")
    assert [r.status for r in records] == ["done", "done"]
    for record in records:
        assert sorted(record.environment["code"]["model.builder"]) == PACKAGE_FILES


def test_a_file_outside_the_package_changes_nothing(study):
    recipe, db, src = study
    before, _ = plan(recipe, db)
    (src / "other.py").write_text("VALUE = 2\n")
    after, stderr = plan(recipe, db)
    assert after == before and {s for _, s in after.values()} == {"done"}
    assert stderr == ""


def test_an_edited_helper_makes_the_trials_pending_and_is_named(study):
    recipe, db, src = study
    before, _ = plan(recipe, db)
    (src / "mypkg" / "blocks.py").write_text(BLOCKS + "# wider later\n")
    after, stderr = plan(recipe, db)
    assert list(after) == ["base/seed=0", "base/seed=1"]
    assert {s for _, s in after.values()} == {"pending"}
    assert all(after[name][0] != before[name][0] for name in after)
    assert stderr == ("Warning: 2 trials pending because user code changed since their "
                      "results: mypkg/blocks.py\n")
    # a new module of the package is code too
    (src / "mypkg" / "losses.py").write_text("WEIGHT = 1.0\n")
    _, stderr = plan(recipe, db)
    assert stderr.endswith("since their results: mypkg/blocks.py, mypkg/losses.py\n")


def test_results_without_a_record_of_their_files_say_so(study):
    recipe, db, src = study
    with sqlite3.connect(db) as con:  # as an ablate that hashed only the builder's file
        con.execute("UPDATE trials SET environment = '{}'")
    (src / "mypkg" / "model.py").write_text(MODEL + "# edited\n")
    _, stderr = plan(recipe, db)
    assert stderr == ("Warning: 2 trials pending because user code changed since their "
                      "results (or ablate now hashes more of it: results of an older ablate "
                      "do not record their files)\n")
