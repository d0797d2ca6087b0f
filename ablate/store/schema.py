"""Schema versions with alembic: new databases are created at head, old ones refused."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import Engine, inspect

from ablate.errors import SchemaVersionError

MIGRATIONS = Path(__file__).parent / "migrations"


def _config(connection):
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    return config


def head_revision() -> str:
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(_config(None)).get_current_head()


def current_revision(engine: Engine) -> str | None:
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def upgrade(engine: Engine, revision: str = "head") -> None:
    from alembic import command

    with engine.begin() as conn:
        command.upgrade(_config(conn), revision)


def ensure_schema(engine: Engine, url_for_message: str) -> None:
    """Create an empty database at head; refuse one at another revision."""
    tables = set(inspect(engine).get_table_names())
    if not tables:
        upgrade(engine)
        return
    current = current_revision(engine)
    head = head_revision()
    if current != head:
        raise SchemaVersionError(
            f"database {url_for_message} has schema {current or 'unversioned'}, this ablate "
            f"needs {head}; run: ablate db upgrade --db {url_for_message}"
        )
