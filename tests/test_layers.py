"""The import contracts of pyproject.toml hold, and each one fails on a deliberate violation.

``lint-imports`` (import-linter) reads the contracts; a copy of the package with one
violating import must break exactly the contract it violates, so the check cannot be
hollow.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LINT = Path(sys.executable).with_name("lint-imports")


def lint(root: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(LINT), "--config", str(root / "pyproject.toml"), "--no-cache"],
                          cwd=root, capture_output=True, text=True, timeout=300,
                          env={"PYTHONPATH": str(root), "PATH": "/usr/bin:/bin"})


@pytest.fixture(scope="module")
def copy(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("layers")
    shutil.copytree(ROOT / "ablate", root / "ablate",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    shutil.copy(ROOT / "pyproject.toml", root / "pyproject.toml")
    return root


def test_the_contracts_hold():
    out = lint(ROOT)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "Contracts: 2 kept, 0 broken." in out.stdout


@pytest.mark.parametrize(("module", "line", "broken"), [
    # a lower layer importing a higher one: the recipe schema asking the CLI (it closes a
    # circle across packages too, so the acyclic contract breaks as well)
    ("ablate/recipes/schema.py", "import ablate.cli  # violation\n", "ablate's layers"),
    # inside a function does not hide it
    ("ablate/store/read.py", "def f():\n    import ablate.report.build  # violation\n",
     "ablate's layers"),
    # a circle inside one package: stats -> effects -> stats
    ("ablate/analysis/stats.py", "import ablate.analysis.effects  # violation\n",
     "no import cycle"),
])
def test_each_contract_fails_on_a_violation(copy, module, line, broken):
    path = copy / module
    original = path.read_text()
    try:
        path.write_text(original + "\n" + line)
        out = lint(copy)
    finally:
        path.write_text(original)
    assert out.returncode != 0
    assert broken in out.stdout.split("Broken contracts", 1)[1]
    if broken == "no import cycle":  # a circle within a package breaks no layer
        assert "Contracts: 1 kept, 1 broken." in out.stdout
