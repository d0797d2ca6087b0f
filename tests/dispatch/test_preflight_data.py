"""The pre-run check reads the first label of each split of VOC and Cityscapes and the
ends of COCO's annotation files, and names a data.root one folder off."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ablate.data import voc
from ablate.dispatch import preflight
from ablate.dispatch.prepare import load_trials
from ablate.store import Store
from tests.data.fixtures import truncate, write_sbd, write_tiny_dataset, write_voc
from tests.dispatch.test_preflight import _one_line_error, _run

RECIPE = """
name = "labels"
seeds = [0]
[base.model]
backbone = "mobilenet_v3_small"
head = "lraspp"
[base.train]
epochs = 1
batch_size = 2
[base.data]
name = "{name}"
root = "{root}"
"""


def _recipe(write_recipe, name: str, root: Path, extra: str = "") -> Path:
    """A one-trial recipe; ``extra`` goes on in the [base.data] table."""
    return write_recipe(RECIPE.format(name=name, root=root) + extra)


def _problems(recipe: Path) -> list[str]:
    return preflight.find_problems(load_trials(str(recipe))[1])


def _to_rgb(path: Path) -> None:
    with Image.open(path) as image:
        image.convert("RGB").save(path)


def test_a_colour_coded_voc_label_stops_run_and_plan_warns(tmp_path, write_recipe):
    root = tmp_path / "voc"
    write_tiny_dataset("voc2012", root)
    label = root / "VOCdevkit/VOC2012/SegmentationClass/2007_000004.png"  # val's first
    _to_rgb(label)
    recipe = _recipe(write_recipe, "voc2012", root)
    db = tmp_path / "s.db"
    Store(str(db))  # an existing database: the study is not recorded in it either
    result = _run(["run", str(recipe), "--db", str(db), "--runs-dir", str(tmp_path / "runs")])
    line = _one_line_error(result)
    assert line.endswith(f"{label}: label image is mode 'RGB'; expected a palette ('P') PNG "
                         "of class ids")
    assert Store(str(db)).studies() == []
    assert not (tmp_path / "runs").exists()
    plan = _run(["plan", str(recipe), "--db", str(tmp_path / "p.db"), "--no-cost"])
    assert plan.exit_code == 0, plan.output
    problem = f"{label}: label image is mode 'RGB'; expected a palette ('P') PNG of class ids"
    # the recipe and the trial are named where the line has room (tmp paths vary in length)
    fits = [line for line in (f"{recipe}: trial base/seed=0: {problem}", f"{recipe}: {problem}",
                              problem) if len(line) <= preflight.MAX_MESSAGE]
    assert plan.stderr.splitlines() == [f"Warning: {fits[0]}"]


def test_one_label_per_split_is_read_whatever_the_split_size(tmp_path, write_recipe,
                                                             monkeypatch):
    root = tmp_path / "voc"
    label = np.zeros((8, 8), dtype=np.uint8)
    write_voc(root, {"a": label, "b": label}, {"train": ["a"], "val": ["b"]})
    # 5000 more ids whose files are not even there: nothing past the first is looked at
    split_dir = root / "VOCdevkit/VOC2012/ImageSets/Segmentation"
    for split, first in (("train", "a"), ("val", "b")):
        (split_dir / f"{split}.txt").write_text(
            "".join(f"{i}\n" for i in [first] + [f"x{n}" for n in range(5000)]))
    read, samples = [], []
    real_read, real_sample = voc.read_palette_label, voc._sample
    monkeypatch.setattr(voc, "read_palette_label",
                        lambda path: read.append(path) or real_read(path))
    monkeypatch.setattr(voc, "_sample", lambda *args: samples.append(args) or real_sample(*args))
    assert _problems(_recipe(write_recipe, "voc2012", root)) == []
    base = root / "VOCdevkit/VOC2012/SegmentationClass"
    assert read == [str(base / "a.png"), str(base / "b.png")]
    assert {image_id for _, image_id in samples} == {"a", "b"}  # no list of 5001 samples


def test_the_first_sbd_label_is_read_too(tmp_path, write_recipe):
    root = tmp_path / "voc"
    label = np.zeros((8, 8), dtype=np.uint8)
    write_voc(root, {"a": label, "b": label}, {"train": ["a"], "val": ["b"]})
    bad = label.copy()
    bad[0, 0] = 40
    write_sbd(root, {"s1": bad, "s2": label}, train=["s1", "s2"], val=[])
    mat = root / "benchmark_RELEASE/dataset/cls/s1.mat"
    assert _problems(_recipe(write_recipe, "voc2012", root, "sbd = true\n")) == [
        f"trial base/seed=0: {mat}: class id 40 out of range; VOC labels are 0..20 (255 = void)"]


def test_a_split_list_that_is_not_text_stops_the_run(tmp_path, write_recipe):
    root = tmp_path / "voc"
    write_tiny_dataset("voc2012", root)
    split = root / "VOCdevkit/VOC2012/ImageSets/Segmentation/train.txt"
    split.write_text("2007_000000\n", encoding="utf-16")  # before: a UnicodeDecodeError
    recipe = _recipe(write_recipe, "voc2012", root)
    line = _one_line_error(_run(["run", str(recipe), "--db", str(tmp_path / "s.db")]))
    assert line.endswith(f"data.root: {split}: not a list of image ids (byte 0 is not UTF-8 "
                         "text; expected Pascal VOC 2012 under data.root)")
    assert not (tmp_path / "s.db").exists()


def test_cityscapes_label_ids_that_are_colour_or_only_the_colour_renderings(tmp_path,
                                                                            write_recipe):
    root = tmp_path / "cityscapes"
    write_tiny_dataset("cityscapes", root)
    recipe = _recipe(write_recipe, "cityscapes", root)
    assert _problems(recipe) == []
    label = root / "gtFine/train/aachen/aachen_000000_000019_gtFine_labelIds.png"
    _to_rgb(label)
    line = _one_line_error(_run(["run", str(recipe), "--db", str(tmp_path / "s.db")]))
    assert line.endswith(f"{label}: label image is mode 'RGB'; expected 8-bit label ids "
                         "(mode 'L', as cityscapesScripts writes *_gtFine_labelIds.png)")
    label.rename(label.with_name("aachen_000000_000019_gtFine_color.png"))
    line = _one_line_error(_run(["run", str(recipe), "--db", str(tmp_path / "s.db")]))
    assert line.endswith(f"data.root: {label} not found, only its colour rendering "
                         "*_gtFine_color.png; ablate reads the label ids (*_gtFine_labelIds.png "
                         "of gtFine_trainvaltest.zip)")
    assert not (tmp_path / "s.db").exists()


def test_a_cut_short_coco_annotation_file_stops_the_run(tmp_path, write_recipe):
    root = tmp_path / "coco"
    write_tiny_dataset("coco", root)
    recipe = _recipe(write_recipe, "coco", root)
    assert _problems(recipe) == []
    annotations = root / "annotations/instances_val2017.json"
    truncate(annotations)
    line = _one_line_error(_run(["run", str(recipe), "--db", str(tmp_path / "s.db")]))
    assert line.endswith(f"data.root: {annotations} is not a COCO instances file (a JSON "
                         "object; it does not end with '}': cut short?)")
    assert not (tmp_path / "s.db").exists()


def test_a_colour_coded_label_of_the_evaluation_set(tmp_path, write_recipe):
    write_tiny_dataset("voc2012", tmp_path / "voc")
    label = tmp_path / "voc/VOCdevkit/VOC2012/SegmentationClass/2007_000004.png"
    _to_rgb(label)
    write_tiny_dataset("coco", tmp_path / "coco")
    recipe = _recipe(write_recipe, "coco", tmp_path / "coco",
                     f'[base.eval_data]\nname = "voc2012"\nroot = "{tmp_path / "voc"}"\n')
    assert _problems(recipe) == [f"trial base/seed=0: {label}: label image is mode 'RGB'; "
                                 "expected a palette ('P') PNG of class ids"]


@pytest.fixture
def short_tmp():
    """A folder with a short path: a problem line is clipped at 300 characters, and these
    lines name the root three times (pytest's tmp paths under xdist are long)."""
    path = Path(tempfile.mkdtemp(prefix="abl-", dir="/tmp")).resolve()
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.mark.parametrize("name, given, meant", [
    ("voc2012", "voc/VOCdevkit/VOC2012", "voc"),  # two folders too deep
    ("voc2012", "voc/VOCdevkit", "voc"),
    ("voc2012", ".", "voc"),  # the folder holding the root
    ("cityscapes", "cityscapes/gtFine", "cityscapes"),
    ("cityscapes", ".", "cityscapes"),
    ("coco", "coco/annotations", "coco"),
    ("coco", "coco/val2017x", "coco"),  # not there at all: its parent holds COCO
])
def test_a_root_one_folder_off_is_named(tmp_path, short_tmp, write_recipe, name, given, meant):
    write_tiny_dataset(name, short_tmp / meant)
    root = (short_tmp / given).resolve()
    recipe = _recipe(write_recipe, name, root)
    line = _one_line_error(_run(["run", str(recipe), "--db", str(tmp_path / "s.db")]))
    # the whole problem, not clipped (long tmp paths leave no room for recipe and trial)
    assert line.startswith("Error: ") and f"data.root: {root}" in line and "..." not in line
    assert line.endswith(f'; did you mean data.root = "{short_tmp / meant}"?')
    assert "--set data.name=shapes" not in line  # the data is there, just elsewhere
    assert not (tmp_path / "s.db").exists()


def test_a_relative_root_gets_a_relative_suggestion(tmp_path, write_recipe, monkeypatch):
    write_tiny_dataset("voc2012", tmp_path / "data" / "voc")
    monkeypatch.chdir(tmp_path)
    problems = _problems(_recipe(write_recipe, "voc2012", Path("data/voc/VOCdevkit")))
    assert problems == [
        "trial base/seed=0: data.root: data/voc/VOCdevkit/VOCdevkit/VOC2012/JPEGImages not "
        'found (Pascal VOC 2012 (VOCdevkit/VOC2012/)); did you mean data.root = "data/voc"?']


def test_an_evaluation_root_one_folder_off_is_named_by_its_key(short_tmp, write_recipe):
    write_tiny_dataset("coco", short_tmp / "coco")
    write_tiny_dataset("voc2012", short_tmp / "voc")
    recipe = _recipe(write_recipe, "coco", short_tmp / "coco",
                     f'[base.eval_data]\nname = "voc2012"\nroot = "{short_tmp / "voc/VOCdevkit"}"\n')
    [problem] = _problems(recipe)
    assert problem.endswith(f'; did you mean eval_data.root = "{short_tmp / "voc"}"?')


def test_no_suggestion_where_the_layout_is_not_near(tmp_path, write_recipe):
    (tmp_path / "empty" / "sub").mkdir(parents=True)
    problems = _problems(_recipe(write_recipe, "cityscapes", tmp_path / "empty"))
    assert problems == [
        f"trial base/seed=0: data.root: {tmp_path / 'empty/leftImg8bit/train'} not found "
        "(Cityscapes (leftImg8bit/, gtFine/)); to try it on the embedded data: "
        "--set data.name=shapes"]
