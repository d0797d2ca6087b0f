"""Depth limits for TOML values: deep nesting is an input error, never a RecursionError.

Python's TOML parser recurses once or twice per level of ``[`` or ``{``, so a value
nested a few hundred levels deep exhausts the interpreter's stack; later steps
(validation, copies, error messages) recurse too. ``loads`` turns the parser's
RecursionError into one line, and ``check_depth`` walks the parsed value iteratively
and refuses anything deeper than ``MAX_DEPTH`` before any recursive code sees it.
"""

from __future__ import annotations

import tomllib
from typing import Any

MAX_DEPTH = 32  # recipes nest a handful of levels; this leaves room and keeps stacks small


class TooDeep(ValueError):
    """A value nested deeper than ``MAX_DEPTH``; ``key`` is its dotted path."""

    def __init__(self, key: str) -> None:
        self.key = key
        super().__init__(f"nested more than {MAX_DEPTH} levels deep (arrays and tables); "
                         "flatten the value")


def loads(text: str) -> dict[str, Any]:
    """``tomllib.loads`` that raises ``TooDeep`` instead of ``RecursionError``."""
    try:
        raw = tomllib.loads(text)
    except RecursionError:
        # the parser gives no position; the line opening the most brackets is the culprit
        lines = text.splitlines() or [""]
        worst = max(range(len(lines)), key=lambda i: lines[i].count("[") + lines[i].count("{"))
        raise TooDeep(f"line {worst + 1}") from None
    check_depth(raw)
    return raw


def check_depth(value: Any, limit: int = MAX_DEPTH) -> None:
    """Raise ``TooDeep`` naming the first key whose value nests deeper than ``limit``."""
    stack: list[tuple[Any, str, int]] = [(value, "", 0)]
    while stack:
        node, path, depth = stack.pop()
        if depth > limit and isinstance(node, (dict, list)):
            raise TooDeep(path)
        if isinstance(node, dict):
            stack.extend((v, f"{path}.{k}" if path else str(k), depth + 1) for k, v in node.items())
        elif isinstance(node, list):
            stack.extend((v, f"{path}[{i}]" if i == 0 else path, depth + 1)
                         for i, v in enumerate(node))
