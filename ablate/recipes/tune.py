"""The ``[tune]`` section: nuisance keys, their ranges, the budget and the tuning seeds.

A *nuisance* key (Google's Deep Learning Tuning Playbook) is one that must be tuned for
each configuration separately so that a comparison is fair, such as the learning rate.
Each configuration trains ``budget`` draws of the nuisance keys (the same draws for all:
``ablate.trials.tuning``) on the tuning ``seeds``; the draw with the best mean selection
metric is then trained on the study's own seeds, and only those trials are compared.

::

    [tune]
    budget = 8                 # draws per configuration
    seeds = [100]              # tuning seeds: none of the study's seeds
    "train.lr" = { log_uniform = [1e-4, 1.0] }
    "train.momentum" = { uniform = [0.8, 0.95] }
    "model.args.width" = { int = [8, 32] }
    "train.optimizer" = { choice = ["sgd", "adamw"] }

Every error names the file and the key (``tune."train.lr"``) and says what is allowed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import Field

from ablate.errors import RecipeError, did_you_mean
from ablate.recipes.schema import DataSpec, PositiveInt, Section, Seed
from ablate.recipes.tree import (
    check_key,
    check_seeds,
    holds_a_value,
    related,
    validate_section,
    validate_spec,
)

DISTRIBUTIONS = ("log_uniform", "uniform", "int", "choice")
TUNABLE = ("train.", "model.args.", "data.")  # the sections whose keys may be nuisance keys
NOT_TUNABLE = ("data.holdout",)  # what the tuning trials themselves set
# what the confirmation trials are measured on: tuned, each configuration would be read on
# its own validation set (or task), and the effects would compare those
EVALUATED_ON = ("data.name", "data.root", "data.builder", "data.classes", "data.image_size",
                "data.data_seed", "data.val_split", "data.val_images", "data.limit_val",
                "data.eval_size")
_OF_RANGE = " (a value of its range)"  # a refused value is one the range holds, not one given
RANGE_RULE = ('a range: { log_uniform = [low, high] }, { uniform = [low, high] }, '
              '{ int = [low, high] } or { choice = [a, b, ...] }')


class TuneSettings(Section):
    """The ``[tune]`` section's own keys (its other keys are the nuisance keys)."""

    budget: PositiveInt  # draws per configuration
    seeds: list[Seed]  # tuning seeds, disjoint from the study's
    draw_seed: Seed = 0  # of the scrambled Sobol sequence
    metric: Literal["miou", "pixel_acc"] = "miou"  # the selection metric, higher is better
    # holdout: a held-out slice of the training set (data.holdout) is the tuning trials'
    # evaluation set; validation: the validation set, which the reported figures also use
    select_on: Literal["holdout", "validation"] = "holdout"
    holdout: Annotated[float, Field(gt=0, le=0.5)] = 0.2


@dataclass(frozen=True)
class Range:
    """One nuisance key and where its draws come from."""

    key: str
    kind: str  # one of DISTRIBUTIONS
    values: tuple[Any, ...]  # (low, high), or the choices

    def describe(self) -> str:
        if self.kind == "choice":
            return "choice of " + ", ".join(map(str, self.values))
        return f"{self.kind} [{self.values[0]:g}, {self.values[1]:g}]"

    def to_json(self) -> dict[str, Any]:
        return {self.kind: list(self.values)}


@dataclass(frozen=True)
class Tune:
    """A validated ``[tune]`` section."""

    settings: TuneSettings
    ranges: tuple[Range, ...]

    @property
    def keys(self) -> tuple[str, ...]:
        return tuple(r.key for r in self.ranges)

    def to_json(self) -> dict[str, Any]:
        """The section as plain data, for the study's record: an edit shows as a change."""
        return {**self.settings.model_dump(mode="json"),
                "ranges": {r.key: r.to_json() for r in self.ranges}}

    def describe(self) -> str:
        s = self.settings
        on = (f"a held-out {100 * s.holdout:g}% of the training set" if s.select_on == "holdout"
              else "the validation set")
        return (f"best of {s.budget} draws ({', '.join(r.key for r in self.ranges)}) by mean "
                f"{s.metric} over tuning seed(s) {', '.join(map(str, s.seeds))} on {on}")


