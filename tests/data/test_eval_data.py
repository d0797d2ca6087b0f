"""[base.eval_data]: train on one dataset (COCO as VOC categories), validate on another (VOC)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from pydantic import ValidationError

from ablate.data.build import build_datasets
from ablate.data.evaluation import with_eval_data
from ablate.dispatch import preflight
from ablate.dispatch.prepare import load_trials
from ablate.errors import UserInputError
from ablate.recipes.schema import EvalDataSpec, TrialSpec
from ablate.train.loop import train_and_evaluate
from ablate.trials.ids import spec_dict, trial_id
from ablate.trials.resolve import eval_resolution
from tests.data.fixtures import write_cityscapes, write_coco, write_voc

REPO = Path(__file__).resolve().parents[2]
pytest.importorskip("pycocotools")


def _coco(root: Path) -> None:
    for split, count in (("train", 4), ("val", 1)):
        images = [{"id": i + 1, "file_name": f"{i:012d}.jpg", "height": 40, "width": 48}
                  for i in range(count)]
        annotations = [{"id": i + 1, "image_id": i + 1, "category_id": 18, "iscrowd": 0,
                        "segmentation": [[4, 4, 30, 4, 30, 30, 4, 30]], "area": 1200.0,
                        "bbox": [4, 4, 26, 26]} for i in range(count)]
        write_coco(root, split, images, annotations)


def _voc(root: Path) -> dict[str, np.ndarray]:
    labels = {}
    for n, image_id in enumerate(["v0", "v1", "v2"]):
        label = np.zeros((20 + 4 * n, 24), dtype=np.uint8)
        label[4:12, 4:12] = 12  # dog, VOC's class 12 (COCO category 18 maps to it)
        labels[image_id] = label
    write_voc(root, labels, {"train": ["v0"], "val": ["v1", "v2"]})
    return labels


def _spec(coco: Path, voc: Path, **eval_data) -> TrialSpec:
    return TrialSpec.model_validate({
        "model": {"backbone": "mobilenet_v3_small", "head": "lraspp"},
        "data": {"name": "coco", "root": str(coco), "crop_size": 32, "workers": 0},
        "eval_data": {"name": "voc2012", "root": str(voc), **eval_data},
        "train": {"iterations": 2, "batch_size": 2},
        "eval": {"latency": False, "batch_size": 2},
    })


def test_unset_eval_data_leaves_specs_and_ids_as_they_were():
    plain = TrialSpec.model_validate({"data": {"name": "voc2012"}})
    assert "eval_data" not in spec_dict(plain)
    other = TrialSpec.model_validate({"data": {"name": "voc2012"},
                                      "eval_data": {"name": "voc2012", "root": "/v"}})
    assert spec_dict(other)["eval_data"]["root"] == "/v"
    assert trial_id(other) != trial_id(plain)
    # a stored spec (every key, defaults included) validates back to the same trial
    for spec in (plain, other):
        assert TrialSpec.model_validate(spec_dict(spec)) == spec


def test_validation_set_comes_from_eval_data(tmp_path):
    _coco(tmp_path / "coco")
    labels = _voc(tmp_path / "voc")
    spec = _spec(tmp_path / "coco", tmp_path / "voc")
    pair = with_eval_data(build_datasets(spec.data), spec.eval_data, spec.data)
    assert len(pair.train) == 4  # COCO train2017
    assert len(pair.val) == 2  # VOC val: v1, v2 at full size
    np.testing.assert_array_equal(pair.val[0][1].numpy(), labels["v1"])
    np.testing.assert_array_equal(pair.val[1][1].numpy(), labels["v2"])
    assert eval_resolution(spec) == (512, 512)  # VOC's, not COCO's 520x520
    assert eval_resolution(_spec(tmp_path, tmp_path, eval_size=[40, 48])) == (40, 48)


def test_the_evaluation_split_is_read_once(tmp_path, monkeypatch):
    """COCO's val annotations are ~20 MB of JSON (train2017's 450 MB): the evaluation set
    reads its split once, not once more as the training split of its stand-in spec."""
    from ablate.data import coco

    _coco(tmp_path / "coco")
    _voc(tmp_path / "voc")
    reads = []
    real = coco.find_samples
    monkeypatch.setattr(coco, "find_samples",
                        lambda root, split, **kw: reads.append(split) or real(root, split, **kw))
    spec = TrialSpec.model_validate({**_spec(tmp_path / "voc", tmp_path / "coco").model_dump(),
                                     "data": {"name": "voc2012", "root": str(tmp_path / "voc"),
                                              "crop_size": 32, "workers": 0},
                                     "eval_data": {"name": "coco", "root": str(tmp_path / "coco")}})
    pair = with_eval_data(build_datasets(spec.data, val=False), spec.eval_data, spec.data)
    assert reads == ["val"]
    assert len(pair.val) == 1 and len(pair.train) == 1  # COCO val2017; VOC train: v0


@pytest.mark.slow
def test_trial_trains_on_coco_and_validates_on_voc(tmp_path):
    _coco(tmp_path / "coco")
    _voc(tmp_path / "voc")
    spec = _spec(tmp_path / "coco", tmp_path / "voc", limit=1)
    result = train_and_evaluate(spec, tmp_path / "run")
    assert result["final"]["steps"] == 2.0
    assert 0.0 <= result["final"]["miou"] <= 1.0
    assert "iou/dog" in result["final"]  # VOC class names on the VOC evaluation set


def test_classes_must_match(tmp_path):
    write_cityscapes(tmp_path / "city", "val", "aachen", "000000_000019",
                     np.zeros((8, 8), dtype=np.uint8))
    spec = TrialSpec.model_validate({
        "data": {"name": "shapes"},
        "eval_data": {"name": "cityscapes", "root": str(tmp_path / "city")}})
    with pytest.raises(UserInputError, match="eval_data.name: 'cityscapes' labels 19 classes"):
        with_eval_data(build_datasets(spec.data), spec.eval_data, spec.data)


def test_a_missing_evaluation_root_is_named_as_eval_data_root(tmp_path):
    _coco(tmp_path / "coco")
    spec = _spec(tmp_path / "coco", tmp_path / "nowhere")
    with pytest.raises(UserInputError) as caught:
        with_eval_data(build_datasets(spec.data), spec.eval_data, spec.data)
    assert str(caught.value) == (f"eval_data.root: {tmp_path / 'nowhere'} not found (expected "
                                 "a folder holding Pascal VOC 2012 (VOCdevkit/VOC2012/...))")


@pytest.mark.parametrize(("tree", "message"), [
    ({"eval_data": {"root": "/v"}}, "set eval_data.name"),
    ({"eval_data": {"name": "voc2012", "classes": 3}}, "classes is only read for"),
    ({"data": {"name": "coco", "val_split": "x"}, "eval_data": {"name": "voc2012"}},
     "data.val_split: not read when eval_data is set"),
])
def test_keys_that_would_be_ignored_are_refused(tree, message):
    with pytest.raises(ValidationError, match=message):
        TrialSpec.model_validate(tree)
    assert EvalDataSpec().name is None


def test_the_seed_recipe_follows_the_paper(tmp_path):
    _, trials = load_trials(str(REPO / "recipes/mnv3_expansion.toml"))
    by_variant = {t.variant: t.spec for t in trials}
    for variant in ("conventional", "proposed"):
        assert by_variant[variant].data.name == "coco"
        assert by_variant[variant].eval_data.name == "voc2012"
    for variant in ("conventional_voc_only", "proposed_voc_only"):
        assert by_variant[variant].data.name == "voc2012"
        assert by_variant[variant].eval_data.name == "voc2012"
    # the offline demo the recipe's description gives plans without a problem
    _, demo = load_trials(str(REPO / "recipes/mnv3_expansion.toml"),
                          ("data.name=shapes", "eval_data.name=shapes"))
    assert preflight.find_problems(demo) == []


def test_preflight_names_the_evaluation_root(tmp_path):
    _coco(tmp_path / "coco")
    spec = _spec(tmp_path / "coco", tmp_path / "novoc")

    class Trial:
        name = "t"
        arch_id = "a"

    trial = Trial()
    trial.spec = spec
    [problem] = preflight.find_problems([trial])
    assert f"eval_data.root: {tmp_path / 'novoc'} not found" in problem
    assert problem.endswith("--set data.name=shapes --set eval_data.name=shapes")


@pytest.mark.slow
def test_cli_run_with_eval_data(tmp_path, tiny_recipe, write_recipe):
    """Through the whole path: spec stored, sent to the worker, validated back, trained."""
    from click.testing import CliRunner

    from ablate.cli import main
    from ablate.store import Store

    refused = CliRunner().invoke(main, ["plan", str(tiny_recipe), "--no-cost",
                                        "--set", "eval_data.name=shapes"])
    assert refused.exit_code == 2  # the recipe's data.val_images would be ignored
    assert ("base.data.val_images: not read when eval_data is set (eval_data is the "
            "evaluation set); remove it, or set eval_data.images") in refused.stderr
    recipe = write_recipe(tiny_recipe.read_text().replace("val_images = 8\n", ""), "t.toml")
    db = tmp_path / "e.db"
    result = CliRunner().invoke(main, [
        "run", str(recipe), "--db", str(db), "--set", "model.keep_last_expansion=true",
        "--set", "eval_data.name=shapes", "--set", "eval_data.classes=3",
        "--set", "eval_data.image_size=32", "--set", "eval_data.images=4",
        "--set", "eval_data.data_seed=7"])
    assert result.exit_code == 0, result.output
    [trial] = Store(str(db)).trials("tiny")
    assert trial.status == "done" and 0.0 <= trial.metrics["miou"] <= 1.0
