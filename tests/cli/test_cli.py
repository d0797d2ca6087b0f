"""Every command through Click's CliRunner: help, errors, and an end-to-end study."""

from __future__ import annotations

import json
import sqlite3

import click
import pytest
from click.testing import CliRunner

from ablate.cli import main


def all_commands(group: click.Group, prefix=()):
    for name, cmd in group.commands.items():
        yield prefix + (name,), cmd
        if isinstance(cmd, click.Group):
            yield from all_commands(cmd, prefix + (name,))


@pytest.mark.parametrize("path", [p for p, _ in all_commands(main)], ids=" ".join)
def test_every_command_has_help_and_an_example(path):
    result = CliRunner().invoke(main, [*path, "--help"])
    assert result.exit_code == 0
    cmd = dict(all_commands(main))[path]
    assert cmd.get_short_help_str().strip(), f"{path} has no one-line summary"
    assert "Example:" in result.output


@pytest.mark.parametrize("text,needle", [
    ("[base.model]\nbackbone = 'resnet5'\n", "base.model.backbone"),
    ('[grid]\n"model.nope" = [1]\n', 'grid."model.nope"'),
    ('[grid]\n"train.lr" = []\n', "empty axis"),
    ("[base\n", "invalid TOML"),
    # refused when each architecture is built (on meta), which must not create the database
    ("[base.model]\nexpansion = [99]\n", "model.expansion: block 99 out of range"),
    ('[base.model]\nremove = ["head.nope"]\n', "model.remove: the network has no module"),
    # a built-in head other than deeplabv3 built the plain network, mask net ignored
    ("[base.model]\nbackbone = 'resnet50'\noutput_stride = 8\nselective = { enabled = true }\n",
     "model.head: selective down-sampling needs 'deeplabv3', got 'deeplabv3plus'"),
])
def test_bad_recipe_exits_2_with_one_line_and_writes_nothing(tmp_path, write_recipe, text, needle):
    recipe = write_recipe(text)
    db = tmp_path / "x.db"
    for command in ("plan", "run"):
        result = CliRunner().invoke(main, [command, str(recipe), "--db", str(db)])
        assert result.exit_code == 2, result.output
        assert needle in result.output
        assert result.output.startswith(f"Error: {recipe}: ")
        assert len(result.output.strip().splitlines()) == 1
        assert "Traceback" not in result.output
    assert not db.exists()


def test_missing_recipe_file(tmp_path):
    result = CliRunner().invoke(main, ["plan", str(tmp_path / "none.toml")])
    assert result.exit_code == 2
    assert result.output.strip() == f"Error: {tmp_path / 'none.toml'}: recipe file not found"


def test_bad_recipe_keeps_existing_database_unchanged(tmp_path, tiny_recipe, write_recipe,
                                                      monkeypatch):
    db = tmp_path / "keep.db"
    CliRunner().invoke(main, ["plan", str(tiny_recipe), "--db", str(db), "--no-cost"])
    from ablate.store import Store

    Store(str(db)).upsert_study("existing")
    before = db.read_bytes()
    bad = write_recipe("[base.train]\nepochs = 0\n")
    result = CliRunner().invoke(main, ["run", str(bad), "--db", str(db)])
    assert result.exit_code == 2 and "base.train.epochs" in result.output
    assert [s.name for s in Store(str(db)).studies()] == ["existing"]
    assert db.read_bytes() == before


def test_plan_json(tiny_recipe, tmp_path):
    result = CliRunner().invoke(main, ["plan", str(tiny_recipe), "--json",
                                       "--db", str(tmp_path / "p.db")])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.output)
    assert len(rows) == 2
    for row in rows:
        assert {"trial_id", "name", "status", "params", "gflops", "flops_convention",
                "resolution"} <= set(row)
        assert row["status"] == "pending" and row["resolution"] == [32, 32]
        assert row["flops_convention"] == "fvcore-mac"
    kept, dropped = rows
    assert kept["params"] > dropped["params"] > 0
    assert not (tmp_path / "p.db").exists()  # planning never creates a database


def test_plan_title_counts_in_the_singular_too(tiny_recipe):
    result = CliRunner().invoke(main, ["plan", str(tiny_recipe), "--no-cost", "--set",
                                       "model.keep_last_expansion=true"], terminal_width=200)
    assert result.exit_code == 0, result.output
    title = result.output.splitlines()[0].strip()
    assert title == "tiny: 1 trial, 1 architecture"  # was "1 trials, 1 architectures"


def test_plan_set_override(tiny_recipe):
    result = CliRunner().invoke(main, ["plan", str(tiny_recipe), "--json", "--no-cost",
                                       "--set", "train.epochs=3", "--set", "seeds=[4,5]"])
    assert result.exit_code == 0, result.output
    assert sorted(r["seed"] for r in json.loads(result.output)) == [4, 4, 5, 5]
    # a single seed key would be ignored by the trial id: refused, pointing at seeds
    result = CliRunner().invoke(main, ["plan", str(tiny_recipe), "--set", "seed=4"])
    assert result.exit_code == 2 and "--set seeds=[0,1]" in result.output


