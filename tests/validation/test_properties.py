"""Property-based: recipes and command lines one random mutation away from valid ones.

Whatever the mutation (a value of another type, a non-finite or out-of-range number,
an unknown key at any level, random unicode in names and values), ``ablate plan`` either
succeeds or exits 2 with one printable line, and writes nothing either way.
"""

from __future__ import annotations

import json
import math
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.validation.harness import TABLES, VALID, invoke, make_database, recipe_text, snapshot

# property tests: many plans each: the slow tier (`pytest -m "not slow"` leaves it out)
pytestmark = pytest.mark.slow

# printable and control characters, no surrogates (a TOML file is UTF-8)
TEXT = st.text(st.characters(exclude_categories=("Cs",)), max_size=12)
SCALARS = st.one_of(
    st.booleans(), st.integers(-(2**63), 2**63 - 1), TEXT,
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0, -1, 1, 2**32, 10**12, 1e300, -1e-300, math.inf, -math.inf]),
)
VALUES = st.one_of(SCALARS, st.lists(SCALARS, max_size=3))
SETTINGS = settings(max_examples=60, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.function_scoped_fixture,
                                           HealthCheck.too_slow])
# keys a recipe may set, beside the ones VALID sets, so mutations reach every section
EXTRA_KEYS = [
    ("base.model", "aux_weight"), ("base.model", "output_stride"), ("base.model", "expansion"),
    ("base.model", "bn_momentum"), ("base.model.selective", "lambda"),
    ("base.model.selective", "tau"), ("base.data", "workers"), ("base.data", "scale_range"),
    ("base.data", "eval_size"), ("base.train", "momentum"), ("base.train", "grad_clip"),
    ("base.train", "weight_decay"), ("base.eval", "resolution"), ("base.eval", "latency_runs"),
    ("slurm", "time"), ("slurm", "mem"), ("variants.plain.published", "miou"), ("", "seeds"),
    ("", "name"), ("variants.plain", "description"),
]
KEYS = [(t, k) for t, keys in TABLES.items() for k in keys] + EXTRA_KEYS


def toml_value(value) -> str:
    """A Python value as TOML text (strings in basic quotes, non-finite floats by name)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    return json.dumps(value, ensure_ascii=False)


def assert_outcome(result, folders: tuple[Path, ...], before) -> None:
    """Success, or exit 2 with one printable line; either way no file changed."""
    assert result.exception is None or isinstance(result.exception, SystemExit), (
        f"{type(result.exception).__name__}: {result.exception}")
    assert result.exit_code in (0, 2), result.output
    if result.exit_code == 2:
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("Error: "), result.stderr
        assert lines[0].isprintable(), repr(lines[0])
    assert "Traceback" not in result.output
    after = tuple(snapshot(f) for f in folders)
    assert after == (before if isinstance(before, tuple) else (before,))


MUTATIONS = st.one_of(
    # a value of any type or range at a known key
    st.tuples(st.just("set"), st.sampled_from(KEYS), VALUES),
    # an unknown key at any level, or a random unicode key
    st.tuples(st.just("key"), st.sampled_from(sorted({t for t, _ in KEYS})),
              st.one_of(st.sampled_from(["typo", "seed", "descripton", "lr"]), TEXT)),
    # a random unicode study or variant name
    st.tuples(st.just("name"), st.sampled_from(["", "variants"]), TEXT),
)


def _mutated(mutation) -> str:
    kind, where, value = mutation
    if kind == "set":
        table, key = where
        return recipe_text((table, key, toml_value(value)))
    if kind == "key":
        return recipe_text((where, json.dumps(value, ensure_ascii=False), "1"))
    if where == "":
        return recipe_text(("", "name", json.dumps(value, ensure_ascii=False)))
    return recipe_text((f"variants.{json.dumps(value, ensure_ascii=False)}", "description",
                        '"x"'))


@pytest.fixture(scope="module")
def database(tmp_path_factory):
    return make_database(tmp_path_factory.mktemp("prop"))


@given(mutation=MUTATIONS)
@SETTINGS
def test_mutated_recipe_plans_or_is_refused_in_one_line(database, mutation):
    with tempfile.TemporaryDirectory() as name:
        folder = Path(name)
        recipe = folder / "mutated.toml"
        recipe.write_text(_mutated(mutation), encoding="utf-8")
        before = snapshot(folder), snapshot(database.parent)
        result = invoke(["plan", str(recipe), "--no-cost", "--db", str(database)])
        assert_outcome(result, (folder, database.parent), before)


SET_KEYS = st.one_of(st.sampled_from(
    ["train.lr", "train.epochs", "data.classes", "model.head", "model.expansion", "seeds",
     "seed", "data.workers", "model.selective.lambda", "eval.resolution", "nope.key", ""]),
    TEXT)
OPTIONS = st.lists(st.one_of(
    st.tuples(st.just("--set"), st.builds(lambda k, v: f"{k}={toml_value(v)}", SET_KEYS, VALUES)),
    st.tuples(st.just("--set"), TEXT),
    st.tuples(st.just("--max-trials"), st.one_of(st.integers(-5, 5).map(str), TEXT)),
    st.tuples(st.just("--format"), st.sampled_from(["table", "csv", "json", "xml", ""])),
    st.tuples(st.sampled_from(["--json", "--no-cost", "--bogus"])),
), max_size=3)


@given(options=OPTIONS)
@SETTINGS
def test_mutated_command_line_plans_or_is_refused_in_one_line(database, options):
    recipe = database.parent / "valid.toml"
    recipe.write_text(VALID)
    args = ["plan", str(recipe), "--db", str(database), *[p for opt in options for p in opt]]
    if "--no-cost" not in args:
        args.append("--no-cost")  # costing would (rightly) write to the database
    before = snapshot(database.parent)
    assert_outcome(invoke(args), (database.parent,), before)
