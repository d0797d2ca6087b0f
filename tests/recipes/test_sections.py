"""SpecValidator: each section validated once, the same specs and errors as validate_spec."""

from __future__ import annotations

import math

import pytest

from ablate.errors import RecipeError
from ablate.recipes.sections import SpecValidator, freeze
from ablate.recipes.tree import validate_spec

TREES = [
    {"seed": 0},
    {"seed": 3, "train": {"lr": 0.5, "weight_decay": 0.0}},
    {"seed": 3, "train": {"lr": 0.5, "weight_decay": -0.0}},
    {"seed": 1, "model": {"head": "lraspp", "backbone": "mobilenet_v3_small"},
     "data": {"name": "shapes", "classes": 3}, "eval": {"resolution": [32, 48]}},
    {"seed": 2, "data": {"name": "voc2012", "root": "/data"}},  # crop filled in before
    {"seed": 2, "eval_data": {"name": "shapes", "images": 8}},
]


def test_same_specs_as_whole_tree_validation():
    validate = SpecValidator("r.toml")
    for _ in range(2):  # the second pass comes from the cache
        for tree in TREES:
            assert validate(tree) == validate_spec(tree, "r.toml", "")
    assert validate(TREES[2]).train.weight_decay == -0.0  # not the cached 0.0
    assert math.copysign(1.0, validate(TREES[2]).train.weight_decay) == -1.0


def test_a_section_is_validated_once_and_shared():
    validate = SpecValidator("r.toml")
    model = {"head": "lraspp"}
    a = validate({"seed": 0, "model": model, "train": {"lr": 0.1}})
    b = validate({"seed": 0, "model": dict(model), "train": {"lr": 0.2}})
    assert a.model is b.model and a.data is b.data and a.eval is b.eval
    assert a.train is not b.train and (a.train.lr, b.train.lr) == (0.1, 0.2)
    assert validate({"seed": 5, "model": model, "train": {"lr": 0.1}}).train is a.train


@pytest.mark.parametrize("tree", [
    {"seed": 0, "train": {"lr": 1}},  # an int where a float belongs
    {"seed": 0, "train": {"lr": True}},
    {"seed": 0, "train": {"lr": -1.0}},
    {"seed": 0, "train": {"lr": math.nan}},
    {"seed": 0, "model": 3},
    {"seed": 0, "model": {"head": "nope"}},
    {"seed": 0, "traim": {"lr": 0.1}},
    {"seed": 0, "eval_data": {"name": "shapes"}, "data": {"val_split": "x"}},  # cross-section
    {"seed": 0, "eval": {"runtimes": ["compile"]}},
])
def test_errors_and_verdicts_as_whole_tree_validation(tree):
    validate = SpecValidator("r.toml")
    validate({"seed": 0, "train": {"lr": 1.0}})  # a cached float 1.0 must not serve int 1
    try:
        expected = validate_spec(tree, "r.toml", "")
    except RecipeError as err:
        with pytest.raises(RecipeError) as got:
            validate(tree)
        assert str(got.value) == str(err)
    else:
        assert validate(tree) == expected


def test_freeze_tells_types_and_signed_zeros_apart():
    assert freeze(1) != freeze(1.0) != freeze(True)
    assert freeze(0.0) != freeze(-0.0)
    assert freeze({"a": [1, 2]}) == freeze({"a": [1, 2]})
    assert freeze({"a": [1, 2]}) != freeze({"a": (1, 2)})
    with pytest.raises(TypeError):
        freeze({"a": [{1, 2}]})  # a set: no TOML value, validated without the cache
