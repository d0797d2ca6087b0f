"""An error names the line the user wrote (--set, axis, variant, base) and what is allowed
there, not a section above it or a registry's key."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from ablate.cli import main
from ablate.errors import RecipeError
from ablate.recipes.loader import parse_recipe
from ablate.trials.expand import expand, parse_set
from tests.recipes.test_clashes import BASE  # the same small recipe


def _error(text: str = "", sets: tuple[str, ...] = ()) -> str:
    with pytest.raises(RecipeError) as err:
        expand(parse_recipe(BASE + text, "r.toml"), parse_set(list(sets)))
    return str(err.value)


@pytest.mark.parametrize(("text", "sets", "where"), [
    ("", ('eval.runtimes=["tensorrt"]',), "--set eval.runtimes"),
    ('[grid]\n"eval.runtimes" = [["tensorrt"]]\n', (), 'grid."eval.runtimes"'),
    ('[variants.a]\n"eval.runtimes" = ["tensorrt"]\n', (), "variants.a.eval.runtimes"),
])
def test_a_check_across_a_section_blames_the_key_that_broke_it(text, sets, where):
    """``eval.runtimes`` without eager fails the eval section's own check: the error names
    who set eval.runtimes (not ``base.eval``) and says nothing of a table."""
    assert _error(text, sets) == (f"r.toml: {where}: must include 'eager', the reference for "
                                  "parity and latency ratios")


def test_a_check_in_base_names_the_key_under_the_section():
    assert _error('[base.eval]\nruntimes = ["tensorrt"]\n') == (
        "r.toml: base.eval.runtimes: must include 'eager', the reference for parity and "
        "latency ratios")  # was base.eval: eval.runtimes: ...


EVAL_DATA = '[base.eval_data]\nname = "voc2012"\nroot = "v"\n'


@pytest.mark.parametrize(("text", "sets", "where"), [
    (None, (), "base.data.val_split"),  # None: in the recipe's [base.data]
    (EVAL_DATA, ("data.val_split=test",), "--set data.val_split"),
    (EVAL_DATA + '[grid]\n"data.val_split" = ["a", "b"]\n', (), 'grid."data.val_split"'),
    (EVAL_DATA + '[variants.a]\ndata.val_split = "a"\n', (), "variants.a.data.val_split"),
])
def test_a_training_split_beside_eval_data_names_the_key_set(text, sets, where):
    """Not ``base.eval_data``, which the user may not have touched: the key to remove,
    and eval_data's own key for it."""
    if text is None:
        with pytest.raises(RecipeError) as err:
            parse_recipe(BASE.replace("[base.data]\n", '[base.data]\nval_split = "test"\n')
                         + EVAL_DATA, "r.toml")
        message = str(err.value)
    else:
        message = _error(text, sets)
    assert message == (f"r.toml: {where}: not read when eval_data is set (eval_data is the "
                       "evaluation set); remove it, or set eval_data.split")


def test_an_evaluation_key_without_a_twin_says_remove_it():
    message = _error(EVAL_DATA, ("data.holdout=0.1",))
    assert message.endswith("--set data.holdout: not read when eval_data is set (eval_data is "
                            "the evaluation set); remove it")


def test_a_free_table_key_set_without_its_builder_names_the_set():
    assert _error(sets=("model.args.x=1",)).startswith(
        "r.toml: --set model.args.x: only read with model.builder;")


def test_an_unknown_key_in_a_list_of_tables_lists_that_tables_keys():
    message = _error(sets=('model.replace=[{path="head.cbr",by="torch.nn:Identity",extra=1}]',))
    assert message == "r.toml: --set model.replace[0].extra: unknown key; allowed here: args, by, path"


@pytest.mark.parametrize(("by", "got"), [("5", "a number (got 5)"), ("{a = 1}", "a table"),
                                         ('["identity"]', "a list (got ['identity'])")])
def test_a_replacement_by_of_another_type_gets_its_rule(by, got):
    """What ``by`` accepts, as the key table says (was pydantic's "should be a valid string")."""
    assert _error(sets=(f'model.replace=[{{path="head.cbr",by={by}}}]',)) == (
        "r.toml: --set model.replace[0].by: must be 'identity', 'zeros' or an import path "
        f"'package.module:Class', not {got}")


def test_a_replacement_path_of_another_type_gets_its_rule():
    assert _error(sets=('model.replace=[{path=5,by="identity"}]',)) == (
        "r.toml: --set model.replace[0].path: must be a dotted module path such as "
        "'head.aspp.convs.3', not a number (got 5)")


def test_an_empty_list_says_how_many_items_it_needs():
    assert _error("[knockout]\ncomponents = []\n") == (
        "r.toml: knockout.components: must list at least 1 item (got [])")


def test_a_replacement_that_cannot_be_imported_names_its_by():
    message = _error(sets=('model.replace=[{path="head.cbr",by="no_such_pkg.mod:X"}]',))
    assert "model.replace[0].by: cannot import 'no_such_pkg.mod'" in message


def test_cost_names_the_recipe_and_trial_and_its_own_resolution_option(tmp_path):
    recipe = tmp_path / "c.toml"
    recipe.write_text(BASE)
    head = CliRunner().invoke(main, ["cost", str(recipe), "--set", "model.head=fcn8s"])
    assert head.exit_code == 2 and len(head.output.strip().splitlines()) == 1
    assert head.output.startswith(f"Error: {recipe}: trial base/seed=0: model.head: fcn8s")
    big = CliRunner().invoke(main, ["cost", str(recipe), "--resolution", "99999x99999"])
    assert big.exit_code == 2
    assert big.output == "Error: --resolution: sides up to 8192, got '99999x99999'\n"


@pytest.mark.parametrize("mem", ["16 GB", "lots", "0G", "1.5G", "-4G", ""])
def test_a_slurm_memory_size_sbatch_would_refuse_is_refused_before_submitting(mem):
    from ablate.dispatch.slurm import resolve_spec
    from ablate.errors import UserInputError
    from ablate.recipes.schema import SlurmSpec

    rule = ("must be a memory size as sbatch --mem takes it: a whole number with an optional "
            "unit K, M, G or T, e.g. 16G")
    with pytest.raises(RecipeError) as err:
        parse_recipe(BASE + f'[slurm]\nmem = "{mem}"\n', "r.toml")
    assert str(err.value).startswith(f"r.toml: slurm.mem: {rule}" if mem else
                                     "r.toml: slurm.mem: must not be empty")
    if mem:
        with pytest.raises(UserInputError) as err:
            resolve_spec(SlurmSpec(), {"mem": mem})
        assert str(err.value) == f"--mem: {rule} (got {mem!r})"


@pytest.mark.parametrize("mem, meant", [("16", "16"), ("64000", "64000")])
def test_a_slurm_memory_size_given_as_a_number_names_the_string_meant(mem, meant):
    """It read "should be a string (got 16)"; sbatch takes a bare 16 as megabytes."""
    with pytest.raises(RecipeError) as err:
        parse_recipe(BASE + f"[slurm]\nmem = {mem}\n", "r.toml")
    assert str(err.value) == (f'r.toml: slurm.mem: must be a string with its unit, e.g. mem = '
                              f'"{meant}G" (sbatch reads a bare {meant} as megabytes: write '
                              f'"{meant}M" for that) (got {mem})')


@pytest.mark.parametrize("mem", ["16G", "500", "2t", "64000M"])
def test_a_slurm_memory_size_sbatch_takes_is_accepted(mem):
    assert parse_recipe(BASE + f'[slurm]\nmem = "{mem}"\n', "r.toml").slurm.mem == mem
