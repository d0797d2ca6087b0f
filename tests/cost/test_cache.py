"""The per-user cost cache: `plan` without a database counts an architecture once."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from ablate.cli import main
from ablate.cost import analyse, cache
from ablate.dispatch.cost_cache import cached_costs
from ablate.recipes.loader import parse_recipe
from ablate.trials.expand import expand
from tests.conftest import TINY_RECIPE

ROOT = Path(__file__).resolve().parents[2]


def plan_json(recipe: Path, db: Path) -> list[dict]:
    result = CliRunner().invoke(main, ["plan", str(recipe), "--db", str(db), "--json"])
    assert result.exit_code == 0, result.output
    assert not db.exists()  # planning never creates a database
    return json.loads(result.stdout)


@pytest.fixture
def counted(monkeypatch) -> list[str]:
    """The arch ids ``analyse_spec`` counts, in order."""
    calls: list[str] = []
    real = analyse.analyse_spec

    def spy(spec, **kwargs):
        report = real(spec, **kwargs)
        calls.append(report.arch_id)
        return report

    monkeypatch.setattr(analyse, "analyse_spec", spy)
    return calls


def entries(folder: Path) -> list[Path]:
    return sorted(folder.rglob("*.json"))


def test_plan_without_database_counts_each_architecture_once(tiny_recipe, tmp_path, counted,
                                                              user_cache_dir):
    first = plan_json(tiny_recipe, tmp_path / "none.db")
    assert len(counted) == 2  # two architectures
    files = entries(user_cache_dir)
    assert [f.stem for f in files] == sorted(counted)
    assert all(f.parent.name == cache.code_version() for f in files)
    assert not list(user_cache_dir.rglob("*.tmp"))  # temporary files renamed away
    second = plan_json(tiny_recipe, tmp_path / "none.db")
    assert len(counted) == 2  # nothing counted again
    assert second == first and all(row["params"] and row["gflops"] for row in second)


def test_corrupt_or_foreign_entries_are_recounted_not_errors(tiny_recipe, tmp_path, counted,
                                                             user_cache_dir):
    first = plan_json(tiny_recipe, tmp_path / "none.db")
    one, other = entries(user_cache_dir)
    text = one.read_text()
    one.write_text(text[: len(text) // 2])  # a writer died mid-file
    other.write_text(json.dumps({"format": 1, "cost": {"arch_id": "0" * 12, "params": 1}}))
    assert plan_json(tiny_recipe, tmp_path / "none.db") == first
    assert sorted(counted[2:]) == sorted(counted[:2])  # both counted again
    assert json.loads(one.read_text()) == json.loads(text)  # and written back whole


def test_changed_counting_code_is_a_new_folder(tmp_path, monkeypatch, counted, tiny_recipe):
    for package in ("cost", "models"):
        (tmp_path / "src" / package).mkdir(parents=True)
        (tmp_path / "src" / package / "a.py").write_text("x = 1\n")
    before = cache.version_of(tmp_path / "src")
    (tmp_path / "src" / "models" / "a.py").write_text("x = 2\n")
    assert cache.version_of(tmp_path / "src") != before

    plan_json(tiny_recipe, tmp_path / "none.db")
    monkeypatch.setattr(cache, "code_version", lambda: "another")
    plan_json(tiny_recipe, tmp_path / "none.db")
    assert len(counted) == 4  # the old figures are not reused


def test_an_entry_without_flops_serves_no_trial_that_wants_them(tmp_path, user_cache_dir):
    trials = expand(parse_recipe(TINY_RECIPE, "tiny.toml"))
    arch = trials[0].arch_id
    entry = {"arch_id": arch, "params": 5, "params_by_module": {}, "flops": None,
             "flops_by_module": None, "flops_convention": None, "resolution": [32, 32]}
    cache.save(arch, entry)
    assert cached_costs(trials, {}) == {}  # eval.flops is true in the tiny recipe
    # eval.flops is no part of the architecture: the same arch id without FLOPs
    no_flops = [t for t in expand(parse_recipe(TINY_RECIPE, "t.toml"), {"eval.flops": False})
                if t.arch_id == arch]
    assert no_flops and cached_costs(no_flops, {})[arch].params == 5
    cache.save(arch, {**entry, "params": "many"})  # not a count: ignored
    assert cached_costs(no_flops, {}) == {}


def test_cache_folder_from_the_environment(monkeypatch, tmp_path):
    monkeypatch.delenv("ABLATE_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache.cache_dir() == tmp_path / "xdg" / "ablate"
    monkeypatch.setenv("XDG_CACHE_HOME", "relative")  # the XDG spec: ignore it
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache.cache_dir() == tmp_path / "home" / ".cache" / "ablate"
    monkeypatch.setenv("ABLATE_CACHE_DIR", str(tmp_path / "mine"))
    assert cache.cache_dir() == tmp_path / "mine"


def test_an_unwritable_cache_is_no_error(tmp_path, monkeypatch, tiny_recipe):
    blocker = tmp_path / "file"
    blocker.write_text("")
    monkeypatch.setenv("ABLATE_CACHE_DIR", str(blocker / "cache"))  # under a file
    assert plan_json(tiny_recipe, tmp_path / "none.db")
    cache.save("abc", {"params": 1})
    assert cache.load(["abc"]) == {}
    cache.save("../evil", {"params": 1})  # not an arch id: never a path
    assert not (blocker.parent / "evil.json").exists()


def test_clear_cache(tiny_recipe, tmp_path, user_cache_dir):
    plan_json(tiny_recipe, tmp_path / "none.db")
    assert len(entries(user_cache_dir)) == 2
    result = CliRunner().invoke(main, ["cost", "--clear-cache"])  # no recipe needed
    assert result.exit_code == 0, result.output
    assert "removed 2 cached architecture cost(s)" in result.output
    assert entries(user_cache_dir) == []


@pytest.mark.slow  # a fresh interpreter: about 6 s on 2 cores
def test_a_cached_plan_never_imports_torch(tiny_recipe, tmp_path):
    plan_json(tiny_recipe, tmp_path / "none.db")  # fills the cache (this process has torch)
    script = (
        "import sys\n"
        "from click.testing import CliRunner\n"
        "from ablate.cli import main\n"
        f"r = CliRunner().invoke(main, ['plan', {str(tiny_recipe)!r}, '--db', "
        f"{str(tmp_path / 'none.db')!r}, '--json'])\n"
        "assert r.exit_code == 0, r.output\n"
        "print(sorted(m for m in ('torch', 'torchvision', 'fvcore') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         cwd=ROOT, env=dict(os.environ), timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "[]"


def test_run_on_a_new_database_counts_each_architecture_once(tiny_recipe, tmp_path, counted,
                                                             monkeypatch):
    """Its architectures are built before the database is created (one that cannot be built
    creates none), and the run then reads their costs from the cache."""
    from ablate.dispatch import executor as executor_module

    class Refuse:  # stops the run at its first trial: only the costs matter here
        def run(self, jobs, handle):
            raise KeyboardInterrupt

    monkeypatch.setattr(executor_module, "make_executor", lambda name, request: Refuse())
    db = tmp_path / "new.db"
    result = CliRunner().invoke(main, ["run", str(tiny_recipe), "--db", str(db),
                                       "--runs-dir", str(tmp_path / "runs")])
    assert result.exit_code == 130, result.output
    from ablate.store import Store

    assert [s.name for s in Store(str(db)).studies()] == ["tiny"]  # past the run's own count
    assert len(counted) == 2  # two architectures, each counted once
