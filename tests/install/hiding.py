"""Make installed packages look absent: what a machine without an extra sees.

``hidden(*modules)`` puts a finder first on ``sys.meta_path`` that answers "no module
named ..." for those top-level modules and their submodules, and takes them out of
``sys.modules`` while it lasts. (A whole install without extras is reproduced in
``test_core_install`` instead, by a stand-in site-packages.)
"""

from __future__ import annotations

import contextlib
import importlib.abc
import sys
from collections.abc import Iterator


class Hide(importlib.abc.MetaPathFinder):
    def __init__(self, modules: set[str]) -> None:
        self.modules = modules

    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in self.modules:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None


@contextlib.contextmanager
def hidden(*modules: str) -> Iterator[None]:
    names = set(modules)
    saved = {k: v for k, v in sys.modules.items() if k.split(".")[0] in names}
    for key in saved:
        del sys.modules[key]
    finder = Hide(names)
    sys.meta_path.insert(0, finder)
    try:
        yield
    finally:
        sys.meta_path.remove(finder)
        sys.modules.update(saved)

