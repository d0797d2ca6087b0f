"""ablate run -> report -> status -> export on each real dataset format, as a user runs
them: a recipe naming the dataset and its root (docs/recipes.md#datasets), shrunk with
--set, read by a DataLoader worker process."""

from __future__ import annotations

import csv
import json
import math
import shutil
import textwrap

import pytest
from click.testing import CliRunner

from ablate.cli import main
from ablate.store import Store
from tests.data.fixtures import TINY_VAL_CLASSES, truncate, write_image, write_tiny_dataset

pytestmark = pytest.mark.slow  # trains

RECIPE = """\
name = "tiny_{name}"
seeds = [0]

[base.model]
backbone = "mobilenet_v3_small"
head = "lraspp"

[base.data]
name = "{name}"
root = "{root}"
"""
SHRINK = ["--set", "data.crop_size=32", "--set", "train.iterations=2",
          "--set", "train.batch_size=2", "--set", "eval.latency=false",
          "--set", "eval.resolution=[40, 48]", "--set", "data.workers=1"]


def _study(tmp_path, name: str) -> list[str]:
    if name == "coco":
        pytest.importorskip("pycocotools")
    write_tiny_dataset(name, tmp_path / "data")
    recipe = tmp_path / f"{name}.toml"
    recipe.write_text(RECIPE.format(name=name, root=tmp_path / "data"))
    return [str(recipe), "--db", str(tmp_path / "s.db"), "--runs-dir", str(tmp_path / "runs")]


@pytest.mark.parametrize("name", ["voc2012", "cityscapes", "coco"])
def test_run_report_status_export(tmp_path, name):
    args = _study(tmp_path, name)
    db = ["--db", str(tmp_path / "s.db")]
    result = CliRunner().invoke(main, ["run", *args, *SHRINK])
    assert result.exit_code == 0, result.output
    [trial] = Store(str(tmp_path / "s.db")).trials(f"tiny_{name}")
    assert trial.status == "done" and trial.metrics["steps"] == 2.0
    assert math.isfinite(trial.metrics["miou"]) and 0.0 <= trial.metrics["miou"] <= 1.0
    named = {key.removeprefix("iou/") for key in trial.metrics if key.startswith("iou/")}
    assert TINY_VAL_CLASSES[name] <= named, named  # the dataset's own class names

    report = CliRunner().invoke(main, ["report", *db, "--json"])
    assert report.exit_code == 0, report.output
    [row] = json.loads(report.output)
    assert row["miou_mean"] == pytest.approx(100 * trial.metrics["miou"]) and row["n"] == 1
    status = CliRunner().invoke(main, ["status", f"tiny_{name}", *db])
    assert status.exit_code == 0 and f"tiny_{name}: 1 done" in status.output
    out = tmp_path / "trials.csv"
    export = CliRunner().invoke(main, ["export", f"tiny_{name}", *db, "--csv", str(out)])
    assert export.exit_code == 0, export.output
    [exported] = list(csv.DictReader(out.open()))
    assert float(exported["miou"]) == pytest.approx(100 * trial.metrics["miou"])


def test_a_truncated_image_read_in_a_worker_fails_the_trial_naming_it(tmp_path):
    args = _study(tmp_path, "voc2012")
    image = tmp_path / "data/VOCdevkit/VOC2012/JPEGImages/2007_000001.jpg"
    write_image(image, 40, 48, colour=(10, 200, 30))
    truncate(image)
    result = CliRunner().invoke(main, ["run", *args, *SHRINK])
    assert result.exit_code == 1
    line = f"failed base/seed=0: UserInputError: {image}: unreadable image: "
    assert line in result.output  # one line (before: "OSError: Truncated File Read")
    status = CliRunner().invoke(main, ["status", "tiny_voc2012", "--db", str(tmp_path / "s.db")])
    assert line in status.output


def test_a_coco_root_with_train2017_alone_trains_for_validation_on_voc(tmp_path):
    """The seed paper's set-up (COCO training, VOC 2012 val): the COCO root's val2017 is
    never read, so a user who fetched train2017 alone is not stopped for it."""
    pytest.importorskip("pycocotools")
    write_tiny_dataset("coco", tmp_path / "coco")
    shutil.rmtree(tmp_path / "coco" / "val2017")
    (tmp_path / "coco" / "annotations" / "instances_val2017.json").unlink()
    write_tiny_dataset("voc2012", tmp_path / "voc")
    recipe = tmp_path / "coco.toml"
    recipe.write_text(RECIPE.format(name="coco", root=tmp_path / "coco") + textwrap.dedent(f"""
        [base.eval_data]
        name = "voc2012"
        root = "{tmp_path / 'voc'}"
        split = "val"
        """))
    db = str(tmp_path / "s.db")
    result = CliRunner().invoke(main, ["run", str(recipe), "--db", db, "--runs-dir",
                                       str(tmp_path / "runs"), *SHRINK])
    assert result.exit_code == 0, result.output
    [trial] = Store(db).trials("tiny_coco")
    assert trial.status == "done" and math.isfinite(trial.metrics["miou"])
