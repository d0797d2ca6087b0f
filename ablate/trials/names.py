"""How a configuration's name spells a value, and an axis value shown that way.

Names spell lists without quotes or spaces (``remove=[head.aspp.convs.1]``), booleans as
TOML does. A trials frame holds a list axis as Python's text of it
(``['head.aspp.convs.1']``: hashable, and what the analysis and ``--where`` read back);
``axis_text`` shows it as the names do, leaving the stored text as it is.
"""

from __future__ import annotations

import ast
from typing import Any


def value_text(value: Any) -> str:
    """``true``, ``0.1``, ``[head.aspp.convs.1]``, ``[1,2]``: as a configuration's name."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return "[" + ",".join(value_text(v) for v in value) + "]"
    return str(value)


def stored_list(value: Any) -> list | None:
    """The list a frame's text of one stands for (``"['a', 'b']"``), else None."""
    if not (isinstance(value, str) and value.startswith("[") and value.endswith("]")):
        return None
    try:
        parsed = ast.literal_eval(value)
    except (ValueError, SyntaxError, RecursionError):
        return None
    return parsed if isinstance(parsed, list) else None


def axis_text(value: Any) -> str:
    """An axis value as the configuration names spell it, from the value or the text a
    frame holds it as: ``['head.aspp.convs.1']`` -> ``[head.aspp.convs.1]``."""
    listed = stored_list(value)
    return value_text(value if listed is None else listed)
