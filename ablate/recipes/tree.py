"""Helpers on a recipe's tree of keys: dotted paths, schema look-ups, readable errors.

Shared by the recipe loader and the trial expansion, so both report a bad key or value
the same way: one line naming the file, the key as the user wrote it and what is allowed.
"""

from __future__ import annotations

import datetime
import re
import types
import typing
from typing import Any

from pydantic import BaseModel, ValidationError

from ablate.errors import RecipeError, did_you_mean
from ablate.recipes.allowed import value_rule
from ablate.recipes.schema import SEED_MAX, TrialSpec

NAME_RE = re.compile(r"[A-Za-z0-9._-]{1,100}")
NAME_RULE = "1-100 characters of A-Z a-z 0-9 . _ - (not '.' or '..')"

SEED_HINT = ("not a key of a trial: list seeds in the recipe's top-level seeds = [0, 1] "
             "(command line: --set seeds=[0,1])")
# said after the keys allowed where an unknown key is a seed (``train.seed``)
SEED_POINTER = ("; a trial's seed comes from the recipe's top-level seeds = [0, 1] "
                "(command line: --set seeds=[0,1])")
# keys of a variant's table that describe it rather than override the trial
VARIANT_META_KEYS = ("published", "description")


class DuplicateKey(ValueError):
    """One dotted key written twice in a table (``"train.lr" = ...`` beside ``train.lr``)."""

    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


def flatten(table: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"model": {"head": x}, "train.lr": y}`` -> ``{"model.head": x, "train.lr": y}``.

    TOML reads ``"train.lr" = 1`` (one quoted key) and ``train.lr = 2`` (a table) as
    different keys; flattened they are one, so :class:`DuplicateKey` is raised rather
    than letting the later one win unseen.
    """
    flat: dict[str, Any] = {}
    for key, value in table.items():
        path = f"{prefix}{key}"
        items = flatten(value, path + ".").items() if isinstance(value, dict) else [(path, value)]
        for dotted, leaf in items:
            if dotted in flat:
                raise DuplicateKey(dotted)
            flat[dotted] = leaf
    return flat


def related(a: str, b: str) -> bool:
    """Whether two dotted keys set the same value: equal, or one is a table above the other."""
    return a == b or a.startswith(b + ".") or b.startswith(a + ".")


def table_kind(path: str, model: type[BaseModel] = TrialSpec) -> str | None:
    """``"section"`` if a dotted key names a section of the schema (``train``,
    ``model``), ``"table"`` if it names a free table (``model.args``), else None."""
    head, _, rest = path.partition(".")
    for name, info in model.model_fields.items():
        if head in (name, info.alias):
            sub = _sub_model(info.annotation)
            if rest:
                return table_kind(rest, sub) if sub is not None else None
            if sub is not None:
                return "section"
            return "table" if typing.get_origin(info.annotation) is dict else None
    return None


def set_dotted(tree: dict[str, Any], path: str, value: Any) -> None:
    """Set ``a.b.c`` in a nested dict, creating the tables on the way."""
    parts = path.split(".")
    node = tree
    for part in parts[:-1]:
        child = node.get(part)
        if not isinstance(child, dict):
            child = {}
            node[part] = child
        node = child
    node[parts[-1]] = value


def _sub_model(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    return None


def holds_a_value(path: str) -> bool:
    """A schema key that holds one value (``train.lr``), not a table of keys nor a key
    inside a free table (``model.args.*``, any depth of which is the user's): a table
    given there is a wrong value (a ``[tune]`` range, a ``--set`` mistake), never a further
    level of keys."""
    parts = path.split(".")
    if any(table_kind(".".join(parts[:i])) == "table" for i in range(1, len(parts))):
        return False
    return field_exists(path) and table_kind(path) is None


def field_exists(path: str, model: type[BaseModel] = TrialSpec) -> bool:
    """Whether a dotted key names a field of the trial schema (aliases accepted)."""
    head, _, rest = path.partition(".")
    for name, info in model.model_fields.items():
        if head in (name, info.alias):
            if rest:
                if typing.get_origin(info.annotation) is dict:  # model.args: a free table
                    return True
                sub = _sub_model(info.annotation)
                return sub is not None and field_exists(rest, sub)
            return True
    return False


def allowed_keys(path: str, model: type[BaseModel] = TrialSpec,
                 extra: tuple[str, ...] = ()) -> list[str]:
    """The keys allowed at the level where ``path`` stopped matching, for error messages.

    ``extra`` names keys allowed beside the model's at its top level (a variant's
    ``description`` and ``published``). The trial's ``seed`` is never offered.
    """
    head, _, rest = path.partition(".")
    head, indexed = re.subn(r"\[\d+\]$", "", head)
    for name, info in model.model_fields.items():
        annotation = info.annotation
        if indexed and typing.get_origin(annotation) is list:  # model.replace[0].by
            annotation = typing.get_args(annotation)[0]
        sub = _sub_model(annotation)
        if head in (name, info.alias) and rest and sub is not None:
            return allowed_keys(rest, sub)
    keys = {info.alias or name for name, info in model.model_fields.items()} | set(extra)
    if model is TrialSpec:
        keys.discard("seed")
    return sorted(keys)


def check_key(source: str, where: str, key: str, extra: tuple[str, ...] = ()) -> None:
    """Refuse a dotted key that is not in the trial schema, or is the trial's seed."""
    if key == "seed":
        raise RecipeError(source, SEED_HINT, where)
    if not field_exists(key):
        keys = allowed_keys(key, extra=extra)
        raise RecipeError(source, f"unknown key {_quote(key)}{_close_key(key, keys)}; allowed "
                          f"here: {', '.join(keys)}{_seed_pointer(key)}", where)


