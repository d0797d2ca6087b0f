"""``[knockout]``: a design that generates knock-out configurations (pure).

A recipe names the components (dotted module paths of the built network) and a design;
the design becomes one axis of the grid, ``model.remove``, whose values are the lists of
components each configuration removes:

- ``leave-one-out``: the full model (``[]``) and one configuration per component removed;
- ``add-one``: the minimal model (every component removed) and one configuration per
  component restored;
- ``factorial``: every subset (2^n configurations, at most ``MAX_FACTORIAL`` components).

The baseline comes first, and the report reads every effect against it
(``ablate.analysis.knockout``): leave one out against the full model, add one against the
minimal one, a factorial as one two-level axis per component.
"""

from __future__ import annotations

import itertools
from typing import Any, Literal

from pydantic import Field, field_validator

from ablate.recipes.schema import Section, module_paths

AXIS = "model.remove"
MAX_FACTORIAL = 8  # components: 256 configurations
DESIGNS = ("leave-one-out", "add-one", "factorial")


class KnockoutSpec(Section):
    """The top-level ``[knockout]`` table."""

    design: Literal["leave-one-out", "add-one", "factorial"] = "leave-one-out"
    components: list[str] = Field(min_length=1)

    _paths = field_validator("components", mode="before")(
        classmethod(lambda cls, v: module_paths(v)))

    @field_validator("components")
    @classmethod
    def _few_for_factorial(cls, v: list[str], info: Any) -> list[str]:
        if info.data.get("design") == "factorial" and len(v) > MAX_FACTORIAL:
            raise ValueError(f"a factorial over {len(v)} components is {2 ** len(v):,} "
                             f"configurations; name at most {MAX_FACTORIAL}, or use "
                             "leave-one-out or add-one")
        return v


def design_axis(spec: KnockoutSpec) -> list[list[str]]:
    """The ``model.remove`` values of the design, its baseline first."""
    parts = spec.components
    if spec.design == "leave-one-out":
        return [[], *([p] for p in parts)]
    if spec.design == "add-one":
        return [list(parts), *([q for q in parts if q != p] for p in parts)]
    # the first component toggles fastest: [], [a], [b], [a, b], [c], ...
    return [[p for p, removed in zip(parts, reversed(mask)) if removed]
            for mask in itertools.product((False, True), repeat=len(parts))]
