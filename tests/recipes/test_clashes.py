"""Two parts of a recipe (or the command line) setting one key: refused, never one of
them winning unseen, and never a trial recorded under a name its spec contradicts."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from ablate.cli import main
from ablate.errors import RecipeError, UserInputError
from ablate.recipes.loader import parse_recipe
from ablate.store import Store
from ablate.trials.expand import expand, parse_set

BASE = """
name = "clash"
[base.model]
backbone = "mobilenet_v3_small"
head = "lraspp"
[base.data]
image_size = 32
train_images = 4
[base.train]
epochs = 1
batch_size = 4
"""


def _error(text: str, overrides: dict | None = None) -> str:
    with pytest.raises(RecipeError) as err:
        expand(parse_recipe(BASE + text, "r.toml"), overrides)
    return str(err.value)


@pytest.mark.parametrize("axes", [
    '[grid]\n"train.lr" = [0.1]\ntrain.lr = [0.2]\n',
    '[grid]\ntrain.lr = [0.2]\n"train.lr" = [0.1]\n',
    '[[zip]]\n"train.lr" = [0.1]\ntrain = {lr = [0.2]}\n',
])
def test_one_axis_written_twice_is_refused_not_the_later_winning(axes):
    where = "zip[0]" if "zip" in axes else "grid"
    assert _error(axes) == (f'r.toml: {where}.train.lr: written twice (as "train.lr" and as '
                            "a nested table); keep one")


def test_a_variant_key_written_twice_is_refused():
    assert "variants.a.train.lr: written twice" in _error(
        '[variants.a]\n"train.lr" = 0.1\ntrain.lr = 0.2\n')


def test_a_quoted_dotted_key_in_base_sets_the_nested_key():
    """As in a grid or a variant; it was called an unknown key by a message that listed it
    among the allowed ones."""
    text = BASE.replace("[base.model]", '[base]\n"train.lr" = 0.02\n"model.args" = {}\n'
                        "[base.model]")
    trial = expand(parse_recipe(text, "r.toml"))[0]
    assert (trial.spec.train.lr, trial.spec.train.epochs) == (0.02, 1)


@pytest.mark.parametrize(("text", "key"), [
    ('[base]\n"train.epochs" = 2\n', "train.epochs"),
    ('[base]\neval = 1\n"eval.every" = 2\n', "eval.every"),
])
def test_a_base_key_written_twice_is_refused(text, key):
    assert _error(text) == (f'r.toml: base.{key}: written twice (as "{key}" and as a nested '
                            "table); keep one")


@pytest.mark.parametrize(("axes", "key", "kind"), [
    ('[grid]\ntrain = [{lr = 0.1}, {lr = 0.2}]\n', 'grid."train"', "section"),
    ('[[zip]]\nmodel = [{head = "fcn"}]\n"train.lr" = [0.1]\n', 'zip[0]."model"', "section"),
    ('[grid]\n"model.args" = [{width = 2}]\n', 'grid."model.args"', "table"),
])
def test_an_axis_over_a_whole_section_is_refused(axes, key, kind):
    """Each value would replace the section whole: the base's epochs and batch size back at
    their defaults, unseen."""
    assert _error(axes).startswith(f"r.toml: {key}: names a {kind}, whose every value would "
                                   "replace it whole")


@pytest.mark.parametrize(("text", "where"), [
    ("[[zip]]\n", "zip[0]"),
    ('[[zip]]\n"train.lr" = [0.1]\n[[zip]]\n', "zip[1]"),
])
def test_an_empty_zip_group_is_refused(text, where):
    """It expanded to no trial at all, and ``run`` re-recorded the study's recipe."""
    assert _error(text) == (f"r.toml: {where}: an empty [[zip]] group; give it the keys it "
                            "pairs, or drop it")


