"""The ``ablate`` command line: thin glue over the library.

Each command lives in its own module and registers itself on ``main``. Library code
raises ``AblateError``; only this package turns those into messages and exit codes.
"""

from __future__ import annotations

import sys
import traceback

import click

from ablate.cli.text import one_line
from ablate.errors import AblateError


class AblateGroup(click.Group):
    """Turns library errors and misused options into one line on stderr and an exit code
    (2 for anything the user gave), never a traceback or a usage screen."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        try:
            return super().parse_args(ctx, args)
        except click.UsageError as err:
            _usage_error(err)

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except AblateError as err:
            if ctx.params.get("debug"):
                _print_tracebacks(err)
            click.echo(f"Error: {one_line(err)}", err=True)
            sys.exit(err.exit_code)
        except click.UsageError as err:
            _usage_error(err)


def _print_tracebacks(err: BaseException) -> None:
    """``--debug``: every traceback behind an error, the user's own code first (a
    builder's exception is chained to the one-line error that names it)."""
    chain: list[BaseException] = []
    current: BaseException | None = err
    while current is not None and current not in chain:
        chain.append(current)
        current = current.__cause__ or current.__context__
    for exc in reversed(chain):
        click.echo("".join(traceback.format_exception(exc, chain=False)), err=True, nl=False)


def _usage_error(err: click.UsageError):
    command = err.ctx.command_path if err.ctx is not None else "ablate"
    click.echo(f"Error: {one_line(err.format_message())} (see {command} --help)", err=True)
    sys.exit(err.exit_code)


@click.group(cls=AblateGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="ablate")
@click.option("--debug", is_flag=True,
              help="On an error, also print the tracebacks behind it (a model or dataset "
                   "builder's own included).")
def main(debug: bool) -> None:
    """ablate: architecture ablation studies for efficient semantic segmentation.

    \b
    Example:
        ablate plan recipes/quickstart.toml
        ablate run recipes/quickstart.toml
        ablate report --pareto
    """


def _register() -> None:
    # Imported for their side effect of adding a command to ``main``.
    from ablate.cli import commands  # noqa: F401


_register()
