"""A schema field's allowed values in words: ``number in (0, 10]``, ``boolean``.

One wording for the key reference of docs/recipes.md (``docs/gen_recipe_keys.py``) and
for the one-line errors of a bad value, so an error says what the table says.
"""

from __future__ import annotations

import types
import typing
from typing import Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel
from pydantic_core import PydanticUndefined


def number(value: float) -> str:
    """``10000`` -> ``10,000``; a float keeps its decimal point."""
    if isinstance(value, int) and abs(value) >= 10_000:
        return f"{value:,}"
    return repr(value) if isinstance(value, float) else str(value)


def toml_value(value: Any) -> str:
    """A default as a recipe would write it."""
    if value is PydanticUndefined:  # a key without a default
        return "required"
    if value is None:
        return "unset"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return f'"{value}"'
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{}" if not value else str(value)
    if isinstance(value, BaseModel):
        return "(table below)"
    return number(value)


def _bounds(constraints: list[Any]) -> str:
    low = high = None
    for c in constraints:
        for attr, bracket in (("gt", "("), ("ge", "[")):
            if getattr(c, attr, None) is not None:
                low = f"{bracket}{number(getattr(c, attr))}"
        for attr, bracket in (("lt", ")"), ("le", "]")):
            if getattr(c, attr, None) is not None:
                high = f"{number(getattr(c, attr))}{bracket}"
    if low is None and high is None:
        return ""
    return f" in {low or '(-inf'}, {high or 'inf)'}"


def describe_type(annotation: Any, constraints: list[Any] | None = None) -> str:
    """Allowed values of a field's type, in words."""
    constraints = list(constraints or [])
    origin = get_origin(annotation)
    if origin is typing.Annotated:
        inner, *meta = get_args(annotation)
        flat = []
        for m in meta:
            flat.extend(getattr(m, "metadata", [m]))
        return describe_type(inner, constraints + flat)
    if origin in (Union, types.UnionType):
        parts = [describe_type(a, constraints) for a in get_args(annotation)
                 if a is not type(None)]
        text = " or ".join(parts)
        return text + (", or unset" if type(None) in get_args(annotation) else "")
    if origin is Literal:
        return ", ".join(toml_value(v) for v in get_args(annotation))
    if origin is list:
        (item,) = get_args(annotation)
        return f"list of {describe_type(item, [])}" + _bounds(constraints)
    if origin is dict:
        return "table"
    if annotation is bool:
        return "boolean"
    if annotation is int:
        return "integer" + _bounds(constraints)
    if annotation is float:
        return "number" + _bounds(constraints)
    if annotation is str:
        return "string"
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return "table"
    raise TypeError(f"no words for the type {annotation!r}")


def value_rule(annotation: Any, constraints: list[Any] | None = None) -> str | None:
    """What an error says a value of this field should be: ``a number in (0, 10]``,
    ``an integer in [0, 1,000,000,000] or "auto"``, ``"all", "none" or list of ...``;
    None for a type without words.
    "or unset" is left out: TOML has no null, a key is unset by leaving it out."""
    try:
        text = describe_type(annotation, constraints).removesuffix(", or unset")
    except TypeError:
        return None
    if text.startswith('"'):  # names first: "all", "none" or list of ...
        return text
    return ("an " if text[0] in "aeiou" else "a ") + text
