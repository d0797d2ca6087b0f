"""A path given with ``~user`` of no known user (a typo, another machine's account), or
of spaces alone, in any key, option or environment variable that takes a path: one line
naming where it was given, exit 2, nothing created. Python's expanduser raised a
RuntimeError; a blank runs or cache folder was made, named by spaces, in the working
directory."""

from __future__ import annotations

import pytest

from tests.validation.harness import VALID, assert_refused, invoke, snapshot

NO_USER = "~no_such_user_ablate"
# (case id, command after the recipe, environment, the key named)
CASES = [
    ("runs-dir option", ["run", "--runs-dir", f"{NO_USER}/runs"], None, "--runs-dir"),
    ("runs-dir variable", ["run"], {"ABLATE_RUNS_DIR": f"{NO_USER}/runs"}, "ABLATE_RUNS_DIR"),
    ("cache variable", ["plan"], {"ABLATE_CACHE_DIR": f"{NO_USER}/cache"}, "ABLATE_CACHE_DIR"),
    ("voc root", ["run", "--set", "data.name=voc2012", "--set", f"data.root={NO_USER}/voc"],
     None, "data.root"),
    ("folder root", ["run", "--set", "data.name=folder", "--set", f"data.root={NO_USER}/d"],
     None, "data.root"),
    ("folder root, plan", ["plan", "--set", "data.name=folder", "--set",
                           f"data.root={NO_USER}/d"], None, "data.root"),
    ("weights", ["run", "--set", f"model.weights_path={NO_USER}/w.pt"], None,
     "model.weights_path"),
]


@pytest.mark.parametrize("args,env,key", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_a_home_folder_of_no_user_is_named(tmp_path, args, env, key):
    recipe = tmp_path / "valid.toml"
    recipe.write_text(VALID)
    before = snapshot(tmp_path)
    command = [args[0], str(recipe), *args[1:], "--db", str(tmp_path / "s.db")]
    line = assert_refused(invoke(command, env=env), f"{key}: {NO_USER}/")
    assert f"cannot expand '{NO_USER}' (no such user, or no home folder)" in line
    assert snapshot(tmp_path) == before


BLANK = [
    ("runs-dir option", ["run", "--runs-dir", " "], None, "--runs-dir"),
    ("runs-dir option, empty", ["run", "--runs-dir", ""], None, "--runs-dir"),
    ("runs-dir variable", ["run"], {"ABLATE_RUNS_DIR": "  "}, "ABLATE_RUNS_DIR: is blank"),
    ("cache variable", ["run"], {"ABLATE_CACHE_DIR": " "}, "ABLATE_CACHE_DIR: is blank"),
]


@pytest.mark.parametrize("args,env,key", [c[1:] for c in BLANK], ids=[c[0] for c in BLANK])
def test_a_blank_folder_is_refused(tmp_path, monkeypatch, args, env, key):
    monkeypatch.chdir(tmp_path)  # where a folder named by spaces went
    recipe = tmp_path / "valid.toml"
    recipe.write_text(VALID)
    before = snapshot(tmp_path)
    command = [args[0], str(recipe), *args[1:], "--db", str(tmp_path / "s.db")]
    assert_refused(invoke(command, env=env), key)
    assert snapshot(tmp_path) == before
