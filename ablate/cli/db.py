"""``ablate db``: database schema management."""

from __future__ import annotations

import click

from ablate.cli import main
from ablate.cli.options import db_option


@main.group("db")
def db_group() -> None:
    """Manage the result database's schema.

    \b
    Example:
        ablate db upgrade --db results/ablate.db
    """


@db_group.command("upgrade")
@db_option
def upgrade(db: str | None) -> None:
    """Upgrade a database written by an older ablate to the current schema.

    A database that is not ablate's, one of a newer ablate, or a damaged one is refused
    and left as it is.

    \b
    Example:
        ablate db upgrade --db postgresql+psycopg://user@host/ablate
    """
    from ablate.store import Store  # lazy: loads sqlalchemy
    from ablate.store.schema import upgrade_schema  # lazy: loads sqlalchemy

    store = Store(db, create=False)  # any schema: upgrade_schema checks it before writing
    before, after = upgrade_schema(store.engine, store.display_url)
    click.echo(f"{store.display_url}: schema {before or 'new'} -> {after}")


@db_group.command("info")
@db_option
def info(db: str | None) -> None:
    """Show the database URL, its schema revision and what it holds.

    \b
    Example:
        ablate db info
    """
    from ablate.store import Store  # lazy: loads sqlalchemy
    from ablate.store.schema import current_revision, head_revision  # lazy: loads sqlalchemy

    store = Store(db, must_exist=True)  # never creates a database
    click.echo(f"url: {store.display_url}")
    head = head_revision()
    if store.empty:  # a zero-length file or no tables: left as it is
        click.echo(f"schema: none yet, an empty database ('ablate run' creates it at {head})")
    else:
        click.echo(f"schema: {current_revision(store.engine)} (this ablate: {head})")
    studies = store.studies()
    if not studies:
        click.echo("no studies yet; 'ablate run RECIPE' records one")
    for study in studies:
        counts: dict[str, int] = {}
        for status in store.statuses(study.name).values():
            counts[status] = counts.get(status, 0) + 1
        summary = ", ".join(f"{v} {k}" for k, v in sorted(counts.items()))
        click.echo(f"study {study.name}: {summary or 'no trials'}")
