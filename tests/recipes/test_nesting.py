"""Deeply nested TOML values: one line, exit 2, never a RecursionError traceback."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from ablate.cli import main
from ablate.recipes import nesting


def _deep(levels: int, open_: str = "[", close: str = "]", leaf: str = "1") -> str:
    return open_ * levels + leaf + close * levels


@pytest.mark.parametrize("body", [
    '[base.model]\naspp_rates = ' + _deep(3000),  # the parser itself would recurse
    '[grid]\n"model.aspp_rates" = [' + _deep(5000) + ']',
    '[base.model]\nx = ' + _deep(3000, "{a=", "}"),
    '[base.model]\naspp_rates = ' + _deep(40),  # parses, refused before validation
])
def test_deep_recipe_is_one_line_exit_2(write_recipe, tmp_path, body):
    recipe = write_recipe('name = "deep"\n' + body + "\n")
    db = tmp_path / "d.db"
    result = CliRunner().invoke(main, ["plan", str(recipe), "--no-cost", "--db", str(db)])
    assert result.exit_code == 2, result.output
    [line] = result.stderr.splitlines()
    assert line.startswith(f"Error: {recipe}: ")
    assert f"nested more than {nesting.MAX_DEPTH} levels deep" in line
    assert "Traceback" not in result.output and not db.exists()


def test_the_key_or_line_is_named(write_recipe):
    recipe = write_recipe('name = "deep"\n[base.model]\naspp_rates = ' + _deep(40) + "\n")
    result = CliRunner().invoke(main, ["plan", str(recipe), "--no-cost"])
    assert f"{recipe}: base.model.aspp_rates: nested more than" in result.stderr
    recipe = write_recipe('name = "deep"\n\n[base.model]\naspp_rates = ' + _deep(3000) + "\n")
    result = CliRunner().invoke(main, ["plan", str(recipe), "--no-cost"])
    assert f"{recipe}: line 4: nested more than" in result.stderr


def test_deep_set_value(tiny_recipe):
    result = CliRunner().invoke(main, ["plan", str(tiny_recipe), "--no-cost",
                                       "--set", "model.aspp_rates=" + _deep(3000)])
    assert result.exit_code == 2
    assert result.stderr.splitlines() == [
        f"Error: {tiny_recipe}: --set model.aspp_rates: nested more than {nesting.MAX_DEPTH} levels deep "
        "(arrays and tables); flatten the value"]


def test_check_depth_counts_levels():
    nesting.check_depth({"a": {"b": [[1]]}}, limit=3)  # the table, a, b and b[0]
    with pytest.raises(nesting.TooDeep) as err:
        nesting.check_depth({"a": {"b": [[1]]}}, limit=2)
    assert err.value.key == "a.b[0]"
