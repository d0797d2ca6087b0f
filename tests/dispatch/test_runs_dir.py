"""The default runs folder belongs to the database: no study ingests another database's results."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from ablate.cli import main
from ablate.dispatch.prepare import RUNS_DIR_ENV, default_runs_root, resolve_runs_root
from ablate.store import Store


def test_default_follows_the_database(tmp_path, monkeypatch):
    monkeypatch.delenv(RUNS_DIR_ENV, raising=False)
    monkeypatch.delenv("ABLATE_DB", raising=False)
    assert default_runs_root(str(tmp_path / "a" / "x.db")) == tmp_path / "a" / "runs"
    assert default_runs_root(f"sqlite:///{tmp_path}/b/y.db") == tmp_path / "b" / "runs"
    assert default_runs_root(None) == Path("results/runs")  # beside results/ablate.db
    assert default_runs_root("postgresql+psycopg://u@db/ablate") == Path("results/runs")
    monkeypatch.setenv("ABLATE_DB", str(tmp_path / "c" / "z.db"))
    assert default_runs_root(None) == tmp_path / "c" / "runs"


def test_environment_overrides_and_the_option_wins(tmp_path, monkeypatch):
    monkeypatch.setenv(RUNS_DIR_ENV, str(tmp_path / "env"))
    assert default_runs_root(str(tmp_path / "x.db")) == tmp_path / "env"
    assert resolve_runs_root(None, str(tmp_path / "x.db")) == tmp_path / "env"
    assert resolve_runs_root(str(tmp_path / "flag"), str(tmp_path / "x.db")) == tmp_path / "flag"


@pytest.mark.slow
def test_two_databases_keep_their_own_results(tmp_path, tiny_recipe, monkeypatch):
    monkeypatch.delenv(RUNS_DIR_ENV, raising=False)
    first, second = tmp_path / "one" / "a.db", tmp_path / "two" / "b.db"
    args = [str(tiny_recipe), "--set", "model.keep_last_expansion=true", "--set",
            "train.epochs=1"]
    result = CliRunner().invoke(main, ["run", *args, "--db", str(first)])
    assert result.exit_code == 0, result.output
    [trial] = Store(str(first)).trials("tiny")
    assert (tmp_path / "one" / "runs" / "tiny" / trial.trial_id / "result.json").is_file()
    # a new database does not ingest the first one's result file: it trains its own
    again = CliRunner().invoke(main, ["run", *args, "--db", str(second)])
    assert again.exit_code == 0, again.output
    assert "ingested" not in again.output
    assert (tmp_path / "two" / "runs" / "tiny" / trial.trial_id / "result.json").is_file()
