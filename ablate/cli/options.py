"""Options shared by several commands, as decorators."""

from __future__ import annotations

import shutil
import sys

import click


def _not_empty(ctx, param, value):
    """``--db ""`` would silently mean the default database: refused instead."""
    if value is not None and not value.strip():
        raise click.BadParameter("is empty; give a SQLite path or a URL such as "
                                 "postgresql+psycopg://USER@HOST/DB")
    return value


def _not_blank(ctx, param, value):
    """``--runs-dir ""`` would silently mean the default folder, and ``" "`` make a folder
    named by spaces in the working directory: both refused."""
    if value is not None and not value.strip():
        raise click.BadParameter("is empty; give a folder")
    return value


db_option = click.option(
    "--db", "db", envvar="ABLATE_DB", default=None, metavar="URL", callback=_not_empty,
    help="SQLAlchemy URL or SQLite path (default: $ABLATE_DB or results/ablate.db).",
)

set_option = click.option(
    "--set", "assignments", multiple=True, metavar="KEY=VALUE",
    help="Override a dotted key of every trial, e.g. --set data.name=shapes (repeatable, "
         "each key once).",
)
max_trials_option = click.option(
    "--max-trials", default=10_000, show_default=True, type=click.IntRange(1), metavar="N",
    help="Refuse a recipe that expands to more trials than this (counted before expanding).",
)
json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
runs_option = click.option(
    "--runs-dir", default=None, type=click.Path(file_okay=False), callback=_not_blank,
    help="Where each trial's run folder (checkpoint or weights.pt, result file) lives [default: "
         "$ABLATE_RUNS_DIR, else runs/ beside a SQLite database, else results/runs].",
)


def given(ctx: click.Context, name: str) -> bool:
    """Whether the option ``name`` (its parameter name) was given, not left at its default."""
    from click.core import ParameterSource

    return ctx.get_parameter_source(name) not in (None, ParameterSource.DEFAULT)


def option_name(ctx: click.Context, name: str) -> str:
    """``max_seeds`` -> ``--max-seeds``: the option as the command line spells it."""
    return next(p.opts[0] for p in ctx.command.params if p.name == name)


def not_nan(ctx, param, value):
    """A click callback: NaN passes ``FloatRange`` (every comparison with it is false)."""
    if value is not None and value != value:
        raise click.BadParameter("nan is not a number", ctx, param)
    return value


def recipe_argument(fn):
    return click.argument("recipe", type=click.Path(dir_okay=False))(fn)


def fmt_int(value) -> str:
    return "-" if value is None else f"{int(value):,}"


def fmt_float(value, digits: int = 3) -> str:
    if value is None or value != value:  # None or NaN
        return "-"
    return f"{value:.{digits}f}"


def make_console(stderr: bool = False):
    """A rich console; when output is not a terminal, wide enough not to fold names."""
    from rich.console import Console  # lazy: loads rich.console

    stream = sys.stderr if stderr else sys.stdout
    width = None if stream.isatty() else max(160, shutil.get_terminal_size((160, 24)).columns)
    return Console(stderr=stderr, width=width)


def echo_warnings(warnings: list[str]) -> None:
    """One line on stderr per missing run-time input (stdout stays a clean table/JSON)."""
    for line in warnings:
        click.echo(f"Warning: {line}", err=True)


def echo_ignored_plugins(*registries) -> None:
    """Say which installed plugins no recipe name reaches, before names are resolved."""
    from ablate.catalog import ignored_plugins  # reads the entry points (a few ms)

    echo_warnings(ignored_plugins(*registries))


def known_studies(store, study: str | None = None) -> list[str]:
    """The database's study names; a ``study`` given that is not among them is one line
    naming the database and the studies it holds (exit 2)."""
    known = [s.name for s in store.studies()]
    if study is not None and study not in known:
        raise store.unknown_study(study, known, "STUDY: ")
    return known