def _ranges_of(table: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Dotted nuisance keys -> their range tables. ``"train.lr" = {...}`` and
    ``train.lr = {...}`` (a nested table in TOML) are the same key; a table whose keys
    include a distribution's name is a range, not a further level."""
    out: dict[str, Any] = {}
    for key, value in table.items():
        path = f"{prefix}{key}"
        if (isinstance(value, dict) and value and not set(value) & set(DISTRIBUTIONS)
                and not holds_a_value(path)):  # a table there is a range
            out.update(_ranges_of(value, path + "."))
        else:
            out[path] = value
    return out


def parse_tune(raw: Any, source: str, *, seeds: list[int], axes: dict[str, str]) -> Tune:
    """The ``[tune]`` table as a ``Tune``; ``seeds`` are the study's seeds and ``axes``
    every key a grid, zip or variant sets (key -> where), which cannot also be tuned."""
    if not isinstance(raw, dict):
        raise RecipeError(source, "must be a table of settings and nuisance keys", "tune")
    for key, value in raw.items():  # before the settings: a misspelt budget is no missing one
        if "." not in key and key not in TuneSettings.model_fields \
                and not isinstance(value, dict):  # a table holds nuisance keys: train.lr = ...
            _unknown(source, key)
    own = {k: v for k, v in raw.items() if k in TuneSettings.model_fields}
    if "seeds" in own:
        check_seeds(source, "tune.seeds", own["seeds"])
    settings = validate_section(TuneSettings, own, source, "tune")
    overlap = sorted(set(settings.seeds) & set(seeds))
    if overlap:
        raise RecipeError(source, f"{', '.join(map(str, overlap))} also in the study's seeds "
                          f"{seeds}; tuning seeds must be others, so that each effect is read "
                          "on seeds the selection never saw", "tune.seeds")
    ranges = _ranges_of({k: v for k, v in raw.items() if k not in TuneSettings.model_fields})
    if not ranges:
        raise RecipeError(source, 'names no nuisance key; add one, e.g. "train.lr" = '
                          "{ log_uniform = [1e-4, 1.0] }", "tune")
    return Tune(settings, tuple(_range(source, key, value, axes)
                                for key, value in ranges.items()))


HOLDOUT_KEY = "data.holdout"


def check_holdout(tune: Tune, source: str, settings: dict[str, tuple[str, Any]]) -> None:
    """With ``select_on = "holdout"`` the tuning trials evaluate on a held-out slice of the
    training set, and the confirmation trials on the validation set. A ``data.holdout``
    set elsewhere (``settings``: where -> (key, value), from ``[base]``, an axis or
    ``--set``) would replace the tuning trials' fraction, or evaluate the confirmation
    trials on a held-out slice: ``data.build.holdout_split`` holds out the same
    permutation's head, so it holds every image the selection read."""
    if tune.settings.select_on != "holdout":
        return  # the tuning trials evaluate where the confirmation trials do
    for where, (key, value) in settings.items():
        if related(key, HOLDOUT_KEY) and value not in (0, 0.0, None, {}):
            raise RecipeError(source, "[tune] holds out tune.holdout of the training set "
                              "for the selection and evaluates the effects on the validation "
                              "set; a data.holdout here would evaluate them on held-out images "
                              "that include those the selection read. Set tune.holdout, or "
                              'tune.select_on = "validation" to select where the effects are '
                              "read", where)


def _unknown(source: str, key: str) -> None:
    allowed = ", ".join([*TuneSettings.model_fields, '"train.*"', '"model.args.*"', '"data.*"'])
    hint = did_you_mean(key, TuneSettings.model_fields)
    raise RecipeError(source, f"unknown key{hint}; allowed: {allowed} (a nuisance key is a "
                      "dotted train.*, model.args.* or data.* key)", f"tune.{key}")


def _range(source: str, key: str, value: Any, axes: dict[str, str]) -> Range:
    where = f'tune."{key}"'
    if "." not in key:
        _unknown(source, key)
    check_key(source, where, key)
    for axis, origin in axes.items():
        if related(key, axis):
            raise RecipeError(source, f"also set by {origin}: a key is either what the study "
                              "compares (an axis) or tuned for each configuration, not both",
                              where)
    if not key.startswith(TUNABLE) or key in NOT_TUNABLE:
        raise RecipeError(source, "not a nuisance key: only train.*, model.args.* and data.* "
                          "keys can be tuned" + (" (data.holdout is what [tune] sets)"
                                                 if key in NOT_TUNABLE else ""), where)
    if key in EVALUATED_ON:
        data_keys = ", ".join(k for k in DataSpec.model_fields
                              if f"data.{k}" not in (*EVALUATED_ON, *NOT_TUNABLE))
        raise RecipeError(source, "sets what the effects are measured on: tuned, each "
                          "configuration would be read on its own validation data; set it "
                          f"in [base] (data keys that can be tuned: {data_keys})", where)
    if not isinstance(value, dict) or len(value) != 1 or next(iter(value)) not in DISTRIBUTIONS:
        unknown = [k for k in value if k not in DISTRIBUTIONS] if isinstance(value, dict) else []
        said = (f"unknown distribution {', '.join(map(repr, unknown))}; " if unknown
                else f"one distribution, not {len(value)}; " if isinstance(value, dict)
                and len(value) > 1 else "")
        raise RecipeError(source, f"{said}must be {RANGE_RULE}", where)
    kind, bounds = next(iter(value.items()))
    if kind == "choice":
        return Range(key, kind, _choices(source, where, key, bounds))
    low, high = _bounds(source, f"{where}.{kind}", kind, bounds)
    # a uniform or log range draws fractional numbers: probe one, so that an integer key
    # given such a range is refused here rather than at its first draw
    probes = [low, high]
    if kind != "int":
        middle = (low + high) / 2
        probes.append(math.nextafter(middle, high) if middle.is_integer() else middle)
    for value in probes:
        try:
            _check_value(source, where, key, value)
        except RecipeError as err:
            if value != int(value) and _needs_int(source, where, key, round(value)):
                # the probed fraction is not a number the user wrote: say what to write
                rule = err.detail.split(" (got ")[0]  # "should be an integer in ..."
                raise RecipeError(source, f"{kind} [{low:g}, {high:g}] draws fractional "
                                  f"numbers; {key} {rule}: give "
                                  f"{integer_range(Range(key, kind, (low, high)))}",
                                  where) from None
            raise
    return Range(key, kind, (low, high))


def integer_range(rng: Range) -> str:
    """What to give instead of ``rng`` for an integer key or argument: its integer bounds."""
    low, high = math.ceil(rng.values[0]), math.floor(rng.values[1])
    if low < high:
        return f"{{ int = [{low}, {high}] }}"
    return "{ int = [low, high] } or a choice of integers"


def _needs_int(source: str, where: str, key: str, whole: int) -> bool:
    """Whether ``key`` takes the integer ``whole`` but no fraction beside it (an integer
    key), rather than refusing a number for its size (a float key's bound)."""
    def accepts(value: Any) -> bool:
        try:
            _check_value(source, where, key, value)
        except RecipeError:
            return False
        return True

    return accepts(whole) and not accepts(whole - 0.5) and not accepts(whole + 0.5)


def _bounds(source: str, where: str, kind: str, bounds: Any) -> tuple[Any, Any]:
    number = int if kind == "int" else (int, float)
    what = "integers" if kind == "int" else "numbers"
    if (not isinstance(bounds, list) or len(bounds) != 2
            or any(isinstance(b, bool) or not isinstance(b, number) for b in bounds)):
        raise RecipeError(source, f"must be [low, high], two {what} (got {bounds!r})", where)
    low, high = bounds
    if not all(math.isfinite(b) for b in bounds):
        raise RecipeError(source, f"bounds must be finite (got {bounds!r})", where)
    if not low < high:
        raise RecipeError(source, f"empty or reversed range: low must be below high "
                          f"(got [{low}, {high}])", where)
    if kind == "log_uniform" and low <= 0:
        raise RecipeError(source, f"a log range needs bounds > 0 (got [{low}, {high}])", where)
    return low, high


def _choices(source: str, where: str, key: str, values: Any) -> tuple[Any, ...]:
    if not isinstance(values, list) or len(values) < 2:
        raise RecipeError(source, "a choice needs at least two values (to fix a key, set it "
                          f"in [base]; got {values!r})", f"{where}.choice")
    if len({repr(v) for v in values}) != len(values):
        raise RecipeError(source, f"lists a value twice (got {values!r})", f"{where}.choice")
    for value in values:
        _check_value(source, where, key, value)
    return tuple(values)


def _check_value(source: str, where: str, key: str, value: Any) -> None:
    """A value the key's schema refuses (a learning rate above 10, a float for an integer
    key) is refused here, naming the range, before any trial is built. Free tables
    (``model.args``, ``data.args``) are checked when each draw's trials are validated."""
    if key.startswith(("model.args.", "data.args.")):
        return
    tree: dict[str, Any] = {}
    node = tree
    *parents, last = key.split(".")
    for part in parents:
        node = node.setdefault(part, {})
    node[last] = value
    try:
        validate_spec(tree, source, "")
    except RecipeError as err:
        if err.key == key:
            raise RecipeError(source, f"{err.detail}{_OF_RANGE}", where) from None
