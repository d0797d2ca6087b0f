"""Expand a recipe into trials: variants x grid x paired axes x seeds (pure).

The study's size is counted from the axes before any trial is built, so a recipe that
would expand to millions of trials is refused at once (``max_trials``).
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import math
import re
import tomllib
from dataclasses import dataclass, field
from typing import Any

from ablate.errors import RecipeError, UserInputError
from ablate.heap import no_gc
from ablate.recipes import nesting
from ablate.recipes.knockout import AXIS as KNOCKOUT_AXIS
from ablate.recipes.loader import Recipe, axis_origins
from ablate.recipes.schema import Published, TrialSpec
from ablate.recipes.sections import SpecValidator
from ablate.recipes.tree import (
    DuplicateKey,
    check_key,
    check_seeds,
    flatten,
    holds_a_value,
    related,
    table_kind,
)
from ablate.trials.ids import SpecDumps, architecture_id, trial_ids_for_seeds
from ablate.trials.names import value_text

DEFAULT_MAX_TRIALS = 10_000


@dataclass(frozen=True)
class Trial:
    """One fully resolved trial of a study."""

    trial_id: str
    name: str
    config_name: str  # the name without the seed: trials differing only by seed share it
    variant: str
    axes: dict[str, Any]
    seed: int
    spec: TrialSpec
    published: Published | None = None
    study: str = ""
    arch_id: str = field(default="")
    tuning_draw: int | None = None  # a tuning trial's draw ([tune], ablate.trials.tuning)


def parse_set(assignments: list[str] | tuple[str, ...], recipe: str | None = None
              ) -> dict[str, Any]:
    """``["train.lr=0.1", "data.name=shapes"]`` -> dotted overrides, values read as TOML.

    ``seeds=[3,4]`` replaces the recipe's seeds (key ``"seeds"`` in the result). A key
    given twice (directly or inside a table) is refused: only the last would count.
    Errors read ``RECIPE: --set KEY: ...`` (``--set KEY: ...`` without ``recipe``), as
    a value the recipe's schema refuses does.
    """
    overrides: dict[str, Any] = {}
    given: dict[str, str] = {}  # key -> the item that set it

    def fail(key: str | None, message: str) -> UserInputError:
        where = f"--set {key}" if key else "--set"
        return RecipeError(recipe, message, where) if recipe else UserInputError(
            f"{where}: {message}")

    def put(key: str, value: Any, item: str) -> None:
        if key in given:
            raise fail(key, f"given twice ({given[key]!r}, then {item!r}); only the last "
                            "would count: give it once")
        given[key], overrides[key] = item, value

    def checked(key: str, check: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return check(*args, **kwargs)
        except RecipeError as err:  # check_key's and check_seeds' own wording
            raise fail(key, err.detail) from None

    for item in assignments:
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise fail(None, f"expected KEY=VALUE, got {item!r}")
        if "" in (part.strip() for part in key.split(".")):  # train.lr. or train..lr
            raise fail(key, "an empty part in a dotted key; write it as section.key, "
                            "e.g. train.lr")
        try:
            value = nesting.loads(f"v = {text.strip()}")["v"]
        except tomllib.TOMLDecodeError as err:
            value = text.strip()  # a bare word such as shapes or resnet50
            if value[:1] and value[:1] in "[{\"'":  # an array, table or string cut short
                why = str(err).split(" (at ")[0]
                raise fail(key, f"{value!r} is not a TOML value ({why}); a list is [a, b], "
                                "a table {k = v}, a string 'text' or a bare word") from None
        except nesting.TooDeep as err:
            raise fail(key, str(err)) from None
        if key == "seeds":
            put(key, checked(key, check_seeds, "--set", key, value), item)
            continue
        if key.startswith("seeds."):  # seeds has no keys: it is listed whole
            raise fail(key, "seeds is a list, set whole: --set seeds=[0,1]")
        # seeds: the one key beside a trial's
        checked(key, check_key, "--set", key, key, extra=("seeds",))
        if isinstance(value, dict) and holds_a_value(key):
            put(key, value, item)  # a table for one value: its rule says so, as in a recipe
            continue
        kind = table_kind(key)
        if isinstance(value, dict) and (value or kind == "section"):
            # a table sets the keys it holds, as a variant's table does: the section's
            # other keys keep the recipe's values (not the defaults)
            try:
                flat = flatten(value, key + ".")
            except DuplicateKey as err:
                raise fail(err.key, "written twice") from None
            if not flat:
                raise fail(key, "an empty table; --set the keys in it")
            for dotted, leaf in flat.items():
                checked(dotted, check_key, "--set", dotted, dotted)
                put(dotted, leaf, item)
            continue
        put(key, value, item)
    return overrides


def narrow_to_set(recipe: Recipe, overrides: dict[str, Any]) -> Recipe:
    """``recipe`` with each axis a ``--set`` names narrowed to the value it sets, the key
    taken out of ``overrides`` (in place): ``--set model.keep_last_expansion=true`` runs
    that point of the grid, under its own name. A value the axis does not hold, or a
    --set of a key under or over an axis, is refused: every configuration would get the
    one value under a name that says otherwise (``lr=0.1`` trained at another lr). A
    variant's key may be set: its name is the user's label, not the value (``--set
    data.name=shapes`` tries a study's every variant on the embedded data)."""
    varied = axis_origins(recipe.grid, recipe.zips, [], recipe.knockout)
    grid, zips = dict(recipe.grid), [dict(z) for z in recipe.zips]
    for key, value in list(overrides.items()):
        # the axis's key, a key under it, or a table over it (a --set table is flattened
        # to its keys, so only an emptied free table: a value there fails validation)
        hit = next((k for k in varied if related(key, k)
                    and (not k.startswith(key + ".") or isinstance(value, dict))), None)
        if hit is None or key == "seeds":
            continue
        values = grid.get(hit) or next(z[hit] for z in zips if hit in z)
        keep = [i for i, v in enumerate(values)
                if key == hit and _same(_as_read(key, v), _as_read(key, value))]
        if not keep:
            shown = ", ".join(value_text(v) for v in values)
            raise RecipeError(
                recipe.path, f"the axis {varied[hit]} varies it; --set picks one of its "
                f"values ({shown}) and runs that point alone, or edit the axis (another value "
                "would train every configuration at it under names that say otherwise)",
                f"--set {key}")
        if hit in grid:
            grid[hit] = [values[keep[0]]]
        else:
            group = next(z for z in zips if hit in z)
            for axis in group:
                group[axis] = [group[axis][i] for i in keep]
        del overrides[key]
    if grid == recipe.grid and zips == recipe.zips:
        return recipe
    return dataclasses.replace(recipe, grid=grid, zips=zips)


def _as_read(key: str, value: Any) -> Any:
    """``value`` as the spec reads it where order is not part of it: ``model.remove`` is
    sorted (one trial id whatever the order), so a --set in another order picks its point."""
    if key == KNOCKOUT_AXIS and isinstance(value, list) and all(isinstance(v, str) for v in value):
        return sorted(value)
    return value


def _same(a: Any, b: Any) -> bool:
    """Equal and of one type (TOML's ``true`` is not ``1``, nor ``1`` ``1.0``)."""
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    return type(a) is type(b) and a == b


def count_trials(recipe: Recipe, overrides: dict[str, Any] | None = None) -> int:
    """How many rows the expansion has (before duplicates are merged), without building any."""
    return math.prod(size for _, size in _axis_sizes(recipe, overrides))


def _axis_sizes(recipe: Recipe, overrides: dict[str, Any] | None) -> list[tuple[str, int]]:
    sizes = [("variants", len(recipe.variants))] if recipe.variants else []
    sizes += [(f'grid."{k}"', len(v)) for k, v in recipe.grid.items()]
    sizes += [(f"zip[{i}]", len(next(iter(z.values()), []))) for i, z in enumerate(recipe.zips)]
    seeds = (overrides or {}).get("seeds", recipe.seeds)
    return sizes + [("seeds", len(seeds))]


def check_size(recipe: Recipe, overrides: dict[str, Any] | None = None,
               max_trials: int | None = DEFAULT_MAX_TRIALS) -> int:
    """Refuse a study larger than ``max_trials`` (None: no limit), naming every axis."""
    total = count_trials(recipe, overrides)
    if max_trials is not None and total > max_trials:
        axes = " x ".join(f"{name} {size:,}" for name, size in _axis_sizes(recipe, overrides))
        raise RecipeError(
            recipe.path, f"{total:,} trials ({axes}) is more than --max-trials {max_trials:,}; "
            "shrink an axis or raise --max-trials")
    return total


def _short(key: str) -> str:
    return key.rsplit(".", 1)[-1]


def _axis_points(recipe: Recipe) -> list[dict[str, Any]]:
    """Every combination of grid values and paired (zip) values, in recipe order."""
    groups: list[list[dict[str, Any]]] = []
    for key, values in recipe.grid.items():
        groups.append([{key: v} for v in values])
    for axes in recipe.zips:
        keys = list(axes)
        groups.append([dict(zip(keys, row)) for row in zip(*axes.values())])
    points = []
    for combo in itertools.product(*groups):
        point: dict[str, Any] = {}
        for part in combo:
            point.update(part)
        points.append(point)
    return points


def _config_name(variant: str | None, axes: dict[str, Any]) -> str:
    labels = _labels(tuple(axes))
    parts = [f"{label}={value_text(v)}" for label, v in zip(labels, axes.values())]
    if variant and parts:
        return f"{variant}[{','.join(parts)}]"
    return variant or ",".join(parts) or "base"


@functools.lru_cache(maxsize=64)
def _labels(keys: tuple[str, ...]) -> tuple[str, ...]:
    """Each axis key as a name shows it: its last part, unless two keys share that part
    (every configuration of a recipe has the same keys: worked out once)."""
    shorts = [_short(k) for k in keys]
    ambiguous = {s for s in shorts if shorts.count(s) > 1}
    return tuple(k if _short(k) in ambiguous else _short(k) for k in keys)


def expand(recipe: Recipe, overrides: dict[str, Any] | None = None,
           max_trials: int | None = DEFAULT_MAX_TRIALS,
           merged: list[str] | None = None) -> list[Trial]:
    """All trials of a recipe, in a stable order, each validated and hashed.

    The size is checked first (:func:`check_size`); ``overrides`` come from ``--set``.
    Configurations that resolve to one spec run once, under the first one's name; each
    such merge is one line appended to ``merged`` (``ablate plan`` and ``run`` warn with
    it: a variant a ``--set`` made equal to another would vanish without a word).
    """
    overrides = dict(overrides or {})
    recipe = narrow_to_set(recipe, overrides)
    check_size(recipe, overrides, max_trials)
    with no_gc():
        trials, merges = _expand(recipe, overrides)
    if merged is not None:
        merged += _merge_lines(merges, overrides, len(_axis_points(recipe)))
    return trials


@dataclass(frozen=True)
class _Merge:
    kept: str  # configuration names
    dropped: str
    kept_variant: str | None
    dropped_variant: str | None
    sets: tuple[str, ...]  # the --set keys that made the two one (none: the recipe did)


def _expand(recipe: Recipe, overrides: dict[str, Any]) -> tuple[list[Trial], list[_Merge]]:
    seeds = overrides.pop("seeds", recipe.seeds)
    variants = recipe.variants or [None]
    trials: list[Trial] = []
    seen: dict[str, str] = {}  # trial id -> its configuration
    layers_of: dict[str, tuple[Any, dict[str, Any]]] = {}  # configuration -> (variant, point)
    merges: dict[tuple[str, str], _Merge] = {}
    validate = SpecValidator(recipe.path)  # each section once per distinct content
    arch_ids: dict[tuple[int, ...], str] = {}  # by the shared sections a cost depends on
    dumps = SpecDumps()  # and each shared section dumped once for the trial ids
    for variant in variants:
        origin = f"variants.{variant.name}." if variant is not None else "base."
        for point in _axis_points(recipe):
            # one validation and one architecture id per configuration; seeds only
            # change the trial id (a frozen copy with the seed replaced)
            config = _config_name(variant.name if variant else None, point)
            # a tuned study's configurations at their chosen nuisance values ([tune])
            pinned = recipe.pinned.get(config, {})
            layers = [variant.overrides if variant else {}, point, pinned, overrides]
            tree = _resolved_tree(recipe.base, layers, seeds[0])
            first = _validate(validate, tree, recipe, origin, variant, point, overrides)
            name0 = f"{config}/seed={seeds[0]}"
            shared = _architecture_sections(first)
            arch_id = arch_ids.get(shared)
            if arch_id is None:
                arch_id = arch_ids[shared] = _hashed(architecture_id, first, recipe.path, name0)
            ids = _hashed(lambda s: trial_ids_for_seeds(s, seeds, dumps), first, recipe.path,
                          name0)
            layers_of.setdefault(config, (variant, point))
            for seed, tid in zip(seeds, ids):
                name = f"{config}/seed={seed}"
                if tid in seen:
                    # two rows resolve to the same spec: run it once, keep the first name
                    kept = seen[tid]
                    if (kept, config) not in merges:
                        merges[kept, config] = _merge(kept, layers_of[kept], config,
                                                      (variant, point), overrides)
                    continue
                seen[tid] = config
                spec = first if seed == seeds[0] else first.model_copy(update={"seed": seed})
                trials.append(
                    Trial(
                        trial_id=tid, name=name, config_name=config,
                        variant=variant.name if variant else "base", axes=dict(point),
                        seed=seed, spec=spec,
                        published=variant.published if variant else None,
                        study=recipe.name, arch_id=arch_id,
                    )
                )
    return trials, list(merges.values())


def _merge(kept: str, kept_layers: tuple, dropped: str, dropped_layers: tuple,
           overrides: dict[str, Any]) -> _Merge:
    """Which ``--set`` keys made two configurations one: those over a key the two set
    apart (a variant's or an axis's); none when the recipe alone resolves them alike."""
    def keys(layers: tuple) -> dict[str, Any]:
        variant, point = layers
        return {**(variant.overrides if variant is not None else {}), **point}

    a, b = keys(kept_layers), keys(dropped_layers)
    missing = object()
    apart = [k for k in {**a, **b} if not _same(a.get(k, missing), b.get(k, missing))]
    sets = tuple(k for k in overrides if any(related(k, d) for d in apart))
    return _Merge(kept, dropped, kept_layers[0] and kept_layers[0].name,
                  dropped_layers[0] and dropped_layers[0].name, sets)


def _merge_lines(merges: list[_Merge], overrides: dict[str, Any], points: int) -> list[str]:
    """One line per cause and kept variant: whole variants when every configuration of
    each merged into the kept variant's, else the first pair of configurations."""
    groups: dict[tuple, list[_Merge]] = {}
    for m in merges:
        groups.setdefault((m.sets, m.kept_variant), []).append(m)
    lines = []
    for (sets, kept_variant), group in groups.items():
        dropped = list(dict.fromkeys(m.dropped_variant for m in group))
        whole = all(v is not None and v != kept_variant
                    and sum(m.dropped_variant == v for m in group) == points for v in dropped)
        first = group[0]
        more = "" if whole or len(group) == 1 else f" (and {len(group) - 1} more)"
        if first.kept == first.dropped and not whole:  # a value an axis lists twice
            lines.append(f"the recipe lists {first.kept} twice{more}; it runs once")
            continue
        if whole:
            what, kept = f"variants {_and([kept_variant, *dropped])}", kept_variant
        else:
            what, kept = f"{first.kept} and {first.dropped}", first.kept
        if sets:
            lines.append(f"{_sets(sets, overrides)} {what} the same configuration{more}; "
                         f"it runs once, as {kept}")
        else:
            lines.append(f"{what} resolve to the same configuration{more}; it runs once, "
                         f"as {kept}")
    return lines


def _sets(keys: tuple[str, ...], overrides: dict[str, Any]) -> str:
    """``--set a=1 makes``, as the user typed them."""
    return (" ".join(f"--set {k}={value_text(overrides[k])}" for k in keys)
            + (" makes" if len(keys) == 1 else " make"))


def _and(names: list) -> str:
    return ", ".join(names[:-1]) + " and " + names[-1]


def _resolved_tree(base: dict[str, Any], layers: list[dict[str, Any]], seed: int) -> dict:
    """``base`` with each layer's dotted keys set, copying only the tables on the way
    (a deep copy of the base per trial was a third of planning a large study)."""
    tree = dict(base)
    owned = {id(tree)}
    for layer in layers:
        for key, value in layer.items():
            node = tree
            *parents, last = key.split(".")
            for part in parents:
                child = node.get(part)
                if not isinstance(child, dict) or id(child) not in owned:
                    child = dict(child) if isinstance(child, dict) else {}
                    owned.add(id(child))
                    node[part] = child
                node = child
            node[last] = value
    tree["seed"] = seed
    return tree


def _architecture_sections(spec: TrialSpec) -> tuple[int, ...]:
    """Which shared section instances a spec is made of, ``train`` and the seed aside:
    specs that agree here have one architecture id (``SpecValidator`` shares a section
    among the trials with its content, and the trials keep them alive)."""
    return tuple(id(getattr(spec, name)) for name in type(spec).model_fields
                 if name not in ("train", "seed"))


def _validate(validate, tree, recipe, origin, variant, point, overrides) -> TrialSpec:
    try:
        return validate(tree)
    except RecipeError as err:
        # a section's check naming the key under it has that key already
        # (ablate.recipes.tree.validation_message)
        key, detail = err.key or "", err.detail
        for layer in (overrides, point, variant.overrides if variant is not None else {}):
            hit = _set_by(key, layer)
            if hit is None:
                continue
            if hit.startswith(key + "."):  # a check across a section: the key under it
                key, detail = hit, detail.removeprefix(f"{hit}: ")
            break
        if _set_by(key, overrides):
            where = f"--set {key}"
        elif _set_by(key, point):
            axis = _set_by(key, point)  # named as its line is: grid."k" or zip[0]."k"
            origin = axis_origins(recipe.grid, recipe.zips, [], recipe.knockout)[axis]
            where = origin if axis == key else f"{origin}: {key}"
        elif variant is not None and _set_by(key, variant.overrides):
            where = f"{origin}{key}"
        else:
            where = f"base.{key}"
        raise RecipeError(recipe.path, detail, where) from None


def _set_by(key: str, layer: dict[str, Any]) -> str | None:
    """The dotted key of ``layer`` that set ``key`` (itself, a list it indexes, or a table
    above it), so an error is blamed on the line that caused it."""
    path = re.sub(r"\[\d+\]", "", key)
    parts = path.split(".")
    for i in range(len(parts), 0, -1):
        if ".".join(parts[:i]) in layer:
            return ".".join(parts[:i])
    # an error on a whole section (a check across its keys) or table: the key under it
    return next((k for k in layer if path and k.startswith(path + ".")), None)


def _hashed(fn, spec: TrialSpec, source: str, name: str) -> str:
    """An id; hashing reads user code and dataset files, whose errors name the trial."""
    try:
        return fn(spec)
    except RecipeError:
        raise
    except UserInputError as err:
        raise RecipeError(source, f"trial {name}: {err}") from err
