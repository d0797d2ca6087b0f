"""The runs folder and its study folders belong to the database: no study ingests another
database's results, whether their runs folders differ or are one."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from ablate.cli import main
from ablate.dispatch.prepare import (
    RUNS_DIR_ENV,
    default_runs_root,
    load_trials,
    resolve_runs_root,
)
from ablate.dispatch.results import (
    OWNER_NAME,
    folder_owner,
    ingest_results,
    study_owner,
    study_root,
)
from ablate.errors import UserInputError
from ablate.store import Store, resolve_url
from ablate.trials.lifecycle import TrialResult, TrialStatus


def test_default_follows_the_database(tmp_path, monkeypatch):
    monkeypatch.delenv(RUNS_DIR_ENV, raising=False)
    monkeypatch.delenv("ABLATE_DB", raising=False)
    assert default_runs_root(str(tmp_path / "a" / "x.db")) == tmp_path / "a" / "runs"
    assert default_runs_root(f"sqlite:///{tmp_path}/b/y.db") == tmp_path / "b" / "runs"
    assert default_runs_root(None) == Path("results/runs")  # beside results/ablate.db
    assert default_runs_root("postgresql+psycopg://u@db/ablate") == Path("results/runs")
    monkeypatch.setenv("ABLATE_DB", str(tmp_path / "c" / "z.db"))
    assert default_runs_root(None) == tmp_path / "c" / "runs"


def test_a_tilde_in_the_database_path_is_the_home_folder_for_both(tmp_path, monkeypatch):
    """ABLATE_DB="~/d/x.db" (quoted, so no shell expands it): the database and its runs
    folder both go under the home folder; SQLite made a folder named ~ in the working
    directory while the runs folder went home."""
    monkeypatch.delenv(RUNS_DIR_ENV, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    for given in ("~/d/x.db", "sqlite:///~/d/x.db"):
        monkeypatch.setenv("ABLATE_DB", given)
        assert resolve_url(None) == f"sqlite:///{tmp_path}/home/d/x.db"
        assert default_runs_root(None) == tmp_path / "home" / "d" / "runs"
    Store(None).close()
    assert (tmp_path / "home" / "d" / "x.db").is_file()
    assert not (tmp_path / "~").exists()


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


def _database(path: Path, recipe: Path) -> tuple[Store, str]:
    """A database holding the tiny study's trials, none run; and its first trial's id."""
    store = Store(str(path))
    _, trials = load_trials(str(recipe))
    store.upsert_study("tiny")
    store.register_trials("tiny", trials)
    return store, trials[0].trial_id


def _result(run_dir: Path, trial_id: str) -> None:
    TrialResult("tiny", trial_id, TrialStatus.DONE, run_dir=str(run_dir),
                final={"miou": 0.5}).write(run_dir)


def test_each_database_has_its_own_study_folder(tmp_path, tiny_recipe):
    runs = tmp_path / "runs"
    first, _ = _database(tmp_path / "k.db", tiny_recipe)
    second, _ = _database(tmp_path / "k3.db", tiny_recipe)
    mine, theirs = study_owner(first, "tiny"), study_owner(second, "tiny")
    assert study_root(runs, "tiny", mine) == runs / "tiny"  # the first takes the plain one
    assert folder_owner(runs / "tiny") == mine
    assert f"{tmp_path}/k.db" in (runs / "tiny" / OWNER_NAME).read_text()  # for people
    other = study_root(runs, "tiny", theirs)
    assert other == runs / f"tiny.{theirs.tag}" and folder_owner(other) == theirs
    # each keeps its folder, whichever asks first
    assert study_root(runs, "tiny", theirs) == other
    assert study_root(runs, "tiny", mine) == runs / "tiny"


def test_a_database_ingests_only_the_results_written_for_it(tmp_path, tiny_recipe):
    runs = tmp_path / "runs"
    first, tid = _database(tmp_path / "k.db", tiny_recipe)
    second, _ = _database(tmp_path / "k3.db", tiny_recipe)
    root = study_root(runs, "tiny", study_owner(first, "tiny"))
    _result(root / tid, tid)  # trained for k.db, not yet recorded (its run was killed)
    report = ingest_results(second, "tiny", runs)
    assert report.ingested == [] and report.foreign == [tid]
    assert report.foreign_db == f"sqlite:///{tmp_path}/k.db"
    assert second.statuses("tiny")[tid] is TrialStatus.PENDING
    # the database it was written for ingests it, once
    assert ingest_results(first, "tiny", runs).ingested == [tid]
    assert first.statuses("tiny")[tid] is TrialStatus.DONE
    assert ingest_results(first, "tiny", runs).ingested == []
    # the second database's own result, in its own folder, is its to ingest
    own = study_root(runs, "tiny", study_owner(second, "tiny"))
    _result(own / tid, tid)
    report = ingest_results(second, "tiny", runs)
    assert report.ingested == [tid] and report.foreign == []


def test_a_study_folder_of_an_older_ablate_is_read_as_before(tmp_path, tiny_recipe):
    runs = tmp_path / "runs"
    store, tid = _database(tmp_path / "k.db", tiny_recipe)
    _result(runs / "tiny" / tid, tid)  # no database.json: written before there was one
    assert ingest_results(store, "tiny", runs).ingested == [tid]
    assert study_root(runs, "tiny", study_owner(store, "tiny")) == runs / "tiny"  # now its


def test_an_unreadable_owner_file_is_not_ours(tmp_path, tiny_recipe):
    runs = tmp_path / "runs"
    store, tid = _database(tmp_path / "k.db", tiny_recipe)
    _result(runs / "tiny" / tid, tid)
    (runs / "tiny" / OWNER_NAME).write_text("{not json")
    report = ingest_results(store, "tiny", runs)
    assert report.ingested == [] and report.foreign == [tid]
    owner = study_owner(store, "tiny")
    assert study_root(runs, "tiny", owner) == runs / f"tiny.{owner.tag}"


def _killed_before_recording(store: Store, trial_id: str) -> None:
    """The database as a runner killed between writing a trial's result file and recording
    it leaves it: running under the same claim (its epoch), held by a process that is gone,
    no figures. (``reset`` is not that: it voids the claim, and its result with it.)"""
    from sqlalchemy import delete, update

    from ablate.store.models import MetricRow, TrialRow

    with store.session() as s:
        pk = s.scalar(TrialRow.__table__.select().with_only_columns(TrialRow.id)
                      .where(TrialRow.trial_id == trial_id))
        s.execute(delete(MetricRow).where(MetricRow.trial_pk == pk))
        s.execute(update(TrialRow).where(TrialRow.id == pk).values(
            status=TrialStatus.RUNNING, finished_at=None, lease_expires_at=None,
            holder={"host": "gone", "pid": 0, "executor": "local", "job_id": None}))


@pytest.mark.slow
def test_two_databases_in_one_folder_train_and_keep_their_own(tmp_path, tiny_recipe,
                                                              monkeypatch):
    """``--db k.db`` then ``--db k3.db`` in one folder (one runs/): the second trains its
    trials and records them, and leaves the first one's run folders as they were."""
    monkeypatch.delenv(RUNS_DIR_ENV, raising=False)
    monkeypatch.chdir(tmp_path)
    args = ["run", str(tiny_recipe), "--set", "model.keep_last_expansion=true"]
    first = CliRunner().invoke(main, [*args, "--db", "k.db"])
    assert first.exit_code == 0, first.output
    [trial] = Store("k.db").trials("tiny")
    mine = tmp_path / "runs" / "tiny" / trial.trial_id
    assert Path(trial.run_dir).resolve() == mine
    written = (mine / "result.json").read_bytes()

    second = CliRunner().invoke(main, [*args, "--db", "k3.db"])
    assert second.exit_code == 0, second.output
    assert "tiny: 1 run (1 done, 0 failed), 0 skipped" in second.output
    assert "ingested" not in second.output.replace("not ingested", "")
    assert "not ingested: 1 result file(s) in the runs folder written for another database " \
           f"(sqlite:///{tmp_path}/k.db)" in " ".join(second.output.split())
    [other] = Store("k3.db").trials("tiny")
    assert other.status is TrialStatus.DONE and other.trial_id == trial.trial_id
    theirs = Path(other.run_dir).resolve()
    assert theirs.parent.name.startswith("tiny.") and (theirs / "result.json").is_file()
    assert (mine / "result.json").read_bytes() == written  # the first's folder untouched

    # a killed run's own result (on disk, never recorded) is still ingested by the same
    # command, from its own folder: nothing trains again
    _killed_before_recording(Store("k3.db"), trial.trial_id)
    again = CliRunner().invoke(main, [*args, "--db", "k3.db"])
    assert again.exit_code == 0, again.output
    assert "ingested 1 result(s) left on disk by an earlier run" in again.output
    assert "tiny: 0 run, 1 skipped" in again.output and "not ingested" not in again.output
    assert Store("k3.db").trials("tiny")[0].status is TrialStatus.DONE
    back = CliRunner().invoke(main, [*args, "--db", "k.db"])
    assert back.exit_code == 0 and "tiny: 0 run, 1 skipped" in back.output


