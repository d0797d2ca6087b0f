"""Read a TOML recipe into a validated ``Recipe``; every error names file and key."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from ablate.errors import RecipeError
from ablate.recipes.schema import Published, SlurmSpec, TrialSpec

TOP_LEVEL_KEYS = ("name", "description", "seeds", "base", "grid", "zip", "variants", "slurm")
VARIANT_META_KEYS = ("published", "description")


@dataclass(frozen=True)
class Variant:
    name: str
    overrides: dict[str, Any]
    description: str = ""
    published: Published | None = None


@dataclass(frozen=True)
class Recipe:
    """A parsed recipe. ``base`` and the overrides are plain dicts of dotted keys."""

    path: str
    name: str
    description: str
    base: dict[str, Any]
    grid: dict[str, list[Any]]
    zips: list[dict[str, list[Any]]]
    variants: list[Variant]
    seeds: list[int]
    slurm: SlurmSpec = field(default_factory=SlurmSpec)
    text: str = ""


def flatten(table: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"model": {"head": x}, "train.lr": y}`` -> ``{"model.head": x, "train.lr": y}``."""
    flat: dict[str, Any] = {}
    for key, value in table.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten(value, path + "."))
        else:
            flat[path] = value
    return flat


def set_dotted(tree: dict[str, Any], path: str, value: Any) -> None:
    parts = path.split(".")
    node = tree
    for part in parts[:-1]:
        child = node.get(part)
        if not isinstance(child, dict):
            child = {}
            node[part] = child
        node = child
    node[parts[-1]] = value


def field_exists(path: str, model: type[BaseModel] = TrialSpec) -> bool:
    """Whether a dotted key names a field of the trial schema (aliases accepted)."""
    head, _, rest = path.partition(".")
    for name, info in model.model_fields.items():
        if head in (name, info.alias):
            annotation = info.annotation
            if rest:
                return isinstance(annotation, type) and issubclass(annotation, BaseModel) and (
                    field_exists(rest, annotation)
                )
            return True
    return False


def allowed_keys(path: str, model: type[BaseModel] = TrialSpec) -> list[str]:
    """The keys allowed at the level where ``path`` stopped matching, for error messages."""
    head, _, rest = path.partition(".")
    for name, info in model.model_fields.items():
        annotation = info.annotation
        if head in (name, info.alias) and rest and isinstance(annotation, type) and issubclass(
            annotation, BaseModel
        ):
            return allowed_keys(rest, annotation)
    return sorted(info.alias or name for name, info in model.model_fields.items())


def check_key(source: str, path: str, key: str) -> None:
    if not field_exists(key):
        raise RecipeError(
            source, f"unknown key '{key}'; allowed here: {', '.join(allowed_keys(key))}", path
        )


def _validation_message(err: ValidationError) -> tuple[str, str]:
    first = err.errors()[0]
    loc = ".".join(str(p) for p in first["loc"])
    msg = first["msg"]
    if first["type"] == "extra_forbidden":
        msg = "unknown key"
    value = first.get("input")
    if first["type"] not in ("missing", "extra_forbidden") and not isinstance(value, dict):
        msg = f"{msg} (got {value!r})"
    return loc, msg


def validate_spec(tree: dict[str, Any], source: str, prefix: str) -> TrialSpec:
    try:
        return TrialSpec.model_validate(tree)
    except ValidationError as err:
        loc, msg = _validation_message(err)
        if msg == "unknown key":
            msg = f"unknown key; allowed here: {', '.join(allowed_keys(loc))}"
        raise RecipeError(source, msg, f"{prefix}{loc}") from None


def _expect(cond: bool, source: str, key: str, message: str) -> None:
    if not cond:
        raise RecipeError(source, message, key)


