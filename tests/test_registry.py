"""ablate.registry: names, entry points and import paths resolve through one Registry."""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import sys

import pytest

from ablate.errors import UserInputError
from ablate.registry import Registry, arguments, import_target


@pytest.fixture
def pkg(tmp_path, monkeypatch):
    """``boom`` (its __init__ raises when imported) with a plain module ``boom.nets``."""
    (tmp_path / "boom").mkdir()
    (tmp_path / "boom" / "__init__.py").write_text("raise RuntimeError('package imported')\n")
    (tmp_path / "boom" / "nets.py").write_text("def build(num_classes, depth=3):\n    return 1\n")
    (tmp_path / "fine.py").write_text("def build(num_classes, *, width=8, **extra):\n    pass\n"
                                      "VALUE = 3\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    yield tmp_path
    for name in ("boom", "boom.nets", "fine"):
        sys.modules.pop(name, None)


def _sha(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


def test_source_hash_reads_the_package_without_importing_it(pkg):
    registry = Registry("model builder", "model.builder", {}, group="ablate.models")
    (pkg / "boom" / "layers").mkdir()
    (pkg / "boom" / "layers" / "blocks.py").write_text("WIDTH = 4\n")
    (pkg / "boom" / "__pycache__").mkdir()
    (pkg / "boom" / "__pycache__" / "stale.py").write_text("")  # not the package's code
    (pkg / "boom" / "notes.txt").write_text("not code\n")
    files = {"boom/__init__.py": _sha(pkg / "boom" / "__init__.py"),
             "boom/layers/blocks.py": _sha(pkg / "boom" / "layers" / "blocks.py"),
             "boom/nets.py": _sha(pkg / "boom" / "nets.py")}
    assert registry.source_files("boom.nets:build") == files
    text = "".join(f"{path}\0{digest}\n" for path, digest in sorted(files.items()))
    assert registry.source_hash("boom.nets:build") == hashlib.sha256(text.encode()).hexdigest()[:16]
    assert "boom" not in sys.modules
    # a module outside any package: its file alone, hashed as before packages counted
    assert registry.source_files("fine:build") == {"fine.py": _sha(pkg / "fine.py")}
    assert registry.source_hash("fine:build") == _sha(pkg / "fine.py")


def test_import_errors_are_one_line_and_name_the_key(pkg):
    with pytest.raises(UserInputError) as err:
        import_target("boom.nets:build", "model.builder")
    assert str(err.value) == ("model.builder: importing 'boom.nets' raised RuntimeError: "
                              "package imported")
    with pytest.raises(UserInputError, match=r"^data.builder: fine.VALUE is a int, not a function"):
        import_target("fine:VALUE", "data.builder")
    with pytest.raises(UserInputError, match="is not an import path"):
        import_target("fine.build", "model.builder")


def test_a_module_not_found_says_where_to_look(pkg, tmp_path, monkeypatch):
    """``ablate`` (a script) does not put the current folder on sys.path: a package lying
    there was answered with a question, "is its package installed or on PYTHONPATH?"."""
    here = tmp_path / "project"
    (here / "mynets").mkdir(parents=True)
    (here / "mynets" / "__init__.py").write_text("")
    (pkg / "needs.py").write_text("import not_installed_dep\ndef build(num_classes): pass\n")
    (pkg / "okpkg").mkdir()
    (pkg / "okpkg" / "__init__.py").write_text("")
    monkeypatch.chdir(here)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", ".")])
    registry = Registry("model builder", "model.builder", {}, group="ablate.models")
    beside = (" (mynets is in the current folder, which is not on sys.path: run with "
              "PYTHONPATH=. or pip install -e its package)")
    with pytest.raises(UserInputError) as err:
        import_target("mynets.model:build", "model.builder")
    assert str(err.value) == ("model.builder: cannot import 'mynets.model': No module named "
                              "'mynets'" + beside)
    with pytest.raises(UserInputError) as err:  # found while hashing the trial's code
        registry.source_files("mynets.model:build")
    assert str(err.value) == ("model.builder: cannot import 'mynets.model': No module named "
                              "'mynets'" + beside)
    with pytest.raises(UserInputError) as err:  # the package is found: no question asked
        registry.source_files("okpkg.nope:build")
    assert str(err.value) == "model.builder: no module named 'okpkg.nope'"
    with pytest.raises(UserInputError) as err:  # the missing module is a dependency
        import_target("needs:build", "model.builder")
    assert str(err.value) == ("model.builder: cannot import 'needs': No module named "
                              "'not_installed_dep' (is its package installed or on PYTHONPATH?)")
    monkeypatch.syspath_prepend(str(here))  # on sys.path, it is found
    assert registry.source_files("mynets:build") == {
        "mynets/__init__.py": _sha(here / "mynets" / "__init__.py")}
    for name in ("needs", "okpkg", "mynets"):
        sys.modules.pop(name, None)


def test_arguments_lists_keywords_and_defaults(pkg):
    fn = import_target("fine:build", "model.builder")
    assert arguments(fn, skip=("num_classes",)) == [
        {"name": "width", "default": 8, "required": False}]


def test_builtins_win_over_plugins_and_registrations_resolve(monkeypatch, pkg):
    def fake(**kwargs):
        return importlib.metadata.EntryPoints([
            importlib.metadata.EntryPoint("shapes", "fine:build", "ablate.test"),
            importlib.metadata.EntryPoint("extra", "fine:build", "ablate.test")])

    monkeypatch.setattr(importlib.metadata, "entry_points", fake)
    registry = Registry("dataset", "data.name", {"shapes": "ablate.data.shapes:generate"},
                        group="ablate.test")
    assert registry.names() == ["shapes", "extra"]
    assert registry.entry("shapes").origin == "built-in"
    assert registry.source_hash("shapes") is None  # built-ins are versioned with ablate
    assert registry.load("extra") is import_target("fine:build", "x")

    @registry.register("mine")
    def mine(num_classes):
        return num_classes

    assert registry.load("mine") is mine and registry.entry("mine").origin == "registered"
    # a built-in's name would never reach the registered function: refused, not dropped
    with pytest.raises(ValueError, match="'shapes' is a built-in dataset; register yours"):
        registry.register("shapes", mine)
    with pytest.raises(ValueError, match="'shapes' is a built-in dataset"):
        registry.register("shapes")
    assert registry.entry("shapes").origin == "built-in"
    with pytest.raises(UserInputError, match=r"unknown dataset 'nope'; allowed: 'shapes', "
                                             r"'extra', 'mine' or an import path"):
        registry.entry("nope")


def test_a_plugin_entry_point_typo_names_the_plugin(monkeypatch, pkg):
    """The recipe holds the plugin's name, the typo is in its entry point: the error
    names both (it named only a module or function the recipe never mentions)."""
    def fake(**kwargs):
        return importlib.metadata.EntryPoints([
            importlib.metadata.EntryPoint("typo", "fine:buld", "ablate.test"),
            importlib.metadata.EntryPoint("badmod", "fyne:build", "ablate.test")])

    monkeypatch.setattr(importlib.metadata, "entry_points", fake)
    registry = Registry("model builder", "model.builder", {}, group="ablate.test")
    with pytest.raises(UserInputError) as err:
        registry.load("typo")
    assert str(err.value) == ("model.builder: 'typo' (plugin: fine:buld): module 'fine' has "
                              "no attribute 'buld'; did you mean 'build'?")
    with pytest.raises(UserInputError) as err:  # found while hashing the trial's code
        registry.source_files("badmod")
    assert str(err.value) == ("model.builder: 'badmod' (plugin: fyne:build): no module named "
                              "'fyne' (is its package installed or on PYTHONPATH?)")
    with pytest.raises(UserInputError) as err:  # an import path in the recipe: as before
        registry.load("fine:buld")
    assert str(err.value) == ("model.builder: module 'fine' has no attribute 'buld'; did you "
                              "mean 'build'?")


def _distribution(root, name: str, group: str, entry_points: dict[str, str]) -> None:
    """An installed distribution as pip leaves it: a ``.dist-info`` folder on sys.path."""
    info = root / f"{name.replace('-', '_')}-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n")
    lines = "".join(f"{k} = {v}\n" for k, v in entry_points.items())
    (info / "entry_points.txt").write_text(f"[{group}]\n{lines}")


def test_a_plugin_that_a_name_cannot_reach_is_said(tmp_path, monkeypatch, pkg):
    """A plugin named like a built-in (or like another plugin) was dropped without a
    word: its author saw the built-in run and thought the plugin did."""
    first, second = tmp_path / "first", tmp_path / "second"
    first.mkdir()
    second.mkdir()
    _distribution(first, "shapes-plus", "ablate.test", {"shapes": "fine:build",
                                                         "extra": "fine:build"})
    _distribution(second, "other-extra", "ablate.test", {"extra": "boom.nets:build"})
    monkeypatch.syspath_prepend(str(second))
    monkeypatch.syspath_prepend(str(first))
    registry = Registry("dataset", "data.name", {"shapes": "ablate.data.shapes:generate"},
                        group="ablate.test")
    assert registry.ignored_plugins() == [
        "ablate.test entry point 'shapes' (plugin shapes-plus: fine:build) is ignored: "
        "data.name = 'shapes' stays the built-in dataset; rename the entry point to use "
        "the plugin",
        "ablate.test entry point 'extra' (plugin other-extra: boom.nets:build) is ignored: "
        "plugin shapes-plus (fine:build) has that name and comes first on sys.path"]
    # the built-in keeps winning, so a recipe means the same whatever is installed
    assert registry.entry("shapes").origin == "built-in"
    assert registry.entry("extra").origin == "plugin shapes-plus"
    assert registry.names() == ["shapes", "extra"]
    assert Registry("dataset", "data.name", {}, group="ablate.none").ignored_plugins() == []


def test_plan_and_listings_say_a_shadowing_plugin_once(tmp_path, monkeypatch, pkg,
                                                       write_recipe):
    from click.testing import CliRunner

    from ablate.catalog import DATASETS
    from ablate.cli import main

    site = tmp_path / "site"
    site.mkdir()
    _distribution(site, "shapes-plus", "ablate.datasets", {"shapes": "fine:build"})
    monkeypatch.syspath_prepend(str(site))
    DATASETS.refresh()
    line = ("Warning: ablate.datasets entry point 'shapes' (plugin shapes-plus: fine:build) "
            "is ignored: data.name = 'shapes' stays the built-in dataset; rename the entry "
            "point to use the plugin\n")
    path = write_recipe('name = "s"\nseeds = [0]\n[base.data]\nname = "shapes"\n')
    try:
        for command in (["plan", str(path), "--no-cost", "--json"], ["datasets", "--json"]):
            result = CliRunner().invoke(main, command)
            assert result.exit_code == 0, result.output
            assert result.stderr == line, command
            json.loads(result.stdout)  # the listing on stdout stays clean JSON
        assert "Warning" not in CliRunner().invoke(main, ["models"]).stderr  # not a model
    finally:
        DATASETS.refresh()


def test_a_misspelt_function_or_name_gets_the_closest_one(pkg):
    """``module 'fine' has no attribute 'buld'`` left the user to spot the typo."""
    (pkg / "fine2.py").write_text("import os\nclass Nets:\n    def build(self): pass\n"
                                  "def build_unet(num_classes): pass\nBUILD = 3\n"
                                  "def _build(): pass\n")
    try:
        for ref, hint in (("fine2:buld_unet", "; did you mean 'build_unet'?"),
                          ("fine2:Nets.buld", "; did you mean 'Nets.build'?"),
                          ("fine2:oss", ""),  # a module, not a callable
                          ("fine2:zzz", "")):
            with pytest.raises(UserInputError) as err:
                import_target(ref, "model.builder")
            attribute = ref.partition(":")[2]
            assert str(err.value) == (f"model.builder: module 'fine2' has no attribute "
                                      f"{attribute!r}{hint}")
    finally:
        sys.modules.pop("fine2", None)
    registry = Registry("model builder", "model.builder", {}, group="ablate.none")
    registry.register("unet_small", "fine:build")
    registry.register("unet_large", "fine:build")
    with pytest.raises(UserInputError) as err:
        registry.entry("unet_smal")
    assert str(err.value) == ("model.builder: unknown model builder 'unet_smal' (did you mean "
                              "'unet_small'?); allowed: 'unet_small', 'unet_large' or an "
                              "import path 'package.module:function'")
    with pytest.raises(UserInputError) as err:  # a dot before the function, as in Hydra
        registry.entry("custom_unet.model.build_unet")
    assert str(err.value) == ("model.builder: unknown model builder 'custom_unet.model."
                              "build_unet' (did you mean 'custom_unet.model:build_unet'?); "
                              "allowed: 'unet_small', 'unet_large' or an import path "
                              "'package.module:function'")


def test_a_module_named_without_its_function_gets_its_functions(pkg):
    """``usernets.nets`` (a module) was answered with ``did you mean 'usernets:nets'?``,
    which fails again: ``module 'usernets' has no attribute 'nets'``. The module's
    functions are read from its source: ``boom`` raises when imported."""
    (pkg / "boom" / "two.py").write_text("import os\nclass Net:\n    pass\n"
                                         "def build(num_classes): pass\ndef _private(): pass\n")
    registry = Registry("model builder", "model.builder", {}, group="ablate.none")
    tail = "; allowed: an import path 'package.module:function' (no ablate.none plugin is installed)"
    for name, hint in (
            ("boom.nets", "did you mean 'boom.nets:build'?"),
            ("boom.two", "'boom.two' is a module: name its function, 'boom.two:FUNCTION'; "
                         "it defines Net, build"),
            ("boom.nets.build", "did you mean 'boom.nets:build'?"),  # Hydra's spelling
            ("boom.gone.build", "did you mean 'boom.gone:build'?")):
        with pytest.raises(UserInputError) as err:
            registry.entry(name)
        assert str(err.value) == f"model.builder: unknown model builder {name!r} ({hint}){tail}"
    assert "boom" not in sys.modules


def test_ablate_models_names_selective_down_sampling_as_the_builder_checks_it():
    """It listed backbones and heads but nothing said model.selective existed; the
    backbones it names are those the selective builder accepts."""
    from click.testing import CliRunner

    from ablate.cli import main
    from ablate.cli.models import SELECTIVE_BACKBONES
    from ablate.models.selective import RESNETS

    assert SELECTIVE_BACKBONES == RESNETS
    out = CliRunner().invoke(main, ["models"]).stdout
    assert ("model.selective.enabled = true: content-adaptive down-sampling with a mask net, "
            "on head 'deeplabv3' at output_stride 8 with backbone resnet50 or resnet101") in out
    data = json.loads(CliRunner().invoke(main, ["models", "--json"]).stdout)
    assert data["selective"]["keys"]["execution"] == "dense"
    assert data["selective"]["keys"]["lambda"] == 0.1
