"""Every way ``--db`` / ``ABLATE_DB`` can be wrong, for every command that opens it:
one line naming the URL (password masked) and the cause, exit 2, within seconds, and
the given file untouched; read-only commands create nothing where no database is."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest

from tests.validation.harness import VALID, assert_refused, invoke, make_database, snapshot

COMMANDS = {
    "plan": ["plan", "{recipe}"],
    "run": ["run", "{recipe}"],
    "status": ["status"],
    "report": ["report"],
    "export": ["export", "existing", "--csv", "-"],
    "db-info": ["db", "info"],
    "db-upgrade": ["db", "upgrade"],
    "cancel": ["cancel", "existing"],
}
READ_ONLY = ("status", "report", "export", "db-info", "cancel")

# (case id, target with {dir} filled in, text the one line must contain)
TARGETS = [
    ("not-a-database", "{dir}/notes.txt", "is not a SQLite database"),
    ("a-folder", "{dir}/folder", "is a folder, not a database file"),
    ("nothing-listening", "postgresql+psycopg://ablate:s3cret@127.0.0.1:1/x",
     "postgresql+psycopg://ablate:***@127.0.0.1:1/x: cannot connect"),
    ("unknown-dialect", "foo://user@host/x", "unknown dialect 'foo'"),
    ("driver-missing", "mysql://user:s3cret@host/x", "driver is not installed"),
    ("malformed-port", "postgresql+psycopg://u:s3cret@host:port/x", "malformed URL"),
    ("sqlite-url-not-a-database", "sqlite:///{dir}/notes.txt", "is not a SQLite database"),
    ("parent-is-a-file", "{dir}/notes.txt/sub.db", "notes.txt"),
    ("home-of-no-user", "~no_such_user_ablate/x.db", "cannot expand '~no_such_user_ablate'"),
    # the driver took "cret@127.0.0.1" for the host, and the mask showed "cret" of it
    ("unescaped-at-in-password", "postgresql+psycopg://ablate:s3@cret@127.0.0.1:1/x",
     "database postgresql+psycopg://ablate:***@127.0.0.1:1/x: more than one '@' before the "
     "host; write an '@' of the user or password as %40"),
]


@pytest.fixture
def folder(tmp_path):
    (tmp_path / "notes.txt").write_text("not a database\n")
    (tmp_path / "folder").mkdir()
    (tmp_path / "valid.toml").write_text(VALID)
    return tmp_path


def _args(command: str, folder) -> list[str]:
    return [a.format(recipe=folder / "valid.toml") for a in COMMANDS[command]]


@pytest.mark.parametrize("via", ["--db", "ABLATE_DB"])
@pytest.mark.parametrize("command", list(COMMANDS))
@pytest.mark.parametrize("target,needle", [t[1:] for t in TARGETS], ids=[t[0] for t in TARGETS])
def test_bad_target_is_refused(folder, command, target, needle, via):
    url = target.format(dir=folder)
    args, env = _args(command, folder), None
    if via == "--db":
        args += ["--db", url]
    else:
        env = {"ABLATE_DB": url}
    before = snapshot(folder)
    line = assert_refused(invoke(args, env=env), needle)
    assert "s3cret" not in line
    assert snapshot(folder) == before


@pytest.mark.parametrize("url", ["sqlite:", "sqlite:/x.db", "sqlite:x.db",
                                 "postgresql+psycopg:user@host/x"])
@pytest.mark.parametrize("command", ["run", "status", "db-upgrade"])
def test_a_url_without_its_slashes_is_not_taken_for_a_path(folder, monkeypatch, command, url):
    """Read as a bare path, 'sqlite:/x.db' made a folder named 'sqlite:' here."""
    monkeypatch.chdir(folder)
    before = snapshot(folder)
    scheme = url.split(":", 1)[0]
    assert_refused(invoke([*_args(command, folder), "--db", url]),
                   f"database {url}: malformed URL ('{scheme}:' is not followed by //)")
    assert snapshot(folder) == before


def test_a_server_that_does_not_answer_fails_within_seconds():
    """Nothing listening is refused at once; a dropped packet would hang a connection for
    minutes, so PostgreSQL connections give up after CONNECT_TIMEOUT_S (the driver's)."""
    from ablate.store import target

    assert target.CONNECT_TIMEOUT_S == 5
    assert target.connect_args("postgresql+psycopg://u@host/x") == {"connect_timeout": 5}
    assert target.connect_args("sqlite:///x.db") == {}


@pytest.mark.parametrize("command", READ_ONLY)
def test_read_only_command_creates_nothing(tmp_path, command):
    db = tmp_path / "sub" / "none.db"
    line = assert_refused(invoke([*_args(command, tmp_path), "--db", str(db)]), "no database at")
    assert "nothing was created" in line
    assert list(tmp_path.iterdir()) == []


# what each read-only command answers on a database without studies: exit code, and the
# start of its output ({db} stands for the URL); export and cancel name the missing study
EMPTY_ANSWERS = {
    "status": (0, "{db} holds no studies yet; 'ablate run RECIPE' records one\n"),
    "watch": (0, "{db} holds no studies yet; 'ablate run RECIPE' records one\n"),
    "report": (0, "No finished trials in the database yet. Run: ablate run RECIPE\n"),
    "db-info": (0, "url: {db}\nschema: "),
    "export": (2, "Error: STUDY: no study 'existing' in {db}; known: none yet\n"),
    "cancel": (2, "Error: STUDY: no study 'existing' in {db}; known: none yet\n"),
}


def _empty_database(kind: str, folder) -> Path:
    """A database that holds no studies: created by ablate, a zero-length file (SQLite
    reads it as empty), or a SQLite header without any table."""
    import sqlite3

    db = folder / f"{kind}.db"
    if kind == "schema":
        assert invoke(["db", "upgrade", "--db", str(db)]).exit_code == 0
    elif kind == "zero-length":
        db.touch()
    else:
        con = sqlite3.connect(db)
        con.execute("CREATE TABLE t (x)")
        con.execute("DROP TABLE t")
        con.close()
    return db


@pytest.mark.parametrize("kind", ["schema", "zero-length", "no-tables"])
@pytest.mark.parametrize("command", list(EMPTY_ANSWERS))
def test_every_empty_database_answers_as_one_without_studies(tmp_path, command, kind):
    db = _empty_database(kind, tmp_path)
    args = {"watch": ["watch"]}.get(command) or _args(command, tmp_path)
    before = snapshot(tmp_path)
    result = invoke([*args, "--db", str(db)])
    code, start = EMPTY_ANSWERS[command]
    assert result.exit_code == code, result.output
    assert result.output.startswith(start.format(db=f"sqlite:///{db}")), result.output
    assert snapshot(tmp_path) == before  # untouched: no header, no WAL, no journal
    if kind == "zero-length":
        assert db.read_bytes() == b""


def test_db_info_says_an_empty_file_has_no_schema_yet(tmp_path):
    db = _empty_database("zero-length", tmp_path)
    result = invoke(["db", "info", "--db", str(db)])
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[1:] == [
        "schema: none yet, an empty database ('ablate run' creates it at 0006)",
        "no studies yet; 'ablate run RECIPE' records one"]


def test_plan_with_an_empty_file_plans_and_writes_nothing(tmp_path):
    db = tmp_path / "empty.db"
    db.touch()
    (tmp_path / "valid.toml").write_text(VALID)
    result = invoke(["plan", str(tmp_path / "valid.toml"), "--db", str(db), "--no-cost",
                     "--json"])
    assert result.exit_code == 0, result.output
    assert [row["status"] for row in json.loads(result.stdout)] == ["pending", "pending"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty.db", "valid.toml"]
    assert db.read_bytes() == b""


@pytest.mark.parametrize("command", list(COMMANDS))
def test_empty_db_option_is_refused(tmp_path, command):
    (tmp_path / "valid.toml").write_text(VALID)
    assert_refused(invoke([*_args(command, tmp_path), "--db", " "]), "--db")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["valid.toml"]


def test_default_database_is_not_created_by_a_report(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("ABLATE_DB", raising=False)
    assert_refused(invoke(["report"]), "no database at results/ablate.db")
    assert list(tmp_path.iterdir()) == []


def test_plan_reads_an_existing_database_and_writes_nothing_on_error(tmp_path):
    db = make_database(tmp_path)
    (tmp_path / "bad.toml").write_text(VALID.replace("lr = 0.01", "lr = inf"))
    before = snapshot(tmp_path)
    assert_refused(invoke(["plan", str(tmp_path / "bad.toml"), "--db", str(db)]), "lr")
    assert snapshot(tmp_path) == before


@pytest.fixture
def empty_pg_database():
    """A fresh database on the test PostgreSQL server, dropped afterwards."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    from tests.services.env import service_setting

    server = service_setting("ABLATE_TEST_PG_URL", "ABLATE_PG_ERROR", "PostgreSQL")
    name = f"ablate_v_{uuid.uuid4().hex[:10]}"
    admin = create_engine(server, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(server).set(database=name)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def test_postgres_missing_and_empty_database(tmp_path, empty_pg_database):
    from sqlalchemy import create_engine, inspect

    url = empty_pg_database
    (tmp_path / "valid.toml").write_text(VALID)
    missing = url.set(database="ablate_no_such_db", password="s3cret")
    for command in COMMANDS:
        line = assert_refused(invoke([*_args(command, tmp_path), "--db",
                                      missing.render_as_string(hide_password=False)]),
                              "cannot connect")
        assert "s3cret" not in line and ":***@" in line and "ablate_no_such_db" in line
    real = url.render_as_string(hide_password=False)
    masked = url.render_as_string(hide_password=True)
    for command in READ_ONLY:  # an empty database holds no studies, and stays empty
        result = invoke([*_args(command, tmp_path), "--db", real])
        code, start = EMPTY_ANSWERS[command]
        assert result.exit_code == code, result.output
        assert result.output.startswith(start.format(db=masked)), result.output
    engine = create_engine(real)
    try:
        assert inspect(engine).get_table_names() == []
    finally:
        engine.dispose()


def test_status_of_a_database_without_studies_says_so(tmp_path):
    db = tmp_path / "new.db"
    assert invoke(["db", "upgrade", "--db", str(db)]).exit_code == 0
    before = snapshot(tmp_path)
    result = invoke(["status", "--db", str(db)])
    assert result.exit_code == 0, result.output
    assert result.stdout == f"sqlite:///{db} holds no studies yet; 'ablate run RECIPE' records one\n"
    assert snapshot(tmp_path) == before


def test_a_database_file_is_read_through_another_descriptor_once_per_process(tmp_path,
                                                                              monkeypatch):
    """Closing any descriptor of a SQLite file drops the process's POSIX locks on it, so a
    second Store of a file this process may already hold must not read its header."""
    from ablate.store import Store, target

    url = f"sqlite:///{tmp_path / 'once.db'}"
    first = Store(url)  # creates the file: a database by construction
    first.upsert_study("s")

    def refuse(*args, **kwargs):
        raise AssertionError("the header was read again")

    monkeypatch.setattr(target, "open", refuse, raising=False)
    assert [s.name for s in Store(url).studies()] == ["s"]
    other = tmp_path / "other.db"
    Store(f"sqlite:///{other}")
    with pytest.raises(AssertionError, match="read again"):  # a file this process never
        target._CHECKED.discard(str(other.resolve()))         # opened is read first
        Store(f"sqlite:///{other}")