def _axis_table(raw: Any, source: str, where: str) -> dict[str, list[Any]]:
    _expect(isinstance(raw, dict), source, where, "must be a table of dotted keys -> lists")
    axes = flatten(raw)
    for key, values in axes.items():
        check_key(source, f'{where}."{key}"', key)
        _expect(isinstance(values, list), source, f'{where}."{key}"', "must be a list of values")
        _expect(len(values) > 0, source, f'{where}."{key}"', "empty axis: give at least one value")
    return axes


def parse_recipe(text: str, source: str) -> Recipe:
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise RecipeError(source, f"invalid TOML: {err}") from None
    for key in raw:
        if key not in TOP_LEVEL_KEYS:
            raise RecipeError(
                source, f"unknown top-level key; allowed: {', '.join(TOP_LEVEL_KEYS)}", key
            )
    name = raw.get("name", Path(source).stem)
    _expect(isinstance(name, str) and name.strip() != "", source, "name", "must be a non-empty string")
    description = raw.get("description", "")
    _expect(isinstance(description, str), source, "description", "must be a string")

    seeds = raw.get("seeds", [0])
    _expect(
        isinstance(seeds, list) and seeds and all(type(s) is int and s >= 0 for s in seeds),
        source, "seeds", "must be a non-empty list of non-negative integers",
    )
    _expect(len(set(seeds)) == len(seeds), source, "seeds", "has duplicate seeds")

    base_raw = raw.get("base", {})
    _expect(isinstance(base_raw, dict), source, "base", "must be a table")
    validate_spec(base_raw, source, "base.")  # report base errors against base.*

    grid = _axis_table(raw.get("grid", {}), source, "grid")
    zips_raw = raw.get("zip", [])
    if isinstance(zips_raw, dict):
        zips_raw = [zips_raw]
    _expect(isinstance(zips_raw, list), source, "zip", "must be a table or an array of tables")
    zips = []
    for i, group in enumerate(zips_raw):
        axes = _axis_table(group, source, f"zip[{i}]")
        lengths = {len(v) for v in axes.values()}
        _expect(
            len(lengths) <= 1, source, f"zip[{i}]",
            f"paired axes must have equal lengths, got {sorted(lengths)}",
        )
        zips.append(axes)
    seen = set(grid)
    for i, axes in enumerate(zips):
        for key in axes:
            _expect(key not in seen, source, f'zip[{i}]."{key}"', "key is already an axis")
            seen.add(key)

    variants_raw = raw.get("variants", {})
    _expect(isinstance(variants_raw, dict), source, "variants", "must be a table of named tables")
    variants = []
    for vname, table in variants_raw.items():
        where = f"variants.{vname}"
        _expect(isinstance(table, dict), source, where, "must be a table of overrides")
        overrides = flatten({k: v for k, v in table.items() if k not in VARIANT_META_KEYS})
        for key in overrides:
            check_key(source, f"{where}.{key}", key)
        published = None
        if "published" in table:
            try:
                published = Published.model_validate(table["published"])
            except ValidationError as err:
                loc, msg = _validation_message(err)
                raise RecipeError(source, msg, f"{where}.published.{loc}") from None
        desc = table.get("description", "")
        _expect(isinstance(desc, str), source, f"{where}.description", "must be a string")
        variants.append(Variant(vname, overrides, desc, published))

    slurm_raw = raw.get("slurm", {})
    try:
        slurm = SlurmSpec.model_validate(slurm_raw)
    except ValidationError as err:
        loc, msg = _validation_message(err)
        raise RecipeError(source, msg, f"slurm.{loc}") from None

    return Recipe(
        path=source, name=name, description=description, base=base_raw, grid=grid,
        zips=zips, variants=variants, seeds=seeds, slurm=slurm, text=text,
    )


def load_recipe(path: str | Path) -> Recipe:
    path = Path(path)
    if not path.is_file():
        raise RecipeError(str(path), "recipe file not found")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise RecipeError(str(path), f"cannot read recipe: {err}") from None
    return parse_recipe(text, str(path))
