"""``make demo`` installs the core package only (``pip install ablate``): that is enough to
plan, train and report the quick-start.

A second virtual environment costs minutes and gigabytes (torch), so the core install is
reproduced from this one: a stand-in ``site-packages`` of links to the files of the core
distributions only, i.e. ``ablate``'s requirements without extras, and theirs,
recursively, as the installed packages' own metadata states them. Fresh processes that
skip the real ``site-packages`` (``python -S``) then run ``ablate plan``, one small
quick-start trial and the report: every module an extra or the dev tools brought in is
absent there, metadata included, as on a machine where they were never installed.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import sysconfig
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from ablate import extras

ROOT = Path(__file__).resolve().parents[2]
QUICKSTART = ROOT / "recipes" / "quickstart.toml"
SITE = Path(sysconfig.get_paths()["purelib"])


def core_distributions() -> set[str]:
    """``ablate`` and what its core requirements need, recursively (extras left out)."""
    seen: set[tuple[str, tuple[str, ...]]] = set()
    todo: list[tuple[str, tuple[str, ...]]] = [("ablate", ())]
    while todo:
        name, wanted = todo.pop()
        key = canonicalize_name(name)
        if (key, wanted) in seen:
            continue
        seen.add((key, wanted))
        try:
            requires = metadata.distribution(name).requires or []
        except metadata.PackageNotFoundError:
            continue  # not installed on this platform (its marker excluded it)
        for text in requires:
            req = Requirement(text)
            if req.marker is None or any(req.marker.evaluate({"extra": e})
                                         for e in ("", *wanted)):
                todo.append((req.name, tuple(sorted(req.extras))))
    return {key for key, _ in seen}


def _top_entries(dist: metadata.Distribution) -> set[str]:
    """The names in site-packages that ``dist`` installed (packages, modules, dist-info)."""
    names = {Path(str(f)).parts[0] for f in dist.files or [] if not str(f).startswith("..")}
    return names | {Path(str(dist._path)).name}  # its .dist-info folder


def extras_only_entries() -> set[str]:
    """site-packages entries that only distributions outside the core installed."""
    core = core_distributions()
    kept, dropped = set(), set()
    for dist in metadata.distributions(path=[str(SITE)]):
        name = canonicalize_name(dist.metadata["Name"])
        (kept if name in core else dropped).update(_top_entries(dist))
    return dropped - kept


def core_site(folder: Path) -> Path:
    """A stand-in site-packages holding links to the core distributions' files only;
    ``ablate`` itself comes from the source tree (PYTHONPATH), as the editable install."""
    drop = extras_only_entries()
    folder.mkdir()
    for entry in SITE.iterdir():
        if entry.name in drop or entry.suffix == ".pth" or entry.name.startswith(
                ("__editable__", "ablate-")):
            continue
        (folder / entry.name).symlink_to(entry)
    return folder


def test_the_stand_in_lacks_every_extra_and_the_dev_tools_and_keeps_the_core():
    drop = extras_only_entries()
    for extra, modules in extras.EXTRAS.items():
        assert set(modules) <= drop, extra
    assert {"pytest", "hypothesis", "ruff"} <= drop  # dev tools too
    assert not {"torch", "torchvision", "click", "sqlalchemy", "pandas", "matplotlib",
                "scipy", "submitit", "fvcore", "pydantic", "gsdesign"} & drop


def _ablate(args: list[str], cwd: Path, site: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{site}"}
    code = ("import sys, importlib.util\n"
            "assert importlib.util.find_spec('pytest') is None, 'not a core install'\n"
            "from ablate.cli import main\nmain(prog_name='ablate')\n")
    return subprocess.run([sys.executable, "-S", "-c", code, *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=600)


@pytest.mark.slow
def test_the_core_install_plans_trains_and_reports_the_quick_start(tmp_path):
    site = core_site(tmp_path / "core-site")
    small = ["--set", "data.train_images=8", "--set", "data.val_images=4",
             "--set", "train.epochs=1", "--set", "seeds=[0]"]
    plan = _ablate(["plan", str(QUICKSTART), *small, "--json"], tmp_path, site)
    assert plan.returncode == 0, plan.stderr
    assert len(json.loads(plan.stdout)) == 4

    run = _ablate(["run", str(QUICKSTART), *small, "--variant", "all_expansions"], tmp_path,
                  site)
    assert run.returncode == 0, run.stderr + run.stdout
    con = sqlite3.connect(tmp_path / "results" / "ablate.db")
    rows = con.execute("SELECT t.status, m.value FROM trials t JOIN metrics m "
                       "ON m.trial_pk = t.id WHERE m.key = 'miou' AND m.epoch IS NULL").fetchall()
    con.close()
    assert [status for status, _ in rows] == ["done", "done"]
    assert all(0.0 <= miou <= 1.0 for _, miou in rows)

    report = _ablate(["report", "--study", "quickstart", "--effects", "--pareto", "--out",
                      "results/"], tmp_path, site)
    assert report.returncode == 0, report.stderr
    assert "keep_last_expansion" in report.stdout
    assert (tmp_path / "results" / "pareto_params.png").stat().st_size > 0
