"""Expand a recipe into trials: variants x grid x paired axes x seeds (pure)."""

from __future__ import annotations

import copy
import itertools
import tomllib
from dataclasses import dataclass, field
from typing import Any

from ablate.errors import RecipeError, UserInputError
from ablate.recipes.loader import Recipe, check_key, set_dotted, validate_spec
from ablate.recipes.schema import Published, TrialSpec
from ablate.trials.ids import architecture_id, trial_id


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


def parse_set(assignments: list[str] | tuple[str, ...], source: str = "--set") -> dict[str, Any]:
    """``["train.lr=0.1", "data.name=shapes"]`` -> dotted overrides, values read as TOML."""
    overrides: dict[str, Any] = {}
    for item in assignments:
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise UserInputError(f"{source}: expected KEY=VALUE, got {item!r}")
        try:
            value = tomllib.loads(f"v = {text.strip()}")["v"]
        except tomllib.TOMLDecodeError:
            value = text.strip()  # a bare word such as shapes or resnet50
        check_key(source, key, key)
        overrides[key] = value
    return overrides


def _short(key: str) -> str:
    return key.rsplit(".", 1)[-1]


def _fmt(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return "[" + ",".join(_fmt(v) for v in value) + "]"
    return str(value)


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
    shorts = [_short(k) for k in axes]
    ambiguous = {s for s in shorts if shorts.count(s) > 1}
    parts = [f"{k if _short(k) in ambiguous else _short(k)}={_fmt(v)}" for k, v in axes.items()]
    if variant and parts:
        return f"{variant}[{','.join(parts)}]"
    return variant or ",".join(parts) or "base"


def expand(recipe: Recipe, overrides: dict[str, Any] | None = None) -> list[Trial]:
    """All trials of a recipe, in a stable order, each validated and hashed."""
    overrides = overrides or {}
    variants = recipe.variants or [None]
    trials: list[Trial] = []
    seen: dict[str, str] = {}
    for variant in variants:
        for point in _axis_points(recipe):
            for seed in recipe.seeds:
                tree = copy.deepcopy(recipe.base)
                origin = "base."
                if variant is not None:
                    for key, value in variant.overrides.items():
                        set_dotted(tree, key, value)
                    origin = f"variants.{variant.name}."
                for key, value in point.items():
                    set_dotted(tree, key, value)
                for key, value in overrides.items():
                    set_dotted(tree, key, value)
                tree["seed"] = seed
                spec = _validate(tree, recipe, origin, variant, point, overrides)
                config = _config_name(variant.name if variant else None, point)
                tid = trial_id(spec)
                name = f"{config}/seed={seed}"
                if tid in seen:
                    # two rows resolve to the same spec: run it once, keep the first name
                    continue
                seen[tid] = name
                trials.append(
                    Trial(
                        trial_id=tid, name=name, config_name=config,
                        variant=variant.name if variant else "base", axes=dict(point),
                        seed=seed, spec=spec,
                        published=variant.published if variant else None,
                        study=recipe.name, arch_id=architecture_id(spec),
                    )
                )
    return trials


def _validate(tree, recipe, origin, variant, point, overrides) -> TrialSpec:
    try:
        return validate_spec(tree, recipe.path, "")
    except RecipeError as err:
        key = err.key or ""
        if key in overrides:
            where = f"--set {key}"
        elif key in point:
            where = f'axis "{key}"'
        elif variant is not None and key in variant.overrides:
            where = f"{origin}{key}"
        else:
            where = f"base.{key}"
        raise RecipeError(recipe.path, err.detail, where) from None
