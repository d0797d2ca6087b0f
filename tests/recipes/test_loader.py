from __future__ import annotations

import pytest

from ablate.errors import RecipeError
from ablate.recipes.loader import flatten, load_recipe, parse_recipe
from ablate.trials.expand import expand


def error_of(text: str) -> RecipeError:
    with pytest.raises(RecipeError) as info:
        expand(parse_recipe(text, "r.toml"))
    return info.value


def test_flatten_mixes_nested_tables_and_dotted_keys():
    assert flatten({"model": {"head": "fcn"}, "train.lr": 0.1}) == {
        "model.head": "fcn", "train.lr": 0.1}


def test_missing_file_names_the_path(tmp_path):
    with pytest.raises(RecipeError) as info:
        load_recipe(tmp_path / "nope.toml")
    assert str(info.value) == f"{tmp_path / 'nope.toml'}: recipe file not found"


@pytest.mark.parametrize("given, meant", [
    ("recipes/quickstart.tml", "recipes/quickstart.toml"),  # a typo in the name
    ("recipes/quickstrat.toml", "recipes/quickstart.toml"),
    ("quickstart.toml", "recipes/quickstart.toml"),  # named without its folder
    ("recipes/unrelated.toml", None),
    ("nowhere/quickstart.toml", None),
])
def test_a_missing_recipe_names_the_one_meant(tmp_path, monkeypatch, given, meant):
    (tmp_path / "recipes").mkdir()
    (tmp_path / "recipes" / "quickstart.toml").write_text('name = "q"\n')
    monkeypatch.chdir(tmp_path)
    with pytest.raises(RecipeError) as info:
        load_recipe(given)
    hint = f"; did you mean {meant}?" if meant else ""
    assert str(info.value) == f"{given}: recipe file not found{hint}"


def test_invalid_toml_gives_the_line():
    err = error_of('name = "x"\n[base.model\n')
    assert str(err).startswith("r.toml: invalid TOML:")
    assert "line 2" in str(err)


@pytest.mark.parametrize(("text", "key"), [
    ("[base.train]\nlr = 0.1\nepochs = 2\nlr = 0.2\n", "base.train.lr"),
    ('[variants.a]\ndescription = "x"\n[variants.a]\n', "variants.a"),
    ("[base.data]\nname = 'shapes'\n[[base]]\n", "base"),
])
def test_a_key_written_twice_is_named_not_only_its_line(text, key):
    """tomllib says "Cannot overwrite a value (at line 4, column 9)"; the key is named."""
    err = error_of(text)
    assert (err.key, err.detail.split(" (")[0]) == (key, "written twice; keep one")
    assert "line" in err.detail


def test_unknown_top_level_key():
    err = error_of("axes = {}\n")
    assert err.key == "axes"
    assert ("allowed: name, description, seeds, base, grid, zip, variants, knockout, "
            "slurm, tune, local") in str(err)


def test_unknown_key_in_base_lists_allowed_keys():
    err = error_of("[base.model]\nbackbones = 'resnet50'\n")
    assert err.key == "base.model.backbones"
    assert "unknown key" in str(err) and "backbone" in str(err) and "keep_last_expansion" in str(err)


def test_unknown_backbone_lists_allowed_values():
    err = error_of("[base.model]\nbackbone = 'resnet5'\n")
    assert err.key == "base.model.backbone"
    assert "'mobilenet_v3_large'" in str(err) and "'resnet101'" in str(err)
    assert "got 'resnet5'" in str(err)


def test_wrong_type_is_not_coerced():
    err = error_of("[base.train]\nlr = '0.1'\n")
    assert err.key == "base.train.lr"
    assert "got '0.1'" in str(err)


def test_bool_is_not_an_int():
    err = error_of("[base.train]\nbatch_size = true\n")
    assert err.key == "base.train.batch_size"


