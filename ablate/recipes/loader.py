"""Read a TOML recipe into a validated ``Recipe``; every error names file and key."""

from __future__ import annotations

import difflib
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ablate.errors import RecipeError
from ablate.recipes import nesting
from ablate.recipes.knockout import AXIS as KNOCKOUT_AXIS
from ablate.recipes.knockout import KnockoutSpec, design_axis
from ablate.recipes.schema import LocalSpec, Published, SlurmSpec
from ablate.recipes.tree import (  # noqa: F401  (flatten, set_dotted: public here too)
    VARIANT_META_KEYS,
    DuplicateKey,
    allowed_keys,
    check_key,
    check_name,
    check_seeds,
    field_exists,
    flatten,
    related,
    set_dotted,
    table_kind,
    validate_section,
    validate_spec,
)
from ablate.recipes.tune import Tune, check_holdout, parse_tune

TOP_LEVEL_KEYS = ("name", "description", "seeds", "base", "grid", "zip", "variants", "knockout",
                  "slurm", "tune", "local")


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
    knockout: KnockoutSpec | None = None  # its design is the grid's model.remove axis
    # [tune]: nuisance keys tuned per configuration (ablate.trials.tuning)
    tune: Tune | None = None
    # each configuration's chosen nuisance values (config name -> dotted key -> value),
    # set once the tuning phase has chosen: expansion applies them after the axes
    pinned: dict[str, dict[str, Any]] = field(default_factory=dict)
    local: LocalSpec = field(default_factory=LocalSpec)


def _expect(cond: bool, source: str, key: str, message: str) -> None:
    if not cond:
        raise RecipeError(source, message, key)


def _flat(raw: dict[str, Any], source: str, where: str) -> dict[str, Any]:
    """``flatten``, with a key written twice (quoted and as a table) refused by name."""
    try:
        return flatten(raw)
    except DuplicateKey as err:
        raise RecipeError(source, f"written twice (as \"{err.key}\" and as a nested table); "
                          "keep one", f"{where}.{err.key}") from None


_HEADER = re.compile(r"\s*\[\[?\s*([^\]]+?)\s*\]\]?\s*(?:#.*)?$")


def _written_twice(text: str, message: str) -> str | None:
    """The dotted key behind tomllib's "Cannot overwrite a value (at line N, ...)" or
    "Cannot declare ('a', 'b') twice", which name a line or a tuple, not the key."""
    declared = re.match(r"Cannot declare \((.*?),?\) twice", message)
    if declared:
        return ".".join(part.strip().strip("'\"") for part in declared.group(1).split(","))
    at = re.match(r"Cannot overwrite a value \(at line (\d+),", message)
    lines = text.splitlines()
    if not at or int(at.group(1)) > len(lines):
        return None
    number = int(at.group(1)) - 1
    header = _HEADER.match(lines[number])
    if header:
        return header.group(1)
    key = lines[number].partition("=")[0].strip()
    if not key:
        return None
    table = next((m.group(1) for line in reversed(lines[:number])
                  if (m := _HEADER.match(line))), None)
    return f"{table}.{key}" if table else key


def _empty_table(table: dict[str, Any], prefix: str = "") -> str | None:
    """The dotted key of the first empty table in ``table``, which flattening would drop
    unseen (``model.args = {}`` in a variant set nothing), else None."""
    for key, value in table.items():
        if isinstance(value, dict):
            found = _empty_table(value, f"{prefix}{key}.") if value else f"{prefix}{key}"
            if found is not None:
                return found
    return None


def _nested(table: dict[str, Any], source: str, where: str) -> dict[str, Any]:
    """``table`` with each quoted dotted key (``"train.lr" = 0.1``) set as the nested key
    it names, as a grid or a variant reads it; one written both ways is refused by name
    (the schema would call ``train.lr`` unknown while listing ``lr``)."""
    out: dict[str, Any] = {}
    dotted = []
    for key, value in table.items():
        if "." in key:
            dotted.append((key, value))
        else:
            out[key] = _nested(value, source, f"{where}.{key}") if isinstance(value, dict) \
                else value
    for key, value in dotted:
        *parents, last = key.split(".")
        _expect(all(parents) and last, source, f'{where}."{key}"',
                "an empty part in a dotted key; write it as section.key")
        node = out
        for part in parents:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                break
        _expect(isinstance(node, dict) and last not in node, source, f"{where}.{key}",
                f'written twice (as "{key}" and as a nested table); keep one')
        node[last] = _nested(value, source, f"{where}.{key}") if isinstance(value, dict) \
            else value
    return out


