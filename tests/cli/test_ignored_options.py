"""An option the command would silently ignore is refused: exit 2, one line on stderr
naming both options (or the key given twice), no traceback, nothing written."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from ablate.cli import main
from tests.validation.harness import VALID

LOOP = [("--max-seeds", "5"), ("--alpha", "0.1"), ("--min-effect", "1"),
        ("--spending", "pocock"), ("--max-seeds", "10")]  # the default, but given


@pytest.fixture
def recipe(tmp_path):
    path = tmp_path / "valid.toml"
    path.write_text(VALID)
    return path


def _refused(tmp_path, args: list[str]) -> str:
    db = tmp_path / "r.db"
    with_db = ["--db", str(db)] if args[0] != "cost" else []  # cost reads no database
    result = CliRunner().invoke(main, [*args, *with_db])
    assert result.exit_code == 2, result.output
    assert result.stdout == ""
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("Error: ") and "Traceback" not in result.output
    assert not db.exists()
    return line


def _accepted(tmp_path, args: list[str]) -> None:
    result = CliRunner().invoke(main, [*args, "--db", str(tmp_path / "r.db")])
    assert result.exit_code == 0, result.output


@pytest.mark.parametrize("command", [["plan", "--no-cost"], ["run"]])
@pytest.mark.parametrize("option,value", LOOP)
def test_a_loop_option_without_until_decided_is_refused(tmp_path, recipe, command, option,
                                                        value):
    line = _refused(tmp_path, [command[0], str(recipe), *command[1:], option, value])
    assert line.startswith(f"Error: {option} needs --until-decided")


def test_loop_options_with_until_decided_are_accepted(tmp_path, recipe):
    _accepted(tmp_path, ["plan", str(recipe), "--no-cost", "--until-decided", "--max-seeds",
                         "5", "--alpha", "0.1", "--min-effect", "1", "--spending", "pocock"])


@pytest.mark.parametrize("command", [["plan", "--no-cost"], ["run"]])
@pytest.mark.parametrize("jobs", [["--jobs", "4"], ["-j", "1"]])
def test_jobs_on_slurm_is_refused(tmp_path, recipe, command, jobs):
    line = _refused(tmp_path, [command[0], str(recipe), *command[1:], "--executor", "slurm",
                               *jobs])
    assert line.startswith("Error: --jobs: only with --executor local")


@pytest.mark.parametrize("option", ["--cpus-per-trial", "--array-parallelism"])
def test_plan_refuses_a_slurm_option_locally(tmp_path, recipe, option):
    line = _refused(tmp_path, ["plan", str(recipe), "--no-cost", option, "2"])
    assert line == f"Error: {option}: only with --executor slurm"


def test_executor_options_where_they_count_are_accepted(tmp_path, recipe):
    _accepted(tmp_path, ["plan", str(recipe), "--no-cost", "--jobs", "2"])
    _accepted(tmp_path, ["plan", str(recipe), "--no-cost", "--executor", "slurm",
                         "--cpus-per-trial", "2", "--array-parallelism", "2"])


@pytest.mark.parametrize("command", [["plan", "--no-cost"], ["run"], ["cost"]])
def test_a_key_set_twice_is_refused(tmp_path, recipe, command):
    line = _refused(tmp_path, [command[0], str(recipe), *command[1:], "--set", "train.lr=0.1",
                               "--set", "train.epochs=1", "--set", "train.lr=0.2"])
    assert line == (f"Error: {recipe}: --set train.lr: given twice ('train.lr=0.1', then "
                    "'train.lr=0.2'); only the last would count: give it once")
    line = _refused(tmp_path, [command[0], str(recipe), *command[1:], "--set", "seeds=[1]",
                               "--set", " seeds=[2]"])
    assert line.startswith(f"Error: {recipe}: --set seeds: given twice")


def test_a_key_set_again_inside_a_table_is_refused(tmp_path, recipe):
    line = _refused(tmp_path, ["plan", str(recipe), "--no-cost", "--set", "train.lr=0.1",
                               "--set", "train={epochs=1, lr=0.2}"])
    assert line == (f"Error: {recipe}: --set train.lr: given twice ('train.lr=0.1', then "
                    "'train={epochs=1, lr=0.2}'); only the last would count: give it once")


def test_keys_set_once_each_are_accepted(tmp_path, recipe):
    # a table sets the keys it holds: other keys of the section beside it count too
    _accepted(tmp_path, ["plan", str(recipe), "--no-cost", "--set", "train={epochs=1}",
                         "--set", "train.lr=0.2"])
    _accepted(tmp_path, ["plan", str(recipe), "--no-cost", "--set", "train.lr=0.1",
                         "--set", "train.log_every=2", "--set", "data.name=shapes"])
