"""The fast paths of trial ids write exactly what the slow ones wrote: ids never change."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ablate.recipes.loader import load_recipe, parse_recipe
from ablate.trials import expand as expand_module
from ablate.trials.expand import expand
from ablate.trials.ids import (
    ID_LENGTH,
    SpecDumps,
    architecture_id,
    canonical_json,
    spec_dict,
    trial_id,
)

REPO = Path(__file__).resolve().parents[2]
RECIPES = sorted((REPO / "recipes").glob("*.toml"))
EXAMPLE_MODELS = REPO / "examples" / "fair_lr"  # recipes/fair_lr*.toml: PYTHONPATH=examples/fair_lr


def reference(obj) -> str:
    """What every trial id hashed before orjson."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True)


FLOATS = st.one_of(
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from([1e-05, 9.999e-05, 0.0001, 1e-07, 2.5e-05, 1e16, 1e15, 1.5e300, 5e-324,
                     -0.0, 0.1, 123.0]),
)
SCALARS = st.one_of(st.none(), st.booleans(), st.integers(-(2**70), 2**70), FLOATS,
                    st.text(st.characters(exclude_categories=("Cs",)), max_size=8),
                    st.sampled_from(["1e5", "0.00001", "\x7f", "é", "\u2028", "a\"b\\"]))
JSON = st.recursive(SCALARS, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=5), inner, max_size=4)),
    max_leaves=20)


@settings(max_examples=300, deadline=None, derandomize=True)
@given(JSON)
def test_canonical_json_is_the_standard_librarys_text(obj):
    assert canonical_json(obj) == reference(obj)


def test_canonical_json_on_numbers_orjson_writes_otherwise():
    # orjson: 0.00001, 1e-7; the ids hashed json's 1e-05, 1e-07
    for value in (1e-05, 1e-07, 6.896e-05, -1.08e-05, 2e-300):
        assert canonical_json({"lr": value}) == reference({"lr": value})
    assert canonical_json({"a": 1e-05}) == '{"a":1e-05}'


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: p.name)
def test_spec_dumps_and_ids_match_the_plain_dump(path, monkeypatch):
    monkeypatch.syspath_prepend(str(EXAMPLE_MODELS))  # as the recipe's header says to run it
    dumps = SpecDumps()
    for trial in expand(load_recipe(str(path)), max_trials=None)[:200]:
        assert dumps(trial.spec) == spec_dict(trial.spec)
        assert trial.trial_id == trial_id(trial.spec)
        assert trial.arch_id == architecture_id(trial.spec)


def test_eval_data_left_out_of_the_dump_when_unset_and_in_when_set():
    text = '''
name = "e"
seeds = [0]
[grid]
"eval_data.name" = ["shapes"]
"train.lr" = [0.1, 0.2]
'''
    trials = expand(parse_recipe(text, "e.toml"))
    plain = expand(parse_recipe(text.replace('"eval_data.name" = ["shapes"]\n', ""), "e.toml"))
    dumps = SpecDumps()
    assert "eval_data" in dumps(trials[0].spec) and "eval_data" not in dumps(plain[0].spec)
    for trial in trials + plain:
        assert dumps(trial.spec) == spec_dict(trial.spec)
        assert trial.trial_id == trial_id(trial.spec)


def test_ids_of_a_large_sweep_are_those_of_the_slow_path(monkeypatch):
    lrs = ", ".join(f"{0.0001 * (i + 1):.4f}" for i in range(60))
    text = f'''
name = "sweep"
seeds = [0, 7]
[base.model]
backbone = "mobilenet_v3_small"
[grid]
"train.lr" = [{lrs}, 1e-05]
"train.weight_decay" = [0.0001, 0.00002]
"model.head" = ["lraspp", "deeplabv3plus"]
'''
    fast = expand(parse_recipe(text, "s.toml"))
    monkeypatch.setattr(expand_module, "SpecDumps", lambda: None)  # spec_dict per trial
    monkeypatch.setattr("ablate.trials.ids.orjson.dumps", _no_orjson)
    slow = expand(parse_recipe(text, "s.toml"))
    assert len(fast) == 61 * 2 * 2 * 2
    assert [(t.trial_id, t.arch_id) for t in fast] == [(t.trial_id, t.arch_id) for t in slow]
    assert len({t.arch_id for t in fast}) == 2
    spec = fast[-1].spec  # the last: lr 1e-05, written by json, not orjson
    digest = hashlib.sha256(reference({**spec_dict(spec)}).encode()).hexdigest()
    assert fast[-1].trial_id == digest[:ID_LENGTH]


def _no_orjson(*args, **kwargs):
    raise TypeError("orjson left out")