def _axis_table(raw: Any, source: str, where: str) -> dict[str, list[Any]]:
    _expect(isinstance(raw, dict), source, where, "must be a table of dotted keys -> lists")
    axes = _flat(raw, source, where)
    for key, values in axes.items():
        check_key(source, f'{where}."{key}"', key)
        kind = table_kind(key)
        _expect(kind is None, source, f'{where}."{key}"',
                f"names a {'section' if kind == 'section' else 'table'}, whose every value "
                f"would replace it whole (its other keys back at their defaults); make an "
                f"axis of each key in it (\"{key}.<key>\"), paired in a [[zip]] if need be")
        _expect(isinstance(values, list), source, f'{where}."{key}"', "must be a list of values")
        _expect(len(values) > 0, source, f'{where}."{key}"', "empty axis: give at least one value")
    return axes


def parse_recipe(text: str, source: str) -> Recipe:
    try:
        raw = nesting.loads(text.removeprefix("\ufeff"))
    except tomllib.TOMLDecodeError as err:
        twice = _written_twice(text, str(err))
        if twice:
            raise RecipeError(source, f"written twice; keep one (invalid TOML: {err})",
                              twice) from None
        raise RecipeError(source, f"invalid TOML: {err}") from None
    except nesting.TooDeep as err:  # never a RecursionError traceback
        raise RecipeError(source, str(err), err.key.split("[")[0] or None) from None
    for key in raw:
        if key not in TOP_LEVEL_KEYS:
            raise RecipeError(
                source, f"unknown top-level key; allowed: {', '.join(TOP_LEVEL_KEYS)}", key
            )
    if "name" in raw:
        name = check_name(source, "name", raw["name"])
    else:  # the file name stands in; it must follow the same rule
        name = check_name(source, "name (taken from the file name; set name = ...)",
                          Path(source).stem)
    description = raw.get("description", "")
    _expect(isinstance(description, str), source, "description", "must be a string")

    seeds = check_seeds(source, "seeds", raw.get("seeds", [0]))

    base_raw = raw.get("base", {})
    _expect(isinstance(base_raw, dict), source, "base", "must be a table")
    base_raw = _nested(base_raw, source, "base")
    if "seed" in base_raw:
        check_key(source, "base.seed", "seed")
    validate_spec(base_raw, source, "base.")  # report base errors against base.*

    grid = _axis_table(raw.get("grid", {}), source, "grid")
    zips_raw = raw.get("zip", [])
    if isinstance(zips_raw, dict):
        zips_raw = [zips_raw]
    _expect(isinstance(zips_raw, list), source, "zip", "must be a table or an array of tables")
    zips = []
    for i, group in enumerate(zips_raw):
        axes = _axis_table(group, source, f"zip[{i}]")
        _expect(len(axes) > 0, source, f"zip[{i}]",
                "an empty [[zip]] group; give it the keys it pairs, or drop it")
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
        check_name(source, "variants (a variant's name)", vname)
        where = f"variants.{vname}"
        _expect(isinstance(table, dict), source, where, "must be a table of overrides")
        own = {k: v for k, v in table.items() if k not in VARIANT_META_KEYS}
        empty = _empty_table(own)
        _expect(empty is None, source, f"{where}.{empty}",
                "an empty table sets nothing (a variant's table sets the keys it holds, the "
                "others keep the base's values); give the keys in it, or drop it")
        overrides = _flat(own, source, where)
        for key in overrides:
            check_key(source, f"{where}.{key}", key, extra=VARIANT_META_KEYS)
            axis = next((a for a in axis_origins(grid, zips, []) if related(key, a)), None)
            _expect(axis is None, source, f"{where}.{key}",
                    f"also set by the axis {axis_origins(grid, zips, []).get(axis)}, whose "
                    "values replace it in every configuration; drop one of them")
        published = None
        if "published" in table:
            _expect(isinstance(table["published"], dict), source, f"{where}.published",
                    "must be a table of figures")
            published = validate_section(Published, table["published"], source,
                                         f"{where}.published")
        desc = table.get("description", "")
        _expect(isinstance(desc, str), source, f"{where}.description", "must be a string")
        variants.append(Variant(vname, overrides, desc, published))

    knockout = None
    if "knockout" in raw:
        knockout = _knockout(raw["knockout"], source, base_raw, grid, zips, variants)
        grid = {KNOCKOUT_AXIS: design_axis(knockout), **grid}

    slurm_raw = raw.get("slurm", {})
    _expect(isinstance(slurm_raw, dict), source, "slurm", "must be a table")
    slurm = validate_section(SlurmSpec, slurm_raw, source, "slurm")
    local_raw = raw.get("local", {})
    _expect(isinstance(local_raw, dict), source, "local", "must be a table")
    local = validate_section(LocalSpec, local_raw, source, "local")

    tune = None
    if "tune" in raw:
        tune = parse_tune(raw["tune"], source, seeds=seeds,
                          axes=axis_origins(grid, zips, variants, knockout))
        settings = {f"base.{key}": (key, value) for key, value in flatten(base_raw).items()}
        settings.update({where: (key, True) for key, where in
                         axis_origins(grid, zips, variants, knockout).items()})
        check_holdout(tune, source, settings)

    return Recipe(
        path=source, name=name, description=description, base=base_raw, grid=grid,
        zips=zips, variants=variants, seeds=seeds, slurm=slurm, text=text, knockout=knockout,
        tune=tune,
        local=local,
    )