@pytest.mark.parametrize(("axes", "variant", "where"), [
    ('[grid]\n"train.lr" = [0.1, 0.2]\n', 'train.lr = 0.3', 'grid."train.lr"'),
    ('[grid]\n"train.lr" = [0.1, 0.2]\n', 'train = {lr = 0.3}', 'grid."train.lr"'),
    ('[[zip]]\n"train.lr" = [0.1]\n"train.epochs" = [2]\n', '"train.epochs" = 3',
     'zip[0]."train.epochs"'),
])
def test_a_variant_setting_an_axis_key_is_refused(axes, variant, where):
    """The axis wins in every configuration: the variant's value was never used."""
    message = _error(f"{axes}[variants.a]\n{variant}\n")
    assert f"also set by the axis {where}, whose values replace it" in message
    assert message.startswith("r.toml: variants.a.train.")


def test_a_variant_beside_an_axis_on_another_key_expands():
    trials = expand(parse_recipe(BASE + '[grid]\n"train.lr" = [0.1, 0.2]\n'
                                 '[variants.a]\n"train.weight_decay" = 0.01\n', "r.toml"))
    assert [(t.name, t.spec.train.lr, t.spec.train.weight_decay) for t in trials] == [
        ("a[lr=0.1]/seed=0", 0.1, 0.01), ("a[lr=0.2]/seed=0", 0.2, 0.01)]


@pytest.mark.parametrize("assignment", ["train.lr=0.5", "train={lr=0.5}", "train.lr=1"])
def test_a_set_of_an_axis_key_to_another_value_is_refused(assignment):
    """``lr=0.1/seed=0`` trained at 0.5 would be a wrong row; tuning refuses it likewise."""
    message = _error('[grid]\n"train.lr" = [0.1, 0.2]\n', parse_set([assignment]))
    assert message == ('r.toml: --set train.lr: the axis grid."train.lr" varies it; --set '
                       "picks one of its values (0.1, 0.2) and runs that point alone, or edit "
                       "the axis (another value would train every configuration at it under "
                       "names that say otherwise)")


def test_a_set_of_an_axis_key_to_one_of_its_values_runs_that_point():
    text = ('[grid]\n"train.lr" = [0.1, 0.2]\n"model.keep_last_expansion" = [true, false]\n'
            '[[zip]]\n"train.epochs" = [1, 2, 3]\n"train.weight_decay" = [0.0, 0.1, 0.0]\n')
    recipe = parse_recipe(BASE + text, "r.toml")
    trials = expand(recipe, parse_set(["train.lr=0.2", "model.keep_last_expansion=false",
                                       "train.weight_decay=0.0"]))
    assert [(t.name, t.spec.train.lr, t.spec.train.epochs) for t in trials] == [
        ("lr=0.2,keep_last_expansion=false,epochs=1,weight_decay=0.0/seed=0", 0.2, 1),
        ("lr=0.2,keep_last_expansion=false,epochs=3,weight_decay=0.0/seed=0", 0.2, 3)]
    # the same trials (ids) as the full study's: results are shared with it
    full = {t.trial_id: t.name for t in expand(recipe)}
    assert all(full[t.trial_id] == t.name for t in trials)
    assert len(recipe.grid["train.lr"]) == 2  # the recipe itself is left as it was


def test_a_set_of_a_knockout_in_another_order_picks_its_point():
    """``model.remove`` is one trial whatever its order (the spec sorts it), so a --set
    listing a factorial's components in another order runs that point; it was refused
    as a value the axis does not hold."""
    recipe = parse_recipe(BASE.replace('head = "lraspp"', 'head = "deeplabv3"') + (
        '[knockout]\ndesign = "factorial"\ncomponents = ["head.aspp.convs.0", '
        '"head.aspp.convs.1"]\n'), "r.toml")
    [trial] = expand(recipe, parse_set(['model.remove=["head.aspp.convs.1","head.aspp.convs.0"]']))
    assert trial.name == "remove=[head.aspp.convs.0,head.aspp.convs.1]/seed=0"
    assert trial.trial_id in {t.trial_id for t in expand(recipe)}
    # a value the design does not hold names the section the user wrote, not the grid
    with pytest.raises(RecipeError) as info:
        expand(recipe, parse_set(['model.remove=["head.aspp.convs.2"]']))
    assert info.value.detail.startswith("the axis [knockout] varies it; --set picks one of its "
                                        "values (")