@pytest.mark.parametrize(("text", "message"), [
    # a wrong type says the whole rule, as docs/recipes.md's key table does
    ("[base.train]\nlr = 'fast'\n", "base.train.lr: should be a number in (0, 10] (got 'fast')"),
    ("[base.train]\nepochs = 1.5\n",
     "base.train.epochs: should be an integer in (0, 1,000,000,000] (got 1.5)"),
    ("[base.train]\ndeterministic = 'yes'\n",
     "base.train.deterministic: should be a boolean (got 'yes')"),
    # out of range: both bounds, not only the one crossed
    ("[base.train]\nlr = 20\n", "base.train.lr: should be a number in (0, 10] (got 20)"),
    ("[base.train]\nbatch_size = 0\n",
     "base.train.batch_size: should be an integer in (0, 65,536] (got 0)"),
    # a union: every member, and pydantic's member tag ("bool") is not part of the key
    ("[base.train]\nchannels_last = 'x'\n",
     "base.train.channels_last: should be a boolean or \"auto\" (got 'x')"),
    ("[base.data]\nworkers = -1\n",
     "base.data.workers: should be an integer in [0, 1,000,000,000] or \"auto\" (got -1)"),
    ("[base.model]\nexpansion = [1, -1]\n",
     "base.model.expansion: should be \"all\", \"none\" or list of integer in "
     "[0, 1,000,000,000] (got [1, -1])"),
    # a value where a list belongs, and a list's item: the rule too, not "a valid list"
    ("[base.model]\naspp_rates = 12\n",
     "base.model.aspp_rates: should be a list of integer in (0, 1,000,000,000] (got 12)"),
    ("[base.model]\naspp_rates = [6, 0]\n",
     "base.model.aspp_rates[1]: should be an integer in (0, 1,000,000,000] (got 0)"),
    ("[base.eval]\nresolution = [64, 'x']\n",
     "base.eval.resolution[1]: should be an integer in (0, 8192] (got 'x')"),
])
def test_a_bad_value_names_what_is_allowed(text, message):
    assert str(error_of(text)) == f"r.toml: {message}"


def test_a_bad_value_is_shown_as_the_recipe_spells_it():
    err = error_of("[base.train]\namp = true\n")  # TOML's true, not Python's True
    assert str(err) == "r.toml: base.train.amp: should be 'auto', 'off', 'bf16' or 'fp16' (got true)"
    err = error_of("seeds = [0, false]\n")
    assert str(err).endswith("(got false)")
    err = error_of("[base.train]\nlr = 1979-05-27\n")  # a TOML date, not datetime.date(...)
    assert str(err).endswith("(got 1979-05-27)")


def test_empty_axis():
    err = error_of('[grid]\n"train.lr" = []\n')
    assert err.key == 'grid."train.lr"'
    assert "empty axis" in str(err)


def test_axis_on_a_key_that_does_not_exist():
    err = error_of('[grid]\n"model.depth" = [1, 2]\n')
    assert err.key == 'grid."model.depth"'
    assert "unknown key 'model.depth'" in str(err) and "backbone" in str(err)


def test_bad_value_in_an_axis_names_the_axis():
    err = error_of('[grid]\n"model.head" = ["deeplabv3", "unet"]\n')
    assert err.key == 'grid."model.head"'
    assert "got 'unet'" in str(err)


def test_bad_value_in_a_zip_names_its_group_and_key():
    """As every other error on an axis does: ``zip[1]."train.lr"``, the line to fix."""
    err = error_of('[[zip]]\n"train.epochs" = [1, 2]\n'
                   '[[zip]]\n"train.momentum" = [0.5, 0.9]\n"train.lr" = [0.1, -1]\n')
    assert str(err) == 'r.toml: zip[1]."train.lr": should be a number in (0, 10] (got -1)'


def test_a_key_under_an_axis_names_the_axis_then_the_key():
    err = error_of('[grid]\n"model.replace" = [[{path = "classifier", by = "x"}]]\n')
    assert str(err).startswith('r.toml: grid."model.replace": model.replace[0].by: must be')


def test_bad_value_in_a_variant_names_the_variant():
    err = error_of("[variants.a]\nmodel.output_stride = 12\n")
    assert err.key == "variants.a.model.output_stride"


def test_zip_lengths_must_match():
    err = error_of('[zip]\n"train.lr" = [0.1, 0.2]\n"train.epochs" = [1]\n')
    assert err.key == "zip[0]" and "equal lengths" in str(err)


def test_seeds_must_be_non_negative_integers():
    err = error_of("seeds = [0, -1]\n")
    assert err.key == "seeds"


def test_published_figures_are_validated():
    err = error_of("[variants.a.published]\nmiou = 'high'\n")
    assert err.key == "variants.a.published.miou"