def axis_origins(grid: dict, zips: list[dict], variants: list[Variant],
                 knockout: KnockoutSpec | None = None) -> dict[str, str]:
    """Every key an axis or a variant sets -> where (what a nuisance key, a --set and a
    variant's key cannot be); with ``knockout``, its design's axis is ``[knockout]``, the
    section the user wrote."""
    origins = {key: f'grid."{key}"' for key in grid}
    if knockout is not None and KNOCKOUT_AXIS in origins:
        origins[KNOCKOUT_AXIS] = "[knockout]"
    for i, axes in enumerate(zips):
        origins.update({key: f'zip[{i}]."{key}"' for key in axes})
    for variant in variants:
        for key in variant.overrides:
            origins.setdefault(key, f"variants.{variant.name}.{key}")
    return origins


def _knockout(raw: Any, source: str, base: dict[str, Any], grid: dict[str, list[Any]],
              zips: list[dict[str, list[Any]]], variants: list[Variant]) -> KnockoutSpec:
    """The ``[knockout]`` table; its design owns ``model.remove``, so no other part of the
    recipe may set it."""
    _expect(isinstance(raw, dict), source, "knockout", "must be a table")
    spec = validate_section(KnockoutSpec, raw, source, "knockout")
    where = [f'grid."{KNOCKOUT_AXIS}"'] if KNOCKOUT_AXIS in grid else []
    where += [f'zip[{i}]."{KNOCKOUT_AXIS}"' for i, z in enumerate(zips) if KNOCKOUT_AXIS in z]
    where += [f"variants.{v.name}.{KNOCKOUT_AXIS}" for v in variants
              if KNOCKOUT_AXIS in v.overrides]
    if flatten(base).get(KNOCKOUT_AXIS):
        where.append(f"base.{KNOCKOUT_AXIS}")
    if where:
        raise RecipeError(source, f"{where[0]} is set too; [knockout] generates "
                          f"{KNOCKOUT_AXIS} from its components: list them all there (or "
                          "drop [knockout])", "knockout")
    return spec


def _close_recipe(path: Path) -> str:
    """``; did you mean recipes/quickstart.toml?`` for a misspelt recipe whose folder
    holds a recipe of a close name (``quickstart.tml``, ``quickstrat.toml``), or a
    recipe named without its ``recipes/`` folder; else ""."""
    for folder in (path.parent, path.parent / "recipes"):
        try:
            names = [p.name for p in folder.iterdir() if p.suffix == ".toml" and p.is_file()]
        except OSError:  # the folder is missing too, or cannot be listed
            continue
        close = difflib.get_close_matches(path.name, names, n=1, cutoff=0.8)
        if close:
            return f"; did you mean {folder / close[0]}?"
    return ""


def load_recipe(path: str | Path) -> Recipe:
    """Read and validate a recipe file (UTF-8; a leading byte-order mark is accepted)."""
    path = Path(path)
    if path.is_dir():
        raise RecipeError(str(path), "is a folder, not a recipe file")
    if not path.is_file():
        raise RecipeError(str(path), f"recipe file not found{_close_recipe(path)}")
    try:
        data = path.read_bytes()
    except OSError as err:
        raise RecipeError(str(path), f"cannot read recipe: {err.strerror or err}") from None
    try:
        text = data.decode("utf-8-sig")  # some Windows editors start files with a BOM
    except UnicodeDecodeError as err:
        start = err.start + (3 if data.startswith(b"\xef\xbb\xbf") else 0)  # BOM not counted
        line = data[:start].count(b"\n") + 1
        column = start - (data.rfind(b"\n", 0, start) + 1) + 1
        raise RecipeError(str(path), f"not UTF-8 text: byte 0x{data[start]:02x} at line {line}, "
                                     f"column {column}; save the recipe as UTF-8") from None
    return parse_recipe(text, str(path))