def _close_key(key: str, allowed: list[str]) -> str:
    """`` (did you mean 'batch_size'?)`` for a misspelt last part of ``key``, else ``""``."""
    return did_you_mean(key.rpartition(".")[2], allowed)


def _seed_pointer(key: str) -> str:
    """``SEED_POINTER`` for an unknown key named ``seed`` or ``seeds`` in a section (a
    PyTorch habit: ``train.seed``), else ``""``."""
    return SEED_POINTER if key.rpartition(".")[2] in ("seed", "seeds") else ""


def _quote(text: str) -> str:
    return repr(text) if not text.isprintable() else f"'{text}'"


def check_name(source: str, where: str, name: Any) -> str:
    """Study and variant names: short, printable, safe as a folder name."""
    if not isinstance(name, str):
        raise RecipeError(source, f"must be a string of {NAME_RULE}", where)
    if not NAME_RE.fullmatch(name) or name in (".", ".."):
        shown = name if len(name) <= 40 else name[:40] + "..."
        raise RecipeError(source, f"must be {NAME_RULE} (got {shown!r})", where)
    return name


def check_seeds(source: str, where: str, seeds: Any) -> list[int]:
    """A non-empty list of distinct integers in [0, 2^32 - 1]."""
    rule = f"must be a non-empty list of distinct integers in [0, {SEED_MAX}]"
    if not isinstance(seeds, list) or not seeds:
        raise RecipeError(source, f"{rule} (got {_short_repr(seeds)})", where)
    for seed in seeds:
        if type(seed) is not int or not 0 <= seed <= SEED_MAX:
            raise RecipeError(source, f"{rule} (got {_short_repr(seed)})", where)
    if len(set(seeds)) != len(seeds):
        dupes = sorted({s for s in seeds if seeds.count(s) > 1})
        raise RecipeError(source, f"{rule}; repeated: {', '.join(map(str, dupes))}", where)
    return seeds


def _short_repr(value: Any, limit: int = 60) -> str:
    text = _as_written(value)
    return text if len(text) <= limit else text[:limit] + "..."


