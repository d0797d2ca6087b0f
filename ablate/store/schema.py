"""Schema versions with alembic: new databases are created at head, old ones refused."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import Engine, inspect, text
from sqlalchemy.exc import SQLAlchemyError

from ablate.errors import SchemaVersionError

MIGRATIONS = Path(__file__).parent / "migrations"
SCHEMA_HEAD = "0005"  # the newest migration's revision; a test keeps the two equal


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


def _create(engine: Engine) -> None:
    """Create an empty database at head; several runners may start on it at once."""
    from alembic import command  # lazy: loads alembic

    with engine.begin() as conn:  # SQLite: BEGIN IMMEDIATE, one creator at a time
        if conn.dialect.name == "postgresql":
            conn.execute(text("SELECT pg_advisory_xact_lock(72620160)"))
        if inspect(conn).get_table_names():
            return  # another runner created it while this one waited
        command.upgrade(_config(conn), "head")


def _recorded_revision(engine: Engine) -> str | None:
    """The revision in ``alembic_version``, read with plain SQL (no alembic import)."""
    with engine.connect() as conn:
        try:
            return conn.execute(text("SELECT version_num FROM alembic_version")).scalar()
        except SQLAlchemyError:
            return None


def ensure_schema(engine: Engine, url_for_message: str) -> None:
    """Create an empty database at head; refuse one at another revision.

    The common case, a database already at ``SCHEMA_HEAD``, is checked with one query:
    importing alembic costs about half a second of every command's start-up.
    """
    if _recorded_revision(engine) == SCHEMA_HEAD:
        return
    tables = set(inspect(engine).get_table_names())
    if not tables:
        _create(engine)
        return
    current = current_revision(engine)
    head = head_revision()
    if current != head:
        raise SchemaVersionError(
            f"database {url_for_message} has schema {current or 'unversioned'}, this ablate "
            f"needs {head}; run: ablate db upgrade --db {url_for_message}"
        )
