"""The rules behind the refusals, checked on what they let through and how they count."""

from __future__ import annotations

import csv
import io
import json
import typing

import pytest
from pydantic import BaseModel, ValidationError

from ablate.cli.text import one_line, terminal, visible
from ablate.errors import RecipeError
from ablate.recipes import schema
from ablate.recipes.loader import load_recipe, parse_recipe
from ablate.recipes.schema import TrialSpec
from ablate.trials.expand import count_trials, expand
from ablate.trials.ids import trial_id, trial_ids_for_seeds
from tests.validation.harness import VALID, assert_refused, invoke, recipe_text


def _float_fields(model: type[BaseModel], prefix: str = ""):
    """Every field of the schema that takes a float, as (model, field name, dotted key)."""
    for name, info in model.model_fields.items():
        key = f"{prefix}{info.alias or name}"
        if isinstance(info.annotation, type) and issubclass(info.annotation, BaseModel):
            yield from _float_fields(info.annotation, key + ".")
        elif "float" in str(info.annotation) or float in typing.get_args(info.annotation):
            yield model, name, key


FLOAT_FIELDS = list(_float_fields(TrialSpec)) + list(_float_fields(schema.Published,
                                                                   "published."))


def test_the_schema_has_float_keys_to_check():
    keys = {key for _, _, key in FLOAT_FIELDS}
    assert {"train.lr", "model.aux_weight", "model.selective.lambda", "train.momentum",
            "published.miou"} <= keys


@pytest.mark.parametrize("value", [float("inf"), float("-inf"), float("nan")])
@pytest.mark.parametrize("model,name,key", FLOAT_FIELDS, ids=[f[2] for f in FLOAT_FIELDS])
def test_every_float_key_refuses_non_finite_values(model, name, key, value):
    alias = model.model_fields[name].alias or name
    with pytest.raises(ValidationError) as err:
        model.model_validate({alias: value})
    assert err.value.errors()[0]["type"] in ("finite_number", "float_type", "list_type")


def test_seed_ids_equal_one_encoding_per_seed():
    spec = TrialSpec.model_validate({"train": {"lr": 0.2}, "model": {"head": "lraspp"}})
    seeds = [0, 7, 2**32 - 1]
    assert trial_ids_for_seeds(spec, seeds) == [
        trial_id(spec.model_copy(update={"seed": s})) for s in seeds]


