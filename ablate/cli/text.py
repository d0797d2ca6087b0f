"""User text made safe to print: names, keys and values from recipes and databases.

A study name or a TOML key may hold control characters (an ANSI escape repaints the
terminal, a newline splits a one-line error) or rich markup (``[red]``); both are
shown as text, never obeyed.
"""

from __future__ import annotations

from rich.markup import escape

from ablate import errors

MAX_ERROR = 600  # characters of one error line; longer ones are elided in the middle


def visible(text: object) -> str:
    """Every character that is not printable (controls, bidi overrides, separators,
    unassigned code points) as a ``\\xNN`` / ``\\uNNNN`` escape; spaces stay."""
    text = str(text)
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() or c == " " else c.encode("unicode_escape").decode("ascii")
                   for c in text)


def terminal(text: object) -> str:
    """For rich output: control characters escaped and markup shown literally."""
    return escape(visible(text))


def one_line(text: object, limit: int = MAX_ERROR) -> str:
    """An error message, every line of it, as one printable line of at most ``limit``
    characters (``ablate.errors.one_line`` after joining the lines)."""
    return errors.one_line(visible(" ".join(str(text).split())), limit)
