from __future__ import annotations

import pytest

from ablate.errors import RecipeError, UserInputError
from ablate.recipes.loader import parse_recipe
from ablate.trials.expand import expand, parse_set
from ablate.trials.ids import trial_id

GRID = """
name = "g"
seeds = [0, 1]
[base.train]
epochs = 2
[grid]
"model.head" = ["deeplabv3", "deeplabv3plus"]
"model.keep_last_expansion" = [true, false]
"""


def test_grid_times_seeds_in_recipe_order():
    trials = expand(parse_recipe(GRID, "g.toml"))
    assert len(trials) == 8
    assert [t.name for t in trials[:3]] == [
        "head=deeplabv3,keep_last_expansion=true/seed=0",
        "head=deeplabv3,keep_last_expansion=true/seed=1",
        "head=deeplabv3,keep_last_expansion=false/seed=0",
    ]
    assert trials[0].config_name == trials[1].config_name
    assert trials[0].trial_id != trials[1].trial_id
    assert trials[0].arch_id == trials[1].arch_id  # seeds share an architecture
    assert trials[0].spec.train.epochs == 2


def test_ids_do_not_depend_on_key_order_or_file():
    a = expand(parse_recipe(GRID, "a.toml"))
    reordered = """
name = "other-name"
seeds = [1, 0]
[grid]
"model.keep_last_expansion" = [false, true]
"model.head" = ["deeplabv3plus", "deeplabv3"]
[base.train]
epochs = 2
"""
    b = expand(parse_recipe(reordered, "b.toml"))
    assert {t.trial_id for t in a} == {t.trial_id for t in b}


def test_default_written_explicitly_gives_the_same_id():
    plain = expand(parse_recipe("[base.train]\nepochs = 3\n", "a.toml"))
    explicit = expand(parse_recipe("[base.train]\nepochs = 3\nlr = 0.01\n", "b.toml"))
    assert plain[0].trial_id == explicit[0].trial_id


def test_trial_id_is_a_stable_hash():
    from ablate.recipes.schema import TrialSpec

    # pinned: changing how ids are computed would orphan every recorded trial
    assert trial_id(TrialSpec()) == trial_id(TrialSpec.model_validate({}))
    assert len(trial_id(TrialSpec())) == 12


def test_zip_axes_vary_together_and_variants_multiply():
    text = """
[[zip]]
"train.lr" = [0.1, 0.01]
"train.epochs" = [1, 2]
[variants.small]
model.backbone = "mobilenet_v3_small"
[variants.large]
model.backbone = "mobilenet_v3_large"
[variants.large.published]
miou = 60.0
"""
    trials = expand(parse_recipe(text, "z.toml"))
    assert [(t.variant, t.spec.train.lr, t.spec.train.epochs) for t in trials] == [
        ("small", 0.1, 1), ("small", 0.01, 2), ("large", 0.1, 1), ("large", 0.01, 2)]
    assert trials[0].name == "small[lr=0.1,epochs=1]/seed=0"
    assert trials[2].published.miou == 60.0 and trials[0].published is None


def test_duplicate_specs_run_once():
    text = '[grid]\n"train.lr" = [0.1, 0.1]\n'
    merged: list[str] = []
    assert len(expand(parse_recipe(text, "d.toml"), merged=merged)) == 1
    assert merged == ["the recipe lists lr=0.1 twice; it runs once"]
    twice = '[grid]\n"model.head" = ["fcn", "fcn"]\n"train.lr" = [0.1, 0.01]\n'
    merged = []
    assert len(expand(parse_recipe(twice, "d.toml"), merged=merged)) == 2
    assert merged == ["the recipe lists head=fcn,lr=0.1 twice (and 1 more); it runs once"]


MERGING = """
seeds = [0, 1]
[grid]
"model.head" = ["deeplabv3", "fcn"]
[variants.full]
[variants.lean]
"model.keep_last_expansion" = false
"""


def test_a_set_that_makes_variants_one_is_said():
    """--set of the key two variants differ in: one runs, as the first; the line names
    the --set and both variants (the other variant had vanished without a word)."""
    recipe = parse_recipe(MERGING, "m.toml")
    merged: list[str] = []
    assert len(expand(recipe, merged=merged)) == 8 and merged == []
    trials = expand(recipe, parse_set(["model.keep_last_expansion=true", "train.epochs=2"]),
                    merged=merged)
    assert len(trials) == 4 and {t.variant for t in trials} == {"full"}
    assert merged == ["--set model.keep_last_expansion=true makes variants full and lean the "
                      "same configuration; it runs once, as full"]


def test_variants_the_recipe_resolves_alike_are_said():
    text = MERGING + '[variants.also_lean]\n"model.keep_last_expansion" = false\n' \
        '[variants.restated]\n"model.keep_last_expansion" = true\n'
    merged: list[str] = []
    assert len(expand(parse_recipe(text, "m.toml"), merged=merged)) == 8
    assert merged == [
        "variants lean and also_lean resolve to the same configuration; it runs once, as lean",
        "variants full and restated resolve to the same configuration; it runs once, as full"]


