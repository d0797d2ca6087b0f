"""Validate many trial trees that differ in a few keys: each section once per content.

A sweep's trials differ only where its axes set keys: a 10,000-value ``train.lr`` axis
changes the ``train`` table of every trial and leaves ``model``, ``data`` and ``eval``
alone. Validating the whole ``TrialSpec`` per configuration spent most of ``ablate plan``
(20,000 configurations: 5.7 s of pydantic, a third of it copying the default sections).
``SpecValidator`` validates each section (``model``, ``data``, ``train``, ...) once per
distinct content and builds the trial from the validated sections, so the cross-section
rules of ``TrialSpec`` still run on every trial. Sections are frozen models, so one
instance is shared by every trial that has that content.

Any problem falls back to ``validate_spec`` on the whole tree, so an error reads exactly
as it does without the cache.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ValidationError

from ablate.recipes.schema import TrialSpec
from ablate.recipes.tree import validate_spec

_ABSENT = object()


def _sections() -> dict[str, type[BaseModel]]:
    """``TrialSpec``'s fields that are models of their own (its tables)."""
    out = {}
    for name, info in TrialSpec.model_fields.items():
        kind = info.annotation
        if isinstance(kind, type) and issubclass(kind, BaseModel):
            out[info.alias or name] = kind
    return out


def freeze(value: Any) -> Any:
    """A hashable key equal for two values exactly when validation cannot tell them apart:
    types count (``1``, ``1.0`` and ``true`` differ under the strict schema) and floats
    compare by their text (``-0.0`` is not ``0.0``: their trial ids differ)."""
    kind = type(value)
    if kind is dict:
        return (dict, tuple([(k, freeze(v)) for k, v in value.items()]))
    if kind is list:
        return (list, tuple([freeze(v) for v in value]))
    if kind is float:
        return (float, repr(value))
    hash(value)  # TypeError for anything unhashable: the caller validates it directly
    return (kind, value)


class SpecValidator:
    """``validate_spec`` for many trees of one recipe, each section validated once."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.sections = _sections()
        self._cache: dict[tuple[str, Any], BaseModel] = {}
        # a table no layer set a key in is the recipe's own object in every tree: found by
        # identity (the entry keeps it alive, so its id is not reused; trees are not
        # changed once validated, as the expansion builds each afresh)
        self._same: dict[tuple[str, int], tuple[dict, BaseModel]] = {}
        self._defaults: dict[str, BaseModel] = {}

    def __call__(self, tree: dict[str, Any]) -> TrialSpec:
        parts: dict[str, Any] = {}
        for key, value in tree.items():
            model = self.sections.get(key)
            if model is None:  # the seed, or a key the schema refuses: as it is
                parts[key] = value
                continue
            section = self._section(key, model, value)
            if section is None:
                return validate_spec(tree, self.source, "")
            parts[key] = section
        for key, model in self.sections.items():  # absent tables: their defaults, shared
            if key not in parts:
                default = self._defaults.get(key)
                if default is None:
                    default = self._defaults[key] = model.model_validate({})
                parts[key] = default
        try:
            return TrialSpec.model_validate(parts)
        except ValidationError:
            return validate_spec(tree, self.source, "")

    def _section(self, key: str, model: type[BaseModel], value: Any) -> BaseModel | None:
        """The validated section, or None when it does not validate (or cannot be keyed)."""
        if not isinstance(value, dict):
            return None
        same = self._same.get((key, id(value)))
        if same is not None and same[0] is value:
            return same[1]
        try:
            cache_key = (key, freeze(value))
        except TypeError:
            return None
        section = self._cache.get(cache_key)
        if section is None:
            try:
                section = model.model_validate(value)
            except ValidationError:
                return None
            self._cache[cache_key] = section
        self._same[key, id(value)] = (value, section)
        return section