def _as_written(value: Any) -> str:
    """A value as the recipe spells it where Python's differs: ``true``, not ``True``."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return "[" + ", ".join(_as_written(v) for v in value) + "]"
    if isinstance(value, (datetime.date, datetime.time)):  # TOML's own dates: 1979-05-27
        return value.isoformat()
    return repr(value)


class _Location(typing.NamedTuple):
    key: str  # the dotted key as the user writes it
    union: bool  # whether the location went through a union member
    field: Any  # the schema field it ends at (a free table's key: the table); None in a list
    item: Any  # the item type where it ends at one item of a list field, else None


def _locate(loc: tuple[Any, ...], model: type[BaseModel] | None) -> _Location:
    """Pydantic's error location as the user's dotted key, whether it went through a
    union, and the field it ends at or the list item type (for the allowed values), in
    one walk.

    Union members appear in ``loc`` as tags such as ``constrained-int`` or
    ``literal['all','none']``; they are pydantic's, not the user's, and are dropped: the
    field stays the one before the tag.
    """
    parts: list[str] = []
    union = tag_next = False
    info, inside = None, False  # inside: past a list item or a key no field names
    item = None
    for part in loc:
        if isinstance(part, int):
            parts[-1:] = [f"{parts[-1] if parts else ''}[{part}]"]
            item = _item_type(info.annotation) if info and not (inside or union) else None
            inside = True
            continue
        item = None  # past the item: a key inside it
        if tag_next:  # "bool" of bool | "auto": not a key
            union, tag_next = True, False
            continue
        fields = model.model_fields if model is not None else {}
        match = next((n for n, i in fields.items() if part in (n, i.alias)), None)
        if match is not None:
            info = fields[match]
            parts.append(info.alias or match)
            model = _sub_model(info.annotation)
            tag_next = _tagged_union(info.annotation)
            continue
        inside = inside or model is not None or info is None
        if model is None and parts and not union and _is_user_key(part):
            parts.append(str(part))  # a key inside a dict-valued field
        else:
            union = True
    return _Location(".".join(parts), union, None if inside else info, item)


def _item_type(annotation: Any) -> Any:
    """The item type of a list field (``list[X]``, ``list[X] | None``), else None."""
    members = [annotation]
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        members = [a for a in typing.get_args(annotation) if a is not type(None)]
    if len(members) == 1 and typing.get_origin(members[0]) is list:
        return typing.get_args(members[0])[0]
    return None


# pydantic's errors for a value of the wrong type or out of range: they name one bound or
# none ("should be a valid number"), so the error says the field's whole rule instead
TYPE_OR_RANGE = {"int_type", "int_parsing", "int_from_float", "float_type", "float_parsing",
                 "bool_type", "bool_parsing", "string_type", "list_type", "greater_than",
                 "greater_than_equal", "less_than", "less_than_equal"}


def _tagged_union(annotation: Any) -> bool:
    """Whether pydantic names the member after this field in an error's location: a union
    of two or more types (``X | None`` alone gets no tag)."""
    if typing.get_origin(annotation) not in (typing.Union, types.UnionType):
        return False
    return sum(a is not type(None) for a in typing.get_args(annotation)) > 1


def _is_user_key(part: Any) -> bool:
    return isinstance(part, str) and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", part) is not None


def _clean_msg(msg: str) -> str:
    for prefix in ("Value error, ", "Input should be "):
        if msg.startswith(prefix):
            msg = msg[len(prefix):]
            if prefix == "Input should be ":
                msg = "should be " + msg
    return msg


def validation_message(err: ValidationError, model: type[BaseModel]) -> tuple[str, str]:
    """(dotted key, one-line message) for the first problem pydantic found."""
    errors = err.errors()
    first = errors[0]
    value = first.get("input")
    if first["type"] == "extra_forbidden":  # the last part of loc is the user's unknown key
        where = _locate(tuple(first["loc"][:-1]), model).key
        key = f"{where}.{first['loc'][-1]}" if where else str(first["loc"][-1])
        keys = allowed_keys(key, model)
        return key, (f"unknown key{_close_key(key, keys)}; allowed here: {', '.join(keys)}"
                     f"{_seed_pointer(key)}")
    key, union, info, item = _locate(tuple(first["loc"]), model)
    if first["type"] == "missing":
        return key, "missing"
    same_key = [e for e in errors if _locate(tuple(e["loc"]), model).key == key]
    rule = (value_rule(info.annotation, info.metadata) if info is not None
            else value_rule(item) if item is not None else None)
    own_words = any(e["type"] == "value_error" for e in same_key)  # a validator's message
    if rule is not None and not own_words and (
            union or any(e["type"] in TYPE_OR_RANGE for e in same_key)):
        msg = f"should be {rule}"
    elif union:  # one message per member of the union: say all of them
        msgs = [_clean_msg(e["msg"]) for e in same_key]
        msg = " or ".join(dict.fromkeys(m.removeprefix("should be ") for m in msgs))
        msg = f"should be {msg}"
    else:
        msg = _clean_msg(first["msg"])
    if first["type"] == "finite_number":
        msg = "must be a finite number"
    elif first["type"] in ("model_type", "dict_type", "model_attributes_type"):
        msg = "must be a table"  # not pydantic's "instance of ModelSpec"
    elif first["type"] == "string_too_short" and value == "":
        msg = "must not be empty"
    elif first["type"] == "too_short" and isinstance(value, list):
        least = first.get("ctx", {}).get("min_length", 1)
        msg = f"must list at least {least} item{'s' if least != 1 else ''}"
    named = re.match(r"([a-z_]+(?:\.[a-z_]+)+): ", msg) if own_words else None
    if named and field_exists(named.group(1), model):
        # a check across sections naming the key it refuses (data.val_split beside
        # eval_data): that key is the place, and the input is not its value
        return named.group(1), msg[named.end():]
    if not isinstance(value, dict):
        msg = f"{msg} (got {_short_repr(value)})"
    elif "table" not in msg and first["type"] != "value_error":
        msg = f"{msg} (got a table)"  # a table where a value belongs: its contents say nothing
    return key, msg


def validate_spec(tree: dict[str, Any], source: str, prefix: str) -> TrialSpec:
    """A resolved trial tree as a ``TrialSpec``; errors name ``prefix`` + the key."""
    try:
        return TrialSpec.model_validate(tree)
    except ValidationError as err:
        key, msg = validation_message(err, TrialSpec)
        raise RecipeError(source, msg, f"{prefix}{key}") from None


def validate_section(model: type[BaseModel], raw: Any, source: str, where: str) -> Any:
    """A table such as ``[slurm]`` or a variant's ``published`` as ``model``."""
    try:
        return model.model_validate(raw)
    except ValidationError as err:
        key, msg = validation_message(err, model)
        raise RecipeError(source, msg, f"{where}.{key}" if key else where) from None
