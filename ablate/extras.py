"""The optional extras, named once: which packages each installs and the one line that
says how to get them when a feature needs one that is missing.

``pip install ablate`` (and ``make demo``) installs the core: enough to plan, train,
evaluate and report on the CPU. Each extra adds what one feature needs, and
``pip install 'ablate[all]'`` adds every one. The extras' names are those of
``pyproject.toml``'s ``[project.optional-dependencies]`` (a test keeps the two equal).

A leaf module (standard library only), outside the layers like ``ablate.clock``: every
layer may ask it.
"""

from __future__ import annotations

import importlib.util

# extra -> the modules of it that ablate imports (what is looked for, without importing)
EXTRAS: dict[str, tuple[str, ...]] = {
    "coco": ("pycocotools",),  # data.name = "coco": COCO's polygon and RLE masks
    "postgres": ("psycopg",),  # a postgresql+psycopg:// database
    "parquet": ("pyarrow",),  # ablate export --parquet
    "runtimes": ("onnx", "onnxruntime"),  # eval.runtimes = ["onnxruntime"]
    "tensorboard": ("tensorboard",),  # --tracking tensorboard
    "mlflow": ("mlflow",),  # --tracking mlflow
    "wandb": ("wandb",),  # --tracking wandb
}


def install_command(extra: str) -> str:
    """``pip install 'ablate[mlflow]'``."""
    if extra not in EXTRAS:
        raise KeyError(f"unknown extra {extra!r}; known: {', '.join(EXTRAS)}")
    return f"pip install 'ablate[{extra}]'"


def missing(extra: str) -> list[str]:
    """The modules of ``extra`` that cannot be imported here (looked for, not imported)."""
    return [module for module in EXTRAS[extra] if not importable(module)]


def needs(feature: str, extra: str) -> str:
    """The one line for a ``feature`` whose extra is missing:
    ``--tracking mlflow needs mlflow: pip install 'ablate[mlflow]'``."""
    absent = missing(extra) or list(EXTRAS[extra])
    return f"{feature} needs {', '.join(absent)}: {install_command(extra)}"


def importable(module: str) -> bool:
    """Whether ``module`` could be imported here, found without importing it."""
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a parent that fails to import; a None in sys.modules
        return False
