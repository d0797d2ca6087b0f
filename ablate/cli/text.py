"""User text made safe to print: names, keys and values from recipes and databases.

A study name or a TOML key may hold control characters (an ANSI escape repaints the
terminal, a newline splits a one-line error) or rich markup (``[red]``); both are
shown as text, never obeyed.
"""

from __future__ import annotations

import re

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
MAX_ERROR = 600  # characters of one error line; longer ones are elided in the middle


def visible(text: object) -> str:
    """Control characters as ``\\xNN`` escapes (tabs and newlines included)."""
    return _CONTROL.sub(lambda m: m.group().encode("unicode_escape").decode("ascii"), str(text))


def terminal(text: object) -> str:
    """For rich output: control characters escaped and markup shown literally."""
    from rich.markup import escape

    return escape(visible(text))


def one_line(text: object, limit: int = MAX_ERROR) -> str:
    """An error message as one printable line of at most ``limit`` characters."""
    line = visible(" ".join(str(text).strip().splitlines()))
    if len(line) <= limit:
        return line
    keep = limit - 3
    return line[: keep - keep // 3] + "..." + line[len(line) - keep // 3:]