def test_set_overrides_every_trial_and_changes_ids():
    recipe = parse_recipe(GRID, "g.toml")
    base = expand(recipe)
    changed = expand(recipe, parse_set(["train.epochs=5", "data.name=shapes"]))
    assert all(t.spec.train.epochs == 5 for t in changed)
    assert {t.trial_id for t in base}.isdisjoint({t.trial_id for t in changed})


def test_set_errors():
    with pytest.raises(UserInputError, match="expected KEY=VALUE"):
        parse_set(["train.lr"])
    with pytest.raises(UserInputError, match="^--set train.lrr: unknown key 'train.lrr'"):
        parse_set(["train.lrr=0.1"])
    for cut in ("[6,12", "{lr = 0.1", '"shapes'):  # before: passed on as that string
        with pytest.raises(UserInputError) as info:
            parse_set([f"model.aspp_rates={cut}"])
        assert str(info.value).startswith(f"--set model.aspp_rates: {cut!r} is not a TOML value")
    assert parse_set(["data.root=/data/x", "model.builder=pkg.mod:build"]) == {
        "data.root": "/data/x", "model.builder": "pkg.mod:build"}  # bare words stay strings
    recipe = parse_recipe(GRID, "g.toml")
    with pytest.raises(RecipeError) as info:
        expand(recipe, parse_set(["model.output_stride=12"]))
    assert info.value.key == "--set model.output_stride"


SET_ERRORS = [
    ("train.lrr=0.1", "--set train.lrr: unknown key 'train.lrr' (did you mean 'lr'?); "
                    "allowed here: amp, "),
    ("train", "--set: expected KEY=VALUE, got 'train'"),
    ("train..lr=1", "--set train..lr: an empty part in a dotted key"),
    ("seeds=[1, 1]", "--set seeds: must be a non-empty list of distinct integers"),
    ("seeds.x=1", "--set seeds.x: seeds is a list, set whole"),
    ("train={lrr=0.5}", "--set train.lrr: unknown key 'train.lrr'"),
    ("train={}", "--set train: an empty table"),
]


@pytest.mark.parametrize("item, message", SET_ERRORS, ids=[i for i, _ in SET_ERRORS])
def test_set_errors_name_the_recipe_they_override(item, message):
    """As a value the recipe's schema refuses (``r.toml: --set train.lr: should be ...``):
    the unknown key read ``--set: train.lrr: ...``, without the recipe."""
    with pytest.raises(RecipeError) as info:
        parse_set([item], recipe="r.toml")
    assert str(info.value).startswith(f"r.toml: {message}"), str(info.value)
    with pytest.raises(UserInputError) as info:
        parse_set([item])
    assert str(info.value).startswith(message), str(info.value)


def test_a_key_given_twice_names_the_recipe():
    with pytest.raises(RecipeError, match=r"^r.toml: --set train.lr: given twice"):
        parse_set(["train.lr=0.1", "train={lr=0.2}"], recipe="r.toml")


def test_an_unknown_top_level_set_lists_what_set_accepts():
    """``seeds`` is the one key --set takes beside a trial's sections: it is listed."""
    with pytest.raises(UserInputError) as info:
        parse_set(["name=x"])
    assert str(info.value) == ("--set name: unknown key 'name'; allowed here: data, eval, "
                               "eval_data, model, seeds, train")
    assert parse_set(["seeds=[1, 2]"]) == {"seeds": [1, 2]}
    # a key under seeds: not "unknown key 'seeds.x'; allowed here: ..., seeds, ..."
    with pytest.raises(UserInputError) as info:
        parse_set(["seeds.x=1"])
    assert str(info.value) == "--set seeds.x: seeds is a list, set whole: --set seeds=[0,1]"


def test_training_only_keys_share_an_architecture():
    text = """
[base.model]
backbone = "resnet50"
output_stride = 8
head = "deeplabv3"
selective = { enabled = true }
[grid]
"model.selective.lambda" = [0.0, 0.1]
"model.bn_momentum" = [0.01, 0.1]
"model.selective.pooling" = ["fixed", "avg"]
"""
    trials = expand(parse_recipe(text, "a.toml"))
    assert len(trials) == 8
    assert len({t.trial_id for t in trials}) == 8
    assert len({t.arch_id for t in trials}) == 2  # only the pooling mode changes cost


def test_ids_of_trials_recorded_by_earlier_versions_still_hold():
    """New keys at their defaults stay out of the spec, so recorded trials keep their ids
    (values computed by the release before eval_data, runtimes, builders, sparse execution
    and train.deterministic existed)."""
    from ablate.recipes.schema import TrialSpec

    assert trial_id(TrialSpec()) == "7fa5eb647608"
    selective = TrialSpec.model_validate({"model": {
        "backbone": "resnet50", "head": "deeplabv3", "output_stride": 8,
        "selective": {"enabled": True}}})
    assert trial_id(selective) == "52645392aaa3"
    sparse = selective.model_copy(update={"model": selective.model.model_copy(update={
        "selective": selective.model.selective.model_copy(update={"execution": "sparse"})})})
    assert trial_id(sparse) != "52645392aaa3"
