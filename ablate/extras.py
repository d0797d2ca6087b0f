"""The optional extras, named once: which packages each installs and the one line that
says how to get them when a feature needs one that is missing.

``pip install -e .`` in a checkout (and ``make demo``) installs the core: enough to
plan, train, evaluate and report on the CPU. Each extra adds what one feature needs, and
``pip install -e '.[all]'`` adds every one. The extras' names are those of
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
    """The command that adds ``extra`` to this installation: ``pip install -e '.[mlflow]'``
    from the checkout ablate runs from (its path, from another folder); a direct install
    as pip recorded it (a folder, or ``'ablate[mlflow] @ git+URL'``); else the name.

    The name alone is the last resort: PyPI's ``ablate`` is another project."""
    if extra not in EXTRAS:
        raise KeyError(f"unknown extra {extra!r}; known: {', '.join(EXTRAS)}")
    editable, source = _source()
    if source is None:
        return f"pip install 'ablate[{extra}]'"
    if "://" in source:
        return f"pip install 'ablate[{extra}] @ {source}'"
    return f"pip install {'-e ' if editable else ''}'{source}[{extra}]'"


def _source() -> tuple[bool, str | None]:
    """(editable, where ablate was installed from): the checkout holding the imported
    package (shown as ``.`` from its root, else by path), a folder or VCS URL pip
    recorded, or (False, None)."""
    import json
    import os
    from importlib import metadata
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    project = root / "pyproject.toml"
    try:
        if project.is_file() and 'name = "ablate"' in project.read_text(encoding="utf-8"):
            return True, "." if Path.cwd().resolve() == root else os.fspath(root)
    except (OSError, UnicodeDecodeError):
        pass
    try:
        direct = json.loads(metadata.distribution("ablate").read_text("direct_url.json") or "{}")
    except (metadata.PackageNotFoundError, ValueError):
        return False, None
    url = direct.get("url") if isinstance(direct, dict) else None
    if not isinstance(url, str):
        return False, None
    vcs = direct.get("vcs_info")
    if isinstance(vcs, dict) and vcs.get("vcs"):
        return False, f"{vcs['vcs']}+{url}"
    if url.startswith("file://"):
        editable = bool((direct.get("dir_info") or {}).get("editable"))
        return editable, url.removeprefix("file://")
    return False, None


def missing(extra: str) -> list[str]:
    """The modules of ``extra`` that cannot be imported here (looked for, not imported)."""
    return [module for module in EXTRAS[extra] if not importable(module)]


def needs(feature: str, extra: str) -> str:
    """The one line for a ``feature`` whose extra is missing:
    ``--tracking mlflow needs mlflow: pip install -e '.[mlflow]'``."""
    absent = missing(extra) or list(EXTRAS[extra])
    return f"{feature} needs {', '.join(absent)}: {install_command(extra)}"


def importable(module: str) -> bool:
    """Whether ``module`` could be imported here, found without importing it."""
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a parent that fails to import; a None in sys.modules
        return False