def test_a_set_of_a_variant_key_is_allowed():
    """A variant's name is a label: ``--set data.name=shapes`` tries every variant."""
    recipe = parse_recipe(BASE + '[variants.a]\n"train.lr" = 0.3\n[variants.b]\n'
                          '"train.lr" = 0.4\n"train.epochs" = 2\n', "r.toml")
    trials = expand(recipe, parse_set(["train.lr=0.5"]))
    assert [(t.name, t.spec.train.lr, t.spec.train.epochs) for t in trials] == [
        ("a/seed=0", 0.5, 1), ("b/seed=0", 0.5, 2)]


def test_a_set_table_sets_its_keys_and_keeps_the_sections_others():
    assert parse_set(["train={lr=0.5, momentum=0.8}"]) == {"train.lr": 0.5,
                                                            "train.momentum": 0.8}
    (trial,) = expand(parse_recipe(BASE, "r.toml"), parse_set(["train={lr=0.5}"]))
    assert (trial.spec.train.lr, trial.spec.train.epochs, trial.spec.train.batch_size) == (
        0.5, 1, 4)  # epochs and batch size as the base set them, not the defaults
    with pytest.raises(UserInputError, match="--set train: an empty table"):
        parse_set(["train={}"])
    with pytest.raises(UserInputError, match="unknown key 'train.lrr'"):
        parse_set(["train={lrr=0.5}"])
    assert parse_set(["model.args={}"]) == {"model.args": {}}  # a free table may be emptied


def test_refused_on_the_command_line_records_nothing(tmp_path):
    recipe = tmp_path / "clash.toml"
    recipe.write_text(BASE + '[grid]\n"train.lr" = [0.1, 0.2]\n')
    db = tmp_path / "c.db"
    Store(str(db))
    for command in ("plan", "run"):
        result = CliRunner().invoke(main, [command, str(recipe), "--db", str(db), "--set",
                                           "train.lr=0.5"])
        assert result.exit_code == 2 and "Traceback" not in result.output
        assert len(result.output.strip().splitlines()) == 1
        assert "--set train.lr: the axis grid" in result.output
        assert "(0.1, 0.2)" in result.output
    assert Store(str(db)).studies() == []


def test_a_tuned_key_given_an_unknown_distribution_lists_the_distributions():
    message = _error('[tune]\nbudget = 2\nseeds = [5]\n"train.lr" = { normal = [0.1, 0.2] }\n')
    assert message.startswith('r.toml: tune."train.lr": unknown distribution \'normal\'; '
                              'must be a range: { log_uniform = ')


def test_a_drawn_value_refused_under_a_free_table_is_blamed_on_its_tune_key():
    from ablate.trials.tuning import plan_tuning

    recipe = parse_recipe(BASE + '[tune]\nbudget = 2\nseeds = [5]\n'
                          '"model.args.width" = { int = [1, 2] }\n', "r.toml")
    with pytest.raises(RecipeError) as err:
        plan_tuning(recipe)
    assert str(err.value).startswith('r.toml: tune."model.args.width": only read with '
                                     "model.builder")


def test_a_set_over_an_axis_section_is_refused_for_what_it_is():
    """``--set train=3`` is not a table: the schema's message, not the axis clash."""
    text = '[grid]\n"train.lr" = [0.1, 0.2]\n'
    with pytest.raises(RecipeError, match="--set train: must be a table"):
        expand(parse_recipe(BASE + text, "r.toml"), parse_set(["train=3"]))
