"""Published figures cite their paper and table; nothing points at documents outside the project."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from ablate.recipes.loader import load_recipe

REPO = Path(__file__).resolve().parents[2]
RECIPES = sorted((REPO / "recipes").glob("*.toml"))
# built from parts so that this file does not match itself
OUTSIDE = re.compile("|".join([r"SPEC" + r"\.md", r"\bseed[ _-]?0{1,2}[0-3]\b", r"\.\./" + "shared",
                               "/work/" + "shared"]), re.IGNORECASE)


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: p.name)
def test_published_figures_name_their_table(path):
    for variant in load_recipe(path).variants:
        if variant.published is None:
            continue
        source = variant.published.source or ""
        assert "Table 1" in source or "torchvision documentation" in source, (variant.name, source)


def test_nothing_points_outside_the_project():
    files = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md")), *RECIPES, *(REPO / "ablate").rglob("*.py"),
             *(REPO / "tests").rglob("*.py"), *(REPO / "bench").glob("*.py")]
    hits = [f"{path.relative_to(REPO)}:{n}: {line.strip()}"
            for path in files for n, line in enumerate(path.read_text().splitlines(), 1)
            if OUTSIDE.search(line)]
    assert hits == []