def test_plan_lists_what_run_with_the_same_selection_would_run(tmp_path):
    """plan --variant / --trial select as run does: the rows, and the estimate over them."""
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    recipe = str(root / "recipes" / "quickstart.toml")

    def plan(*args):
        result = CliRunner().invoke(main, ["plan", recipe, "--json", "--no-cost", *args])
        assert result.exit_code == 0, result.output
        return json.loads(result.output)

    every = plan()
    lean = plan("--variant", "lean_last_stage")
    assert {r["variant"] for r in every} == {"all_expansions", "lean_last_stage"}
    assert lean == [r for r in every if r["variant"] == "lean_last_stage"] and len(lean) == 6
    first, other = every[0], every[7]
    assert plan("--trial", first["trial_id"][:6], "--trial", other["name"]) == [first, other]
    for args, words in [(["--variant", "nope"], ": --variant: no variant 'nope'; allowed: "
                                                "all_expansions, lean_last_stage"),
                        (["--trial", "abc"], ": --trial: no trial has the id, id prefix or "
                                             "name 'abc'"),
                        (["--trial", ""], ": --trial: empty; give a trial's id, id prefix or "
                                          "name")]:
        result = CliRunner().invoke(main, ["plan", recipe, *args])
        assert result.exit_code == 2 and f"Error: {recipe}{words}" in result.output


def test_plan_and_run_say_when_a_set_makes_variants_one(tiny_recipe, tmp_path):
    """Both variants planned as one, without a word, had `narrow` vanish and `full` train
    at the --set's width; now one warning line, before a --variant of the lost one is
    refused (and nothing is recorded)."""
    with tiny_recipe.open("a") as f:
        f.write('[variants.full]\n[variants.lean]\n"model.expansion" = "none"\n')
    line = ("Warning: --set model.expansion=all makes variants full and lean the same "
            "configuration; it runs once, as full\n")
    args = [str(tiny_recipe), "--set", "model.expansion=all", "--db", str(tmp_path / "d.db")]
    result = CliRunner().invoke(main, ["plan", *args, "--json", "--no-cost"])
    assert result.exit_code == 0, result.output
    assert {r["variant"] for r in json.loads(result.stdout)} == {"full"}
    assert result.stderr == line
    for command in ("plan", "run"):
        result = CliRunner().invoke(main, [command, *args, "--variant", "lean"])
        assert result.exit_code == 2
        assert result.stderr == line + (f"Error: {tiny_recipe}: --variant: no variant 'lean'; "
                                        "allowed: full\n")
    assert not (tmp_path / "d.db").exists()
    unset = CliRunner().invoke(main, ["plan", str(tiny_recipe), "--json", "--no-cost"])
    assert unset.exit_code == 0 and unset.stderr == ""


def test_a_tuned_study_is_planned_whole(tmp_path, monkeypatch):
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    monkeypatch.syspath_prepend(str(root / "examples" / "fair_lr"))
    recipe = str(root / "recipes" / "fair_lr.toml")
    result = CliRunner().invoke(main, ["plan", recipe, "--variant", "scaled", "--no-cost"])
    assert result.exit_code == 2
    assert result.output.strip() == (f"Error: {recipe}: --trial/--variant: a tuned study "
                                     "([tune]) runs every tuning trial; the selection compares "
                                     "them all")


def test_report_on_empty_database(tmp_path):
    db = str(tmp_path / "e.db")
    assert CliRunner().invoke(main, ["db", "upgrade", "--db", db]).exit_code == 0
    result = CliRunner().invoke(main, ["report", "--db", db])
    assert result.exit_code == 0
    assert "No finished trials" in result.output


def test_report_on_missing_database_creates_nothing(tmp_path):
    result = CliRunner().invoke(main, ["report", "--db", str(tmp_path / "sub" / "e.db")])
    assert result.exit_code == 2 and "no database at" in result.output
    assert list(tmp_path.iterdir()) == []


def test_report_unknown_study(tmp_path):
    db = str(tmp_path / "e.db")
    CliRunner().invoke(main, ["db", "upgrade", "--db", db])
    result = CliRunner().invoke(main, ["report", "--db", db, "--study", "nope"])
    assert result.exit_code == 2
    assert "no study 'nope'" in result.output


def test_db_info_and_upgrade(tmp_path):
    db = str(tmp_path / "d.db")
    result = CliRunner().invoke(main, ["db", "upgrade", "--db", db])
    assert result.exit_code == 0 and "-> 0006" in result.output
    result = CliRunner().invoke(main, ["db", "info", "--db", db])
    assert "schema: 0006 (this ablate: 0006)" in result.output


def test_old_database_is_refused_by_every_command(tmp_path):
    db = tmp_path / "old.db"
    CliRunner().invoke(main, ["db", "upgrade", "--db", str(db)])
    con = sqlite3.connect(db)
    con.execute("UPDATE alembic_version SET version_num = '0000'")
    con.commit()
    result = CliRunner().invoke(main, ["report", "--db", str(db)])
    assert result.exit_code == 2
    assert f"run: ablate db upgrade --db sqlite:///{db}" in result.output


def test_names_with_brackets_are_printed_verbatim(write_recipe):
    recipe = write_recipe("""
[grid]
"model.keep_last_expansion" = [true]
[variants.lean]
model.expansion = "none"
""")
    result = CliRunner().invoke(main, ["plan", str(recipe), "--no-cost"])
    assert result.exit_code == 0, result.output
    assert "lean[keep_last_expansion=true]/seed=0" in result.output  # not eaten as markup