def test_a_runs_folder_that_cannot_be_written_is_one_line(tmp_path, tiny_recipe):
    store, _ = _database(tmp_path / "k.db", tiny_recipe)
    (tmp_path / "file").write_text("")
    with pytest.raises(UserInputError, match=r"^runs folder .*file/x/tiny: cannot write it "
                                             r"\(Not a directory\); give a writable --runs-dir"):
        study_root(tmp_path / "file" / "x", "tiny", study_owner(store, "tiny"))


def test_run_refuses_a_runs_folder_it_cannot_write_before_the_database_opens(
        tmp_path, tiny_recipe, monkeypatch):
    """The run recorded its study and trials, then stopped at the first run folder: a
    database full of pending trials for a run that never started."""
    import os

    (tmp_path / "file").write_text("")
    db = tmp_path / "new.db"
    result = CliRunner().invoke(main, ["run", str(tiny_recipe), "--db", str(db),
                                       "--runs-dir", str(tmp_path / "file" / "runs")])
    assert result.exit_code == 2
    assert result.output == (f"Error: runs folder {tmp_path}/file/runs: cannot write it "
                             f"({tmp_path}/file is not a folder); give a writable --runs-dir\n")
    assert not db.exists()
    locked = tmp_path / "locked"
    locked.mkdir()
    real_access = os.access  # root writes anywhere: the permission is the one asked about
    monkeypatch.setattr(os, "access", lambda path, mode: Path(path) != locked
                        and real_access(path, mode))
    result = CliRunner().invoke(main, ["run", str(tiny_recipe), "--db", str(db),
                                       "--runs-dir", str(locked / "a" / "b")])
    assert result.exit_code == 2 and result.output == (
        f"Error: runs folder {locked}/a/b: cannot write it ({locked}: permission denied); "
        "give a writable --runs-dir\n")
    assert not db.exists() and list(locked.iterdir()) == []