def test_set_seeds_replaces_the_recipes_seeds_in_names_and_ids(tmp_path):
    recipe = tmp_path / "r.toml"
    recipe.write_text(VALID)
    result = invoke(["plan", str(recipe), "--no-cost", "--json", "--set", "seeds=[3,4]"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    assert [(r["name"].rsplit("=", 1)[1], r["seed"]) for r in rows] == [
        ("3", 3), ("4", 4), ("3", 3), ("4", 4)]
    assert len({r["trial_id"] for r in rows}) == 4


def test_size_is_counted_before_any_trial_is_built(monkeypatch):
    axis = ", ".join(str(i) for i in range(1, 1001))
    text = recipe_text(("", "seeds", "[" + ", ".join(map(str, range(10))) + "]"),
                       ("grid", '"train.epochs"', f"[{axis}]"),
                       ("grid", '"train.batch_size"', f"[{axis}]"))
    recipe = parse_recipe(text, "big.toml")
    assert count_trials(recipe) == 1 * 2 * 1000 * 1000 * 10
    monkeypatch.setattr("ablate.trials.expand.SpecValidator",
                        lambda *a: pytest.fail("a trial was built before the size check"))
    with pytest.raises(RecipeError) as err:
        expand(recipe)
    assert str(err.value) == (
        'big.toml: 20,000,000 trials (variants 1 x grid."model.keep_last_expansion" 2 x '
        'grid."train.epochs" 1,000 x grid."train.batch_size" 1,000 x seeds 10) is more '
        "than --max-trials 10,000; shrink an axis or raise --max-trials")


def test_max_trials_can_be_raised(tmp_path):
    recipe = tmp_path / "r.toml"
    recipe.write_text(recipe_text(("", "seeds", "[0, 1, 2]")))
    assert_refused(invoke(["plan", str(recipe), "--no-cost", "--max-trials", "5"]),
                   "6 trials")
    result = invoke(["plan", str(recipe), "--no-cost", "--max-trials", "6", "--json"])
    assert result.exit_code == 0 and len(json.loads(result.stdout)) == 6


def test_plan_table_is_bounded_and_csv_and_json_give_every_row(tmp_path):
    lrs = ", ".join(f"0.{i:03d}" for i in range(1, 101))
    recipe = tmp_path / "r.toml"
    recipe.write_text(recipe_text(("grid", '"train.lr"', f"[{lrs}]")))  # 2 x 100 trials
    table = invoke(["plan", str(recipe), "--no-cost"])
    assert table.exit_code == 0, table.output
    assert "200 trials" in table.stdout and "175 more trials" in table.stdout
    body = [line for line in table.stdout.splitlines() if "/seed=0" in line]
    assert len(body) == 25  # first 20 and last 5
    assert "lr=0.001]" in body[0] and "lr=0.1]" in body[-1]
    rows = list(csv.DictReader(io.StringIO(
        invoke(["plan", str(recipe), "--no-cost", "--format", "csv"]).stdout)))
    assert len(rows) == 200 and rows[-1]["name"].endswith("lr=0.1]/seed=0")
    assert rows[0]["resolution"] == "32x32"
    as_json = json.loads(invoke(["plan", str(recipe), "--no-cost", "--json"]).stdout)
    assert len(as_json) == 200
    assert list(rows[0]) == list(as_json[0])  # the same columns, the time estimate included
    assert (rows[0]["seconds"], rows[0]["time_source"]) == ("", "unknown")


def test_byte_order_mark_is_accepted(tmp_path):
    plain, marked = tmp_path / "plain.toml", tmp_path / "marked.toml"
    plain.write_text(VALID, encoding="utf-8")
    marked.write_bytes(b"\xef\xbb\xbf" + VALID.encode("utf-8"))
    assert [t.trial_id for t in expand(load_recipe(marked))] == [
        t.trial_id for t in expand(load_recipe(plain))]


def test_non_utf8_after_a_byte_order_mark_counts_lines_and_columns_of_the_file(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_bytes(b"\xef\xbb\xbfname = 'x'\n\xff\n")
    with pytest.raises(RecipeError, match="byte 0xff at line 2, column 1"):
        load_recipe(path)


@pytest.mark.parametrize("name", ["a", "a.b_c-1", "x" * 100, "...", "-"])
def test_names_that_follow_the_rule_are_accepted(name):
    text = recipe_text(("", "name", json.dumps(name)), (f'variants."{name}"', "description",
                                                        '"x"'))
    recipe = parse_recipe(text, "r.toml")
    assert recipe.name == name and [v.name for v in recipe.variants] == ["plain", name]


def test_study_name_defaults_to_a_file_name_only_if_it_follows_the_rule(tmp_path):
    path = tmp_path / "my study.toml"
    path.write_text(recipe_text(("", "name", None)))
    with pytest.raises(RecipeError, match="taken from the file name"):
        load_recipe(path)


def test_user_text_is_made_safe_for_the_terminal():
    assert visible("a\x1b[31mb\x00c\u202e") == "a\\x1b[31mb\\x00c\\u202e"
    assert terminal("[red]x\x07") == "\\[red]x\\x07"
    assert one_line("first\nsecond") == "first second"
    assert len(one_line("x" * 5000)) == 600


def test_names_in_the_plan_table_are_shown_not_obeyed(tmp_path):
    recipe = tmp_path / "r.toml"
    recipe.write_text(recipe_text(("grid", '"data.train_split"', '["[red]a\\u0007"]')))
    result = invoke(["plan", str(recipe), "--no-cost"])
    assert result.exit_code == 0, result.output
    assert "train_split=[red]a\\x07" in result.stdout and "\x07" not in result.stdout


@pytest.mark.parametrize("key,raw", [("pooling", '"avg"'), ("lambda", "0.3"),
                                     ("execution", '"sparse"'), ("mask_net", '"dwsep"')])
def test_mask_net_settings_without_a_mask_net_are_refused(tmp_path, key, raw):
    recipe = tmp_path / "r.toml"
    recipe.write_text(VALID)
    db = tmp_path / "r.db"
    result = invoke(["run", str(recipe), "--db", str(db), "--set",
                     f"model.selective.{key}={raw}"])
    assert_refused(result, f"model.selective.{key} is set but model.selective.enabled is false")
    assert not db.exists()
    # the same setting with the mask net switched on is read, so it is accepted
    spec = TrialSpec.model_validate({"model": {"backbone": "resnet50", "head": "deeplabv3",
                                               "output_stride": 8, "selective": {
                                                   "enabled": True,
                                                   key: raw.strip('"') if '"' in raw
                                                   else float(raw)}}})
    assert spec.model.selective.enabled


def test_latency_batch_sizes_keep_batch_one():
    with pytest.raises(ValidationError, match="must include 1"):
        TrialSpec.model_validate({"eval": {"latency_batch_sizes": [8]}})
    spec = TrialSpec.model_validate({"eval": {"latency_batch_sizes": [1, 8]}})
    assert spec.eval.latency_batch_sizes == [1, 8]
