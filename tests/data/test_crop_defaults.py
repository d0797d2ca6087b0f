"""Real datasets train on their conventional crop; a batch that cannot be formed is one line."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from ablate.cli import main
from ablate.data.collate import UnevenBatch, collate_train
from ablate.errors import UserInputError
from ablate.recipes.schema import DataSpec, TrialSpec
from ablate.store import Store
from ablate.train.loop import train_and_evaluate
from ablate.trials.ids import trial_id
from tests.data.fixtures import write_voc

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(("name", "crop"), [("voc2012", 513), ("coco", 513),
                                            ("cityscapes", 768), ("shapes", None)])
def test_conventional_crop_by_default(name, crop):
    assert DataSpec.model_validate({"name": name}).crop_size == crop
    assert DataSpec.model_validate({"name": name, "crop_size": 321}).crop_size == 321


def test_the_crop_is_part_of_the_trial_id():
    default = TrialSpec.model_validate({"data": {"name": "voc2012"}})
    explicit = TrialSpec.model_validate({"data": {"name": "voc2012", "crop_size": 513}})
    other = TrialSpec.model_validate({"data": {"name": "voc2012", "crop_size": 321}})
    assert trial_id(default) == trial_id(explicit) != trial_id(other)


def test_collate_train_stacks_equal_sizes_and_flags_uneven_ones():
    same = [(torch.zeros(3, 4, 5), torch.zeros(4, 5, dtype=torch.int64))] * 2
    images, labels = collate_train(same)
    assert images.shape == (2, 3, 4, 5) and labels.shape == (2, 4, 5)
    uneven = [same[0], (torch.zeros(3, 6, 5), torch.zeros(6, 5, dtype=torch.int64))]
    assert collate_train(uneven) == UnevenBatch([(4, 5), (6, 5)])


def _voc(root, sizes):
    ids = [f"img{i}" for i in range(len(sizes))]
    labels = {}
    for i, (h, w) in zip(ids, sizes):
        label = np.zeros((h, w), dtype=np.uint8)
        label[h // 4: h // 2, w // 4: w // 2] = 1
        labels[i] = label
    write_voc(root, labels, {"train": ids[:-1], "val": ids[-1:]})


def _spec(root, workers: int, **data) -> TrialSpec:
    return TrialSpec.model_validate({
        "model": {"backbone": "mobilenet_v3_small", "head": "lraspp"},
        "data": {"name": "voc2012", "root": str(root), "workers": workers, **data},
        "train": {"iterations": 1, "batch_size": 2},
        "eval": {"latency": False, "flops": False},
    })


@pytest.mark.parametrize("workers", [0, 2])
def test_uneven_batch_is_one_line_naming_crop_size(tmp_path, workers):
    _voc(tmp_path, [(20, 24), (30, 18), (20, 24)])
    # Python callers can still ask for no crop (None); TOML cannot express it
    spec = TrialSpec.model_validate({**_spec(tmp_path, workers).model_dump(by_alias=True),
                                     "data": {**_spec(tmp_path, workers).data.model_dump(),
                                              "crop_size": None, "scale_range": [1.0, 1.0]}})
    with pytest.raises(UserInputError) as err:
        train_and_evaluate(spec, tmp_path / "run")
    message = str(err.value)
    assert "\n" not in message and "DataLoader worker" not in message
    assert message.startswith("data.crop_size: not set, and voc2012 training images differ "
                              "in size (")
    assert "a batch of 2 cannot be formed" in message
    # advice that fits the images, not the 513 of VOC's references
    assert message.endswith("set data.crop_size (e.g. 18, the smallest side in this batch), "
                            "or train.batch_size = 1")


@pytest.mark.slow
def test_quickstart_switched_to_voc_trains(tmp_path):
    """The issue's command: the quick-start with data.name=voc2012 on uneven images."""
    _voc(tmp_path / "voc", [(20, 24), (30, 18), (26, 22), (20, 24)])
    db = tmp_path / "q.db"
    result = CliRunner().invoke(main, [
        "run", str(REPO / "recipes/quickstart.toml"), "--db", str(db), "--variant", "all_expansions",
        "--set", "data.name=voc2012", "--set", f"data.root='{tmp_path / 'voc'}'",
        "--set", "train.batch_size=3",  # the default crop (513) makes the batch
        "--set", "train.iterations=1", "--set", "eval.latency=false",
        "--set", "model.keep_last_expansion=true", "--set", "data.workers=0",
        # a small model keeps a 513x513 step fast on the CPU
        "--set", "model.backbone=mobilenet_v3_small", "--set", "model.head=lraspp",
        "--set", "eval.flops=false", "--set", "seeds=[0]"])
    assert result.exit_code == 0, result.output
    trials = Store(str(db)).trials("quickstart")
    assert len(trials) == 1 and trials[0].status == "done"
