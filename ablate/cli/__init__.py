"""The ``ablate`` command line: thin glue over the library.

Each command lives in its own module and registers itself on ``main``. Library code
raises ``AblateError``; only this package turns those into messages and exit codes.
"""

from __future__ import annotations

import sys

import click

from ablate.errors import AblateError


class AblateGroup(click.Group):
    """Turns library errors into one line on stderr and the error's exit code."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except AblateError as err:
            click.echo(f"Error: {err}", err=True)
            sys.exit(err.exit_code)


@click.group(cls=AblateGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="ablate")
def main() -> None:
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
