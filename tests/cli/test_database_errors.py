"""A database ablate cannot use, through every command: not ablate's, a newer ablate's,
damaged, read-only. Each is one line naming the database and the cause, exit 2, no
traceback, never the advice to run ``ablate db upgrade`` where that cannot help, and the
file's bytes as they were."""

from __future__ import annotations

import hashlib
import os
import random
import shutil
import sqlite3
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner

from ablate.cli import main
from ablate.store.schema import SCHEMA_HEAD

# every command that opens the database ({recipe}: the tiny recipe; its study is "tiny")
COMMANDS = {
    "status": ["status"],
    "report": ["report"],
    "db-info": ["db", "info"],
    "db-upgrade": ["db", "upgrade"],
    "plan": ["plan", "{recipe}", "--no-cost"],
    "export": ["export", "tiny", "--csv", "-"],
    "prune": ["prune", "tiny"],
    "cancel": ["cancel", "tiny"],
    "watch": ["watch", "--interval", "0.05"],
    "run": ["run", "{recipe}"],
}


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def invoke(command: str, db: Path, recipe: Path):
    args = [a.format(recipe=recipe) for a in COMMANDS[command]]
    return CliRunner().invoke(main, [*args, "--db", str(db)])


def refused(result, *needles: str) -> str:
    """Exit 2, exactly one line of output, no traceback; the line holds every needle."""
    assert result.exception is None or isinstance(result.exception, SystemExit), (
        f"{type(result.exception).__name__}: {result.exception}\n{result.output}")
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1, result.output
    assert "Traceback" not in result.output
    line = lines[0]
    assert line.startswith("Error: database sqlite:///"), line
    for needle in needles:
        assert needle in line, f"{needle!r} not in {line!r}"
    return line


@pytest.fixture
def results_db(tmp_path, tiny_recipe) -> Path:
    """A database as ``ablate run`` leaves it on the tiny recipe: the study, its two trials
    done with per-epoch figures, their costs (written through the store, not trained)."""
    from ablate.recipes.loader import load_recipe
    from ablate.store import CostRecord, Store
    from ablate.trials.expand import expand
    from ablate.trials.lifecycle import TrialResult, TrialStatus

    db = tmp_path / "made" / "results.db"
    recipe = load_recipe(tiny_recipe)
    trials = expand(recipe)
    store = Store(str(db))
    store.upsert_study(recipe.name, recipe.description, str(tiny_recipe), recipe.text)
    store.register_trials(recipe.name, trials)
    for i, trial in enumerate(trials):
        store.record(TrialResult(
            recipe.name, trial.trial_id, TrialStatus.DONE, name=trial.name,
            final={"miou": 0.2 + i / 10, "params": 1e6, "latency_ms": 3.0},
            epochs=tuple({"epoch": e, "step": 2 * e, "metrics": {"train_loss": 1 / (e + 1)}}
                         for e in range(1, 41)),
            environment={"torch": "x", "host": "h"},
            started_at="2026-01-01T00:00:00", finished_at="2026-01-01T00:01:00"))
        store.put_cost(CostRecord(trial.arch_id, 1_000_000, {"backbone": 1}, 100_000_000,
                                  {"backbone": 1}, "fvcore-mac", (32, 32)))
    store.close()  # the last connection checkpoints the WAL into the file
    assert db.stat().st_size > 3 * 4096
    return db


