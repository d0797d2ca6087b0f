"""The shipped recipes load, expand (also on the embedded dataset) and build the seeds."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from ablate.cost.params import count_parameters
from ablate.models.build import build_model
from ablate.recipes.loader import load_recipe
from ablate.trials.expand import expand, parse_set
from ablate.trials.resolve import num_classes

RECIPES = Path(__file__).resolve().parents[2] / "recipes"
SHIPPED = {
    "mnv3_expansion.toml": 9,  # 7 rows trained on COCO, 2 on VOC only
    "mnv3_expansion_sweep.toml": 10,
    "squeezenet_fcn.toml": 1,
    "torchvision_baselines.toml": 6,
}


def trials(name: str, *assignments: str):
    return expand(load_recipe(RECIPES / name), parse_set(list(assignments)))


def params(trial) -> int:
    with torch.device("meta"):
        return count_parameters(build_model(trial.spec.model, num_classes(trial.spec)))


@pytest.mark.parametrize("name, count", list(SHIPPED.items()))
def test_recipe_loads_and_expands(name, count):
    assert len(trials(name)) == count
    on_shapes = trials(name, "data.name=shapes")
    assert len(on_shapes) == count
    assert all(t.spec.data.name == "shapes" for t in on_shapes)


def test_mnv3_published_rows_build_the_published_counts():
    by_variant = {t.variant: t for t in trials("mnv3_expansion.toml")}
    for variant in ("conventional", "proposed"):
        trial = by_variant[variant]
        assert params(trial) == trial.published.params
    assert by_variant["conventional"].published.params == 11_745_643
    assert by_variant["proposed"].published.params == 5_632_933
    assert params(by_variant["conventional_21"]) == 11_727_653


def test_mnv3_counts_hold_on_the_embedded_dataset():
    by_variant = {t.variant: t for t in trials("mnv3_expansion.toml", "data.name=shapes")}
    assert params(by_variant["conventional"]) == 11_745_643
    assert params(by_variant["proposed"]) == 5_632_933


def test_mnv3_variants_are_distinct_architectures():
    assert len({t.arch_id for t in trials("mnv3_expansion.toml")}) == 7


def test_squeezenet_recipe_builds_1348951():
    (trial,) = trials("squeezenet_fcn.toml")
    assert params(trial) == trial.published.params == 1_348_951


def test_torchvision_baselines_build_the_published_counts():
    for trial in trials("torchvision_baselines.toml"):
        assert params(trial) == trial.published.params, trial.variant


# the folder under data/ each shipped recipe reads a real dataset from (its root key)
DATA_DIRS = {"voc2012": "data/voc", "coco": "data/coco", "cityscapes": "data/cityscapes"}


@pytest.mark.parametrize("name", [*SHIPPED, "selective_downsampling.toml",
                                  "selective_downsampling_sweep.toml"])
def test_real_data_recipe_names_its_root(name):
    """`ablate run recipes/NAME`, as each header says, reads the data under data/; a
    recipe without the key stopped with `data.root: not set` (the Cityscapes ones)."""
    for trial in trials(name):
        data, eval_data = trial.spec.data, trial.spec.eval_data
        assert data.root == DATA_DIRS[data.name]
        if eval_data.name is not None:
            assert eval_data.root == DATA_DIRS[eval_data.name]
