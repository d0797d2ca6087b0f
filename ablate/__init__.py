"""ablate: architecture ablation studies for efficient semantic-segmentation networks."""

from __future__ import annotations

import importlib

__version__ = "0.1.0"


def __getattr__(name: str):
    """``ablate.open(db)``: the database for notebooks (``ablate.api``), loaded on first
    use so that ``import ablate`` stays light (no pandas, SQLAlchemy or torch), and by
    name so that the layers below, which import ``ablate`` for its version, do not
    depend on ``ablate.api``, which sits above them."""
    if name == "open":
        return importlib.import_module("ablate.api").open_database
    raise AttributeError(f"module 'ablate' has no attribute {name!r}")