def _copy(db: Path, folder: Path, name: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    copy = folder / name
    shutil.copy(db, copy)
    return copy


# -- 1. a SQLite file with tables but no ablate schema version ----------------------------


@pytest.fixture
def foreign_db(tmp_path) -> Path:
    db = tmp_path / "other" / "other.db"
    db.parent.mkdir()
    con = sqlite3.connect(db)
    con.execute("CREATE TABLE trials (x)")
    con.execute("CREATE TABLE notes (y)")
    con.execute("INSERT INTO trials VALUES (1)")
    con.commit()
    con.close()
    return db


@pytest.mark.parametrize("command", list(COMMANDS))
def test_a_foreign_database_is_named_and_left_as_it_is(foreign_db, tiny_recipe, command):
    before = digest(foreign_db)
    line = refused(invoke(command, foreign_db, tiny_recipe),
                   f"database sqlite:///{foreign_db} is not an ablate database (it has "
                   "tables notes, trials but no ablate schema version)")
    assert "db upgrade" not in line
    assert digest(foreign_db) == before
    assert sorted(p.name for p in foreign_db.parent.iterdir()) == ["other.db"]


def test_a_foreign_alembic_database_is_not_ablate_s(foreign_db, tiny_recipe):
    con = sqlite3.connect(foreign_db)
    con.execute("CREATE TABLE alembic_version (version_num VARCHAR(32) NOT NULL)")
    con.execute("INSERT INTO alembic_version VALUES ('ae1027a6acf')")
    con.commit()
    con.close()
    before = digest(foreign_db)
    for command in ("status", "db-upgrade", "watch"):
        line = refused(invoke(command, foreign_db, tiny_recipe), "is not an ablate database",
                       "'ae1027a6acf', which is not ablate's")
        assert "db upgrade" not in line
    assert digest(foreign_db) == before


# -- 2. a database written by a newer ablate -----------------------------------------------


def _at_revision(results_db: Path, folder: Path, revision: str) -> Path:
    """A copy of the results database whose recorded schema revision is ``revision``."""
    db = _copy(results_db, folder, f"r{revision}.db")
    con = sqlite3.connect(db)
    con.execute("UPDATE alembic_version SET version_num = ?", (revision,))
    con.commit()
    con.close()
    return db


@pytest.mark.parametrize("command", list(COMMANDS))
def test_a_newer_schema_says_upgrade_ablate(results_db, tmp_path, tiny_recipe, command):
    db = _at_revision(results_db, tmp_path / "newer", "0099")
    before = digest(db)
    line = refused(invoke(command, db, tiny_recipe),
                   f"database sqlite:///{db} was written by a newer ablate (schema 0099; "
                   f"this ablate knows up to {SCHEMA_HEAD}); upgrade ablate")
    assert "db upgrade" not in line
    assert digest(db) == before


def test_db_upgrade_refuses_an_old_revision_it_does_not_know(results_db, tmp_path, tiny_recipe):
    db = _at_revision(results_db, tmp_path / "old", "0000")
    before = digest(db)
    refused(invoke("db-upgrade", db, tiny_recipe), "has schema 0000, which this ablate cannot "
                                                   f"upgrade (it upgrades 0001 to {SCHEMA_HEAD})")
    assert digest(db) == before


# -- 3. a damaged SQLite file ------------------------------------------------------------


def _damaged(results_db: Path, folder: Path) -> Path:
    """8 KB of noise over pages 2 and 3, as ``dd if=/dev/urandom bs=1 seek=4096
    count=8192 conv=notrunc`` (seeded: the same noise each run)."""
    db = _copy(results_db, folder, "damaged.db")
    with open(db, "r+b") as handle:
        handle.seek(4096)
        handle.write(random.Random(0).randbytes(8192))
    return db


def _truncated(results_db: Path, folder: Path) -> Path:
    db = folder / "truncated.db"
    folder.mkdir(parents=True, exist_ok=True)
    db.write_bytes(results_db.read_bytes()[:3000])
    return db


@pytest.mark.parametrize("damage", [_damaged, _truncated], ids=["pages", "truncated"])
@pytest.mark.parametrize("command", list(COMMANDS))
def test_a_damaged_database_is_named_with_a_way_out(results_db, tmp_path, tiny_recipe, command,
                                                    damage):
    db = damage(results_db, tmp_path / "bad")
    before = digest(db)
    refused(invoke(command, db, tiny_recipe),
            f"database sqlite:///{db} is damaged (sqlite: database disk image is malformed)",
            "restore it from a backup", f"sqlite3 {db} .recover")
    assert digest(db) == before


def test_watch_stops_when_it_meets_a_damaged_page(results_db, tmp_path, tiny_recipe,
                                                  monkeypatch):
    """Where the effects are computed, any error is shown as "not yet": a damaged page met
    there still ends the watch with the one line, not a partial view and exit 0."""
    import sqlalchemy.exc

    from ablate.report import build

    db = _copy(results_db, tmp_path / "w", "watched.db")
    before = digest(db)

    def malformed(*args, **kwargs):
        from ablate.store import Store

        store = args[0]
        assert isinstance(store, Store)
        with store.session():
            raise sqlalchemy.exc.DatabaseError(
                "SELECT", {}, sqlite3.DatabaseError("database disk image is malformed"))

    monkeypatch.setattr(build, "build_report", malformed)
    refused(invoke("watch", db, tiny_recipe), "is damaged (sqlite: database disk image is "
                                              "malformed)")
    assert digest(db) == before


# -- 4. a read-only database --------------------------------------------------------------


def _make_read_only(paths: list[Path], request) -> None:
    """Files and folders this process cannot write, root included: mode bits for a user,
    the immutable attribute (``chattr +i``) for root, whom mode bits do not stop."""
    if os.geteuid() != 0:
        for p in paths:
            p.chmod(0o555 if p.is_dir() else 0o444)
            request.addfinalizer(lambda p=p: p.chmod(0o755 if p.is_dir() else 0o644))
        return
    if shutil.which("chattr") is None:
        pytest.skip("running as root without chattr: no way to make a file read-only for root")
    for p in reversed(paths):  # the folder last: its file's attribute is set first
        done = subprocess.run(["chattr", "+i", str(p)], capture_output=True, text=True)
        if done.returncode:
            pytest.skip(f"chattr +i is not available here: {done.stderr.strip()}")
        request.addfinalizer(lambda p=p: subprocess.run(["chattr", "-i", str(p)], check=False))
    try:
        with open(paths[-1] if paths[-1].is_file() else paths[0], "r+b"):
            pass
    except PermissionError:
        return
    pytest.skip("chattr +i did not make the file read-only here")


@pytest.fixture
def uncached_db(results_db, tmp_path) -> Path:
    """The results database without its cost cache: planning computes and caches costs."""
    db = _copy(results_db, tmp_path / "ro", "ro.db")
    con = sqlite3.connect(db)
    con.execute("DELETE FROM costs")
    con.commit()
    con.close()
    return db


@pytest.mark.parametrize("folder_too", [False, True], ids=["file", "file-and-folder"])
def test_plan_works_on_a_read_only_database(uncached_db, tiny_recipe, request, folder_too):
    db = uncached_db
    before = digest(db)
    _make_read_only([db.parent, db] if folder_too else [db], request)
    result = CliRunner().invoke(main, ["plan", str(tiny_recipe), "--db", str(db), "--json"])
    assert result.exit_code == 0, result.output
    assert "Error" not in result.output and "Traceback" not in result.output
    assert digest(db) == before
    assert sorted(p.name for p in db.parent.iterdir()) == ["ro.db"]  # no -wal, no -shm
    # every read-only command reads it as it is
    for command in ("status", "report", "db-info", "export", "watch"):
        result = invoke(command, db, tiny_recipe)
        assert result.exit_code == 0, (command, result.output)
    assert digest(db) == before


@pytest.mark.parametrize("command", ["status", "report", "db-info", "export", "watch"])
@pytest.mark.parametrize("folder_too", [False, True], ids=["file", "file-and-folder"])
def test_reading_a_read_only_database_creates_no_file_beside_it(uncached_db, tiny_recipe,
                                                                request, folder_too, command):
    """SQLite gives even a mode=ro connection -wal and -shm files where the folder lets it,
    and a read-only connection cannot remove them: they would stay, the reader's."""
    db = uncached_db
    before = digest(db)
    _make_read_only([db.parent, db] if folder_too else [db], request)
    result = invoke(command, db, tiny_recipe)
    assert result.exit_code == 0, result.output
    assert "Error" not in result.output and "tiny" in result.output
    assert sorted(p.name for p in db.parent.iterdir()) == ["ro.db"]
    assert digest(db) == before


@pytest.mark.parametrize("folder_too", [False, True], ids=["file", "file-and-folder"])
def test_run_on_a_read_only_database_is_refused(uncached_db, tiny_recipe, request, folder_too):
    db = uncached_db
    before = digest(db)
    _make_read_only([db.parent, db] if folder_too else [db], request)
    refused(invoke("run", db, tiny_recipe), f"{db} is read-only")
    assert digest(db) == before
    assert sorted(p.name for p in db.parent.iterdir()) == ["ro.db"]


def test_a_write_refused_by_sqlite_is_one_line(uncached_db, request):
    """A command that only reads opens a read-only file; a write it then tries (recording
    a result, resetting a trial) is refused by SQLite: one line, nothing recorded. The
    cost cache is skipped instead (planning only reads)."""
    from ablate.errors import DatabaseTargetError
    from ablate.store import CostRecord, Store

    db = uncached_db
    before = digest(db)
    _make_read_only([db], request)
    store = Store(str(db), must_exist=True)
    store.put_cost(CostRecord("arch", 1, {}, None, None, None, (8, 8)))  # skipped, no error
    with pytest.raises(DatabaseTargetError) as info:
        store.upsert_study("another")
    assert str(info.value) == (
        f"database sqlite:///{db}: cannot write it (attempt to write a readonly database); "
        "nothing was recorded; make the file and its folder writable, or give another --db")
    assert [s.name for s in store.studies()] == ["tiny"] and store.get_costs(["arch"]) == {}
    store.close()
    assert digest(db) == before
