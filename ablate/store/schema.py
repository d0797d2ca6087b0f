"""Schema versions with alembic: new databases are created at head, others refused.

A database at another revision is refused in one line that says what to do: an older
one names ``ablate db upgrade``, a newer ablate's says to upgrade ablate, and one with
tables but no ablate revision is "not an ablate database" (never upgraded: its tables
would clash with ablate's). A damaged file is named as such (``target.database_error``).
"""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import Engine, inspect, text
from sqlalchemy.exc import SQLAlchemyError

from ablate.errors import DatabaseTargetError, SchemaVersionError, StoreError, one_line
from ablate.store import target

MIGRATIONS = Path(__file__).parent / "migrations"
SCHEMA_HEAD = "0006"  # the newest migration's revision; a test keeps the two equal


def _config(connection):
    from alembic.config import Config  # lazy: loads alembic

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    return config


def head_revision() -> str:
    from alembic.script import ScriptDirectory  # lazy: loads alembic

    return ScriptDirectory.from_config(_config(None)).get_current_head()


def current_revision(engine: Engine) -> str | None:
    from alembic.runtime.migration import MigrationContext  # lazy: loads alembic

    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def upgrade(engine: Engine, revision: str = "head") -> None:
    from alembic import command  # lazy: loads alembic

    with engine.begin() as conn:
        command.upgrade(_config(conn), revision)


def known_revisions() -> list[str]:
    """Every revision this ablate's migrations know, oldest first."""
    from alembic.script import ScriptDirectory  # lazy: loads alembic

    return sorted(r.revision for r in ScriptDirectory.from_config(_config(None)).walk_revisions())


def _create(engine: Engine, url_for_message: str) -> None:
    """Create an empty database at head; several runners may start on it at once."""
    from alembic import command  # lazy: loads alembic

    try:
        with engine.begin() as conn:  # SQLite: BEGIN IMMEDIATE, one creator at a time
            if conn.dialect.name == "postgresql":
                conn.execute(text("SELECT pg_advisory_xact_lock(72620160)"))
            if inspect(conn).get_table_names():
                return  # another runner created it while this one waited
            command.upgrade(_config(conn), "head")
    except SQLAlchemyError as err:
        raise target.database_error(url_for_message, err) from None


def _recorded_revision(engine: Engine, url_for_message: str) -> str | None:
    """The revision in ``alembic_version``, read with plain SQL (no alembic import); None
    where there is no such table. Any other failure (a damaged file) is an error."""
    try:
        with engine.connect() as conn:
            return conn.execute(text("SELECT version_num FROM alembic_version")).scalar()
    except SQLAlchemyError as err:
        if target.is_missing_table(err):
            return None
        raise target.database_error(url_for_message, err) from None


def _state(engine: Engine, url_for_message: str) -> tuple[str | None, list[str]]:
    """The recorded revision and the tables, read in one transaction: one snapshot, so a
    runner creating the schema meanwhile is seen either not at all or complete."""
    try:
        with engine.connect() as conn:
            tables = sorted(inspect(conn).get_table_names())
            if "alembic_version" not in tables:
                return None, tables
            revision = conn.execute(text("SELECT version_num FROM alembic_version")).scalar()
            return revision, tables
    except SQLAlchemyError as err:
        raise target.database_error(url_for_message, err) from None


def _listed(names: list[str], limit: int = 5) -> str:
    """``a, b, c and 4 more``: table names as one printable line."""
    shown = [" ".join(n.split())[:40] or repr(n) for n in names[:limit]]
    more = f" and {len(names) - limit} more" if len(names) > limit else ""
    return ", ".join(shown) + more


def is_ablate_revision(revision: str) -> bool:
    """ablate numbers its revisions 0001, 0002, ...: a higher one is a newer ablate's."""
    return revision.isdigit() and len(revision) == len(SCHEMA_HEAD)


def refusal(url_for_message: str, revision: str | None, tables: list[str]) -> StoreError:
    """Why a database with ``tables`` at ``revision`` (not head) cannot be used."""
    url = url_for_message
    if revision is None:
        return DatabaseTargetError(
            f"database {url} is not an ablate database (it has tables {_listed(tables)} but "
            "no ablate schema version); give the --db of an ablate database (this one was "
            "left as it is)")
    if not is_ablate_revision(revision):
        return DatabaseTargetError(
            f"database {url} is not an ablate database (it has tables {_listed(tables)} and "
            f"schema version {' '.join(revision.split())[:40]!r}, which is not ablate's); give "
            "the --db of an ablate database (this one was left as it is)")
    if revision > SCHEMA_HEAD:
        return SchemaVersionError(
            f"database {url} was written by a newer ablate (schema {revision}; this ablate "
            f"knows up to {SCHEMA_HEAD}); upgrade ablate to use it (the database was left as "
            "it is)")
    return SchemaVersionError(
        f"database {url} has schema {revision}, this ablate needs {SCHEMA_HEAD}; "
        f"run: ablate db upgrade --db {url}")


def ensure_schema(engine: Engine, url_for_message: str, *, create: bool = True) -> None:
    """Create an empty database at head (``create``); refuse one at another revision, one
    that is not ablate's, and a damaged one, each in one line.

    The common case, a database already at ``SCHEMA_HEAD``, is checked with one query:
    importing alembic costs about half a second of every command's start-up.
    """
    if _recorded_revision(engine, url_for_message) == SCHEMA_HEAD:
        return
    revision, tables = _state(engine, url_for_message)
    if revision == SCHEMA_HEAD:
        return
    if not tables:
        if create:
            _create(engine, url_for_message)
        return
    raise refusal(url_for_message, revision, tables)


def upgrade_schema(engine: Engine, url_for_message: str) -> tuple[str | None, str]:
    """``ablate db upgrade``: bring a database of an older schema this ablate knows (or an
    empty one) to head; ``(before, after)``. Anything else is refused in one line and left
    as it is: a database at head is not written, one that is not ablate's is not touched."""
    from alembic.util import CommandError  # lazy: loads alembic

    head = head_revision()
    revision, tables = _state(engine, url_for_message)
    if not tables:
        _create(engine, url_for_message)
        return revision, head
    if revision == head:
        return revision, head
    known = known_revisions()
    if revision not in known:
        if revision is not None and is_ablate_revision(revision) and revision < head:
            raise SchemaVersionError(
                f"database {url_for_message} has schema {revision}, which this ablate cannot "
                f"upgrade (it upgrades {known[0]} to {head}); it was left as it is")
        raise refusal(url_for_message, revision, tables)
    try:
        upgrade(engine)
    except SQLAlchemyError as err:  # the migration's transaction was rolled back
        raise target.database_error(url_for_message, err) from None
    except CommandError as err:
        raise SchemaVersionError(f"database {url_for_message}: cannot upgrade from schema "
                                 f"{revision}: {one_line(err)}") from None
    return revision, head
