"""The [tune] section: what it accepts, and every bad input as one line naming the file
and the key, exit code 2, nothing recorded."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from ablate.cli import main
from ablate.errors import RecipeError
from ablate.recipes.loader import parse_recipe

RECIPE = """
name = "tuned"
seeds = [0, 1]
[base.model]
backbone = "mobilenet_v3_small"
head = "lraspp"
[base.data]
name = "shapes"
classes = 3
image_size = 32
[grid]
"model.keep_last_expansion" = [true, false]
[variants.a]
"train.momentum" = 0.8
[tune]
budget = 4
seeds = [100]
TUNE
"""
LR = '"train.lr" = { log_uniform = [1e-4, 1.0] }'


def recipe_text(tune: str = LR, **replace: str) -> str:
    text = RECIPE.replace("TUNE", tune)
    for old, new in replace.items():
        text = text.replace(old.replace("_", " "), new)
    return text


def test_a_tune_section_is_read_with_every_kind_of_range():
    recipe = parse_recipe(recipe_text(
        LR + '\ntrain.weight_decay = { uniform = [0.0, 0.001] }\n'
        '"train.warmup_steps" = { int = [0, 10] }\n'
        '"train.optimizer" = { choice = ["sgd", "adamw"] }'), "tuned.toml")
    tune = recipe.tune
    assert tune.keys == ("train.lr", "train.weight_decay", "train.warmup_steps", "train.optimizer")
    assert [(r.kind, r.values) for r in tune.ranges] == [
        ("log_uniform", (1e-4, 1.0)), ("uniform", (0.0, 0.001)), ("int", (0, 10)),
        ("choice", ("sgd", "adamw"))]
    settings = tune.settings
    assert (settings.budget, settings.seeds, settings.draw_seed, settings.metric,
            settings.select_on, settings.holdout) == (4, [100], 0, "miou", "holdout", 0.2)
    assert tune.to_json()["ranges"]["train.lr"] == {"log_uniform": [1e-4, 1.0]}


def test_a_training_side_data_key_can_be_tuned():
    recipe = parse_recipe(recipe_text(LR + '\n"data.train_images" = { int = [64, 128] }'),
                          "tuned.toml")
    assert recipe.tune.keys == ("train.lr", "data.train_images")


# (the [tune] lines or a replacement, the key the error names, words of its message)
BAD = [
    ('"train.lrr" = { log_uniform = [1e-4, 1.0] }', 'tune."train.lrr"', "unknown key 'train.lrr'"),
    ('budgte = 3\n' + LR, "tune.budgte",
     "unknown key (did you mean 'budget'?); allowed: budget, seeds"),
    ('"eval.batch_size" = { int = [1, 8] }', 'tune."eval.batch_size"', "not a nuisance key"),
    # what the confirmation trials are measured on: each configuration would pick its own
    # validation set (a holdout selection does not even read it) and be compared on it
    ('"data.val_images" = { int = [16, 64] }', 'tune."data.val_images"',
     "sets what the effects are measured on: tuned, each configuration would be read on "
     "its own validation data; set it in [base] (data keys that can be tuned: args, "
     "train_images,"),
    ('"data.data_seed" = { int = [0, 5] }', 'tune."data.data_seed"',
     "sets what the effects are measured on"),
    ('"data.eval_size" = { choice = [[32, 32], [48, 48]] }', 'tune."data.eval_size"',
     "sets what the effects are measured on"),
    ('"model.keep_last_expansion" = { choice = [true, false] }',
     'tune."model.keep_last_expansion"', 'also set by grid."model.keep_last_expansion"'),
    ('"train.momentum" = { uniform = [0.5, 0.9] }', 'tune."train.momentum"',
     "also set by variants.a.train.momentum"),
    ('"train.lr" = { log_uniform = [1.0, 1e-4] }', 'tune."train.lr".log_uniform',
     "empty or reversed range"),
    ('"train.lr" = { uniform = [0.1, 0.1] }', 'tune."train.lr".uniform', "empty or reversed range"),
    ('"train.lr" = { log_uniform = [0.0, 1.0] }', 'tune."train.lr".log_uniform',
     "a log range needs bounds > 0"),
    ('"train.lr" = { log_uniform = [1e-4, 20.0] }', 'tune."train.lr"',
     "should be a number in (0, 10] (got 20.0) (a value of its range)"),
    # a uniform or log range's draws are fractions: the line gives the int range to write,
    # not the probed 5.000000000000001 the user never wrote
    ('"train.warmup_steps" = { uniform = [0, 10] }', 'tune."train.warmup_steps"',
     "uniform [0, 10] draws fractional numbers; train.warmup_steps should be an integer in "
     "[0, 1,000,000,000]: give { int = [0, 10] }"),
    ('"train.batch_size" = { log_uniform = [4.5, 16.0] }', 'tune."train.batch_size"',
     "log_uniform [4.5, 16] draws fractional numbers; train.batch_size should be an integer "
     "in (0, 65,536]: give { int = [5, 16] }"),
    # a float key's bound is not an integer key: the value it refuses, as before
    ('"train.lr" = { uniform = [9.5, 10.4] }', 'tune."train.lr"',
     "should be a number in (0, 10] (got 10.4) (a value of its range)"),
    ('"train.optimizer" = { choice = ["sgd"] }', 'tune."train.optimizer".choice',
     "a choice needs at least two values"),
    ('"train.lr" = [0.1, 0.01]', 'tune."train.lr"', "must be a range: { log_uniform"),
    ('"train.lr" = { normal = [0.1, 0.01] }', 'tune."train.lr"',  # the word was not named
     "unknown distribution 'normal'; must be a range: { log_uniform"),
    ('"train.lr" = { uniform = [0.1, 1.0], int = [1, 2] }', 'tune."train.lr"',
     "one distribution, not 2; must be a range"),
    ("", "tune", "names no nuisance key"),
]


@pytest.mark.parametrize(("tune", "key", "words"), BAD)
def test_bad_tune_sections_are_one_line_naming_file_and_key(tune, key, words):
    with pytest.raises(RecipeError) as err:
        parse_recipe(recipe_text(tune), "tuned.toml")
    assert err.value.key == key, str(err.value)
    assert words in err.value.detail, str(err.value)
    assert str(err.value).startswith(f"tuned.toml: {key}: ")


@pytest.mark.parametrize(("old", "new", "key", "words"), [
    ("budget = 4", "budget = 0", "tune.budget", "should be an integer in (0, 1,000,000,000]"),
    ("budget = 4", "budget = -2", "tune.budget", "should be an integer in (0, 1,000,000,000]"),
    ("seeds = [100]", "seeds = [1, 100]", "tune.seeds", "1 also in the study's seeds [0, 1]"),
    ("seeds = [100]", "seeds = []", "tune.seeds", "non-empty list"),
    # the misspelt key, not "tune.budget: missing"
    ("budget = 4", "budgets = 4", "tune.budgets", "unknown key (did you mean 'budget'?)"),
])
def test_bad_budgets_and_seeds_are_refused(old, new, key, words):
    with pytest.raises(RecipeError) as err:
        parse_recipe(recipe_text().replace(old, new), "tuned.toml")
    assert (err.value.key, words in err.value.detail) == (key, True), str(err.value)


def test_nested_and_quoted_keys_are_the_same_key():
    nested = parse_recipe(recipe_text("train.lr = { log_uniform = [1e-4, 1.0] }"), "t.toml")
    quoted = parse_recipe(recipe_text(), "t.toml")
    assert nested.tune == quoted.tune


@pytest.mark.parametrize(("tune", "extra", "words"), [
    ('"train.lr" = { log_uniform = [1.0, 1e-4] }', (), 'tune."train.lr".log_uniform: empty or reversed'),
    ('"train.optimizer" = { choice = ["sgd"] }', (), "a choice needs at least two values"),
    (LR, ("--set", "seeds=[100]"), "tune.seeds: 100 also in the study's seeds [100] (--set seeds)"),
    (LR, ("--set", "train.lr=0.1"), 'tune."train.lr": --set train.lr: tuned by [tune]'),
    (LR, ("--max-trials", "10"),  # a budget above the trial cap: 2 x 4 x 1 + 2 x 2 = 12
     "tune.budget: 12 trials (2 configurations x 4 draws x 1 tuning seed(s), plus 2 x 2 seed(s))"
     " is more than --max-trials 10"),
])
def test_run_refuses_bad_input_in_one_line_and_records_nothing(tmp_path, tune, extra, words):
    recipe = tmp_path / "tuned.toml"
    recipe.write_text(recipe_text(tune))
    db = tmp_path / "t.db"
    out = CliRunner().invoke(main, ["run", str(recipe), "--db", str(db), *extra])
    assert out.exit_code == 2, out.output
    (line,) = out.output.strip().splitlines()
    assert line.startswith(f"Error: {recipe}: "), line
    assert words in line, line
    assert not db.exists()  # nothing recorded: the database was never opened


BUDGETS_AND_SEEDS = [  # (old, new) of the recipe, the key, words of the message
    ("budget = 4", "budget = 0", "tune.budget", "should be an integer in (0, 1,000,000,000]"),
    ("seeds = [100]", "seeds = [1, 100]", "tune.seeds", "1 also in the study's seeds [0, 1]"),
]


@pytest.mark.parametrize(("text", "key", "words"), [
    *((recipe_text(tune), key, words) for tune, key, words in BAD),
    *((recipe_text().replace(old, new), key, words) for old, new, key, words in BUDGETS_AND_SEEDS),
])
def test_every_bad_section_stops_run_in_one_line_and_records_nothing(tmp_path, text, key,
                                                                      words):
    recipe = tmp_path / "tuned.toml"
    recipe.write_text(text)
    db = tmp_path / "t.db"
    out = CliRunner().invoke(main, ["run", str(recipe), "--db", str(db)])
    assert out.exit_code == 2, out.output
    (line,) = out.output.strip().splitlines()
    assert line.startswith(f"Error: {recipe}: {key}: "), line
    assert words in line, line
    assert not db.exists()


HOLDOUT_WORDS = ("a data.holdout here would evaluate them on held-out images that include "
                 "those the selection read")


@pytest.mark.parametrize(("old", "new", "key"), [
    ("image_size = 32", "image_size = 32\nholdout = 0.3", "base.data.holdout"),
    ('"train.momentum" = 0.8', '"train.momentum" = 0.8\n"data.holdout" = 0.25',
     "variants.a.data.holdout"),
])
def test_a_data_holdout_outside_tune_is_refused_where_the_selection_holds_out(old, new, key):
    """data.holdout held out the head of one fixed permutation: set in [base] or by an axis
    the confirmation trials evaluated on a held-out slice holding every image the
    selection read (and --set replaced the tuning trials' recorded tune.holdout)."""
    with pytest.raises(RecipeError) as err:
        parse_recipe(recipe_text().replace(old, new), "tuned.toml")
    assert err.value.key == key and HOLDOUT_WORDS in err.value.detail, str(err.value)
    # selected on the validation set, the tuning trials evaluate where the effects are read
    parse_recipe(recipe_text("select_on = \"validation\"\n" + LR).replace(old, new), "t.toml")


def test_a_data_holdout_of_0_in_base_is_the_default_and_accepted():
    parse_recipe(recipe_text().replace("image_size = 32", "image_size = 32\nholdout = 0.0"),
                 "tuned.toml")


def test_a_set_data_holdout_is_refused_in_one_line_and_records_nothing(tmp_path):
    recipe = tmp_path / "tuned.toml"
    recipe.write_text(recipe_text())
    db = tmp_path / "t.db"
    out = CliRunner().invoke(main, ["run", str(recipe), "--db", str(db),
                                    "--set", "data.holdout=0.3"])
    assert out.exit_code == 2, out.output
    (line,) = out.output.strip().splitlines()
    assert line.startswith(f"Error: {recipe}: --set data.holdout: "), line
    assert HOLDOUT_WORDS in line, line
    assert not db.exists()
